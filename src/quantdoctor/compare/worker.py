"""The compare worker: runs the float and the quantized .tflite side by side on the eval samples.

Run as `python -m quantdoctor.compare.worker REQUEST.json`, isolated like the converter: the
LiteRT interpreter has aborted on some quantized models. Every intermediate tensor is kept
(`experimental_preserve_all_tensors`); each op output of the quantized model whose name also
names a tensor of the float model is compared with it, read in place (see `matching`). That is
one float and one quantized forward pass per sample, the floor for a per-layer comparison. Each
core runs a lane (see `lane`) over its share of the samples; their statistics are merged.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from quantdoctor.intake.data import CalibrationSet
from quantdoctor.isolation.protocol import Message, raised_in, serve, write_json, write_message
from quantdoctor.litert import interpreter_package
from quantdoctor.runtime.feed import ordered_output_details

if TYPE_CHECKING:
    from quantdoctor.compare.metrics import ErrorStats

_PROGRESS_SECONDS = 0.25
_MAX_LANES = 4  # one per usable core, up to this: each lane keeps every tensor of both models


@dataclass
class CompareRequest(Message):
    """Run the .tflite models at `float_model` and `quant_model` on the samples saved at `data`; write the
    statistics to `response`, the outputs to `outputs` (.npz), and the progress to `progress` meanwhile."""

    float_model: str
    quant_model: str
    data: str
    response: str
    progress: str
    outputs: str


@dataclass
class CompareResponse(Message):
    """The statistics of one comparison: the samples run, the lanes they ran in and their seconds, and each
    compared tensor's, model output's and op's statistics (`compare.analysis` reads them); or only
    `model_error`, what LiteRT raised running the user's models."""

    samples: int = 0
    lanes: int = 0
    analysis_seconds: float = 0.0
    tensors: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    ops: list[dict[str, Any]] = field(default_factory=list)
    model_error: str | None = None


def main(request: CompareRequest) -> int:
    """Compare the two models on every eval sample and write the statistics and outputs.

    What LiteRT raises while running the user's models (a kernel that fails to prepare, a sample
    it refuses) is written to the response as `model_error`; anything else is a bug (`serve`).
    """
    try:
        return _compare(request)
    except Exception as exc:
        if not raised_in(exc, interpreter_package()):
            raise
        write_message(Path(request.response), CompareResponse(model_error=f"{type(exc).__name__}: {exc}"))
        return 0


def _compare(request: CompareRequest) -> int:
    samples = CalibrationSet.load(Path(request.data)).samples
    response, outputs = analyse(request.float_model, request.quant_model, samples, Path(request.progress))
    np.savez(request.outputs, **outputs)
    write_message(Path(request.response), response)
    return 0


def analyse(float_model: str, quant_model: str, samples: list[Any],
            progress: Path | None = None) -> tuple[CompareResponse, dict[str, np.ndarray]]:
    """Both .tflite models side by side on `samples`, one lane per usable core: the statistics of
    every compared tensor and output (the worker's response), and the outputs (`float_N`, `quant_N`,
    dequantized). `progress` is rewritten while the lanes run."""
    # Imported here, not with the module: the joint worker reads this module's messages before it converts,
    # and must not import Numba's statistics then (see `compare.joint_worker`).
    from quantdoctor.compare.error_sums import compiled_pays
    from quantdoctor.compare.lane import Lane
    from quantdoctor.compare.matching import op_links
    from quantdoctor.compare.metrics import ErrorStats, compiled_pass

    first = Lane(float_model, quant_model)
    pairs = first.pairs
    lanes = [first] + [Lane(float_model, quant_model, pairs)
                       for _ in range(min(_usable_cores(), _MAX_LANES, len(samples)) - 1)]
    shares = np.array_split(np.arange(len(samples)), len(lanes))
    compiled = compiled_pays(first.passes_per_sample * len(samples), first.values_per_sample * len(samples))
    if compiled:
        compiled_pass()  # started here, as set-up: not in the lanes' time
    gc.freeze()  # set-up is done: a full collection over Numba's and LiteRT's objects cost 50 ms mid-run
    started = time.perf_counter()
    with ThreadPoolExecutor(len(lanes)) as pool:
        futures = [pool.submit(lane.run, [samples[i] for i in share], compiled)
                   for lane, share in zip(lanes, shares)]
        running = set(futures)
        while running:
            _, running = wait(running, timeout=_PROGRESS_SECONDS)
            if progress is not None:
                write_json(progress, {"done": sum(lane.done for lane in lanes), "total": len(samples)})
    seconds = time.perf_counter() - started
    for future in futures:
        future.result()  # a lane's error, raised here
    stats = {name: ErrorStats.merged([lane.stats[name] for lane in lanes]) for name in pairs}
    output_stats = [ErrorStats.merged(parts) for parts in zip(*(lane.output_stats for lane in lanes))]
    outputs = {**_stacked("float", [s for lane in lanes for s in lane.float_outputs]),
               **_stacked("quant", [s for lane in lanes for s in lane.quant_outputs])}
    response = CompareResponse(
        samples=len(samples), lanes=len(lanes), analysis_seconds=round(seconds, 3),
        tensors=[_describe(name, pairs[name][2], stats[name], len(samples)) for name in pairs],
        outputs=[_describe(d["name"], "OUTPUT", stat, len(samples))
                 for d, stat in zip(ordered_output_details(first.quant_model), output_stats)],
        ops=op_links(first.quant_model, pairs))
    return response, outputs


def _usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the system has one, as on Linux)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _stacked(prefix: str, samples: list[list[np.ndarray]]) -> dict[str, np.ndarray]:
    """Per-sample outputs joined in sample order: `{prefix}_{output number}` -> all samples."""
    return {f"{prefix}_{i}": np.concatenate([sample[i] for sample in samples]) for i in range(len(samples[0]))}


def _describe(name: str, op: str, stats: ErrorStats, samples: int) -> dict[str, Any]:
    return {
        "tensor": name, "op": op, "sqnr_db": round(stats.sqnr_db, 3),
        "worst_channel_sqnr_db": round(stats.worst_channel_sqnr_db, 3), "cosine": round(stats.cosine, 6),
        "worst_channel_grid_sqnr_db": round(stats.worst_channel_grid_sqnr_db, 3),
        "rmse_over_scale": None if stats.rmse_over_scale is None else round(stats.rmse_over_scale, 4),
        "max_abs_error": round(stats.max_abs_error, 6), "clipped_fraction": round(stats.clipped_fraction, 6),
        "float_range": [stats.low, stats.high],
        "quantized_range": list(stats.quantized_range) if stats.quantized_range else None,
        "collapsed": stats.collapsed, "histogram": stats.histogram(),
        "channels": 0 if stats.sums is None else stats.sums.shape[1], "lost_channels": stats.lost_channels,
        "values_per_sample": round(stats.count / max(samples, 1), 1),
    }


if __name__ == "__main__":
    sys.exit(serve(main, sys.argv[1], CompareRequest))
