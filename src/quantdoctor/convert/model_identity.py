"""Which model bytes a conversion read: the digest the conversion cache keys its entries on.

A model on disk (a `.keras`/`.h5` file, a SavedModel directory, a frozen graph) is identified by
the bytes of its files and their paths, read once with the state of each file (device, inode,
size, modification and change times) taken before and after. The worker takes that digest just
before it loads the model and checks the files again once it has converted: if any file changed
in between (even when restored, a change moves its change time), the digest is withdrawn and the
conversion is not cached. A SavedModel that quantdoctor exported from a Python object into its
private work directory is identified by TensorFlow's SavedModel fingerprint instead: its bytes
differ from one export to the next.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

FILES, FINGERPRINT = "files", "fingerprint"
_BLOCK = 1 << 20

FileState = tuple[int, int, int, int, int]  # device, inode, size, modification and change times (ns)


@dataclass(frozen=True)
class ModelDigest:
    """A digest of a model, and the state of its files when it was taken (empty for a fingerprint)."""

    path: Path
    kind: str
    digest: str
    states: dict[str, FileState]

    @classmethod
    def take(cls, path: str | Path, kind: str) -> ModelDigest | None:
        """The digest of the model at `path` (`kind` is FILES or FINGERPRINT); None when a file changed
        while it was read, or when the model cannot be read or has no fingerprint."""
        path = Path(path)
        if kind == FINGERPRINT:
            fingerprint = _fingerprint(path)
            return None if fingerprint is None else cls(path, kind, fingerprint, {})
        try:
            digest, states = _read_files(path)
        except (OSError, _Changed):
            return None
        return cls(path, kind, digest, states)

    def unchanged(self) -> bool:
        """True when every file still has the state it had when the digest was taken (and no file was
        added or removed)."""
        if self.kind == FINGERPRINT:
            return _fingerprint(self.path) == self.digest
        try:
            return {name: _state(os.stat(file)) for name, file in _files(self.path)} == self.states
        except OSError:
            return False


class _Changed(Exception):
    """A file changed while it was read."""


def _read_files(path: Path) -> tuple[str, dict[str, FileState]]:
    digest = hashlib.sha256()
    states = {}
    for name, file in _files(path):
        before = _state(os.stat(file))
        digest.update(name.encode("utf-8", "surrogateescape") + b"\0" + str(before[2]).encode() + b"\0")
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(_BLOCK), b""):
                digest.update(block)
            if _state(os.fstat(handle.fileno())) != before:
                raise _Changed(name)
        states[name] = before
    return digest.hexdigest(), states


def _files(path: Path) -> list[tuple[str, Path]]:
    """The files a loader reads at `path`, by name: the file itself (named by its suffix, which picks the
    loader), or every file under the directory by its relative path, through symbolic links as a loader
    follows them (each directory once)."""
    if not path.is_dir():
        return [(path.suffix.lower(), path)]
    found, seen = [], set()
    for directory, subdirectories, names in os.walk(path, followlinks=True):
        status = os.stat(directory)
        if (status.st_dev, status.st_ino) in seen:
            subdirectories[:] = []
            continue
        seen.add((status.st_dev, status.st_ino))
        subdirectories.sort()
        for name in sorted(names):
            file = Path(directory, name)
            if file.is_file():
                found.append((file.relative_to(path).as_posix(), file))
    return sorted(found)


def _state(status: os.stat_result) -> FileState:
    return (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns)


def _fingerprint(path: Path) -> str | None:
    """TensorFlow's fingerprint of a SavedModel: its graph program, signatures, object graph and checkpoint."""
    import tensorflow as tf

    try:
        fingerprint = tf.saved_model.experimental.read_fingerprint(str(path))
    except Exception:  # no fingerprint written: not identifiable
        return None
    return "savedmodel:" + ":".join(str(value) for value in (
        fingerprint.graph_def_program_hash, fingerprint.signature_def_hash,
        fingerprint.saved_object_graph_hash, fingerprint.checkpoint_hash))
