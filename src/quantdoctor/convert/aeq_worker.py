"""The AEQ worker process: quantizes a float `.tflite` with ai-edge-quantizer, reports through files.

Run as `python -m quantdoctor.convert.aeq_worker REQUEST.json` (see `runner.run_worker`). It speaks
the conversion worker's protocol: the same stages, outcomes and response fields, so the report,
the audit and the run check read it as they read a TFLiteConverter run.

The recipe is AEQ's own (`ai_edge_quantizer.recipe.<name>()`), or the recipe JSON the request
carries. Calibration runs AEQ's calibrator on the user's samples, each fitted to the signature
it is meant for (a `(signature_key, dict)` sample to its signature, any other to the first one).
Only what AEQ and LiteRT raise is the quantization's outcome; anything else is a bug here.
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quantdoctor.convert.worker import ConversionRequest, ConversionResponse, ModelDescription, checked_run
from quantdoctor.errors import UsageError
from quantdoctor.intake.data import CalibrationSet, Sample
from quantdoctor.isolation.protocol import raised_in, serve, write_message
from quantdoctor.litert import interpreter_package, new_interpreter

AEQ_PACKAGE = "ai_edge_quantizer"
NO_QUANTIZE = "no_quantize"  # a recipe entry's algorithm_key that leaves the ops it matches float


@dataclass
class AeqRequest(ConversionRequest):
    """A conversion request for the float `.tflite` at `model["path"]`, quantized with `aeq_recipe`: the name of
    one of AEQ's own recipes, or the recipe's entries. Of the conversion settings, `recipe` is not read: AEQ's
    recipe says it all."""

    aeq_recipe: str | list[dict[str, Any]] = field(kw_only=True)


@dataclass
class AeqResponse(ConversionResponse):
    """The conversion worker's response, with what only AEQ says: the recipe entries it quantized with, the ops
    it left float against them (`skipped_ops`), and the warnings it gave while quantizing."""

    aeq_recipe: list[dict[str, Any]] | None = None
    aeq_skipped: list[dict[str, Any]] | None = None
    quantizer_messages: list[str] = field(default_factory=list)


def main(request: AeqRequest) -> int:
    """Serve one AEQ quantization request; the exit code is 0 whether or not AEQ failed."""
    response_path = Path(request.response)
    response = AeqResponse(stage="loading")
    write_message(response_path, response)
    model_path = Path(request.model["path"])
    float_bytes = model_path.read_bytes()
    try:
        interpreter = new_interpreter(float_bytes)
    except Exception as exc:
        if not raised_in(exc, interpreter_package()):
            raise
        response.stage, response.outcome = "done", "load_error"
        response.error_message = f"{type(exc).__name__}: {exc}"
        write_message(response_path, response)
        return 0
    response.model = describe(interpreter)
    if not request.convert:
        response.stage, response.outcome = "done", "skipped"
        write_message(response_path, response)
        return 0
    response.stage = "converting"
    write_message(response_path, response)
    calibration = CalibrationSet.load(Path(request.data)) if request.data else None
    started = time.perf_counter()
    entries = response.aeq_recipe = recipe_entries(request.aeq_recipe)
    with captured_messages() as messages:
        try:
            response.aeq_skipped = skipped_ops(float_bytes, entries)
            quantized = quantize(float_bytes, entries, interpreter, calibration)
        except Exception as exc:
            if not (raised_in(exc, AEQ_PACKAGE) or raised_in(exc, interpreter_package())):
                raise
            response.outcome, response.exception_type, response.error_message = "error", type(exc).__name__, str(exc)
            response.exception_class = f"{type(exc).__module__}:{type(exc).__qualname__}"
        else:
            Path(request.output).write_bytes(quantized)
            response.outcome, response.model_bytes = "ok", len(quantized)
    response.seconds, response.quantizer_messages, response.stage = time.perf_counter() - started, messages, "done"
    write_message(response_path, response)
    twin = request.float_twin_output
    if response.outcome == "ok" and twin:  # compare's float reference is the user's model itself
        shutil.copyfile(model_path, twin)
        response.float_twin = "ok"
        write_message(response_path, response)
    if response.outcome == "ok" and request.run_check:
        response.run_check = checked_run(Path(request.output), model_path if calibration else None, calibration,
                                         request.run_check)
        write_message(response_path, response)
    return 0


def describe(interpreter: Any) -> ModelDescription:
    """The model as the report describes it, as the conversion worker describes a SavedModel: each
    signature's inputs, and the model's inputs when it has one signature (with several, samples name theirs)."""
    keys = list(interpreter.get_signature_list())
    signature_inputs = {key: [_spec(name, detail) for name, detail in
                              interpreter.get_signature_runner(key).get_input_details().items()] for key in keys}
    if not keys:
        inputs = [_spec(detail["name"], detail) for detail in interpreter.get_input_details()]
    else:
        inputs = signature_inputs[keys[0]] if len(keys) == 1 else []
    return ModelDescription(inputs=inputs, signature_keys=keys, signature_inputs=signature_inputs)


def _spec(name: str, detail: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    shape = [None if size == -1 else int(size) for size in detail["shape_signature"]]
    return {"name": name, "shape": shape, "dtype": np.dtype(detail["dtype"]).name}


def recipe_entries(recipe: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The recipe's entries: AEQ's own recipe of that name (`ai_edge_quantizer.recipe`), or the entries given."""
    from ai_edge_quantizer import recipe as aeq_recipes

    return getattr(aeq_recipes, recipe)() if isinstance(recipe, str) else recipe


def skipped_ops(float_bytes: bytes, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ops a recipe entry asks AEQ to compute in integer (a static entry: activations quantized) and that
    AEQ's recipe manager leaves float anyway, as its
    params generator decides (op key, scope from the output tensor names, last matching entry that AEQ
    supports for the op); with `int8_supported`, whether it would have quantized them with 8-bit activations."""
    import re

    from quantdoctor.tf_private import aeq_accepts_op_config, aeq_model_ops, aeq_recipe_algorithm

    algorithm = aeq_recipe_algorithm(entries)
    skipped = []
    for op in aeq_model_ops(float_bytes):
        asked = [entry for entry in entries if re.search(entry["regex"], op.scope)
                 and entry["operation"] in ("*", op.op_key)]
        bits = (asked[-1].get("op_config", {}).get("activation_tensor_config") or {}).get("num_bits") if asked else None
        if bits is None or asked[-1]["algorithm_key"] == NO_QUANTIZE:
            continue  # not asked to compute in integer: dynamic, weight-only or no_quantize entries
        if op.op_key is not None and algorithm(op.op_key, op.scope) != NO_QUANTIZE:
            continue
        int8_supported = False
        if op.op_key is not None and bits == 16:
            config = asked[-1]["op_config"]
            as_int8 = {**config, "activation_tensor_config": {**config["activation_tensor_config"], "num_bits": 8}}
            int8_supported = aeq_accepts_op_config(asked[-1]["algorithm_key"], op.op_key, as_int8)
        skipped.append({"subgraph": op.subgraph, "op_index": op.index,
                        "op": op.op_key or _builtin_name(op.builtin_code), "scope": op.scope,
                        "activation_bits": bits, "int8_supported": int8_supported})
    return skipped


def _builtin_name(code: int) -> str:
    from ai_edge_litert import schema_py_generated as schema

    names = {value: name for name, value in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    return names.get(code, f"builtin #{code}")


def quantize(float_bytes: bytes, entries: list[dict[str, Any]], interpreter: Any,
             calibration: CalibrationSet | None) -> bytes:
    """The model AEQ makes from `float_bytes` with the recipe `entries`, calibrated on `calibration`
    when the recipe needs it."""
    from ai_edge_quantizer import quantizer as aeq_quantizer

    quantizer = aeq_quantizer.Quantizer(bytearray(float_bytes), entries)
    qsvs = None
    if quantizer.need_calibration and calibration is not None and calibration.samples:
        qsvs = quantizer.calibrate(signature_data(interpreter, calibration.samples), num_threads=1)
    result = quantizer.quantize(qsvs, enable_progress_report=False)
    return bytes(result.quantized_model)


def signature_data(interpreter: Any, samples: list[Sample]) -> dict[str | None, list[dict[str, Any]]]:
    """AEQ's calibration data, `{signature_key: [{input_name: array}, ...]}`: each sample fitted to its
    signature's inputs (split into rows of one when it stacks several). Samples that fit no signature
    are left out: the data checks in the parent report them. A model without signatures gets its samples
    under AEQ's default key (None), fitted to the model's inputs, as a user's call would pass them: AEQ
    calibrates through signatures only, and says so (QD332)."""
    from quantdoctor.runtime.feed import arrays_for, detailed_input, fitted_rows

    keys: list[str | None] = list(interpreter.get_signature_list())
    inputs = {key: [detailed_input(name, detail) for name, detail in
                    interpreter.get_signature_runner(key).get_input_details().items()] for key in keys}
    if not keys:
        keys = [None]
        inputs = {None: [detailed_input(detail["name"], detail) for detail in interpreter.get_input_details()]}
    data: dict[str | None, list[dict[str, Any]]] = {}
    for number, sample in enumerate(samples):
        key = sample.signature_key if sample.kind == "signature" else keys[0]
        if key not in inputs:
            continue
        try:
            found = fitted_rows(inputs[key], sample.values, f"calibration sample #{number}",
                                by_name=sample.kind in ("dict", "signature"))
        except UsageError:
            continue
        for row in found:
            arrays = arrays_for(inputs[key], row)
            data.setdefault(key, []).append({i.name: a.astype(i.dtype, copy=False) for i, a in zip(inputs[key], arrays)})
    return data


@contextmanager
def captured_messages() -> Iterator[list[str]]:
    """The warnings AEQ gives while it quantizes: Python warnings and absl/logging records, as text."""
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.WARNING:
                messages.append(record.getMessage())

    handler = Collect()
    root = logging.getLogger()
    root.addHandler(handler)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield messages
        finally:
            root.removeHandler(handler)
            messages.extend(str(warning.message) for warning in caught)


if __name__ == "__main__":
    sys.exit(serve(main, sys.argv[1], AeqRequest))
