"""The LiteRT interpreter and flatbuffer schema quantdoctor runs and reads models with.

LiteRT's own package (`ai_edge_litert`) where it is installed; otherwise TensorFlow's copies of
both, `tf.lite.Interpreter` (`tensorflow.lite.python.interpreter`) and the schema module next to
it. The two interpreters share one API and the same kernels; the report header says which one ran
(`environment.interpreter`). Nothing here imports either package until a model is run or read.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

LITERT_PACKAGE = "ai_edge_litert"
TENSORFLOW_LITE_PACKAGE = "tensorflow.lite.python"


def has_litert() -> bool:
    """Whether LiteRT's own package is installed (looked up, not imported)."""
    return importlib.util.find_spec(LITERT_PACKAGE) is not None


def interpreter_package() -> str:
    """The package whose interpreter runs models: `ai_edge_litert`, or TensorFlow's `tensorflow.lite.python`."""
    return LITERT_PACKAGE if has_litert() else TENSORFLOW_LITE_PACKAGE


def interpreter_module() -> ModuleType:
    """The module defining `Interpreter`, `SignatureRunner` and `OpResolverType`."""
    return importlib.import_module(f"{interpreter_package()}.interpreter")


def schema_module() -> ModuleType:
    """The generated flatbuffer schema of .tflite models (`schema_py_generated`)."""
    return importlib.import_module(f"{interpreter_package()}.schema_py_generated")


def new_interpreter(model: str | Path | bytes, *, reference_kernels: bool = False,
                    keep_all_tensors: bool = False) -> Any:
    """The one place quantdoctor builds an interpreter, for a .tflite path or the model's bytes.

    By default it has the op resolver and delegates a user's app gets. `reference_kernels`: TFLite's
    builtin kernels without the default delegates (no XNNPACK fusing ops or choosing its own
    arithmetic); `keep_all_tensors`: every intermediate tensor stays readable after `invoke()`.
    """
    module = interpreter_module()
    source: dict[str, Any] = {"model_content": model} if isinstance(model, bytes) else {"model_path": str(model)}
    options: dict[str, Any] = {}
    if reference_kernels:
        options["experimental_op_resolver_type"] = module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    if keep_all_tensors:
        options["experimental_preserve_all_tensors"] = True
    return module.Interpreter(**source, **options)
