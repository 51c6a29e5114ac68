"""The AEQ budget worker: the fewest ops kept float (or given 16-bit activations) that meet an accuracy budget.

Run as `python -m quantdoctor.budget.aeq_worker REQUEST.json`. AEQ calibrates once; every variant
is AEQ's recipe plus one entry per kept op (`no_quantize`, or the static recipe with 16-bit
activations), quantized again from the same calibration and run on the eval rows in LiteRT. A
greedy search adds, each step, the op whose entry scores best (16-bit before float on a tie),
until the budget is met or no op is left.
"""

from __future__ import annotations

import copy
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from quantdoctor.budget.objective import Objective
from quantdoctor.convert.aeq_worker import (
    AEQ_PACKAGE,
    NO_QUANTIZE,
    recipe_entries,
    signature_data,
)
from quantdoctor.intake.data import CalibrationSet
from quantdoctor.isolation.protocol import Message, raised_in, serve, write_message
from quantdoctor.litert import interpreter_package, new_interpreter

MAX_EVALUATIONS = 400  # variants at most: a greedy step tries two entries per op left


@dataclass
class BudgetRequest(Message):
    """Search the float .tflite at `model` under AEQ's `recipe` (a name), calibrated on the samples saved at
    `data`, scored on those at `eval_data` (with class `labels`, a .npy, or None) against the budget
    (`max_drop` or `min_sqnr`); the chosen model goes to `output`."""

    model: str
    recipe: str
    data: str
    eval_data: str
    response: str
    output: str
    max_drop: float | None = None
    min_sqnr: float | None = None
    labels: str | None = None


@dataclass
class BudgetResponse(Message):
    """The search's `stage`; at "done", either AEQ's `error` (nothing searched) or the kept ops, the whole
    recipe (`entries`), the budget (`objective`), the INT8 and chosen scores and how many variants ran.
    `last_error`: why the last variant AEQ or LiteRT refused was left out."""

    stage: str = "calibrating"
    error: str | None = None
    last_error: str | None = None
    int8_value: float | None = None
    met_budget: bool = False
    chosen_value: float | None = None
    kept: list[dict[str, Any]] = field(default_factory=list)
    entries: list[dict[str, Any]] = field(default_factory=list)
    objective: dict[str, Any] = field(default_factory=dict)
    evaluations: int = 0
    seconds: float | None = None


def main(request: BudgetRequest) -> int:
    """Serve one budget search; the response holds the kept ops, the recipe entries and the scores."""
    from ai_edge_quantizer import quantizer as aeq_quantizer

    response_path = Path(request.response)
    response = BudgetResponse()
    write_message(response_path, response)
    started = time.perf_counter()
    float_bytes = Path(request.model).read_bytes()
    interpreter = new_interpreter(float_bytes)
    base = recipe_entries(request.recipe)
    calibration = CalibrationSet.load(Path(request.data))
    evaluation = CalibrationSet.load(Path(request.eval_data))
    try:
        quantizer = aeq_quantizer.Quantizer(bytearray(float_bytes), base)
        qsvs = quantizer.calibrate(signature_data(interpreter, calibration.samples), num_threads=1)
    except Exception as exc:  # AEQ's own failure: the diagnosis explains it, there is nothing to search
        if not (raised_in(exc, AEQ_PACKAGE) or raised_in(exc, interpreter_package())):
            raise
        response.stage, response.error = "done", f"{type(exc).__name__}: {exc}"
        write_message(response_path, response)
        return 0
    key = next(iter(interpreter.get_signature_list()))
    rows = signature_data(interpreter, evaluation.samples).get(key, [])
    labels = np.load(request.labels) if request.labels else None
    objective = Objective.create(max_drop=request.max_drop, min_sqnr=request.min_sqnr, labels=labels, metric=None)
    objective.set_reference(run_rows(float_bytes, key, rows))
    candidates = quantized_scopes(float_bytes, base)
    sixteen_bit = _sixteen_bit_entry(base)
    evaluations: list[dict[str, Any]] = []

    def evaluate(kept: list[dict[str, Any]]) -> tuple[float | None, bytes | None]:
        entries = base + kept
        try:
            model = bytes(aeq_quantizer.Quantizer(bytearray(float_bytes), entries).quantize(
                qsvs, enable_progress_report=False).quantized_model)
            value = objective.score(run_rows(model, key, rows))
        except Exception as exc:  # AEQ refusing a mix of precisions, or LiteRT refusing the model: not a variant
            if not (raised_in(exc, AEQ_PACKAGE) or raised_in(exc, interpreter_package())):
                raise
            value, model = None, None
            response.last_error = f"{type(exc).__name__}: {exc}"
        evaluations.append({"kept": [_kept(entry) for entry in kept], "value": value})
        return value, model

    kept: list[dict[str, Any]] = []
    value, model = evaluate(kept)
    if value is None:  # AEQ refuses its own recipe on this model: nothing to search
        response.stage, response.error = "done", response.last_error
        write_message(response_path, response)
        return 0
    response.int8_value = value
    while (value is None or not objective.meets(value)) and candidates and len(evaluations) < MAX_EVALUATIONS:
        tried = []
        for scope in candidates:
            for entry in ([_entry(scope, sixteen_bit)] if sixteen_bit else []) + [_entry(scope, None)]:
                score, variant = evaluate(kept + [entry])
                if score is not None:
                    tried.append((score, entry["algorithm_key"] != NO_QUANTIZE, scope, entry, variant))
        if not tried:
            break
        score, _, scope, entry, variant = max(tried, key=lambda t: (t[0], t[1]))
        kept.append(entry)
        candidates.remove(scope)
        value, model = score, variant
    response.stage, response.met_budget = "done", value is not None and objective.meets(value)
    response.chosen_value, response.kept, response.entries = value, [_kept(entry) for entry in kept], base + kept
    response.objective, response.evaluations = objective.to_dict(), len(evaluations)
    response.seconds = round(time.perf_counter() - started, 3)
    if model is not None:
        Path(request.output).write_bytes(model)
    write_message(response_path, response)
    return 0


def quantized_scopes(float_bytes: bytes, entries: list[dict[str, Any]]) -> list[str]:
    """The scopes (output tensor names, each followed by ';') of the ops the recipe quantizes, in model order."""
    from quantdoctor.tf_private import aeq_model_ops, aeq_recipe_algorithm

    algorithm = aeq_recipe_algorithm(entries)
    return [op.scope for op in aeq_model_ops(float_bytes)
            if op.subgraph == 0 and op.op_key is not None and op.scope
            and algorithm(op.op_key, op.scope) != NO_QUANTIZE]


def run_rows(model: bytes, key: str, rows: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
    """The model's outputs on the rows, one array per output (rows stacked), dequantized, in output-name order."""
    from quantdoctor.runtime.feed import natural_key

    runner = new_interpreter(model).get_signature_runner(key)
    inputs, outputs = runner.get_input_details(), runner.get_output_details()
    names = sorted(outputs, key=natural_key)
    collected: list[list[np.ndarray]] = [[] for _ in names]
    for row in rows:
        fed = {name: _quantized(array, inputs[name]) for name, array in row.items()}
        result = runner(**fed)
        for index, name in enumerate(names):
            collected[index].append(_dequantized(result[name], outputs[name]))
    return [np.concatenate(values) for values in collected]


def _quantized(array: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    scale, zero_point = detail["quantization"]
    dtype = np.dtype(detail["dtype"])
    if scale and np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.round(array / scale) + zero_point, info.min, info.max).astype(dtype)
    return array.astype(dtype, copy=False)


def _dequantized(array: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    scale, zero_point = detail["quantization"]
    return (array.astype(np.float32) - zero_point) * scale if scale else array.astype(np.float32)


def _sixteen_bit_entry(base: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The base recipe's static entry with 16-bit activations (None when the base is not 8-bit static)."""
    static = [entry for entry in base if (entry.get("op_config") or {}).get("activation_tensor_config")]
    if not static or static[-1]["op_config"]["activation_tensor_config"].get("num_bits") != 8:
        return None
    entry = copy.deepcopy(static[-1])
    entry["op_config"]["activation_tensor_config"]["num_bits"] = 16
    entry["op_config"]["activation_tensor_config"]["symmetric"] = True  # AEQ's int16 activations are symmetric
    return entry


def _entry(scope: str, sixteen_bit: dict[str, Any] | None) -> dict[str, Any]:
    """A recipe entry for exactly the op of `scope`: kept float, or given 16-bit activations."""
    regex = "^" + re.escape(scope) + "$"
    if sixteen_bit is None:
        return {"regex": regex, "operation": "*", "algorithm_key": NO_QUANTIZE}
    return {**copy.deepcopy(sixteen_bit), "regex": regex, "operation": "*"}


def _kept(entry: dict[str, Any]) -> dict[str, Any]:
    escaped = entry["regex"][1:-1]  # re.escape(scope) between ^ and $
    tensor = re.sub(r"\\(.)", r"\1", escaped, flags=re.DOTALL).split(";")[0]  # undone, escaped newlines too
    return {"tensor": tensor, "as": "float" if entry["algorithm_key"] == NO_QUANTIZE else "int16"}


if __name__ == "__main__":
    sys.exit(serve(main, sys.argv[1], BudgetRequest))
