"""The exceptions quantdoctor raises at its users.

`UsageError` and its subclasses are the user's mistakes (a missing file, an unreadable model, a
bad option): the CLI prints them as one line and exits 2. `QuantizationError` is what
`quantdoctor.convert` raises when a conversion fails; it carries the full report. Anything else
escaping quantdoctor is a bug in quantdoctor (`InternalError` when a worker process found it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from quantdoctor.report.model import Report


class QuantdoctorError(Exception):
    """Base of every exception quantdoctor raises on purpose."""


class UsageError(QuantdoctorError):
    """The user's input cannot be used: the message says what is wrong and what to do."""


class ModelLoadError(UsageError):
    """The model file or object cannot be loaded or exported."""


class UnsafeModelError(ModelLoadError):
    """Loading the model file would run code stored in it (Lambda layers): refused unless the user trusts it."""


class DataLoadError(UsageError):
    """The calibration data cannot be read."""


class InternalError(Exception):
    """A bug in quantdoctor, found in one of its worker processes; the message carries its traceback.

    Deliberately not a QuantdoctorError: it is never the user's mistake or the converter's.
    """


class QuantizationError(QuantdoctorError):
    """A conversion failed; `report` holds the diagnosis, its root cause first."""

    def __init__(self, report: Report):
        self.report = report
        root = report.root_cause
        headline = f"{root.code} {root.title}: {root.message}" if root else "conversion failed"
        super().__init__(f"quantization failed — {headline}\nFix: {root.fix.summary}" if root else headline)
