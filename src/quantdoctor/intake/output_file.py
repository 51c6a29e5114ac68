"""Writing a file the user asked for (`--json`, `--html`, `--output`, `--script`): whole, or not at all.

The content goes to a temporary file next to the output, is flushed to disk, and is then renamed
over the output in one step. A full disk, a quota or an I/O error leaves the output as it was (no
empty or half-written file) and is one line naming the path (a `UsageError`). An output path
that is a symbolic link writes its target, and the link stays; an existing file keeps its mode.
Only regular files are written: `check_writable` refuses the others before any work.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path

from quantdoctor.errors import UsageError


def write_output(path: str | Path, content: bytes | str, option: str) -> None:
    """Write `content` to `path`, which `option` (`--json`, ...) named, atomically.

    Text is UTF-8; a character UTF-8 cannot hold (a file name's undecodable byte) is written as its escape.
    """
    data = content.encode("utf-8", errors="backslashreplace") if isinstance(content, str) else content
    target = Path(os.path.realpath(path))
    try:
        mode: int | None = os.stat(target).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise UsageError(f"cannot write {option} {path}: {exc.strerror or exc}") from exc
    if mode is not None and not stat.S_ISREG(mode):
        raise UsageError(f"refusing to write {option} {path}: it is not a regular file")
    temporary = target.with_name(f".quantdoctor-{secrets.token_hex(6)}.partial")
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies
    except OSError as exc:
        raise UsageError(_failure(option, path, exc)) from exc
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())  # a full disk can show only here, on some file systems
        if mode is not None:
            os.chmod(temporary, stat.S_IMODE(mode))
        os.replace(temporary, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if isinstance(exc, OSError):
            raise UsageError(_failure(option, path, exc)) from exc
        raise


def _failure(option: str, path: str | Path, exc: OSError) -> str:
    reason = exc.strerror or str(exc)
    hint = ": free some space or choose another place" if exc.errno in _FULL else ""
    return f"cannot write {option} {path}: {reason}{hint} (nothing was written)"


_FULL = {errno.ENOSPC, errno.EDQUOT}
