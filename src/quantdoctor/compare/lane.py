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
from quantdoctor.runtime.feed import Feeder, ordered_output_details
from quantdoctor.tf_private import interpreter_tensor


class Lane:
    """Both models on their own interpreters, with the statistics of the samples run so far."""

    def __init__(self, float_path: str, quant_path: str, pairs: Pairs | None = None) -> None:
        """Open both models; `pairs` are the compared tensors (matched here when not given)."""
        from quantdoctor.litert import new_interpreter

        # The reference kernels, op by op: a delegate would fuse ops and hide the tensors between them.
        self.float_model = new_interpreter(float_path, reference_kernels=True, keep_all_tensors=True)
        self.quant_model = new_interpreter(quant_path, reference_kernels=True, keep_all_tensors=True)
        self.pairs = pairs = pairs or matched_tensors(self.float_model, self.quant_model)
        # Tensors are allocated by the first sample: a size the model leaves free takes the sample's.
        self.feed_float, self.feed_quant = Feeder(self.float_model), Feeder(self.quant_model)
        self.stats = {name: _new_stats(self.quant_model, index) for name, (_, index, _) in pairs.items()}
        self.output_stats = [_new_stats(self.quant_model, d["index"])
                             for d in ordered_output_details(self.quant_model)]
        self._tracked = [(self.stats[name], self.float_model.tensor(f), self.quant_model.tensor(q))
                         for name, (f, q, _) in pairs.items()]
        self.float_outputs: list[list[np.ndarray]] = []  # per sample, per output
        self.quant_outputs: list[list[np.ndarray]] = []  # dequantized
        self.done = 0

    @property
    def values_per_sample(self) -> int:
        """How many values of the quantized model a sample adds into the statistics (its compared tensors and
        outputs, at their allocated sizes)."""
        indices = [index for _, index, _ in self.pairs.values()]
        indices += [d["index"] for d in ordered_output_details(self.quant_model)]
        return sum(int(np.prod(interpreter_tensor(self.quant_model, index)["shape"])) for index in indices)

    @property
    def passes_per_sample(self) -> int:
        """How many tensor pairs a sample adds into the statistics."""
        return len(self._tracked) + len(self.output_stats)

    def run(self, samples: list[Any], compiled: bool) -> None:
        """Run both models on each of `samples` and fold the sample into the statistics (with the compiled
        pass or NumPy's: see `metrics.ErrorStats.add`)."""
        float_outputs = [d["index"] for d in ordered_output_details(self.float_model)]
        quant_outputs = [d["index"] for d in ordered_output_details(self.quant_model)]
        for sample in samples:
            self.feed_float(sample.values)
            self.float_model.invoke()
            self.feed_quant(sample.values)
            self.quant_model.invoke()
            # Read in place; no view may outlive this loop: the interpreter refuses to run while one is alive.
            for stats, float_tensor, quant_tensor in self._tracked:
                stats.add(float_tensor(), quant_tensor(), compiled)
            float_out = [self.float_model.get_tensor(index) for index in float_outputs]
            quant_out = [self.quant_model.get_tensor(index) for index in quant_outputs]
            for stats, reference, stored in zip(self.output_stats, float_out, quant_out):
                stats.add(reference, stored, compiled)
            self.float_outputs.append(float_out)
            self.quant_outputs.append([stats.dequantize(value) for stats, value in zip(self.output_stats, quant_out)])
            self.done += 1


def _new_stats(interpreter: Any, index: int) -> ErrorStats:
    """Empty statistics for the quantized model's tensor `index`, with its scale and integer range.

    Channels are the last axis, unless the model leaves its size free (a sequence's length after a
    transpose, say): samples then disagree on it, and the tensor counts as one channel."""
    detail = interpreter_tensor(interpreter, index)
    scale, zero_point = detail["quantization"]
    dtype = np.dtype(detail["dtype"])
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    per_channel = not len(detail["shape_signature"]) or detail["shape_signature"][-1] != -1
    if not scale or info is None:
        return ErrorStats(per_channel=per_channel)
    return ErrorStats(scale=float(scale), zero_point=int(zero_point), qmin=int(info.min), qmax=int(info.max),
                      per_channel=per_channel)
