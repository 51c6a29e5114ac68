"""QUANTIZE ops in a .tflite: the input quantizers (the ranges a model takes its inputs in) and
QUANTIZE -> DEQUANTIZE round trips (a training-time FakeQuant the converter did not fold)."""

from __future__ import annotations

import numpy as np

from quantdoctor.audit.tflite_model import OpInfo, TensorInfo, TFLiteModel

_FLOAT = ("FLOAT32", "FLOAT16")
_INTEGER = {"INT8": np.int8, "UINT8": np.uint8, "INT16": np.int16}


def fake_quant_round_trips(model: TFLiteModel) -> list[tuple[OpInfo, OpInfo]]:
    """(QUANTIZE, DEQUANTIZE) pairs where a float tensor is quantized and straight away dequantized."""
    dequantize_of = {op.inputs[0].index: op for op in model.ops if op.name == "DEQUANTIZE" and op.inputs}
    pairs = []
    for op in model.ops:
        if op.name == "QUANTIZE" and op.inputs and op.outputs and op.inputs[0].dtype in _FLOAT \
                and op.outputs[0].dtype in _INTEGER and op.outputs[0].index in dequantize_of:
            pairs.append((op, dequantize_of[op.outputs[0].index]))
    return pairs


def input_ranges(model: TFLiteModel) -> dict[str, tuple[float, float]]:
    """Per model input (by signature name), the real-valued range its quantizer represents: the input's own
    parameters when it is an integer input, else those of the QUANTIZE op that takes it in. Inputs that
    are not quantized at the edge are left out."""
    ranges = {}
    for name, tensor in zip(model.input_names, model.inputs):
        quantized = tensor if tensor.dtype in _INTEGER else next(
            (op.outputs[0] for op in model.ops if op.name == "QUANTIZE" and op.inputs and op.outputs
             and op.inputs[0].index == tensor.index), None)
        if quantized is not None and quantized.scale and quantized.dtype in _INTEGER:
            ranges[name] = _represented_range(quantized)
    return ranges


def _represented_range(tensor: TensorInfo) -> tuple[float, float]:
    info = np.iinfo(_INTEGER[tensor.dtype])
    zero_point = tensor.zero_point or 0
    return (float((info.min - zero_point) * tensor.scale), float((info.max - zero_point) * tensor.scale))
