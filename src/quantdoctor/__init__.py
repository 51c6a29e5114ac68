"""quantdoctor: why a TensorFlow model fails to quantize for LiteRT, and how to fix it.

    import quantdoctor as qd
    report = qd.diagnose(converter)      # a configured tf.lite.TFLiteConverter
    print(report)                        # root cause first
    tflite = qd.convert(converter)       # raises qd.QuantizationError with the report
    qd.audit("model.tflite", target="int8-accelerator")   # is it really fully integer?
    result = qd.fix(converter)           # repaired, converted again, verified: result.model, result.script
    qd.reduce("model.keras", data=x)     # the fewest layers that fail the same way: .culprits, repro=path
    with qd.watch():                     # your own conversion and inference code, diagnosed as it runs
        tflite = converter.convert()
"""

from __future__ import annotations

from typing import Any

from quantdoctor._version import __version__
from quantdoctor.audit.report import audit
from quantdoctor.compare.compare_models import compare
from quantdoctor.diagnosis.pipeline import diagnose
from quantdoctor.errors import QuantdoctorError, UsageError
from quantdoctor.fix.fix_model import FixResult, fix
from quantdoctor.reduce.reduce_model import ReduceResult, reduce
from quantdoctor.report.model import Finding, QuantizationError, Report
from quantdoctor.watch import watch

__all__ = ["diagnose", "convert", "audit", "compare", "fix", "FixResult", "reduce", "ReduceResult", "watch",
           "Report", "Finding", "QuantizationError", "QuantdoctorError", "UsageError",
           "__version__"]


def convert(model: Any, data: Any = None, **options: Any) -> bytes:
    """Like `converter.convert()`, run in isolation: the verified .tflite bytes, or a QuantizationError.

    Takes the same arguments as `diagnose`. Raises when the conversion fails, and also when it
    "succeeds" with an error finding (float ops left under integer-only settings, integer I/O
    silently dropped). The error carries the report (`error.report`) and says the root cause and
    its fix in its message instead of MLIR text.
    """
    if options.get("convert") is False:
        raise UsageError("convert() converts: for the preflight alone, call diagnose(..., convert=False)")
    report = diagnose(model, data, **options)
    if report.tflite_model is None or report.root_cause is not None:
        raise QuantizationError(report)
    return report.tflite_model
