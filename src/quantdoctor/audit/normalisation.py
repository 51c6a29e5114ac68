"""The normalisation a model applies to its own input, and calibration data normalised a second time.

A graph that starts with Rescaling, Normalization or Sub/Div by constants expects raw values (pixels in
0..255, sensor counts) and maps them to a small range itself. Samples that are already centred near 0
with unit spread go through that map a second time: every input looks alike to the model (QD316). The
data's statistics alone show it; no labels are needed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from quantdoctor import catalog
from quantdoctor.audit.tflite_model import TFLiteModel
from quantdoctor.intake.data import CalibrationSet
from quantdoctor.report.model import Finding, Location

_AFFINE_OPS = ("MUL", "DIV", "ADD", "SUB")
RAW_SPREAD = 10.0  # the map expects raw values: it shrinks its input at least this much (|scale| <= 1/10)
CENTRED = 0.5  # normalised data: |mean| under this ...
UNIT_SPREAD = (0.25, 2.0)  # ... and a standard deviation in this range


def input_normalisation(model: TFLiteModel) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per model input, the affine map `x * scale + offset` the graph applies first (Rescaling,
    Normalization, Sub/Div by constants), read from the float model; inputs without one are left out."""
    consumers: dict[int, list[Any]] = {}
    for op in model.ops:
        for tensor in op.inputs:
            consumers.setdefault(tensor.index, []).append(op)
    found = {}
    for name, tensor in zip(model.input_names, model.inputs):
        scale, offset, current, steps = np.ones(1), np.zeros(1), tensor.index, 0
        while len(consumers.get(current, [])) == 1 and consumers[current][0].name in _AFFINE_OPS:
            op = consumers[current][0]
            step = _affine_step(op, current)
            if step is None:
                break
            scale, offset = step(scale, offset)
            current, steps = op.outputs[0].index, steps + 1
        if steps and not (np.allclose(scale, 1) and np.allclose(offset, 0)):
            found[name] = (scale, offset)
    return found


def _affine_step(op: Any, chained: int) -> Any:
    """The update of (scale, offset) for one elementwise op with a constant operand, or None."""
    others = [t for t in op.inputs if t.index != chained]
    if len(others) != 1 or others[0].values is None:
        return None
    constant = np.asarray(others[0].values, dtype=np.float64)
    chained_first = op.inputs[0].index == chained
    if op.name == "MUL":
        return lambda a, b: (a * constant, b * constant)
    if op.name == "ADD":
        return lambda a, b: (a, b + constant)
    if op.name == "SUB":
        return (lambda a, b: (a, b - constant)) if chained_first else (lambda a, b: (-a, constant - b))
    if op.name == "DIV" and chained_first:
        return lambda a, b: (a / constant, b / constant)
    return None


def normalised_already(values: np.ndarray, scale: np.ndarray, offset: np.ndarray) -> bool:
    """Whether data with these `values` is normalised already for a model whose first ops compute
    `x * scale + offset`: the map expects raw-range inputs (it shrinks them RAW_SPREAD times or more) and the
    values are centred near 0 (|mean| < CENTRED) with unit spread (a standard deviation within UNIT_SPREAD)."""
    if values.size == 0 or np.any(scale == 0) or float(np.max(np.abs(scale))) > 1.0 / RAW_SPREAD:
        return False
    mean, std = float(values.mean()), float(values.std())
    return abs(mean) < CENTRED and UNIT_SPREAD[0] <= std <= UNIT_SPREAD[1]


def input_values(data: CalibrationSet, name: str, inputs: int) -> np.ndarray:
    """Every value the samples give model input `name` (all arrays of a one-input model's samples)."""
    arrays = [array for sample in data.samples
              for key, array in (sample.values.items() if inputs > 1 else [(name, a) for a in sample.arrays])
              if key == name and np.issubdtype(array.dtype, np.number)]
    return np.concatenate([a.ravel() for a in arrays]).astype(np.float64) if arrays else np.zeros(0)


def double_normalisation_findings(float_model: TFLiteModel, data: dict[str, CalibrationSet | None]) -> list[Finding]:
    """QD316 per model input whose own normalisation meets samples normalised already, from each data set
    given (`data`: what it is called -> the samples)."""
    findings = []
    for name, (scale, offset) in input_normalisation(float_model).items():
        for called, samples in data.items():
            if samples is None or not samples.samples:
                continue
            values = input_values(samples, name, len(float_model.inputs))
            if not normalised_already(values, scale, offset):
                continue
            findings.append(catalog.get("QD316").finding(
                f"Input '{name}': the model starts by computing x * {_vector(scale)} + {_vector(offset)}, so it "
                f"expects raw values and normalises them itself, but the {called} is centred near 0 with unit "
                f"spread already (mean {values.mean():.3g}, standard deviation {values.std():.3g}): it is "
                "normalised twice, and every input looks alike to the model.",
                location=Location(input=name),
                evidence={"data": called, "model_scale": scale.tolist(), "model_offset": offset.tolist(),
                          "data_mean": round(float(values.mean()), 4), "data_std": round(float(values.std()), 4)}))
    return findings


def _vector(values: np.ndarray) -> str:
    if np.all(values == values.flat[0]):
        return f"{values.flat[0]:.4g}"
    return "[" + ", ".join(f"{v:.4g}" for v in values) + "]"
