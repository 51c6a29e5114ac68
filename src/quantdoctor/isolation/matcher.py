"""`Matcher`: one message quantdoctor recognises in the converter's error text or in a dead worker's
log. Every matcher has a stable name; the test that triggers it with a real model carries
`@pytest.mark.matcher(NAME)` and asserts the text it matched, and the suite fails when a matcher
in `diagnosis.classify_failure.MATCHERS` has no such test that passed (see tests/coverage_markers.py). A
reworded converter message then fails that test instead of silently ending as QD904.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from quantdoctor.environment import VERIFIED_TENSORFLOW


@dataclass(frozen=True)
class Matcher:
    """A named pattern over converter output, with the TensorFlow releases (minor versions) whose
    converter was seen to print it: its marked test passed on each."""

    name: str
    pattern: re.Pattern[str]
    verified_on: tuple[str, ...] = VERIFIED_TENSORFLOW

    @classmethod
    def of(cls, name: str, pattern: str, flags: int = 0,
           verified_on: tuple[str, ...] = VERIFIED_TENSORFLOW) -> Matcher:
        """A matcher for the regular expression `pattern`."""
        return cls(name, re.compile(pattern, flags), verified_on)

    def search(self, text: str) -> re.Match[str] | None:
        """The first match in `text`, or None."""
        return self.pattern.search(text)
