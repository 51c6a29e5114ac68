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

import sys
from importlib import import_module
from types import ModuleType
from typing import Any

from quantdoctor._version import __version__
from quantdoctor.errors import QuantdoctorError, UsageError

# Packages named like the public functions below. Importing one (quantdoctor's own code does, at any time) binds
# the package as `quantdoctor.<name>`; this package keeps the function instead, and imports none of them itself.
_PACKAGES_NAMED_LIKE_FUNCTIONS = frozenset({"audit", "compare", "convert", "fix", "reduce", "watch"})


class _Package(ModuleType):
    """`quantdoctor` itself: the import system's binding of a subpackage named like a public function is left
    out, so `qd.compare`, `qd.watch` and the others stay the functions."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _PACKAGES_NAMED_LIKE_FUNCTIONS and isinstance(value, ModuleType) \
                and value.__name__ == f"{__name__}.{name}":
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

# The rest of the public API, by the module that defines it, imported all at once on first use (PEP 562): a
# process of quantdoctor's own (the command line, a worker) imports the modules it runs and no others.
_LAZY = {"audit": "quantdoctor.audit.report", "compare": "quantdoctor.compare.compare_models",
         "diagnose": "quantdoctor.diagnosis.pipeline", "fix": "quantdoctor.fix.fix_model",
         "FixResult": "quantdoctor.fix.fix_model", "reduce": "quantdoctor.reduce.reduce_model",
         "ReduceResult": "quantdoctor.reduce.reduce_model", "watch": "quantdoctor.watch",
         "Report": "quantdoctor.report.model", "Finding": "quantdoctor.report.model",
         "QuantizationError": "quantdoctor.report.model"}

__all__ = ["diagnose", "convert", "audit", "compare", "fix", "FixResult", "reduce", "ReduceResult", "watch",
           "Report", "Finding", "QuantizationError", "QuantdoctorError", "UsageError",
           "__version__"]


def __getattr__(name: str) -> Any:
    """The public API's functions and types, imported on first use."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    for public, module in _LAZY.items():
        globals()[public] = getattr(import_module(module), public)
    return globals()[name]


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


def convert(model: Any, data: Any = None, **options: Any) -> bytes:
    """Like `converter.convert()`, run in isolation: the verified .tflite bytes, or a QuantizationError.

    Takes the same arguments as `diagnose`. Raises when the conversion fails, and also when it
    "succeeds" with an error finding (float ops left under integer-only settings, integer I/O
    silently dropped). The error carries the report (`error.report`) and says the root cause and
    its fix in its message instead of MLIR text.
    """
    from quantdoctor.diagnosis.pipeline import diagnose
    from quantdoctor.report.model import QuantizationError

    if options.get("convert") is False:
        raise UsageError("convert() converts: for the preflight alone, call diagnose(..., convert=False)")
    report = diagnose(model, data, **options)
    if report.tflite_model is None or report.root_cause is not None:
        raise QuantizationError(report)
    return report.tflite_model
