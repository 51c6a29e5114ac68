"""The end of `fix`'s standalone script when an accuracy budget keeps ops float.

Instead of `converter.convert()`, the script asks TensorFlow's `QuantizationDebugger` for the
model with the chosen ops denylisted (`get_nondebug_quantized_model()`): the same calibration and
the same quantizer call the search replayed, so the script's model computes what quantdoctor's
does. Public TensorFlow API only. Node names are `repr()` literals; what they are (layer names) and
the budget's words are comments written by `python_comment`, each on its own line.
"""

from __future__ import annotations

from quantdoctor.report.literal import python_comment

_BLOCK = '''{heading}
# each one writes (the quantizer's node names); every other op is quantized.
KEEP_FLOAT = [
{nodes}]
# The debugger calibrates once; its options then say which ops get quantized (fully_quantize: integer I/O).
debugger = tf.lite.experimental.QuantizationDebugger(converter=converter, debug_dataset=representative_dataset)
try:
    debugger.options = tf.lite.experimental.QuantizationDebugOptions(
        denylisted_nodes=KEEP_FLOAT, fully_quantize={fully_quantize})
except ValueError:  # every quantizable op kept float: nothing left for the debugger to instrument, options set
    pass
tflite_model = debugger.get_nondebug_quantized_model()'''


def keep_float_block(keep_float: list[tuple[str, str]], integer_io: bool, budget: str) -> str:
    """The lines that make `tflite_model` with `keep_float` ((node name, what it is) pairs) in float;
    `integer_io` when the model takes and gives int8. Needs `converter` and `representative_dataset`."""
    nodes = "".join(f"    {node!r},  {python_comment(what)}\n" for node, what in keep_float)
    heading = python_comment(f"Accuracy budget ({budget}): these ops stay float, named by the tensor")
    return _BLOCK.format(heading=heading, nodes=nodes, fully_quantize=bool(integer_io))
