"""`quantdoctor run COMMAND...`: the user's command, executed in place with quantdoctor's hooks
ready in every Python it starts.

The command replaces the quantdoctor process (exec), so its exit code, signals, stdout and files
are the user's own. Its environment differs in two variables only: PYTHONPATH starts with the
bootstrap directory (a `sitecustomize` that waits for TensorFlow to be imported, then chains to
the environment's own sitecustomize), and QUANTDOCTOR_RUN_OPTIONS carries the options. Nothing
is installed anywhere. A Python started with -I, -E or -S skips the bootstrap, and runs unwatched.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Mapping

from quantdoctor.errors import UsageError
from quantdoctor.intake.cache_settings import check_cache_root
from quantdoctor.intake.data import DEFAULT_MAX_SAMPLES
from quantdoctor.intake.paths import check_outputs
from quantdoctor.isolation.runner import DEFAULT_TIMEOUT
from quantdoctor.watch.session import RUN_OPTIONS_VARIABLE, check_options, write_document

BOOTSTRAP = Path(__file__).resolve().parent / "bootstrap"


def run_command(command: list[str], *, json_path: Path | None = None, timeout: float = DEFAULT_TIMEOUT,
                memory_limit_mb: int | None = None, max_samples: int = DEFAULT_MAX_SAMPLES) -> None:
    """Execute `command` watched; never returns (the command takes over the process)."""
    if not command or not command[0]:
        raise UsageError("nothing to run: give the command after the options, e.g. `quantdoctor run python convert.py`")
    executable = shutil.which(command[0])
    if executable is None:
        raise UsageError(_not_runnable(command[0]))
    check_options(timeout, memory_limit_mb, max_samples)
    check_cache_root(inputs=(), outputs={"--json": json_path})  # the command's arguments are its own, not inputs
    options: dict[str, object] = {"timeout": timeout, "memory_limit_mb": memory_limit_mb, "max_samples": max_samples}
    if json_path is not None:
        # The command's own files (the script, its data) are never an output of quantdoctor's.
        check_outputs(inputs=[argument for argument in command if Path(argument).exists()],
                      outputs={"--json": json_path})
        write_document(json_path, command)
        options["json"] = str(json_path.resolve())
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(executable, command, watched_environment(os.environ, options))
    except OSError as exc:  # a file without a shebang, a shebang naming a missing interpreter
        raise UsageError(f"cannot execute {command[0]}: {_exec_failure(executable, exc)}"
                         + _interpreter_hint(command[0])) from None


def _not_runnable(name: str) -> str:
    """Why `name` cannot be executed, in the user's words: a script without its interpreter is the common case."""
    path = Path(name)
    if not path.exists():
        return f"command not found: {name}"
    if os.sep not in name and not path.is_dir():  # a file here, which the shell would not run either
        return f"command not found: {name}" + _interpreter_hint(name)
    if path.is_dir():
        return f"{name} is a directory, not a command"
    return f"{name} is not executable" + _interpreter_hint(name)


def _exec_failure(executable: str, exc: OSError) -> str:
    """Why the system refused to start `executable`: its `#!` interpreter, when it names one."""
    try:
        with open(executable, "rb") as script:
            first = script.readline(256)
    except OSError:
        first = b""
    if first.startswith(b"#!"):
        interpreter = first[2:].decode(errors="replace").strip()
        return f"its interpreter line `#!{interpreter}` names nothing that runs ({exc.strerror})"
    return exc.strerror or str(exc)


def _interpreter_hint(name: str) -> str:
    return f" (run it with its interpreter: `quantdoctor run python {name}`)" if name.endswith(".py") else ""


def watched_environment(environment: Mapping[str, str], options: dict[str, object]) -> dict[str, str]:
    """`environment` with the bootstrap first on PYTHONPATH and the run's options."""
    paths = [str(BOOTSTRAP)] + [p for p in environment.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {**environment, "PYTHONPATH": os.pathsep.join(paths),
            RUN_OPTIONS_VARIABLE: json.dumps({k: v for k, v in options.items() if v is not None})}
