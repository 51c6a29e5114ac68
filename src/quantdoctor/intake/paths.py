"""The user's paths, checked before any work starts: what kind of thing each one names, and
whether an output can be written there.

Inputs are looked at with `os.stat` only, never opened here: a FIFO given as data would block
the first `open`, a device would stream forever. Outputs are checked before the long
conversion, so a typo in `--json` does not cost the whole run.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

from quantdoctor.errors import UsageError


def input_kind(path: Path, what: str, error: type[UsageError] = UsageError) -> str:
    """"file" or "directory" for an input path; any other kind, a missing path or a link loop is `error`.

    `what` names the input in the message ("model", "calibration data", ...).
    """
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise error(f"{what} {path} is a symbolic link loop: point it at a real file") from exc
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise error(f"{what} not found: {path}") from exc
        raise error(f"cannot access {what} {path}: {exc.strerror}") from exc
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "directory"
    raise error(f"{what} {path} is a {_special_kind(mode)}, not a regular file: save it to a file first")


def regular_file(path: Path, what: str, error: type[UsageError] = UsageError) -> Path:
    """`path`, when it names a regular file (through links); otherwise one line saying what it is."""
    if input_kind(path, what, error) == "directory":
        raise error(f"{what} {path} is a directory: give a file")
    return path


def check_output(path: Path, option: str) -> None:
    """Raise a UsageError unless a file can be written at `path` (checked, not written).

    The directory must exist and take new files, and `path` must not be a directory or a file
    that cannot be written. A probe file is created and removed in the directory, which is the
    only test that sees read-only file systems, immutable directories and full quotas alike.
    """
    parent = path.parent
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        mode = None  # a new file: fine when its directory exists
    except OSError as exc:  # a link loop, a name too long, a file where a directory should be
        raise UsageError(f"{option} {path}: {exc.strerror or exc}") from exc
    if mode is not None and stat.S_ISDIR(mode):
        raise UsageError(f"{option} {path} is a directory: give a file name")
    if not parent.is_dir():
        raise UsageError(f"{option} {path}: the directory {parent} does not exist")
    if mode is not None and not os.access(path, os.W_OK):
        raise UsageError(f"{option} {path} cannot be written (read-only)")
    try:
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".quantdoctor-probe-"):
            pass
    except OSError as exc:
        raise UsageError(f"{option} {path}: cannot write in {parent} ({exc.strerror or exc})") from exc


def _special_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "special file"
