"""Where quantdoctor may write: never onto or into the user's inputs, never twice to one file.

Paths are compared by what they are on disk, not by how they are spelled: an existing file or
directory by its device and inode (so a hard link or a symlink to the model is the model), a path
that does not exist yet by its resolved form. Everything here runs before any long work.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from quantdoctor.errors import UsageError

Identity = tuple[int, int] | str


def check_outputs(inputs: Iterable[Any], outputs: Mapping[str, Any]) -> None:
    """Refuse an output that is, or is inside, one of the `inputs`, and two outputs that are the
    same file or one inside the other.

    `inputs` may hold anything a user passes as data (only paths are considered); `outputs` maps
    each option's name (`--json`) to its path or None.
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


def identity(path: Path) -> Identity:
    """What `path` is on disk: (device, inode) when it exists (symlinks followed), else its resolved path."""
    try:
        stat = os.stat(path)
    except OSError:
        return _resolved(path)
    return (stat.st_dev, stat.st_ino)


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
