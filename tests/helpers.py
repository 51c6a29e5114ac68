"""Assertions shared by the catalog tests, and the `quantdoctor` command run as a process or in the test's own."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

from quantdoctor.report.model import Finding, Report

QUANTDOCTOR = str(Path(sys.executable).with_name("quantdoctor"))


def run(*args: str, **popen: Any) -> subprocess.CompletedProcess:
    """The `quantdoctor` command run as a user runs it; `popen` goes to subprocess.run (cwd, env)."""
    return subprocess.run([QUANTDOCTOR, *args], capture_output=True, text=True, timeout=600, **popen)


def run_in_process(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None
                   ) -> subprocess.CompletedProcess:
    """The `quantdoctor` command run through its entry point (`cli.main`, argv `args`) in this process, in `cwd`
    with exactly the environment `env` when given: its exit code, stdout and stderr as `run` gives them. Its
    workers fork from this process's zygote, where `run` starts an interpreter that imports TensorFlow for a
    zygote of its own (seconds per command). What only a process of its own shows (Python's warnings and
    TensorFlow's log lines on stderr, signals, imports from the working directory) is tested with `run`."""
    from quantdoctor.cli import main

    # UTF-8 text over bytes with the error handlers of Python's own stdout and stderr: what cannot be
    # encoded fails here as it would in a process of its own.
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")
    stderr = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="backslashreplace")
    argv, folder, environment, started_as = sys.argv, os.getcwd(), dict(os.environ), sys.modules["__main__"]
    sys.argv = ["quantdoctor", *args]
    # Click names the program after `__main__`: the console script's (no package), not `python -m pytest`'s.
    sys.modules["__main__"] = types.ModuleType("__main__")
    if env is not None:
        os.environ.clear()
        os.environ.update(env)
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code or 0
    finally:
        sys.argv = argv
        sys.modules["__main__"] = started_as
        os.chdir(folder)
        os.environ.clear()
        os.environ.update(environment)
    stdout.flush()
    stderr.flush()
    return subprocess.CompletedProcess(["quantdoctor", *args], code, stdout.buffer.getvalue().decode(),
                                       stderr.buffer.getvalue().decode())


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def only(report: Report, code: str) -> Finding:
    """The single finding with `code`; fails listing what was found otherwise."""
    matches = [f for f in report.findings if f.code == code]
    assert len(matches) == 1, f"expected one {code}, got {[f.code for f in report.findings]}"
    return matches[0]


def root(report: Report) -> Finding:
    """The root cause; fails when there is none."""
    assert report.root_cause is not None, f"no root cause among {[f.code for f in report.findings]}"
    return report.root_cause


def assert_finding(finding: Finding, code: str, category: str, severity: str, **location: str | None) -> None:
    """Exact code, category, severity, and the location fields given."""
    assert (finding.code, finding.category, finding.severity) == (code, category, severity), finding
    for key, value in location.items():
        assert getattr(finding.location, key) == value, f"{key}: {finding.location}"
