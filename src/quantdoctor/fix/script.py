"""The standalone script `fix --script` writes: TensorFlow and NumPy only, no quantdoctor.

It loads the user's model and data files, applies the plan's model and data steps as plain code
(the `transforms` functions, copied verbatim), configures the converter from the recipe, and
writes the model. Each repair is a commented block naming the finding code it answers.

Names from the user's files (inputs, layers, `.npz` keys, paths, converter messages) are data: they
reach the code only as `repr()` literals, and the comments only through `python_comment`, which
keeps each on its own line. A name pasted into code without `repr` passes an identifier check.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any

from quantdoctor import catalog
from quantdoctor.budget.script import keep_float_block
from quantdoctor.edits import transforms
from quantdoctor.edits.plan import Plan, SettingsChange, Step
from quantdoctor.fix.repairs import Repair
from quantdoctor.intake.recipe import Recipe
from quantdoctor.report.converter_code import recipe_lines
from quantdoctor.report.literal import python_comment


def write_script(plan: Plan, applied: list[Repair], *, model_path: Path | None, keras_model: bool,
                 data_path: Path | None, output: str, max_samples: int, lambda_layers: bool = False,
                 signature_keys: list[str] | None = None, keep_float: list[tuple[str, str]] | None = None,
                 budget: str = "") -> str:
    """The script's source. `model_path`/`data_path` are the user's files (None: a placeholder the user
    fills in); `keras_model` says whether the model is Keras (else a SavedModel directory).
    `keep_float` ((node name, what it is) pairs) are the ops an accuracy budget (`budget`, in words)
    keeps float: the script then makes the model through TensorFlow's QuantizationDebugger."""
    costs = {(r.code, r.change): r.cost for r in applied}
    steps = plan.model_steps + (plan.data_steps if plan.recipe.calibrate else [])
    imports = "import numpy as np\nimport tensorflow as tf" + ("\nimport keras" if keras_model else "")
    parts = [_header(applied), imports, _constants(model_path, keras_model, data_path, output, max_samples)]
    helpers = _helper_source(steps)
    if helpers:
        parts.append("# The changes, exactly as quantdoctor made them.\n" + helpers + "\n")
    if keras_model:
        parts.append(_model_block(plan.model_steps, lambda_layers, costs))
    if plan.recipe.calibrate:
        parts.append(_data_block(plan.data_steps, data_path, costs))
    keys = f", signature_keys={signature_keys!r}" if signature_keys else ""
    opening = "tf.lite.TFLiteConverter.from_keras_model(model)" if keras_model else \
        f"tf.lite.TFLiteConverter.from_saved_model(MODEL_PATH{keys})"
    produce = "tflite_model = converter.convert()"
    if keep_float is not None:
        produce = keep_float_block(keep_float, plan.recipe.inference_input_type in ("int8", "uint8"), budget)
    parts.append(f"converter = {opening}\n" + _converter_block(plan.recipe, plan.settings_changes, costs, produce))
    return "\n\n".join(parts) + "\n"


def _header(applied: list[Repair]) -> str:
    """The docstring (fixed text) and the repairs, one comment line each: what they change names the user's things."""
    lines = ['"""Converts the model with the repairs `quantdoctor fix` verified. Needs TensorFlow and NumPy only."""',
             "", "# Repairs (each is a commented block below, named by its finding code):"]
    lines += [python_comment(f"  {r.code}  {r.change}") for r in applied] or ["#   none"]
    return "\n".join(lines)


def _constants(model_path: Path | None, keras_model: bool, data_path: Path | None, output: str,
               max_samples: int) -> str:
    placeholder = "model.keras" if keras_model else "saved_model_dir"
    model = repr(os.path.abspath(model_path)) if model_path else (
        f"{placeholder!r}  # yours: fix was given the model in Python" +
        (" (save it: model.save('model.keras'))" if keras_model else ""))
    data = repr(os.path.abspath(data_path)) if data_path else "None  # fix was given the samples in Python: see user_samples()"
    return (f"MODEL_PATH = {model}\nDATA_PATH = {data}\nOUTPUT_PATH = {output!r}\n"
            f"MAX_SAMPLES = {max_samples}  # quantdoctor calibrated on at most this many samples")


def _helper_source(steps: list[Step]) -> str:
    """The source of the steps' transforms functions, each after the transforms functions it calls."""
    names: list[str] = []
    for step in steps:
        for name in [*transform_dependencies(step.function), step.function]:
            if name not in names:
                names.append(name)
    return "\n\n\n".join(inspect.getsource(getattr(transforms, name)).rstrip() for name in names)


def transform_dependencies(name: str) -> list[str]:
    """The transforms functions that transforms function `name` calls (read from its code, nested functions
    included), each after those it calls in turn: what the script must define before `name`."""
    found: list[str] = []
    for used in _global_names(getattr(transforms, name).__code__):
        if used != name and used not in found and inspect.isfunction(getattr(transforms, used, None)):
            found += [dependency for dependency in transform_dependencies(used) if dependency not in found]
            found.append(used)
    return found


def _global_names(code: Any) -> list[str]:
    names = list(code.co_names)
    for constant in code.co_consts:
        if inspect.iscode(constant):
            names += _global_names(constant)
    return names


def _comment(step_or_change: Any, costs: dict[tuple[str, str], str]) -> list[str]:
    code, note = step_or_change.code, step_or_change.note
    title = catalog.get(code).title if code in catalog.CHECKS else code
    lines = [python_comment(f"{code} ({title}): {note}")]
    cost = costs.get((code, note))
    if cost:
        lines.append(python_comment(f"  cost: {cost}"))
    return lines


def _model_block(steps: list[Step], lambda_layers: bool, costs: dict) -> str:
    load = "model = keras.saving.load_model(MODEL_PATH, compile=False"
    load += ", safe_mode=False)  # it holds Lambda layers: their code runs, so load only your own file" \
        if lambda_layers else ")"
    lines = [load]
    for step in steps:
        lines += ["", *_comment(step, costs), f"model = {step.source('model')}"]
    return "\n".join(lines)


def _data_block(steps: list[Step], data_path: Path | None, costs: dict) -> str:
    lines = [_user_samples(data_path), "", "", "def representative_dataset():",
             "    for sample in user_samples():"]
    expanded = False
    for step in steps:
        lines += [f"        {line}" for line in _comment(step, costs)]
        if step.kind == "map":
            lines.append(f"        sample = {step.source('sample')}")
        elif step.kind == "filter":
            lines += [f"        if not {step.source('sample')}:", "            continue"]
        else:
            lines.append(f"        yield from {step.source('sample')}")
            expanded = True
    if not expanded:
        lines.append("        yield sample")
    return "\n".join(lines)


def _user_samples(data_path: Path | None) -> str:
    if data_path is None:
        return ('def user_samples():\n    """Your calibration samples, one batch of 1 each, as your '
                'representative_dataset yields them."""\n'
                '    raise NotImplementedError("fix got the samples from Python: yield them here")')
    load = ("arrays = {'arr_0': np.load(DATA_PATH)}" if data_path.suffix == ".npy" else
            "with np.load(DATA_PATH) as data:\n        arrays = {key: data[key] for key in data.files}")
    return f'''def user_samples():
    """The samples of DATA_PATH: one batch of 1 per row; a list by position, or a dict by key."""
    {load}
    by_position = len(arrays) == 1 or all(key == f"arr_{{i}}" for i, key in enumerate(arrays))
    for row in range(min(len(next(iter(arrays.values()))), MAX_SAMPLES)):
        sample = {{key: value[row:row + 1] for key, value in arrays.items()}}
        yield list(sample.values()) if by_position else sample'''


def _converter_block(recipe: Recipe, changes: list[SettingsChange], costs: dict, produce: str) -> str:
    lines: list[str] = []
    commented: set[int] = set()
    for field, line in recipe_lines(recipe):
        for number, change in enumerate(changes):
            if field in change.before and number not in commented:
                commented.add(number)
                was = ", ".join(f"{name} = {value!r}" for name, value in change.before.items())
                lines += [*_comment(change, costs), python_comment(f"  was: {was}")]
        lines.append(line)
    return "\n".join(lines + ["", produce, 'with open(OUTPUT_PATH, "wb") as output:',
                              "    output.write(tflite_model)",
                              'print(f"wrote {OUTPUT_PATH}: {len(tflite_model)} bytes")'])
