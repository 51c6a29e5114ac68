"""The run check: after every successful conversion, the produced model runs once in LiteRT.

It runs in the conversion worker once the conversion's result is on disk (TensorFlow is loaded
already, the interpreter adds a fraction of a second), on the first rows of the calibration
samples, or on zeros when there are none and the input sizes are fixed. Each stage is recorded
before it starts, so when the interpreter aborts the process (it does, in `allocate_tensors`, on
some int16 models) the parent knows where. With the float model the converter handed its
quantizer, the same rows also run through it, and the outputs of both are measured: a model whose
outputs collapse is reported even without eval data.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from quantdoctor.errors import UsageError
from quantdoctor.intake.data import Sample
from quantdoctor.isolation.protocol import raised_in
from quantdoctor.litert import interpreter_package, new_interpreter
from quantdoctor.runtime.feed import Feeder, ModelInput, fitted_rows
from quantdoctor.runtime.measures import collapsed, db, lost_channel_indices, reads_as_class_scores, top1_agreement

# Calibration rows the check runs: enough for a classifier's top-1 agreement to show 90% without a perfect count
# (`measures.output_state`: 95 agreeing rows of 100 do; of 32 rows only 32 do, and 31 pass as one change that proves
# nothing: ResNet50 with random weights keeps 31 of its first 32 while 84% of unseen images agree). Each row runs the
# quantized and the float model once; `audit.run_check.seconds` says what that cost.
ROWS = 100

Record = Callable[[dict[str, Any]], None]


def check_rows(inputs: list[ModelInput], samples: list[Sample]) -> tuple[list[dict], str]:
    """The rows the check runs and where they come from ("calibration" or "zeros"; none: "none").

    Calibration samples that do not fit the main signature (meant for another one, say) are passed over.
    Zeros stand in only when every size but the batch is fixed: a free size allocated as 1 can fail
    to prepare (a 3x3 convolution on a 1x1 image) where the real model runs.
    """
    rows: list[dict] = []
    for number, sample in enumerate(samples):
        try:
            rows += fitted_rows(inputs, sample.values, f"calibration sample #{number}",
                                by_name=sample.kind in ("dict", "signature"))
        except UsageError:
            continue
        if len(rows) >= ROWS:
            return rows[:ROWS], "calibration"
    if rows:
        return rows, "calibration"
    if all(-1 not in model_input.shape_signature[1:] for model_input in inputs):
        return [{i.name: np.zeros([1 if size == -1 else size for size in i.shape_signature], i.dtype)
                 for i in inputs}], "zeros"
    return [], "none"


def run_rows(interpreter: Any, feeder: Feeder, rows: list[dict], state: dict[str, Any], record: Record,
             invoke: bool = True) -> list[list[np.ndarray]]:
    """Run each row through the interpreter, recording the stage before each native step; the
    outputs per row, as stored. With `invoke` False the rows are only fed (tensors allocated)."""
    outputs = []
    details = interpreter.get_output_details()
    for number, row in enumerate(rows):
        state.update(stage="allocating", row=number)
        record(state)
        feeder(row)
        if not invoke:
            continue
        state["stage"] = "invoking"
        record(state)
        interpreter.invoke()
        outputs.append([interpreter.get_tensor(d["index"]) for d in details])
    return outputs


def open_interpreter(model_path: str) -> Any:
    """LiteRT's interpreter (or tf.lite's) with its default op resolver and delegates: what a user's app runs."""
    return new_interpreter(model_path)


def run_check(model_path: Path, float_path: Path | None, samples: list[Sample], record: Record) -> None:
    """Run the model on up to ROWS calibration rows (and the float model beside it); `record` gets
    the check's state before every stage and once at the end."""
    started = time.perf_counter()
    state: dict[str, Any] = {"stage": "loading"}
    record(state)
    try:
        interpreter = open_interpreter(str(model_path))
        feeder = Feeder(interpreter)
        rows, origin = check_rows(feeder.inputs, samples)
        state["sample"] = origin
        if not rows:
            state.update(stage="done", outcome="skipped", seconds=round(time.perf_counter() - started, 3))
            record(state)
            return
        quantized = run_rows(interpreter, feeder, rows, state, record)
    except Exception as exc:
        if not raised_in(exc, interpreter_package()):
            raise  # quantdoctor's own bug: the worker reports it as one
        state.update(outcome="error", error=f"{type(exc).__name__}: {exc}", seconds=round(time.perf_counter() - started, 3))
        record(state)
        return
    state.update(stage="comparing", rows=len(rows))
    if float_path is not None and float_path.exists() and origin == "calibration":
        record(state)
        try:
            state["outputs"] = _compared_outputs(float_path, rows, quantized, interpreter.get_output_details())
        except Exception as exc:  # the float reference is quantdoctor's: no finding on the user's model
            if not raised_in(exc, interpreter_package()):
                raise
            state["float_error"] = f"{type(exc).__name__}: {exc}"
    state.update(stage="done", outcome="ok", seconds=round(time.perf_counter() - started, 3))
    record(state)


def _compared_outputs(float_path: Path, rows: list[dict], quantized: list[list[np.ndarray]],
                      details: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model output, the quantized model against the float one over the rows (outputs paired by
    name: the two models may list them in different orders)."""
    interpreter = open_interpreter(str(float_path))
    reference = run_rows(interpreter, Feeder(interpreter), rows, {}, lambda _: None)
    names = [d["name"] for d in interpreter.get_output_details()]
    numbers = []
    for i, detail in enumerate(details):
        twin = names.index(detail["name"]) if detail["name"] in names else i
        numbers.append(_output_numbers(detail, [r[twin].astype(np.float64) for r in reference],
                                       [q[i] for q in quantized]))
    return numbers


def _output_numbers(detail: dict[str, Any], reference_rows: list[np.ndarray],
                    stored_rows: list[np.ndarray]) -> dict[str, Any]:
    scale, zero_point = detail["quantization"]
    value_rows = [(s.astype(np.float64) - zero_point) * scale if scale else s.astype(np.float64)
                  for s in stored_rows]
    reference, values = (np.concatenate([row.ravel() for row in rows]) for rows in (reference_rows, value_rows))
    noise = float(np.sum((values - reference) ** 2))
    low, high = float(reference.min()), float(reference.max())
    by_channel = _channel_energies(reference_rows, value_rows)
    agreement = None
    if by_channel is not None and all(row.ndim == 2 and len(row) == 1 for row in reference_rows) and \
            reads_as_class_scores(low, high, len(by_channel[0])):
        agreement = top1_agreement(np.concatenate([r.reshape(-1, r.shape[-1]) for r in reference_rows]),
                                   np.concatenate([v.reshape(-1, v.shape[-1]) for v in value_rows]))
    return {"name": detail["name"], "dtype": np.dtype(detail["dtype"]).name, "scale": float(scale),
            "zero_point": int(zero_point), "sqnr_db": round(db(float(np.sum(reference ** 2)), noise), 3),
            "collapsed": collapsed(float(np.var(reference)), float(np.var(values))),
            "channels": None if by_channel is None else len(by_channel[0]),
            "lost_channels": lost_channel_indices(*by_channel) if by_channel is not None else [],
            "worst_channel_sqnr_db": None if by_channel is None else
            round(min(db(s, n) for s, n in zip(*by_channel)), 3),
            "top1_agreement": None if agreement is None else round(agreement, 4),
            "levels": int(np.unique(np.concatenate([s.ravel() for s in stored_rows])).size),
            "values": int(values.size),
            "float_range": [low, high],
            "quantized_range": [float(values.min()), float(values.max())]}


def _channel_energies(reference_rows: list[np.ndarray],
                      value_rows: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray] | None:
    """Per channel (last axis) of an output, the float signal's energy and the quantization noise's; None for
    an output without channels."""
    widths = {row.shape[-1] if row.ndim >= 2 else 1 for row in reference_rows + value_rows}
    if len(widths) != 1 or widths == {1}:
        return None
    width = widths.pop()
    reference = np.concatenate([row.reshape(-1, width) for row in reference_rows])
    values = np.concatenate([row.reshape(-1, width) for row in value_rows])
    return np.sum(reference ** 2, axis=0), np.sum((values - reference) ** 2, axis=0)
