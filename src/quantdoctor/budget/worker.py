"""The variant worker: quantizes the calibrated model again and again and runs each variant.

Run as `python -m quantdoctor.budget.worker REQUEST.json REPLY_FD`, isolated like the converter
(LiteRT has aborted on some quantized models). TensorFlow starts once; every variant is the
quantizer's own call replayed with a denylist (`tf_private.quantize_calibrated`, about 0.1 s), so
nothing is calibrated again. Commands arrive as JSON lines on stdin and each gets one JSON line on
the reply pipe (the converter prints to stdout, so stdout is left to the log):

- `{"op": "float"}`: the float model's outputs on the eval samples;
- `{"op": "variant", "id": N, "nodes": [...]}`: the model with the ops writing `nodes` in float,
  and its outputs;
- `{"op": "profile", "model": PATH, "samples": K}`: compare's per-tensor statistics of a variant
  against the float model on the first K samples (`compare.worker.analyse`).

Files go to the request's work directory; the reply names them. End of stdin ends the worker.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np

from quantdoctor.compare.worker import raised_in
from quantdoctor.intake.data import CalibrationSet, Sample
from quantdoctor.isolation.protocol import read_json, write_message
from quantdoctor.runtime.feed import Feeder, ordered_output_details


def main(request_path: str, reply_fd: str) -> int:
    """Serve commands until stdin closes."""
    request = read_json(Path(request_path))
    workdir = Path(request["workdir"])
    samples = CalibrationSet.load(Path(request["data"])).samples
    calibrated = Path(request["calibrated"]).read_bytes()
    import tensorflow  # noqa: F401  (starts here, before the first variant: not counted in the search)

    from quantdoctor.tf_private import quantize_calibrated

    with os.fdopen(int(reply_fd), "w", buffering=1) as reply:
        for line in sys.stdin:
            command = json.loads(line)
            if command["op"] == "exit":
                break
            try:
                answer = _serve(command, request, calibrated, samples, workdir, quantize_calibrated)
            except Exception as exc:
                if raised_in(exc, "tensorflow") or raised_in(exc, "ai_edge_litert"):
                    answer = {"error": f"{type(exc).__name__}: {exc}"}  # a variant refused: say so, carry on
                else:
                    answer = {"internal_error": traceback.format_exc()}  # a bug of quantdoctor's
            reply.write(json.dumps(answer) + "\n")
    return 0


def _serve(command: dict[str, Any], request: dict[str, Any], calibrated: bytes, samples: list[Sample],
           workdir: Path, quantize: Callable[[bytes, dict[str, Any], list[str]], bytes]) -> dict[str, Any]:
    if command["op"] == "float":
        path = workdir / "float_outputs.npz"
        np.savez(path, *model_outputs(Path(request["float_model"]).read_bytes(), samples))
        return {"outputs": str(path)}
    if command["op"] == "variant":
        started = time.perf_counter()
        model = quantize(calibrated, request["quantizer"], command["nodes"])
        quantized = time.perf_counter()
        model_path, outputs_path = workdir / f"variant_{command['id']}.tflite", workdir / f"variant_{command['id']}.npz"
        model_path.write_bytes(model)
        np.savez(outputs_path, *model_outputs(model, samples))
        return {"model": str(model_path), "outputs": str(outputs_path),
                "quantize_seconds": round(quantized - started, 4),
                "run_seconds": round(time.perf_counter() - quantized, 4)}
    if command["op"] == "profile":
        from quantdoctor.compare.worker import analyse

        response, _ = analyse(request["float_model"], command["model"], samples[: command["samples"]])
        path = workdir / "profile.json"
        write_message(path, response)
        return {"response": str(path)}
    raise ValueError(f"unknown command {command['op']!r}")


def model_outputs(model: bytes, samples: list[Sample]) -> list[np.ndarray]:
    """The model's outputs on all samples (dequantized when integer), samples along axis 0.

    The samples run as one batch where the model's batch dimension is free, one by one otherwise.
    """
    from quantdoctor.litert import new_interpreter

    interpreter = new_interpreter(model, reference_kernels=True)
    feed = Feeder(interpreter)
    if all(model_input.shape_signature[:1] == (-1,) for model_input in feed.inputs):
        batches = [{key: np.concatenate([s.values[key] for s in samples]) for key in samples[0].values}]
    else:
        batches = [sample.values for sample in samples]
    runs = []
    for values in batches:
        feed(values)
        interpreter.invoke()
        runs.append([_dequantized(interpreter, detail) for detail in ordered_output_details(interpreter)])
    return [np.concatenate([run[i] for run in runs]) for i in range(len(runs[0]))]


def _dequantized(interpreter: Any, detail: dict[str, Any]) -> np.ndarray:
    value = interpreter.get_tensor(detail["index"])
    scale, zero_point = detail["quantization"]
    if scale and np.issubdtype(value.dtype, np.integer):
        value = (value.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)
    return value.astype(np.float32)


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
