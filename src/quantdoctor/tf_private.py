"""Every private TensorFlow hook quantdoctor relies on, in one place.

TensorFlow does not promise that these names survive a release. Each hook below is guarded by a
test in `tests/test_tf_private.py` that fails loudly when the pinned TensorFlow changes, so an
upgrade breaks here, named, and not somewhere deep in a diagnosis.

Accuracy budgets (`quantdoctor.budget`) calibrate once and quantize many times:

- `capture_quantizer_calls`: during a normal conversion, records the model the converter hands
  its MLIR quantizer (the float model carrying the calibrated ranges) and the exact arguments of
  that call. TF 2.21's `TFLiteConverterBase._quantize` calls the module-level name
  `tensorflow.lite.python.lite._mlir_quantize` once calibration is done.
- `quantize_calibrated`: replays that call with `denylisted_nodes` (ops, named by their output
  tensor, that stay float), through `tensorflow.lite.python.convert.mlir_quantize`: about 0.1 s
  per variant instead of a whole conversion, with the tensor names of the full conversion. It is
  what `tf.lite.experimental.QuantizationDebugger.get_nondebug_quantized_model()` runs.
"""

from __future__ import annotations

import base64
import contextlib
import inspect
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class QuantizerCall:
    """One call of the converter's quantizer: the calibrated float model and the arguments, as JSON."""

    calibrated: bytes
    arguments: dict[str, Any]


@contextlib.contextmanager
def capture_quantizer_calls() -> Iterator[list[QuantizerCall]]:
    """Within the block, every conversion that quantizes appends its `QuantizerCall` to the list
    yielded (the conversion itself is unchanged). Restores TensorFlow's function on exit."""
    from tensorflow.lite.python import lite

    original = lite._mlir_quantize
    calls: list[QuantizerCall] = []

    def recording(*args: Any, **kwargs: Any) -> bytes:
        bound = inspect.signature(original).bind(*args, **kwargs)
        data = bound.arguments.pop("input_data_str")
        calls.append(QuantizerCall(bytes(data), _to_json(bound.arguments)))
        return original(*args, **kwargs)

    lite._mlir_quantize = recording
    try:
        yield calls
    finally:
        lite._mlir_quantize = original


def quantize_calibrated(calibrated: bytes, arguments: dict[str, Any], denylisted_nodes: list[str]) -> bytes:
    """The quantized model the captured call makes, with the ops writing `denylisted_nodes` left in float."""
    from tensorflow.lite.python.convert import mlir_quantize

    return mlir_quantize(calibrated, **_from_json(arguments), denylisted_nodes=list(denylisted_nodes) or None)


_DTYPE_ARGUMENTS = ("input_data_type", "output_data_type")


def _to_json(arguments: dict[str, Any]) -> dict[str, Any]:
    """The quantizer's arguments as JSON: dtypes by name, the serialized debug options in base64."""
    result = {}
    for name, value in arguments.items():
        if name in _DTYPE_ARGUMENTS:
            value = value.name
        elif isinstance(value, bytes):
            value = {"base64": base64.b64encode(value).decode()}
        elif hasattr(value, "__int__") and not isinstance(value, bool):
            value = int(value)  # proto enums such as inference_type
        result[name] = value
    return result


def _from_json(arguments: dict[str, Any]) -> dict[str, Any]:
    import tensorflow as tf

    result = {}
    for name, value in arguments.items():
        if name in _DTYPE_ARGUMENTS:
            value = tf.as_dtype(value)
        elif isinstance(value, dict) and "base64" in value:
            value = base64.b64decode(value["base64"])
        result[name] = value
    return result
