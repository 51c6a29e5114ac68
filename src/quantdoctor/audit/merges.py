"""Merges that crush one of their inputs, read from the quantization parameters alone (no data).

CONCATENATION, PACK and ADD give their result one scale. An input whose calibrated range spans
fewer than about two steps of that scale keeps one or two levels in the result: box coordinates
in pixels next to scores in 0..1 leave every score at one value. The input's own range is found
where its scale was chosen, behind the ops that only move or requantize values (a Dense on a
rank-3 tensor ends in a RESHAPE, and the quantizer requantizes each input to the merge's scale).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from quantdoctor.audit.islands import SHAPE_ONLY_OPS
from quantdoctor.audit.tflite_model import OpInfo, TensorInfo, TFLiteModel
from quantdoctor.catalog.accuracy import NEGLIGIBLE_ADDEND

MERGE_OPS = ("CONCATENATION", "PACK", "ADD")
MIN_OUTPUT_STEPS = 2.0
_LEVELS = {"INT8": 256, "UINT8": 256, "INT16": 65536}


@dataclass(frozen=True)
class CrushedInput:
    """One merge input that spans fewer than MIN_OUTPUT_STEPS steps of the merge's output scale."""

    merge: OpInfo
    source: TensorInfo  # where the input's scale was chosen
    source_op: OpInfo | None
    input: TensorInfo  # the tensor the merge reads

    @property
    def span(self) -> float:
        """The real range the input's own scale covers (its calibrated range)."""
        return self.source.scale * (_LEVELS[self.source.dtype] - 1)

    @property
    def levels(self) -> int:
        """The integer levels of the merge's output type."""
        return _LEVELS.get(self.merge.outputs[0].dtype, 256)

    @property
    def negligible(self) -> bool:
        """True for an ADD input spanning under NEGLIGIBLE_ADDEND of the sum's range (a LayerScale residual
        branch at 1e-6): it moves the sum by under a quarter of a step, so crushing it loses nothing."""
        return self.merge.name == "ADD" and self.output_steps < NEGLIGIBLE_ADDEND * (self.levels - 1)

    @property
    def output_steps(self) -> float:
        """How many steps of the merge's output the input's range spans."""
        return self.span / self.merge.outputs[0].scale

    @property
    def values_per_sample(self) -> int:
        """Values the input carries per sample (its shape without the batch axis)."""
        return math.prod(self.input.shape[1:]) if len(self.input.shape) > 1 else max(math.prod(self.input.shape), 1)


def crushed_merge_inputs(model: TFLiteModel) -> list[CrushedInput]:
    """Every input of an integer merge, in every subgraph, whose range spans under two output steps."""
    found = []
    for graph in model.graphs:
        producer = {tensor.index: op for op in graph.ops for tensor in op.outputs}
        for op in graph.ops:
            if op.name not in MERGE_OPS or not op.outputs or not _quantized(op.outputs[0]):
                continue
            for tensor in op.inputs:
                if tensor.is_constant:
                    continue
                source, source_op = _scale_source(tensor, producer)
                if _quantized(source) and source.scale > 0:
                    crushed = CrushedInput(op, source, source_op, tensor)
                    if crushed.output_steps < MIN_OUTPUT_STEPS and not crushed.negligible:
                        found.append(crushed)
    return found


def _scale_source(tensor: TensorInfo, producer: dict[int, OpInfo]) -> tuple[TensorInfo, OpInfo | None]:
    """The tensor whose scale `tensor` carries, and the op that made it: back through shape-only
    ops and integer-to-integer QUANTIZE (a requantization)."""
    op = producer.get(tensor.index)
    while op is not None and op.inputs and (op.name in SHAPE_ONLY_OPS or
                                            (op.name == "QUANTIZE" and _quantized(op.inputs[0]))):
        tensor = op.inputs[0]
        op = producer.get(tensor.index)
    return tensor, op


def _quantized(tensor: TensorInfo) -> bool:
    return tensor.dtype in _LEVELS and tensor.scale is not None
