"""Runs the worker in a child process with a timeout, and says how it ended.

The child gets its own session so a timeout kills it and anything it started. Its stderr goes to
a file (the converter's MLIR diagnostics and TF's warnings land there), and the exit signal is
recorded: a segfault or abort in the converter is a finding, never quantdoctor's own death.
Where it can, the child is forked from a process that imported TensorFlow once (`prefork`), and set
up exactly as a fresh one; a run with a memory limit always starts a fresh process.
"""

from __future__ import annotations

import json
import math
import os
import resource
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable

from quantdoctor import tf_private
from quantdoctor.errors import InternalError, UsageError
from quantdoctor.isolation import PACKAGE_ROOT
from quantdoctor.isolation.prefork import ForkedWorker, fork_worker
from quantdoctor.isolation.protocol import Message, StagedResponse, read_json, write_json

DEFAULT_TIMEOUT = 900.0
# Below this, a memory limit is a slip (TensorFlow alone maps about 1 GB); above this (the user
# address space of a 64-bit process, 128 TiB), it is not a limit.
MIN_MEMORY_LIMIT_MB = 256
MAX_MEMORY_LIMIT_MB = 1 << 27
_STDERR_KEEP = 20_000
_POLL_SECONDS = 0.1
# A process whose address space came this close to its limit (a share of the limit) has run out of
# memory, whatever form its death takes: a failed allocation inside TensorFlow's native code can end
# in a segfault that prints nothing about memory.
_NEAR_LIMIT = 0.1


@dataclass
class WorkerRun:
    """How one worker process ended, and what it reported before ending."""

    outcome: str  # ok | error | crash | timeout | load_error | edit_error | skipped (convert worker); done (others)
    seconds: float
    # What it wrote: a dict (`run_isolated`: its caller reads it with its response type), or the response
    # `run_worker` read with the conversion worker's type.
    response: dict[str, Any] | Message = field(default_factory=dict)
    returncode: int | None = None
    signal_name: str | None = None
    stderr: str = ""
    tflite_path: Path | None = None
    memory_limit_mb: int | None = None
    peak_memory_mb: int | None = None  # the largest address space seen while it ran (Linux)

    @property
    def at_memory_limit(self) -> bool:
        """True when the process was seen at (within a tenth of) its memory limit."""
        return bool(self.memory_limit_mb and self.peak_memory_mb
                    and self.peak_memory_mb >= self.memory_limit_mb * (1 - _NEAR_LIMIT))


def check_limits(timeout: float, memory_limit_mb: int | None) -> None:
    """Refuse a timeout or memory limit no process can be run with (a UsageError, before any work)."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < math.inf:
        raise UsageError(f"timeout must be a positive number of seconds, not {timeout!r}")
    if memory_limit_mb is None:
        return
    ceiling = MAX_MEMORY_LIMIT_MB
    hard_limit = resource.getrlimit(resource.RLIMIT_AS)[1]
    if hard_limit != resource.RLIM_INFINITY:
        ceiling = min(ceiling, hard_limit // 2**20)
    if isinstance(memory_limit_mb, bool) or not isinstance(memory_limit_mb, int) \
            or not MIN_MEMORY_LIMIT_MB <= memory_limit_mb <= ceiling:
        raise UsageError(f"memory limit {memory_limit_mb!r} MB is out of range: give a whole number of MB "
                         f"from {MIN_MEMORY_LIMIT_MB} to {ceiling}")


def run_worker(request: dict[str, Any] | Message, workdir: Path, timeout: float = DEFAULT_TIMEOUT,
               memory_limit_mb: int | None = None, module: str = "quantdoctor.convert.worker",
               on_poll: Callable[[], None] | None = None, needs_tensorflow: bool = True,
               response_type: type[StagedResponse] = StagedResponse) -> WorkerRun:
    """Run one conversion request in a child process and collect its outcome. `module` is the worker:
    the TFLiteConverter's, or `quantdoctor.convert.aeq_worker` for a float .tflite quantized with AEQ.
    `on_poll` is called while it runs (its response, `response_path(workdir)`, tells how far it got);
    an exception it raises kills the worker and is raised here. `needs_tensorflow` as for `run_isolated`.
    The run's response is what the worker wrote, read as `response_type` (the worker's response message)."""
    request = {**(request.to_json() if isinstance(request, Message) else request),
               "response": str(response_path(workdir)), "output": str(workdir / "model.tflite")}
    run = run_isolated(module, request, workdir, timeout, memory_limit_mb, on_poll, needs_tensorflow)
    response = run.response = response_type.from_json(run.response)
    # A response that reached "done" stands, even if the process died or hung afterwards (say while
    # converting compare's float twin, which then is missing from the response).
    if run.outcome == "done" or response.stage == "done":
        run.outcome = response.outcome if response.stage == "done" else "crash"
    if run.outcome == "ok":
        run.tflite_path = Path(request["output"])
    return run


def response_path(workdir: Path) -> Path:
    """Where a conversion worker run in `workdir` writes its response, rewritten at each stage."""
    return workdir / "response.json"


def run_isolated(module: str, request: dict[str, Any] | Message, workdir: Path, timeout: float = DEFAULT_TIMEOUT,
                 memory_limit_mb: int | None = None, on_poll: Callable[[], None] | None = None,
                 needs_tensorflow: bool = True) -> WorkerRun:
    """Run `python -m MODULE request.json` in its own session; `on_poll` is called while it runs.
    A worker that does not need TensorFlow (AEQ's) is forked from a zygote only when one runs already:
    starting one would import TensorFlow for nothing.

    The outcome is "timeout", "crash" (killed by a signal or exited non-zero) or "done"; the
    response is whatever the child wrote to the request's `response` path (as a dict: a typed worker's
    caller reads it with its response type's `from_json`). A bug the child reported (see
    `protocol.serve`) raises InternalError.
    """
    if isinstance(request, Message):
        request = request.to_json()
    request_path = workdir / "request.json"
    write_json(request_path, request)
    stderr_path = workdir / "stderr.txt"
    started = time.perf_counter()
    peak = 0
    with open(stderr_path, "wb") as stderr:
        child, started_by = _start_run(module, [str(request_path)], stderr, workdir, memory_limit_mb,
                                       needs_tensorflow)

        def poll() -> None:
            nonlocal peak
            peak = max(peak, _peak_memory_mb(child.pid))
            if on_poll:
                on_poll()

        try:
            timed_out = not _wait(child, timeout, poll)
        except BaseException:  # Ctrl-C, SIGTERM (see isolation/cleanup.py), a failing on_poll: the child ends too
            kill_group(child)
            raise
        if timed_out:
            kill_group(child)
    response = read_json(Path(request["response"]))
    if "tensorflow_changed" in response:
        raise tf_private.TensorFlowChanged(f"in the {module} process: {response['tensorflow_changed']}")
    if "internal_error" in response:
        raise InternalError(f"the {module} process failed:\n{response['internal_error']}")
    run = WorkerRun(outcome="timeout" if timed_out else "done", seconds=time.perf_counter() - started,
                    response=response, returncode=child.returncode,
                    stderr=tail(stderr_path.read_text(errors="replace")), memory_limit_mb=memory_limit_mb,
                    peak_memory_mb=peak or None)
    if child.returncode is not None and child.returncode < 0:
        run.signal_name = signal.Signals(-child.returncode).name
    if not timed_out and child.returncode != 0:
        run.outcome = "crash"
    _log_run(module, run, started_by, child.zygote_kind if isinstance(child, ForkedWorker) else None)
    return run


def _log_run(module: str, run: WorkerRun, started_by: str, zygote_kind: str | None) -> None:
    """With QUANTDOCTOR_WORKER_LOG=FILE, append one JSON line per worker run (bench/suite.py counts them); a
    forked one names the kind of zygote it came from."""
    path = os.environ.get("QUANTDOCTOR_WORKER_LOG")
    if not path:
        return
    line = {"module": module, "started_by": started_by, "seconds": round(run.seconds, 3), "outcome": run.outcome,
            "test": os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" (", 1)[0]}
    if zygote_kind is not None:
        line["zygote"] = zygote_kind
    with open(path, "a") as log:
        log.write(json.dumps(line) + "\n")


def _start_run(module: str, args: list[str], log: IO[bytes], workdir: Path, memory_limit_mb: int | None,
               needs_tensorflow: bool = True) -> tuple[subprocess.Popen | ForkedWorker, str]:
    """Start one worker run: forked from a zygote where it can be (see `prefork`), else cold. Says which.
    Without `needs_tensorflow`, no zygote is started for it."""
    if memory_limit_mb is None:
        forked = fork_worker(module, args, log, worker_environment(workdir), isolated_command, needs_tensorflow)
        if forked is not None:
            return forked, "fork"
    return start_isolated(module, args, log, workdir, memory_limit_mb, stdin=subprocess.DEVNULL), "spawn"


def start_isolated(module: str, args: list[str], log: IO[bytes], workdir: Path, memory_limit_mb: int | None = None,
                   **popen: Any) -> subprocess.Popen:
    """Start `module` as a worker: isolated imports (`isolated_command`), its own session (so a kill
    takes whatever it started), stdout and stderr to `log`. `popen` adds Popen arguments (stdin, pass_fds).

    The worker's temporary files (TensorFlow's SavedModel exports, Keras's own) go under `workdir`, which
    quantdoctor removes however the run ends: a worker killed mid-export leaves nothing behind."""
    return subprocess.Popen(isolated_command(module, *args), stdout=log, stderr=log, env=worker_environment(workdir),
                            start_new_session=True, preexec_fn=_memory_limiter(memory_limit_mb), **popen)


def worker_environment(workdir: Path) -> dict[str, str]:
    """A worker's environment: `worker_variables()`, TMPDIR under `workdir`."""
    private_tmp = workdir / "tmp"
    private_tmp.mkdir(exist_ok=True)
    return {**worker_variables(), "TMPDIR": str(private_tmp)}


def worker_variables() -> dict[str, str]:
    """The variables every worker gets (before its TMPDIR): this process's, TensorFlow's C++ log at warnings."""
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "1")}


def isolated_command(module: str, *args: str) -> list[str]:
    """The command line that runs `module` as `__main__` in a child Python that imports nothing it
    was not meant to.

    `-I` keeps the working directory, the user's site directory and every PYTHON* variable out of
    the child's imports (a `json.py` next to the user's model is never run). The child then imports
    quantdoctor from the very directory the parent did, and nothing else is added to its path.
    """
    bootstrap = ("import sys; sys.path.insert(0, sys.argv.pop(1)); "
                 "from quantdoctor.isolation import worker_process; worker_process.run(sys.argv.pop(1))")
    return [sys.executable, "-I", "-X", "faulthandler", "-c", bootstrap, str(PACKAGE_ROOT), module, *args]


def _peak_memory_mb(pid: int) -> int:
    """The peak address space (VmPeak) of a running process in MB; 0 where /proc cannot tell."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmPeak:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 0


def _wait(child: subprocess.Popen | ForkedWorker, timeout: float, on_poll: Callable[[], None]) -> bool:
    """Wait for the child; False when it outlives `timeout`."""
    deadline = time.perf_counter() + timeout
    while True:
        try:
            child.wait(timeout=min(_POLL_SECONDS, max(deadline - time.perf_counter(), 0.01)))
            return True
        except subprocess.TimeoutExpired:
            if time.perf_counter() >= deadline:
                return False
            on_poll()


def _memory_limiter(limit_mb: int | None):
    if not limit_mb:
        return None
    limit = limit_mb * 1024 * 1024

    def apply_limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return apply_limit


def kill_group(child: subprocess.Popen | ForkedWorker) -> None:
    """Kill a worker started by `start_isolated` and everything it started, and reap it."""
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    child.wait()


def tail(text: str) -> str:
    """The end of a worker's log, as much as a report keeps."""
    return text if len(text) <= _STDERR_KEEP else "…" + text[-_STDERR_KEEP:]
