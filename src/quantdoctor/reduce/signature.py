"""A failure's signature: what makes two failed conversions "the same failure" for `reduce`.

The signature is the finding's code, the converter message class (the name of the matcher that
recognised the message, or for an unrecognised error (QD904) the exception type), the signal a
crashed converter died from, and the op type the finding is about. Layer names are left out: a
sub-model names its layers the same, but a finding may name another of them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from quantdoctor.diagnosis.classify_failure import MATCHERS
from quantdoctor.report.model import Finding, Report


@dataclass(frozen=True)
class Signature:
    """code + message class (matcher) + crash signal + op type."""

    code: str
    message_class: str | None = None
    signal: str | None = None
    op: str | None = None

    @classmethod
    def of(cls, finding: Finding) -> Signature:
        """The signature of one finding of a conversion."""
        message = finding.evidence.get("converter_message")
        message_class = None
        if isinstance(message, str) and message:
            message_class = next((matcher.name for matcher in MATCHERS if matcher.search(message)), None)
        if message_class is None and finding.evidence.get("exception_type"):
            message_class = f"exception:{finding.evidence['exception_type']}"
        signal = finding.evidence.get("signal")
        return cls(finding.code, message_class, signal if isinstance(signal, str) else None, finding.location.op)

    def matches(self, report: Report) -> bool:
        """True when the report has a finding with this very signature."""
        return any(Signature.of(finding) == self for finding in report.findings)

    def describe(self) -> str:
        """One line: `QD108 (signal SIGSEGV)`, `QD103 (message tensor-list-lowering, op tf.TensorListReserve)`."""
        parts = [f"message {self.message_class}" if self.message_class else "",
                 f"signal {self.signal}" if self.signal else "", f"op {self.op}" if self.op else ""]
        details = ", ".join(part for part in parts if part)
        return f"{self.code} ({details})" if details else self.code

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return asdict(self)
