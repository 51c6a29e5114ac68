"""TF1 converter settings and what a TF2 converter does instead (the knowledge behind QD208).

`tf.compat.v1.lite.TFLiteConverter` reads these; `tf.lite.TFLiteConverter` (TF2) has no such
settings, so setting one is a plain Python attribute that nothing reads. Which names count is
read from TensorFlow's own converter classes (`tf_private.tf1_only_converter_attributes`);
`tests/test_tf1_settings.py` checks that every one of them is explained here.
"""

from __future__ import annotations

from typing import Any

_ANALYZER = "print(tf.lite.experimental.Analyzer.analyze(model_content=tflite_model))   # the model's structure"
_NOTHING = "# nothing to set in TF2: remove the line"
_FULL_INTEGER = ("converter.optimizations = [tf.lite.Optimize.DEFAULT]\n"
                 "converter.representative_dataset = representative_dataset   # real, preprocessed samples\n"
                 "converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]")

# name -> (what TF2 does instead, the TF2 code; "{io}" is the integer type the setting asked for)
_TF2_WAY: dict[str, tuple[str, str]] = {
    "inference_type": (
        "TF2 never reads it: the graph gets int8 activations when `optimizations` and a representative dataset "
        "(or a QAT model's trained ranges) make it integer, and stays float otherwise; only the model's inputs "
        "and outputs follow `inference_input_type` / `inference_output_type`.",
        _FULL_INTEGER + "\nconverter.inference_input_type = tf.{io}    # the graph is int8; {io} only at its edges\n"
                        "converter.inference_output_type = tf.{io}"),
    "quantized_input_stats": (
        "TF2 never reads it: an integer input's scale and zero point come from the range the representative "
        "dataset spans at that input (or from a QAT model's trained range). Calibrating on (raw - mean) / std of "
        "raw inputs that span the full 0..255 range gives scale 1/std and zero point mean, the mapping the TF1 "
        "stats described.",
        "def representative_dataset():\n"
        "    for raw in raw_samples:                  # uint8 data, as the device delivers it\n"
        "        yield [((raw - mean) / std)[None].astype(np.float32)]\n"
        "converter.representative_dataset = representative_dataset\n"
        "converter.inference_input_type = tf.uint8\n"
        "scale, zero_point = interpreter.get_input_details()[0]['quantization']   # read them back"),
    "default_ranges_stats": (
        "TF2 never reads it: there are no dummy ranges. Every activation range is measured on the representative "
        "dataset (or trained with QAT); without either, activations stay float.",
        "converter.optimizations = [tf.lite.Optimize.DEFAULT]\n"
        "converter.representative_dataset = representative_dataset   # real, preprocessed samples"),
    "change_concat_input_ranges": (
        "TF2 never reads it: its quantizer gives a concatenation's inputs and output one scale by itself.",
        _NOTHING),
    "reorder_across_fake_quant": (
        "TF2 never reads it: the converter places a QAT model's FakeQuant ranges itself; such a model converts "
        "with `optimizations = [tf.lite.Optimize.DEFAULT]`.",
        "converter.optimizations = [tf.lite.Optimize.DEFAULT]"),
    "drop_control_dependency": (
        "TF2 never reads it: the converter handles control dependencies itself, with no switch.",
        _NOTHING),
    "output_format": (
        "TF2 never reads it: `convert()` always returns a .tflite flatbuffer; there is no GraphViz output.",
        _ANALYZER),
    "dump_graphviz_dir": ("TF2 never reads it: no GraphViz files are written.", _ANALYZER),
    "dump_graphviz_video": ("TF2 never reads it: no GraphViz files are written.", _ANALYZER),
    "conversion_summary_dir": ("TF2 never reads it: no conversion summary is written.", _ANALYZER),
    "post_training_quantize": (
        "TF2 never reads it: nothing is quantized unless `optimizations` asks for it.",
        "converter.optimizations = [tf.lite.Optimize.DEFAULT]"),
    "target_ops": (
        "TF2 never reads it: the op sets come from `target_spec.supported_ops` alone.",
        "converter.target_spec.supported_ops = [{ops}]"),
}


def explained(name: str) -> bool:
    """True when this module knows what TF2 does instead of the TF1 setting `name`."""
    return name in _TF2_WAY


def tf2_way(name: str, value: Any) -> tuple[str, str]:
    """What a TF2 converter does instead of the TF1 setting `name` (set to `value`), and the TF2 code."""
    instead, code = _TF2_WAY.get(name, ("TF2 never reads it.", _NOTHING))
    if name == "inference_type" and value not in ("int8", "uint8"):
        code = _NOTHING  # a float inference_type asked for nothing TF2 would do differently
    io = value if value in ("int8", "uint8") else "int8"
    ops = ", ".join(f"tf.lite.OpsSet.{op}" for op in (value if isinstance(value, list) else [value]))
    return instead, code.replace("{io}", io).replace("{ops}", ops)
