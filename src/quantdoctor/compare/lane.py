"""A lane: one float and one quantized interpreter that run a share of the eval samples in turn and
fold every compared tensor into its statistics.

The compare worker opens one lane per core and gives each a contiguous share of the samples; the
lanes never wait for each other (LiteRT and the statistics pass both run without the GIL), and
their statistics are merged at the end. Samples run one at a time: batching them multiplies the
kept tensors (every tensor is kept) and was measured slower, as the lanes then compete for cache.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from quantdoctor.compare.matching import Pairs, matched_tensors
from quantdoctor.compare.metrics import ErrorStats
from quantdoctor.tf_private import interpreter_tensor


class Lane:
    """Both models on their own interpreters, with the statistics of the samples run so far."""

    def __init__(self, float_path: str, quant_path: str, pairs: Pairs | None = None) -> None:
        """Open both models; `pairs` are the compared tensors (matched here when not given)."""
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        # The reference kernels, op by op: a delegate would fuse ops and hide the tensors between them.
        options = {"experimental_preserve_all_tensors": True,
                   "experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
        self.float_model = Interpreter(model_path=float_path, **options)
        self.quant_model = Interpreter(model_path=quant_path, **options)
        self.pairs = pairs = pairs or matched_tensors(self.float_model, self.quant_model)
        self.float_model.allocate_tensors()
        self.quant_model.allocate_tensors()
        self.stats = {name: _new_stats(self.quant_model, index) for name, (_, index, _) in pairs.items()}
        self.output_stats = [_new_stats(self.quant_model, d["index"]) for d in self.quant_model.get_output_details()]
        self._tracked = [(self.stats[name], self.float_model.tensor(f), self.quant_model.tensor(q))
                         for name, (f, q, _) in pairs.items()]
        self.float_outputs: list[list[np.ndarray]] = []  # per sample, per output
        self.quant_outputs: list[list[np.ndarray]] = []  # dequantized
        self.done = 0

    def run(self, samples: list[Any]) -> None:
        """Run both models on each of `samples` and fold the sample into the statistics."""
        float_outputs = [d["index"] for d in self.float_model.get_output_details()]
        quant_outputs = [d["index"] for d in self.quant_model.get_output_details()]
        for sample in samples:
            arrays = inputs_for(self.float_model, sample.values)
            _invoke(self.float_model, arrays)
            _invoke(self.quant_model, arrays)
            # Read in place; no view may outlive this loop: the interpreter refuses to run while one is alive.
            for stats, float_tensor, quant_tensor in self._tracked:
                stats.add(float_tensor(), quant_tensor())
            float_out = [self.float_model.get_tensor(index) for index in float_outputs]
            quant_out = [self.quant_model.get_tensor(index) for index in quant_outputs]
            for stats, reference, stored in zip(self.output_stats, float_out, quant_out):
                stats.add(reference, stored)
            self.float_outputs.append(float_out)
            self.quant_outputs.append([stats.dequantize(value) for stats, value in zip(self.output_stats, quant_out)])
            self.done += 1


def _new_stats(interpreter: Any, index: int) -> ErrorStats:
    """Empty statistics for the quantized model's tensor `index`, with its scale and integer range."""
    detail = interpreter_tensor(interpreter, index)
    scale, zero_point = detail["quantization"]
    dtype = np.dtype(detail["dtype"])
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    if not scale or info is None:
        return ErrorStats()
    return ErrorStats(scale=float(scale), zero_point=int(zero_point), qmin=int(info.min), qmax=int(info.max))


def inputs_for(interpreter: Any, values: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The sample's arrays in the interpreter's input order (by name when the sample names them)."""
    details = interpreter.get_input_details()
    arrays = list(values.values())
    ordered = []
    for position, detail in enumerate(details):
        name = detail["name"].removeprefix("serving_default_").rsplit(":", 1)[0]
        ordered.append(values.get(name, arrays[position] if position < len(arrays) else arrays[-1]))
    return ordered


def _invoke(interpreter: Any, arrays: list[np.ndarray]) -> None:
    for detail, array in zip(interpreter.get_input_details(), arrays):
        interpreter.set_tensor(detail["index"], as_input(detail, array))
    interpreter.invoke()


def as_input(detail: dict[str, Any], array: np.ndarray) -> np.ndarray:
    """Float samples quantized for an integer input with its scale and zero point; cast otherwise."""
    dtype = np.dtype(detail["dtype"])
    scale, zero_point = detail["quantization"]
    if np.issubdtype(dtype, np.integer) and scale and np.issubdtype(array.dtype, np.floating):
        info = np.iinfo(dtype)
        return np.clip(np.round(array / scale) + zero_point, info.min, info.max).astype(dtype)
    return array.astype(dtype)
