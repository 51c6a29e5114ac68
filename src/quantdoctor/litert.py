"""The LiteRT interpreter and flatbuffer schema quantdoctor runs and reads models with.

LiteRT's own package (`ai_edge_litert`) where it is installed; otherwise TensorFlow's copies of
both, `tf.lite.Interpreter` (`tensorflow.lite.python.interpreter`) and the schema module next to
it. The two interpreters share one API and the same kernels; the report header says which one ran
(`environment.interpreter`). Nothing here imports either package until a model is run or read.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

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
