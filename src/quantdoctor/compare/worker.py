"""The compare worker: runs the float and the quantized .tflite side by side on the eval samples.

Run as `python -m quantdoctor.compare.worker REQUEST.json`, isolated like the converter: the
LiteRT interpreter has aborted on some quantized models. Every intermediate tensor is kept
(`experimental_preserve_all_tensors`); each op output of the quantized model whose name also
names a tensor of the float model is compared with it, dequantized. That is one float and one
quantized forward pass per sample: the floor for a per-layer comparison.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from quantdoctor.audit.islands import BOUNDARY_OPS
from quantdoctor.compare.metrics import ErrorStats
from quantdoctor.convert.protocol import read_json, write_json
from quantdoctor.intake.data import CalibrationSet

_CHUNK = 16  # samples whose tensors are gathered before one vectorised statistics update


def main(request_path: str) -> int:
    """Compare the two models on every eval sample and write the statistics and outputs."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    request = read_json(Path(request_path))
    # The reference kernels, op by op: a delegate would fuse ops and hide the tensors between them.
    options = {"experimental_preserve_all_tensors": True,
               "experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
    float_model = Interpreter(model_path=request["float_model"], **options)
    quant_model = Interpreter(model_path=request["quant_model"], **options)
    float_model.allocate_tensors()
    quant_model.allocate_tensors()
    pairs = _matched_tensors(float_model, quant_model)
    stats = {name: _new_stats(quant_model, index) for name, (_, index, _) in pairs.items()}
    output_stats = [_new_stats(quant_model, d["index"]) for d in quant_model.get_output_details()]
    samples = CalibrationSet.load(Path(request["data"])).samples
    started = time.perf_counter()
    float_outputs: list[list[np.ndarray]] = []
    quant_outputs: list[list[np.ndarray]] = []
    pending: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {name: ([], []) for name in pairs}
    dequantize = {index: _dequantizer(quant_model, index) for _, index, _ in pairs.values()}
    output_dequantize = [_dequantizer(quant_model, d["index"]) for d in quant_model.get_output_details()]
    float_outs = [d["index"] for d in float_model.get_output_details()]
    quant_outs = [d["index"] for d in quant_model.get_output_details()]
    for number, sample in enumerate(samples, 1):
        arrays = _inputs_for(float_model, sample.values)
        _run(float_model, arrays)
        _run(quant_model, arrays)
        for name, (float_index, quant_index, _) in pairs.items():
            pending[name][0].append(float_model.get_tensor(float_index))
            pending[name][1].append(dequantize[quant_index](quant_model.get_tensor(quant_index)))
        float_outputs.append([float_model.get_tensor(i) for i in float_outs])
        quant_outputs.append([d(quant_model.get_tensor(i)) for d, i in zip(output_dequantize, quant_outs)])
        if number % _CHUNK == 0 or number == len(samples):
            _flush(pending, stats)
            write_json(Path(request["progress"]), {"done": number, "total": len(samples)})
    for i, stat in enumerate(output_stats):
        stat.add(np.concatenate([s[i] for s in float_outputs]), np.concatenate([s[i] for s in quant_outputs]))
    np.savez(request["outputs"], **{f"float_{i}": np.concatenate([s[i] for s in float_outputs])
                                    for i in range(len(output_stats))},
             **{f"quant_{i}": np.concatenate([s[i] for s in quant_outputs]) for i in range(len(output_stats))})
    write_json(Path(request["response"]), {
        "samples": len(samples), "analysis_seconds": round(time.perf_counter() - started, 3),
        "tensors": [_describe(name, pairs[name][2], stats[name]) for name in pairs],
        "outputs": [_describe(d["name"], "OUTPUT", stat) for d, stat in zip(quant_model.get_output_details(), output_stats)],
        "ops": _op_links(quant_model, pairs),
    })
    return 0


def _flush(pending: dict[str, tuple[list[np.ndarray], list[np.ndarray]]], stats: dict[str, ErrorStats]) -> None:
    """Add the gathered samples to each tensor's statistics in one call, and forget them."""
    for name, (references, quantized) in pending.items():
        if references:
            stats[name].add(np.stack(references), np.stack(quantized))
            references.clear()
            quantized.clear()


def _new_stats(interpreter: Any, index: int) -> ErrorStats:
    detail = interpreter._get_tensor_details(index, subgraph_index=0)
    scale, zero_point = detail["quantization"]
    dtype = np.dtype(detail["dtype"])
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    if not scale or info is None:
        return ErrorStats()
    return ErrorStats(scale=float(scale), zero_point=int(zero_point), qmin=int(info.min), qmax=int(info.max))


def _matched_tensors(float_model: Any, quant_model: Any) -> dict[str, tuple[int, int, str]]:
    """Quantized op outputs that have a float twin: name -> (float index, quant index, op).

    Twins share a name, except at the model's edges when its I/O is float: the integer tensor
    leaving the input QUANTIZE pairs with the float input (op "INPUT", so the first layer's error
    is measured against a quantized input, not a perfect one), and the one entering the final
    DEQUANTIZE with the float output.
    """
    float_index = {d["name"]: d["index"] for d in float_model.get_tensor_details()}
    producer_of = {int(i): op for op in quant_model._get_ops_details() for i in op["outputs"]}
    matched = {}
    for op in quant_model._get_ops_details():
        if op["op_name"] in BOUNDARY_OPS:
            continue
        for index in op["outputs"]:
            name = quant_model._get_tensor_details(index, subgraph_index=0)["name"]
            if name in float_index:
                matched[name] = (float_index[name], int(index), op["op_name"])
    consumers = {int(i): op for op in quant_model._get_ops_details() for i in op["inputs"] if i >= 0}
    for float_in, quant_in in zip(float_model.get_input_details(), quant_model.get_input_details()):
        quantize = consumers.get(quant_in["index"])
        if np.issubdtype(np.dtype(quant_in["dtype"]), np.integer) and quant_in["quantization"][0]:
            matched[float_in["name"]] = (float_in["index"], quant_in["index"], "INPUT")
        elif quantize is not None and quantize["op_name"] == "QUANTIZE":
            matched[float_in["name"]] = (float_in["index"], int(quantize["outputs"][0]), "INPUT")
    for float_out, quant_out in zip(float_model.get_output_details(), quant_model.get_output_details()):
        dequantize = producer_of.get(quant_out["index"])
        if dequantize is not None and dequantize["op_name"] == "DEQUANTIZE":
            integer = int(dequantize["inputs"][0])
            source = producer_of.get(integer)
            matched[float_out["name"]] = (float_out["index"], integer, source["op_name"] if source else "OUTPUT")
    return matched


def _op_links(quant_model: Any, pairs: dict[str, tuple[int, int, str]]) -> list[dict[str, Any]]:
    """For each compared tensor, the compared tensors feeding the op that made it (error accumulation)."""
    by_index = {quant: name for name, (_, quant, _) in pairs.items()}
    producer_of = {}
    for op in quant_model._get_ops_details():
        for index in op["outputs"]:
            producer_of[int(index)] = op
    links = []
    for name, (_, quant_index, _) in pairs.items():
        op = producer_of.get(quant_index)
        if op is None:  # a model input: nothing feeds it
            continue
        feeding = [by_index.get(int(i)) or _through_quantize(int(i), producer_of, by_index) for i in op["inputs"] if i >= 0]
        links.append({"tensor": name, "inputs": [f for f in feeding if f]})
    return links


def _through_quantize(index: int, producer_of: dict[int, Any], by_index: dict[int, str]) -> str | None:
    op = producer_of.get(index)
    if op is not None and op["op_name"] in BOUNDARY_OPS:
        return next((by_index[int(i)] for i in op["inputs"] if int(i) in by_index), None)
    return None


def _inputs_for(interpreter: Any, values: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The sample's arrays in the interpreter's input order (by name when the sample names them)."""
    details = interpreter.get_input_details()
    arrays = list(values.values())
    by_name = {name: value for name, value in values.items()}
    ordered = []
    for position, detail in enumerate(details):
        name = detail["name"].removeprefix("serving_default_").rsplit(":", 1)[0]
        ordered.append(by_name.get(name, arrays[position] if position < len(arrays) else arrays[-1]))
    return ordered


def _run(interpreter: Any, arrays: list[np.ndarray]) -> None:
    for detail, array in zip(interpreter.get_input_details(), arrays):
        interpreter.set_tensor(detail["index"], _as_input(detail, array))
    interpreter.invoke()


def _as_input(detail: dict[str, Any], array: np.ndarray) -> np.ndarray:
    """Float samples quantized for an integer input with its scale and zero point; cast otherwise."""
    dtype = np.dtype(detail["dtype"])
    scale, zero_point = detail["quantization"]
    if np.issubdtype(dtype, np.integer) and scale and np.issubdtype(array.dtype, np.floating):
        info = np.iinfo(dtype)
        return np.clip(np.round(array / scale) + zero_point, info.min, info.max).astype(dtype)
    return array.astype(dtype)


def _dequantizer(interpreter: Any, index: int) -> Callable[[np.ndarray], np.ndarray]:
    """Integer values of tensor `index` back to real numbers (float tensors pass through)."""
    detail = interpreter._get_tensor_details(index, subgraph_index=0)
    scale, zero_point = detail["quantization"]
    if scale and np.issubdtype(np.dtype(detail["dtype"]), np.integer):
        return lambda value: (value.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)
    return lambda value: value.astype(np.float32)


def _describe(name: str, op: str, stats: ErrorStats) -> dict[str, Any]:
    return {
        "tensor": name, "op": op, "sqnr_db": round(stats.sqnr_db, 3),
        "worst_channel_sqnr_db": round(stats.worst_channel_sqnr_db, 3), "cosine": round(stats.cosine, 6),
        "rmse_over_scale": None if stats.rmse_over_scale is None else round(stats.rmse_over_scale, 4),
        "max_abs_error": round(stats.max_abs_error, 6), "clipped_fraction": round(stats.clipped_fraction, 6),
        "float_range": [stats.low, stats.high],
        "quantized_range": None if not stats.scale else [stats.scale * (stats.qmin - stats.zero_point),
                                                         stats.scale * (stats.qmax - stats.zero_point)],
        "collapsed": stats.collapsed, "histogram_values": stats.reservoir,
    }


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
