"""Runs the worker in a child process with a timeout, and says how it ended.

The child gets its own session so a timeout kills it and anything it started. Its stderr goes to
a file (the converter's MLIR diagnostics and TF's warnings land there), and the exit signal is
recorded: a segfault or abort in the converter is a finding, never quantdoctor's own death.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quantdoctor.convert.protocol import read_json, write_json

DEFAULT_TIMEOUT = 900.0
_STDERR_KEEP = 20_000


@dataclass
class WorkerRun:
    """How one worker process ended, and what it reported before ending."""

    outcome: str  # ok | error | crash | timeout | load_error
    seconds: float
    response: dict[str, Any] = field(default_factory=dict)
    returncode: int | None = None
    signal_name: str | None = None
    stderr: str = ""
    tflite_path: Path | None = None

    @property
    def error_text(self) -> str:
        """The converter's error message followed by its stderr: what the catalog matches against."""
        return "\n".join(part for part in (self.response.get("error_message", ""), self.stderr) if part)


def run_worker(request: dict[str, Any], workdir: Path, timeout: float = DEFAULT_TIMEOUT,
               memory_limit_mb: int | None = None) -> WorkerRun:
    """Run one conversion request in a child process and collect its outcome."""
    request = {**request, "response": str(workdir / "response.json"), "output": str(workdir / "model.tflite")}
    request_path = workdir / "request.json"
    write_json(request_path, request)
    stderr_path = workdir / "stderr.txt"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "1"),
           "PYTHONFAULTHANDLER": "1"}
    started = time.perf_counter()
    with open(stderr_path, "wb") as stderr:
        child = subprocess.Popen(
            [sys.executable, "-m", "quantdoctor.convert.worker", str(request_path)],
            stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr, env=env, start_new_session=True,
            preexec_fn=_memory_limiter(memory_limit_mb),
        )
        timed_out = False
        try:
            child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(child)
    seconds = time.perf_counter() - started
    response = read_json(Path(request["response"]))
    stderr_text = _tail(stderr_path.read_text(errors="replace"))
    run = WorkerRun(outcome="timeout", seconds=seconds, response=response, returncode=child.returncode,
                    stderr=stderr_text)
    if child.returncode is not None and child.returncode < 0:
        run.signal_name = signal.Signals(-child.returncode).name
    if not timed_out:
        run.outcome = response.get("outcome") if response.get("stage") == "done" else "crash"
    if run.outcome == "ok":
        run.tflite_path = Path(request["output"])
    return run


def _memory_limiter(limit_mb: int | None):
    if not limit_mb:
        return None
    limit = limit_mb * 1024 * 1024

    def apply_limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return apply_limit


def _kill_group(child: subprocess.Popen) -> None:
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    child.wait()


def _tail(text: str) -> str:
    return text if len(text) <= _STDERR_KEEP else "…" + text[-_STDERR_KEEP:]
