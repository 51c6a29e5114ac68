"""Eval data that does not fit the model: one line (a UsageError), before the conversion it would waste.

`diagnose`, `fix` and `compare` check it with the check compare runs its models with
(`feed.check_fits`), so all of them refuse a sample with the same words. Before converting, the
worker checks it against the inputs the loaded model declares; a sample given in order (a list,
or `.npz` members `arr_0`, `arr_1`) for several inputs waits for the converted model, whose input
order is the one it is fed in (the model's own may differ).
"""

from __future__ import annotations

from typing import Any

from quantdoctor.intake.data import CalibrationSet
from quantdoctor.runtime.feed import ModelInput, check_fits

REFUSED = "eval_data_refused"  # the worker's outcome when the eval data does not fit the loaded model
Shapes = list[dict[str, Any]]  # JSON: {"number": first sample, "by_name": bool, "shapes": {key: [sizes]}}


def eval_shapes(evaluation: CalibrationSet) -> Shapes:
    """Each distinct way the eval samples are shaped, with the number of the first sample shaped so
    (what the worker needs to check them; no data)."""
    found: dict[Any, dict[str, Any]] = {}
    for number, sample in enumerate(evaluation.samples):
        by_name = sample.kind in ("dict", "signature")
        shapes = {key: list(array.shape) for key, array in sample.values.items()}
        key = (by_name, tuple((name, tuple(shape)) for name, shape in shapes.items()))
        found.setdefault(key, {"number": number, "by_name": by_name, "shapes": shapes})
    return list(found.values())


def declared_inputs(specs: list[dict[str, Any]]) -> list[ModelInput] | None:
    """The inputs a loaded model declares (the worker's `model.inputs`: name, shape with None for a
    free size, dtype) as `ModelInput`s; None when there are none or a rank is unknown."""
    if not specs or any(spec.get("shape") is None for spec in specs):
        return None
    return [ModelInput(spec["name"], index, tuple(-1 if size is None else int(size) for size in spec["shape"]),
                       spec["dtype"]) for index, spec in enumerate(specs)]


def check_eval_shapes(inputs: list[ModelInput] | None, shapes: Shapes, converted: bool) -> None:
    """A UsageError naming the first eval sample that does not fit `inputs`. Unless the inputs are
    the `converted` model's, samples paired with several inputs by their order are left for later."""
    if not inputs:
        return
    names = {model_input.name for model_input in inputs}
    for entry in shapes:
        by_order = len(inputs) > 1 and not entry["by_name"] and not names <= set(entry["shapes"])
        if by_order and not converted:
            continue
        check_fits(inputs, {key: tuple(shape) for key, shape in entry["shapes"].items()},
                   f"eval sample #{entry['number']}", entry["by_name"])
