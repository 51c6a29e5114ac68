"""The exceptions quantdoctor raises at its users.

`UsageError` and its subclasses are the user's mistakes (a missing file, an unreadable model, a
bad option): the CLI prints them as one line and exits 2. `QuantizationError`, raised by
`quantdoctor.convert` when a conversion fails, lives next to the report it carries
(`quantdoctor.report.model`). Anything else escaping quantdoctor is a bug in quantdoctor
(`InternalError` when a worker process found it).
"""

from __future__ import annotations


class QuantdoctorError(Exception):
    """Base of every exception quantdoctor raises on purpose."""


class UsageError(QuantdoctorError):
    """The user's input cannot be used: the message says what is wrong and what to do."""


class ModelLoadError(UsageError):
    """The model file or object cannot be loaded or exported."""


class UnsafeModelError(ModelLoadError):
    """Loading the model file would run code stored in it (Lambda layers): refused unless the user trusts it."""


class InputShapesUnknown(ModelLoadError):
    """The converter cannot tell a Keras model's input shapes (QD408): no Input layers and no recorded call it
    can read them from. `fix` puts an Input per call argument in front of the model."""


class DataLoadError(UsageError):
    """The calibration data cannot be read."""


class InternalError(Exception):
    """A bug in quantdoctor, found in one of its worker processes; the message carries its traceback.

    Deliberately not a QuantdoctorError: it is never the user's mistake or the converter's.
    """


class EditFailed(QuantdoctorError):
    """An edit quantdoctor made to the user's model (a `fix` repair: unrolling a recurrence, renaming
    inputs, ...) failed on that model: a limit of the repair, never the user's mistake nor the
    converter's. `fix` reports the repair as blocked and keeps what it verified before."""
