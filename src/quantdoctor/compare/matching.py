"""Which tensors of the quantized model have a twin in the float model, and what feeds each one."""

from __future__ import annotations

from typing import Any

import numpy as np

from quantdoctor.audit.islands import BOUNDARY_OPS, SHAPE_ONLY_OPS
from quantdoctor.runtime.feed import ordered_output_details
from quantdoctor.tf_private import interpreter_ops, interpreter_tensor

Pairs = dict[str, tuple[int, int, str]]  # tensor name -> (float index, quantized index, producing op)


def matched_tensors(float_model: Any, quant_model: Any) -> Pairs:
    """Quantized op outputs that have a float twin: name -> (float index, quant index, op).

    Twins share a name, except at the model's edges when its I/O is float: the integer tensor
    leaving the input QUANTIZE pairs with the float input (op "INPUT", so the first layer's error
    is measured against a quantized input, not a perfect one), and the one entering the final
    DEQUANTIZE with the float output. Only tensors the float model holds as floating point are compared:
    integer ones (SHAPE's and PACK's shapes, ARG_MAX's indices) carry no quantization error of their own.
    """
    float_index = {d["name"]: d["index"] for d in float_model.get_tensor_details()
                   if np.issubdtype(np.dtype(d["dtype"]), np.floating)}
    producer_of = _producers(quant_model)
    matched = {}
    for op in interpreter_ops(quant_model):
        if op["op_name"] in BOUNDARY_OPS:
            continue
        for index in op["outputs"]:
            name = interpreter_tensor(quant_model, index)["name"]
            if name in float_index:
                matched[name] = (float_index[name], int(index), op["op_name"])
    consumers = {int(i): op for op in interpreter_ops(quant_model) for i in op["inputs"] if i >= 0}
    for float_in, quant_in in zip(float_model.get_input_details(), quant_model.get_input_details()):
        quantize = consumers.get(quant_in["index"])
        if np.issubdtype(np.dtype(quant_in["dtype"]), np.integer) and quant_in["quantization"][0]:
            matched[float_in["name"]] = (float_in["index"], quant_in["index"], "INPUT")
        elif quantize is not None and quantize["op_name"] == "QUANTIZE":
            matched[float_in["name"]] = (float_in["index"], int(quantize["outputs"][0]), "INPUT")
    for float_out, quant_out in zip(ordered_output_details(float_model), ordered_output_details(quant_model)):
        dequantize = producer_of.get(quant_out["index"])
        if dequantize is not None and dequantize["op_name"] == "DEQUANTIZE":
            integer = int(dequantize["inputs"][0])
            source = producer_of.get(integer)
            matched[float_out["name"]] = (float_out["index"], integer, source["op_name"] if source else "OUTPUT")
    return matched


def op_links(quant_model: Any, pairs: Pairs) -> list[dict[str, Any]]:
    """For each compared tensor, the compared tensors feeding the op that made it (error accumulation)."""
    by_index = {quant: name for name, (_, quant, _) in pairs.items()}
    producer_of = _producers(quant_model)
    links = []
    for name, (_, quant_index, _) in pairs.items():
        op = producer_of.get(quant_index)
        if op is None:  # a model input: nothing feeds it
            continue
        feeding = [_compared_source(int(i), producer_of, by_index) for i in op["inputs"] if i >= 0]
        links.append({"tensor": name, "inputs": [f for f in feeding if f]})
    return links


def _producers(model: Any) -> dict[int, dict[str, Any]]:
    """Tensor index -> the op (details) that writes it."""
    return {int(i): op for op in interpreter_ops(model) for i in op["outputs"]}


def _compared_source(index: int, producer_of: dict[int, Any], by_index: dict[int, str]) -> str | None:
    """The compared tensor behind input `index`: itself, or the one a chain of ops that only move or
    requantize values (RESHAPE, QUANTIZE, ...) starts from. A Dense on a rank-3 tensor ends in a
    RESHAPE, and a merge's inputs are often requantized to its scale first."""
    while index not in by_index:
        op = producer_of.get(index)
        if op is None or (op["op_name"] not in BOUNDARY_OPS and op["op_name"] not in SHAPE_ONLY_OPS):
            return None
        index = int(op["inputs"][0])
    return by_index[index]
