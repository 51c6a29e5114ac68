"""The user's paths, checked before any long work: what each input is, and where quantdoctor may
write (never onto or into the user's inputs, never twice to one file, only where a file can be
written).

Inputs are looked at with `os.stat` only, never opened here: a FIFO given as data would block
the first `open`, a device would stream forever. Paths are compared by what they are on disk,
not by how they are spelled: an existing file or directory by its device and inode (so a hard
link or a symlink to the model is the model), a path that does not exist yet by its resolved form.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from quantdoctor.errors import UsageError

Identity = tuple[int, int] | str


def check_outputs(inputs: Iterable[Any], outputs: Mapping[str, Any],
                  directories: Iterable[str] = ("--keep-workdir",)) -> None:
    """Refuse an output that is, or is inside, one of the `inputs`, two outputs that are the same
    file or one inside the other, and a file output that cannot be written (`check_writable`).

    `inputs` may hold anything a user passes as data (only paths are considered); `outputs` maps
    each option's name (`--json`) to its path or None; the options in `directories` name
    directories (checked by `prepare_keep_workdir`), the others files.
    """
    protected = {identity(Path(path)): Path(path) for path in inputs if isinstance(path, (str, Path))}
    named = [(option, Path(path)) for option, path in outputs.items() if path is not None]
    for option, path in named:
        for found in _identity_chain(path):
            if found in protected:
                where = "is" if found == identity(path) else "is inside"
                raise UsageError(f"refusing to write {option} {path}: it {where} your input {protected[found]}; "
                                 "choose a path outside your model and data")
    for index, (option, path) in enumerate(named):
        for other_option, other in named[index + 1:]:
            if identity(other) in _identity_chain(path) or identity(path) in _identity_chain(other):
                raise UsageError(f"{option} {path} and {other_option} {other} would write to the same place: "
                                 "give each output its own path")
    for option, path in named:
        if option not in directories:
            check_writable(path, option)


def identity(path: Path) -> Identity:
    """What `path` is on disk: (device, inode) when it exists (symlinks followed), else its resolved path."""
    try:
        status = os.stat(path)
    except OSError:
        return _resolved(path)
    return (status.st_dev, status.st_ino)


def placement(path: Path, other: Path) -> str | None:
    """Where `path` lies on disk relative to `other`: "is", "is inside" or "contains"; None when apart."""
    if identity(path) == identity(other):
        return "is"
    if identity(other) in _identity_chain(path):
        return "is inside"
    if identity(path) in _identity_chain(other):
        return "contains"
    return None


def _identity_chain(path: Path) -> list[Identity]:
    """The identities of `path` and of every directory above it (after resolving symlinks)."""
    return [identity(path)] + [identity(parent) for parent in Path(_resolved(path)).parents]


def _resolved(path: Path) -> str:
    try:
        return str(path.resolve())
    except (OSError, RuntimeError):  # a symlink loop: reading it reports the error
        return os.path.abspath(path)


def prepare_keep_workdir(path: str | Path) -> Path:
    """Create the directory `--keep-workdir` names, or accept an existing empty one as it is
    (its permissions untouched): quantdoctor never writes over the user's files."""
    path = Path(path)
    try:
        path.mkdir(mode=0o700, parents=True)  # new, and private: it receives a copy of the data
    except FileExistsError:
        if not path.is_dir():
            raise UsageError(f"--keep-workdir {path} is an existing file: name a new or empty directory") from None
        if any(path.iterdir()):
            raise UsageError(f"--keep-workdir {path} is not empty: name a new or empty directory") from None
    except OSError as exc:
        raise UsageError(f"cannot create --keep-workdir {path}: {exc.strerror}") from None
    return path


def copy_into(workdir: Path, keep: Path) -> None:
    """Copy the contents of `workdir` into the prepared `keep` directory, leaving `keep` itself as it is."""
    for entry in workdir.iterdir():
        if entry.is_dir():
            shutil.copytree(entry, keep / entry.name)
        else:
            shutil.copy2(entry, keep / entry.name)


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


def check_writable(path: Path, option: str) -> None:
    """Raise a UsageError unless a file can be written at `path` (checked, not written).

    The directory must exist and take new files, and `path` must not be a directory, a file that
    cannot be written, or anything but a regular file (a FIFO, a device such as /dev/full). A probe
    file is created and removed in the directory, which is the only test that sees read-only file
    systems, immutable directories and full quotas alike.
    """
    parent = Path(os.path.realpath(path)).parent  # a symbolic link is written through: its target's directory
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        mode = None  # a new file: fine when its directory exists
    except OSError as exc:  # a link loop, a name too long, a file where a directory should be
        raise UsageError(f"{option} {path}: {exc.strerror or exc}") from exc
    if mode is not None and stat.S_ISDIR(mode):
        raise UsageError(f"{option} {path} is a directory: give a file name")
    if mode is not None and not stat.S_ISREG(mode):  # a FIFO would block the write, a device swallow it
        raise UsageError(f"{option} {path} is a {_special_kind(mode)}, not a regular file: give a file name")
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
