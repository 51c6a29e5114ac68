"""Worker processes forked from a parent that has already imported TensorFlow: the import once, not per run.

A cold worker (`runner.start_isolated`) is a new `python -I` that imports TensorFlow, several seconds
before it does any work. `fix`, `reduce` and `compare` start many. Here a *zygote*, itself a cold
isolated worker (`python -I`, its own session), imports what its kind of worker needs (`PRELOADS`:
TensorFlow and Keras, or for AEQ's worker on a float .tflite NumPy, AEQ, LiteRT and that worker's modules)
and nothing of the user's, then waits. For each run it forks one child, which becomes the
worker exactly as a cold one would be set up: its own session (so a kill takes its whole group), stdin
from /dev/null, stdout and stderr to the run's log, the caller's working directory and environment
(`TMPDIR` the run's private directory), fresh random seeds, Python's default signal handlers and the
faulthandler on its log; then it runs the worker module as `__main__` and ends as a cold worker does
(`worker_process.run`). Each child starts from the zygote's state, never from another run's: Keras's
global state, registered custom objects, tf_private hooks and `--import` modules live and die in one child.

What a fork cannot reproduce is left to cold workers (`fork_worker` returns None): a memory limit (the
limit is defined on a process that maps TensorFlow under it), a request with other pipes, a second
concurrent run from another thread, a platform without fork or /proc, and `QUANTDOCTOR_PREFORK=0`. A
worker that needs no TensorFlow (AEQ's) starts cold too when no zygote runs yet: one started when it is
needed would overlap nothing. The console entry point (`quantdoctor.launch`) starts the zygote a command
will use before it imports the command line itself (`start_early`), so the zygote's imports run beside the
command's own; the runner's first fork then waits for it to be ready.

Fork safety: at the end of its imports the zygote has one Python thread. The native threads it has are
OpenBLAS's pools (NumPy's and SciPy's), which register `pthread_atfork` handlers that stop the pool
before a fork and start it again when next used (measured on TensorFlow 2.21, Linux: three threads
before the first fork, one after; with OPENBLAS_NUM_THREADS=1 one throughout); TensorFlow's import
starts no thread of its own (its runtime starts on the first op, which the zygote never runs). The zygote refuses to serve (every run then starts
cold) if it has any Python thread besides its main one. The zygote is keyed by the Python executable, the
quantdoctor it imports, its kind (what it preloads) and the environment (all of it but the per-run `TMPDIR`,
quantdoctor's own run-time settings and pytest's test name), since variables such as `TF_USE_LEGACY_KERAS`
and `TF_CPP_MIN_LOG_LEVEL` act at import; a zygote that dies is replaced at the next run.

The zygote is this module run as `__main__` with two arguments, FD (its end of a socket pair with the parent)
and its kind.
"""

from __future__ import annotations

import atexit
import faulthandler
import json
import os
import random
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import warnings
from pathlib import Path
from typing import IO, Any, Callable

from quantdoctor.isolation import PACKAGE_ROOT, worker_process

SWITCH = "QUANTDOCTOR_PREFORK"
# What a zygote imports before its first run, by its kind. TensorFlow's: TensorFlow and Keras, the cost; it
# imports each worker module (quantdoctor's own code) when first asked to run it, so a single run imports what
# it needs only. AEQ's (a float .tflite, no TensorFlow): AEQ (ml_dtypes, SciPy), LiteRT, and the modules of
# the one worker it is started for, the joint worker's conversion and comparison.
TENSORFLOW = "tensorflow"
AEQ = "aeq"
PRELOADS = {
    TENSORFLOW: ("tensorflow", "keras"),
    AEQ: ("numpy", "ai_edge_quantizer.quantizer", "ai_edge_litert.interpreter", "quantdoctor.convert.aeq_worker",
          "quantdoctor.compare.joint_worker", "quantdoctor.compare.worker", "quantdoctor.compare.preprocessing",
          "quantdoctor.compare.rows", "quantdoctor.audit.tflite_model", "quantdoctor.runtime.feed"),
}
# Variables that change per run or are read by quantdoctor at run time only: they do not key the zygote.
_PER_RUN_VARIABLES = ("TMPDIR", "PYTEST_CURRENT_TEST")
_PER_RUN_PREFIX = "QUANTDOCTOR_"
_READY_SECONDS = 300.0
_MESSAGE_BYTES = 1 << 20
_ZYGOTES_KEPT = 2


class ZygoteGone(Exception):
    """The zygote died or closed its socket; the run it was serving (if any) is lost."""


class ZygoteRefused(ZygoteGone):
    """The zygote found it cannot fork safely (a thread besides its main one): runs start cold."""


class ForkedWorker:
    """A worker forked by a zygote, with the part of `subprocess.Popen` the runner uses: `pid`,
    `returncode`, `poll()` and `wait(timeout)`. Its exit status comes from the zygote, its parent."""

    def __init__(self, zygote: Zygote, pid: int, args: list[str]):
        self.pid = pid
        self.args = args
        self.returncode: int | None = None
        self.zygote_kind = zygote.kind
        self._zygote = zygote

    def poll(self) -> int | None:
        """The exit code (negative: the signal), or None while it runs."""
        if self.returncode is None:
            self._collect(0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the worker to end; subprocess.TimeoutExpired after `timeout` seconds."""
        if self.returncode is None:
            self._collect(timeout)
        if self.returncode is None:
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self.returncode

    def _collect(self, timeout: float | None) -> None:
        try:
            message = self._zygote.receive(timeout)
        except ZygoteGone:
            # The zygote died under the run: the worker is no one's child any more. It ends here.
            _kill(self.pid)
            self.returncode = -signal.SIGKILL
        else:
            if message is not None:
                self.returncode = message["returncode"]
        if self.returncode is not None:
            self._zygote.release()


class Zygote:
    """The parent's handle on one zygote process."""

    def __init__(self, environment: dict[str, str], command: Callable[..., list[str]], kind: str = TENSORFLOW):
        """Start the zygote process; it is ready (or refused) at the first `await_ready` or `fork`."""
        self.kind = kind
        self.directory = Path(tempfile.mkdtemp(prefix="quantdoctor-zygote-"))
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._socket = ours
        self._busy = threading.Lock()
        with open(self.directory / "zygote.log", "wb") as log:
            self.process = subprocess.Popen(
                command(__name__, str(theirs.fileno()), kind),  # this module, run as the zygote
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, pass_fds=(theirs.fileno(),),
                env={**environment, "TMPDIR": str(self.directory)}, cwd=self.directory, start_new_session=True)
        theirs.close()
        self.ready: dict[str, Any] | None = None

    def await_ready(self) -> None:
        """Wait for the zygote's imports; ZygoteRefused when it died importing or cannot fork safely."""
        if self.ready is not None:
            return
        try:
            self.ready = self.receive(_READY_SECONDS)
        except ZygoteGone as exc:
            raise ZygoteRefused(f"the zygote did not start: {exc}") from exc
        if self.ready is None or not self.ready.get("serving"):
            raise ZygoteRefused(f"the zygote did not start: {self.ready}")

    def alive(self) -> bool:
        """True while the zygote process runs."""
        return self.process.poll() is None

    def fork(self, module: str, args: list[str], log: IO[bytes], environment: dict[str, str]) -> ForkedWorker | None:
        """Fork a worker running `module` with `args`; None when the zygote is serving another run."""
        if not self._busy.acquire(blocking=False):
            return None
        try:
            self.await_ready()
            request = {"module": module, "args": args, "cwd": os.getcwd(), "environment": environment}
            try:
                socket.send_fds(self._socket, [json.dumps(request).encode()], [log.fileno()])
            except OSError as exc:
                raise ZygoteGone(str(exc)) from exc
            started = self.receive(_READY_SECONDS)
            if started is not None and not started.get("serving", True):
                raise ZygoteRefused(f"the zygote stopped serving: {started}")
            if started is None or "pid" not in started:
                raise ZygoteGone(f"the zygote did not fork: {started}")
        except BaseException:
            self._busy.release()
            raise
        return ForkedWorker(self, started["pid"], [module, *args])

    def receive(self, timeout: float | None) -> dict[str, Any] | None:
        """The zygote's next message, or None when none came within `timeout` seconds."""
        ready, _, _ = select.select([self._socket], [], [], timeout)
        if not ready:
            return None
        try:
            message = self._socket.recv(_MESSAGE_BYTES)
        except OSError as exc:
            raise ZygoteGone(str(exc)) from exc
        if not message:
            raise ZygoteGone("the zygote closed its socket")
        return json.loads(message)

    def release(self) -> None:
        """The run ended: the zygote may serve the next one."""
        if self._busy.locked():
            self._busy.release()

    def close(self) -> None:
        """End the zygote and remove its directory. It keeps nothing and its runs are sessions of their own:
        it is killed, not left to shut TensorFlow down (seconds, which a command's exit would wait for)."""
        self._socket.close()
        _kill(self.process.pid)
        self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


_zygotes: dict[tuple, Zygote] = {}
_unusable: set[tuple] = set()
_registry_lock = threading.Lock()


def enabled() -> bool:
    """True where workers may be forked: Linux (fork, /proc) and not turned off with QUANTDOCTOR_PREFORK=0."""
    return sys.platform.startswith("linux") and os.environ.get(SWITCH, "1").strip().lower() not in ("0", "false",
                                                                                                    "no", "off")


def fork_worker(module: str, args: list[str], log: IO[bytes], environment: dict[str, str],
                command: Callable[..., list[str]], needs_tensorflow: bool = True) -> ForkedWorker | None:
    """Start `module` as a worker forked from a zygote for `environment`, or None when this run must
    start cold (see the module docstring). `command(module, *args)` is the cold command line, which
    starts the zygote itself. A worker that needs TensorFlow is served by TensorFlow's zygote, started if
    need be. One that does not (AEQ's) is served only by a zygote that runs already, AEQ's or else
    TensorFlow's: a new one would import for nothing."""
    if not enabled():
        return None
    try:
        os.getcwd()
    except OSError:  # a working directory that was removed: only a cold process can start in it
        return None
    with _registry_lock:
        if needs_tensorflow:
            key = zygote_key(environment, TENSORFLOW)
            zygote = _running(key)
            if zygote is None and key not in _unusable:
                zygote = _start(key, environment, command, TENSORFLOW)
        else:
            for key in (zygote_key(environment, AEQ), zygote_key(environment, TENSORFLOW)):
                zygote = _running(key)
                if zygote is not None:
                    break
        if zygote is None:
            return None
        _zygotes[key] = _zygotes.pop(key)  # the most recently used last: `_start` ends the first
    try:
        return zygote.fork(module, args, log, environment)
    except ZygoteGone as exc:
        with _registry_lock:
            if _zygotes.get(key) is zygote:
                _forget(key)
            if isinstance(exc, ZygoteRefused):
                _unusable.add(key)
        return None


def start_early(kind: str, environment: dict[str, str], command: Callable[..., list[str]]) -> None:
    """Start a zygote of `kind` (a key of PRELOADS) for `environment` now, without waiting for its imports: the
    runner's first fork of a worker it serves waits for them (`command` as for `fork_worker`). One that no run
    uses costs its imports, in the background, and ends at exit like any zygote."""
    if not enabled():
        return
    key = zygote_key(environment, kind)
    with _registry_lock:
        if key not in _unusable and _running(key) is None:
            _start(key, environment, command, kind)


def zygote_key(environment: dict[str, str], kind: str = TENSORFLOW) -> tuple:
    """What a zygote's imports depend on: the interpreter, quantdoctor's location, its kind and the environment."""
    kept = sorted((name, value) for name, value in environment.items()
                  if name not in _PER_RUN_VARIABLES and not name.startswith(_PER_RUN_PREFIX))
    return (sys.executable, str(PACKAGE_ROOT), kind, tuple(kept))


def shutdown() -> None:
    """End every zygote of this process (also run at exit)."""
    with _registry_lock:
        for key in list(_zygotes):
            _forget(key)


def _running(key: tuple) -> Zygote | None:
    """The zygote for `key` while its process runs (one that died is forgotten), or None."""
    zygote = _zygotes.get(key)
    if zygote is not None and not zygote.alive():
        _forget(key)
        zygote = None
    return zygote


def _start(key: tuple, environment: dict[str, str], command: Callable[..., list[str]], kind: str) -> Zygote:
    while len(_zygotes) >= _ZYGOTES_KEPT:  # the least recently used goes
        _forget(next(iter(_zygotes)))
    zygote = Zygote({name: value for name, value in environment.items() if name != "TMPDIR"}, command, kind)
    _zygotes[key] = zygote
    return zygote


def _forget(key: tuple) -> None:
    zygote = _zygotes.pop(key)
    zygote.close()


def _kill(pid: int) -> None:
    for kill, target in ((os.killpg, pid), (os.kill, pid)):
        try:
            kill(target, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _forget_inherited() -> None:
    """In a process forked from one that has zygotes (multiprocessing, say): they stay the parent's."""
    global _registry_lock
    for zygote in _zygotes.values():
        zygote._socket.close()  # this process's copy of the socket; the parent's stays open
    _zygotes.clear()
    _unusable.clear()
    _registry_lock = threading.Lock()


atexit.register(shutdown)
os.register_at_fork(after_in_child=_forget_inherited)


# -- the zygote process ------------------------------------------------------------------------------

def _serve(channel: socket.socket, kind: str) -> dict[str, Any] | None:
    """The zygote's loop after importing PRELOADS[kind]: one fork per request, the child's exit status sent back.
    Returns the request in the forked child (which then becomes the worker), None in the zygote when the parent
    is gone."""
    serving = _import(PRELOADS[kind])
    _send(channel, {**serving, "pid": os.getpid()})
    while serving["serving"]:
        try:
            message, fds, _, _ = socket.recv_fds(channel, _MESSAGE_BYTES, 1)
        except OSError:
            break
        if not message:
            break
        request = json.loads(message)
        serving = _import([request["module"]])
        if not serving["serving"]:
            os.close(fds[0])
            _send(channel, serving)
            break
        sys.stdout.flush()
        sys.stderr.flush()
        in_session, session_made = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.setsid()
            os.close(session_made)
            os.close(in_session)
            channel.close()
            request["log"] = fds[0]
            return request
        os.close(fds[0])
        os.close(session_made)
        os.read(in_session, 1)  # the child's session exists (or the child is dead): it can be killed by group
        os.close(in_session)
        _send(channel, {"pid": pid})
        _, status = os.waitpid(pid, 0)
        _send(channel, {"pid": pid, "returncode": os.waitstatus_to_exitcode(status)})
    shutil.rmtree(os.environ["TMPDIR"], ignore_errors=True)
    return None


def _import(modules: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Import `modules` into the zygote; whether it may still fork (no Python thread but its own), and whether
    it holds TensorFlow."""
    for module in modules:
        __import__(module)
    python_threads = threading.active_count()
    return {"serving": python_threads == 1, "python_threads": python_threads,
            "native_threads": len(os.listdir("/proc/self/task")), "tensorflow": "tensorflow" in sys.modules}


def _send(channel: socket.socket, message: dict[str, Any]) -> None:
    try:
        channel.send(json.dumps(message).encode())
    except OSError:
        pass  # the parent is gone: the loop ends at its next read


def _become_worker(request: dict[str, Any]) -> None:
    """Set the forked child up as a cold worker would be (see the module docstring)."""
    log = request["log"]
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["environment"])
    tempfile.tempdir = None  # TMPDIR is the run's own directory
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    faulthandler.enable()
    random.seed()
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()
    sys.argv = ["-c", *request["args"]]
    # The worker module was imported here already; run as __main__ it is a fresh copy, as in a cold worker.
    warnings.filterwarnings("ignore", message=r".*found in sys\.modules after import of package", category=RuntimeWarning)


if __name__ == "__main__":
    _request = _serve(socket.socket(fileno=int(sys.argv[1])), sys.argv[2])
    if _request is None:
        sys.exit(0)
    _become_worker(_request)
    del _request["log"]
    worker_process.run(_request["module"])
