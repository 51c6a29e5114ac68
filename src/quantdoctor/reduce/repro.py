"""The repro script: the culprit layers alone, rebuilt from their config, failing the same way.

The script needs TensorFlow and NumPy only (and the Keras that built the model, Keras 3 or
tf_keras). Every value that comes from the user's model (layer configs and names, shapes, dtypes,
the converter's message class) reaches it through `repr()`, never as code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from quantdoctor.intake.output_file import write_output
from quantdoctor.intake.recipe import Recipe
from quantdoctor.reduce.signature import Signature
from quantdoctor.report.converter_code import recipe_lines

WEIGHTS_SUFFIX = "_weights.npz"


def write_repro(path: Path, graph: dict[str, Any], culprit: list[int], recipe: Recipe, signature: Signature,
                weights: dict[str, np.ndarray] | None, imports: list[dict[str, str]] | None = None,
                with_source: bool = False) -> str:
    """Write the repro of the culprit calls to `path` (and their real weights beside it when given);
    returns the script. `imports` are the user's handed-over modules (see `intake/imports.py`)."""
    script = repro_script(graph, culprit, recipe, signature, with_weights=weights is not None, imports=imports,
                          with_source=with_source)
    if weights is not None:
        np.savez(str(path)[:-3] + WEIGHTS_SUFFIX if str(path).endswith(".py") else str(path) + WEIGHTS_SUFFIX,
                 **weights)
    write_output(path, script, "--repro")
    return script


def repro_script(graph: dict[str, Any], culprit: list[int], recipe: Recipe, signature: Signature,
                 with_weights: bool = False, imports: list[dict[str, str]] | None = None,
                 with_source: bool = False) -> str:
    """The standalone script for the culprit calls (indices into the graph's calls). A culprit
    layer of the user's own class needs the user's module: the script says so, and imports the
    modules handed over with --import (run it where they import); `with_source` carries the source
    of the modules that define the culprit classes in the script instead (as a string, run with exec)."""
    calls = [graph["calls"][index] for index in culprit]
    produced = {tid for call in calls for tid in call["outputs"]}
    inputs: list[str] = []
    for call in calls:
        inputs += [tid for tid in call["inputs"] if tid not in produced and tid not in inputs]
    own = dict(zip(graph["inputs"], graph["input_names"]))
    input_specs = [(tid, own.get(tid, f"cut_{position}"), graph["specs"][tid]["shape"], graph["specs"][tid]["dtype"])
                   for position, tid in enumerate(inputs)]
    read_later = {tid for call in graph["calls"] for tid in call["inputs"]} | set(graph["outputs"])
    outputs = [tid for call in calls for tid in call["outputs"] if tid in read_later] or calls[-1]["outputs"]
    library = graph["library"]
    unrebuildable = [call["name"] for call in calls if call["serialized"] is None]
    lines = [
        "# quantdoctor reduce: the culprit layers of a failed TFLite conversion, rebuilt on their own.",
        f"# Failure signature: {signature.describe()!r}",
        f"# Culprit layers: {[call['name'] for call in calls]!r}",
        f"# Versions: {graph['versions']!r}",
        f"# Weights: {'the real ones, from the file beside this script' if with_weights else 'random'}.",
    ]
    if unrebuildable:
        lines.append(f"# These layers have no config to rebuild them from: {unrebuildable!r}")
    custom = [call["serialized"].get("registered_name") or call["class"] for call in calls
              if call["serialized"] is not None and not str(call.get("module") or "").startswith(("keras", "tf_keras"))]
    modules = [spec.get("module") or Path(spec["file"]).stem for spec in imports or []]
    sources = {module: text for module, text in (graph.get("sources") or {}).items()
               if with_source and any(call.get("module") == module for call in calls)}
    if custom and sources:
        lines.append(f"# Carries the source of your module(s) {sorted(sources)!r} for your custom layer(s) "
                     f"{custom!r} (--with-source).")
    elif custom:
        lines.append(f"# Needs your custom layer(s) {custom!r}: run it where your module that registers them "
                     "imports.")
    lines += [
        "# Needs TensorFlow and NumPy only. Run: python this_script.py",
        "import importlib",
        "import os",
        "import sys",
        "import types",
        "",
        "import numpy as np",
        "import tensorflow as tf",
        "import tf_keras as keras" if library == "tf_keras" else "import keras",
        *([f"importlib.import_module({module!r})  # your custom layers (handed over with --import)"
           for module in modules] if custom and not sources else []),
        *([f"USER_SOURCES = {sources!r}  # your modules, as text (--with-source)",
           "for module_name, source in USER_SOURCES.items():",
           "    module = sys.modules[module_name] = types.ModuleType(module_name)",
           "    exec(compile(source, module_name + '.py', 'exec'), module.__dict__)"] if sources else []),
        "",
        f"LAYERS = {[call['serialized'] for call in calls]!r}",
        f"CALLS = {[(call['arguments'], call['outputs']) for call in calls]!r}",
        f"INPUTS = {input_specs!r}  # (tensor, name, shape with batch, dtype)",
        f"OUTPUTS = {outputs!r}",
        f"WITH_WEIGHTS = {with_weights!r}",
        "SAMPLES = 20",
        "",
        "",
        "def filled(template, tensors):",
        '    """A call argument with its tensors put back."""',
        "    if isinstance(template, list):",
        "        return [filled(item, tensors) for item in template]",
        '    if "tensor" in template:',
        '        return tensors[template["tensor"]]',
        '    if "dict" in template:',
        '        return {key: filled(value, tensors) for key, value in template["dict"].items()}',
        '    return template["value"]',
        "",
        "",
        "tensors = {tid: keras.Input(shape=tuple(shape[1:]), batch_size=shape[0], dtype=dtype, name=name)",
        "           for tid, name, shape, dtype in INPUTS}",
        "layers = [keras.saving.deserialize_keras_object(config) for config in LAYERS]",
        "for layer, (arguments, outputs) in zip(layers, CALLS):",
        '    args = [filled(a, tensors) for a in arguments["args"]]',
        '    kwargs = {key: filled(value, tensors) for key, value in arguments["kwargs"].items()}',
        "    for tid, value in zip(outputs, tf.nest.flatten(layer(*args, **kwargs))):",
        "        tensors[tid] = value",
        "model = keras.Model([tensors[tid] for tid, _, _, _ in INPUTS], [tensors[tid] for tid in OUTPUTS])",
        "if WITH_WEIGHTS:",
        f"    weights = np.load(os.path.splitext(os.path.abspath(__file__))[0] + {WEIGHTS_SUFFIX!r})",
        "    for position, index in enumerate(" + repr(list(culprit)) + "):",
        "        count = len(layers[position].get_weights())",
        '        layers[position].set_weights([weights[f"{index}/{i}"] for i in range(count)])',
        "",
        "",
        "def representative_dataset():",
        '    """Random samples shaped as the culprit layers\' inputs (one batch each)."""',
        "    rng = np.random.default_rng(0)",
        "    for _ in range(SAMPLES):",
        "        yield {name: (rng.integers(0, 4, [d or 1 for d in shape]) if 'int' in dtype",
        "                      else rng.normal(size=[d or 1 for d in shape])).astype(dtype)",
        "               for _, name, shape, dtype in INPUTS}",
        "",
        "",
        "converter = tf.lite.TFLiteConverter.from_keras_model(model)",
        *[line for _, line in recipe_lines(recipe)],
        "tflite_model = converter.convert()",
        'print(f"converted: {len(tflite_model)} bytes (the failure did not reproduce)")',
    ]
    return "\n".join(lines) + "\n"
