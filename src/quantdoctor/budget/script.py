"""The standalone script that makes the chosen model again with public TensorFlow API only.

It converts with the user's settings and calibration data, then asks TensorFlow's
`QuantizationDebugger` for the model with the chosen ops denylisted
(`get_nondebug_quantized_model()`): the same calibration and the same quantizer call the search
replayed, so the script's model computes what quantdoctor's does. TensorFlow and NumPy only.
"""

from __future__ import annotations

from dataclasses import dataclass

from quantdoctor.intake.recipe import Recipe

_TEMPLATE = '''"""Makes {output} again: INT8 with {count} op(s) kept in float to meet an accuracy budget
({budget}). Written by quantdoctor fix-accuracy; needs TensorFlow and NumPy only."""

import numpy as np
import tensorflow as tf

MODEL = {model!r}{model_note}
CALIBRATION = {data!r}  # .npz with one array per model input (or .npy), samples along axis 0
MAX_SAMPLES = {max_samples}
OUTPUT = {output!r}

# The ops kept in float, named by the tensor each one writes (the quantizer's node names).
KEEP_FLOAT = [
{nodes}]


def representative_dataset():
    data = np.load(CALIBRATION)
    arrays = {{"arr_0": data}} if isinstance(data, np.ndarray) else {{key: data[key] for key in data.files}}
    positional = len(arrays) == 1 or all(key == f"arr_{{i}}" for i, key in enumerate(arrays))
    for i in range(min(len(next(iter(arrays.values()))), MAX_SAMPLES)):
        sample = {{key: value[i:i + 1] for key, value in arrays.items()}}
        yield list(sample.values()) if positional else sample


{converter}
converter.optimizations = [{optimizations}]
converter.target_spec.supported_ops = {{{supported_ops}}}
{flags}converter.representative_dataset = representative_dataset

# The debugger calibrates once; its options then say which ops get quantized (fully_quantize: integer I/O).
debugger = tf.lite.experimental.QuantizationDebugger(converter=converter, debug_dataset=representative_dataset)
try:
    debugger.options = tf.lite.experimental.QuantizationDebugOptions(
        denylisted_nodes=KEEP_FLOAT, fully_quantize={fully_quantize})
except ValueError:  # every quantizable op kept float: nothing left for the debugger to instrument, options set
    pass
with open(OUTPUT, "wb") as f:
    f.write(debugger.get_nondebug_quantized_model())
print(f"wrote {{OUTPUT}}")
'''


@dataclass
class ScriptSource:
    """Where the script finds the model: a `.keras`/`.h5` file or a SavedModel directory."""

    path: str
    loader: str  # keras_file | saved_model
    signature_keys: list[str] | None = None
    note: str = ""  # said next to the path, e.g. how to save an in-memory model there
    trusted: bool = False  # the user trusted the file to run code stored in it (Lambda layers)


def render_script(source: ScriptSource, recipe: Recipe, data_path: str, max_samples: int, nodes: list[tuple[str, str]],
                  output: str, budget: str) -> str:
    """The script's text; `nodes` are (node name, what it is) pairs, e.g. the Keras layer and op."""
    if source.loader == "keras_file":
        unsafe = ", safe_mode=False)  # you trusted this file to run the code stored in it" if source.trusted else ")"
        converter = (f"model = tf.keras.models.load_model(MODEL, compile=False{unsafe}\n"
                     "converter = tf.lite.TFLiteConverter.from_keras_model(model)")
    else:
        keys = f", signature_keys={source.signature_keys!r}" if source.signature_keys else ""
        converter = f"converter = tf.lite.TFLiteConverter.from_saved_model(MODEL{keys})"
    flags = "".join(f"converter.{name} = {value!r}\n" for name, value in sorted(recipe.flags.items()))
    return _TEMPLATE.format(
        output=output, count=len(nodes), budget=budget, model=source.path,
        model_note=f"  # {source.note}" if source.note else "", data=data_path, max_samples=max_samples,
        nodes="".join(f"    {node!r},  # {what}\n" for node, what in nodes), converter=converter,
        optimizations=", ".join(f"tf.lite.Optimize.{name}" for name in recipe.optimizations),
        supported_ops=", ".join(f"tf.lite.OpsSet.{name}" for name in recipe.supported_ops), flags=flags,
        fully_quantize=recipe.inference_input_type in ("int8", "uint8"))
