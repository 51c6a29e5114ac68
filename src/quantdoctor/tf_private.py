"""The one place quantdoctor touches private TensorFlow, Keras and LiteRT names.

Each hook wraps one private attribute or class, so a TensorFlow upgrade that moves it fails in
`tests/test_tf_private.py` (one test per hook), not somewhere deep in a diagnosis. TensorFlow
is imported inside each hook: callers already have it loaded (a converter object, the worker).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

# TFLiteConverterBaseV1.__setattr__ maps these two deprecated names onto TF2-style settings;
# on a TF2 converter they are plain attributes that nothing reads.
TF1_ALIASES = ("post_training_quantize", "target_ops")


def is_quantization_aware_graph(graph_def: Any) -> bool:
    """The converter's own test for a quantization-aware trained graph (FakeQuant or
    QuantizeAndDequantize ops, nested function bodies included): `QuantizationMode
    .is_quantization_aware_trained_model` in `tensorflow/lite/python/lite.py`."""
    from tensorflow.lite.python import lite

    mode = lite.QuantizationMode([], lite.TargetSpec(), None, graph_def)
    return bool(mode.is_quantization_aware_trained_model())


def is_tf2_converter(converter: Any) -> bool:
    """True for a TF2 `tf.lite.TFLiteConverter` (any of its from_* forms), False for
    `tf.compat.v1.lite.TFLiteConverter`, which honours the TF1 settings."""
    from tensorflow.lite.python import lite

    return isinstance(converter, lite.TFLiteConverterBaseV2)


@lru_cache(maxsize=1)
def tf1_only_converter_attributes() -> tuple[str, ...]:
    """The public settings a TF1 converter has and a TF2 converter does not (`inference_type`,
    `quantized_input_stats`, ...), plus the deprecated aliases the TF1 converter maps: read
    from TensorFlow's own converter classes, sorted."""
    from tensorflow.lite.python import lite

    tf1 = set(vars(lite.TFLiteConverterBaseV1(experimental_debug_info_func=None)))
    tf2 = set(vars(lite.TFLiteConverterBaseV2()))
    return tuple(sorted({name for name in tf1 - tf2 if not name.startswith("_")} | set(TF1_ALIASES)))
