"""The parent's side of the variant worker: one isolated process that stays up for a whole search.

A search is sequential (each variant depends on the last answer), so the worker is started once,
with TensorFlow, the calibrated model and the eval samples loaded, and then asked for one variant
after another (`quantdoctor.budget.worker` describes the commands). The worker runs in its own
session, imports as isolated as the converter's, and ends when its stdin closes, also when this
process dies.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np

from quantdoctor.compare.worker import CompareResponse
from quantdoctor.errors import InternalError, UsageError
from quantdoctor.intake.data import CalibrationSet
from quantdoctor.isolation.protocol import read_message, write_json
from quantdoctor.isolation.runner import kill_group, start_isolated, tail

_EXIT_SECONDS = 5.0


class VariantError(Exception):
    """The worker could not make or run one variant (it carries on with the next)."""


class VariantSession:
    """The variant worker, as a context manager: `float_outputs()`, `variant(nodes)`, `profile(model)`."""

    def __init__(self, workdir: Path, float_model: bytes, calibrated: bytes, quantizer: dict[str, Any],
                 evaluation: CalibrationSet, timeout: float) -> None:
        self.workdir = workdir
        self.timeout = timeout
        self.samples = len(evaluation)
        (workdir / "float.tflite").write_bytes(float_model)
        (workdir / "calibrated.tflite").write_bytes(calibrated)
        evaluation.save(workdir / "eval.npz")
        self._request = {"workdir": str(workdir), "float_model": str(workdir / "float.tflite"),
                         "calibrated": str(workdir / "calibrated.tflite"), "quantizer": quantizer,
                         "data": str(workdir / "eval.npz")}
        self._child: subprocess.Popen | None = None
        self._replies = b""
        self._count = 0

    def __enter__(self) -> VariantSession:
        write_json(self.workdir / "request.json", self._request)
        read_end, write_end = os.pipe()
        self._log = open(self.workdir / "worker.log", "wb")
        try:
            arguments = [str(self.workdir / "request.json"), str(write_end)]
            self._child = start_isolated("quantdoctor.budget.worker", arguments, self._log, self.workdir,
                                         stdin=subprocess.PIPE,
                                         pass_fds=(write_end,))
        finally:
            os.close(write_end)
        self._read_end = read_end
        return self

    def __exit__(self, *exc: Any) -> None:
        child = self._child
        if child is not None:
            try:
                child.stdin.close()  # the worker's loop ends
                child.wait(timeout=_EXIT_SECONDS)
            except (OSError, subprocess.TimeoutExpired):
                pass
            kill_group(child)
        os.close(self._read_end)
        self._log.close()

    def float_outputs(self) -> list[np.ndarray]:
        """The float model's outputs on the eval samples."""
        return _load_outputs(self._ask({"op": "float"})["outputs"])

    def variant(self, nodes: list[str]) -> tuple[Path, list[np.ndarray], dict[str, Any]]:
        """The model with the ops writing `nodes` kept in float: its path, its outputs, and the reply
        (timings). Raises VariantError when the quantizer or the interpreter refuses it."""
        self._count += 1
        answer = self._ask({"op": "variant", "id": self._count, "nodes": sorted(nodes)})
        return Path(answer["model"]), _load_outputs(answer["outputs"]), answer

    def profile(self, model: Path, samples: int) -> CompareResponse:
        """compare's statistics of `model` against the float model on the first `samples` samples."""
        answer = self._ask({"op": "profile", "model": str(model), "samples": samples})
        return read_message(Path(answer["response"]), CompareResponse)

    def _ask(self, command: dict[str, Any]) -> dict[str, Any]:
        assert self._child is not None, "use the session as a context manager"
        try:
            self._child.stdin.write((json.dumps(command) + "\n").encode())
            self._child.stdin.flush()
        except OSError:
            self._died()
        answer = json.loads(self._reply_line())
        if "internal_error" in answer:
            raise InternalError(f"the variant worker failed:\n{answer['internal_error']}")
        if "error" in answer:
            raise VariantError(answer["error"])
        return answer

    def _reply_line(self) -> bytes:
        deadline = time.monotonic() + self.timeout
        while b"\n" not in self._replies:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                kill_group(self._child)
                raise UsageError(f"the variant worker did not answer within {self.timeout:.0f} s")
            ready, _, _ = select.select([self._read_end], [], [], min(remaining, 1.0))
            if ready:
                chunk = os.read(self._read_end, 1 << 16)
                if not chunk:
                    self._died()
                self._replies += chunk
        line, self._replies = self._replies.split(b"\n", 1)
        return line

    def _died(self) -> None:
        self._child.wait()
        self._log.flush()
        last = [line for line in tail((self.workdir / "worker.log").read_text(errors="replace")).splitlines()
                if line.strip()][-1:] or [""]
        code = self._child.returncode
        raise UsageError(f"running the quantized variants failed: the worker process ended with code {code} {last[0]}")


def _load_outputs(path: str) -> list[np.ndarray]:
    with np.load(path) as outputs:
        return [outputs[f"arr_{i}"] for i in range(len(outputs.files))]
