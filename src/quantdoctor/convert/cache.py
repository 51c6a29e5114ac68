"""Calibrated conversions kept on disk, so `diagnose`, `compare` and `fix` calibrate once.

An entry is one successful calibrating conversion: the worker's response, the quantized model,
compare's float reference from the same conversion, and the calibrated float model with the
quantizer's arguments (from which accuracy budgets make their variants). It is keyed by:

- the model: a file's or SavedModel directory's bytes; for a model handed over as a Python object
  (exported to a SavedModel first), TensorFlow's own SavedModel fingerprint of that export, which
  is stable within one Python process;
- the calibration samples, exactly as recorded;
- the converter settings, the TensorFlow version and quantdoctor's own code.

The cache lives in `$QUANTDOCTOR_CACHE_DIR`, else `$XDG_CACHE_HOME/quantdoctor`, else
`~/.cache/quantdoctor`. Its directory is private (0700, owned by the user: anything else is not
used), its files 0600, and it holds at most `$QUANTDOCTOR_CACHE_MAX_MB` (default 1024) megabytes,
least recently used entries going first. `QUANTDOCTOR_NO_CACHE=1` turns it off.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

import quantdoctor
from quantdoctor.convert.protocol import read_json, write_json
from quantdoctor.intake.data import CalibrationSet
from quantdoctor.intake.model import ModelSource
from quantdoctor.intake.recipe import Recipe

DEFAULT_MAX_MB = 1024
_FORMAT = 1
# What a worker that kept everything leaves in its work directory, and what an entry holds.
RESPONSE, MODEL, FLOAT_TWIN, CALIBRATED, QUANTIZER = (
    "response.json", "model.tflite", "float_twin.tflite", "calibrated.tflite", "quantizer.json")
_ENTRY_FILES = (RESPONSE, MODEL, FLOAT_TWIN, CALIBRATED, QUANTIZER)


@dataclass(frozen=True)
class CachedConversion:
    """One entry: the worker's response and the paths of the models it made."""

    directory: Path

    @property
    def response(self) -> dict[str, Any]:
        return read_json(self.directory / RESPONSE)

    def path(self, name: str) -> Path:
        """The path of one of the entry's files (`MODEL`, `FLOAT_TWIN`, `CALIBRATED`, `QUANTIZER`)."""
        return self.directory / name


def cache_root() -> Path | None:
    """The private cache directory, created if needed; None when the cache is off or not safe to use."""
    if os.environ.get("QUANTDOCTOR_NO_CACHE", "") not in ("", "0"):
        return None
    configured = os.environ.get("QUANTDOCTOR_CACHE_DIR")
    if configured:
        root = Path(configured)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = Path(base) / "quantdoctor"
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = root.lstat()
    except OSError:
        return None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        return None  # a link, or someone else's directory: its models would be run as ours
    if info.st_mode & 0o077:
        root.chmod(0o700)
    return root


def conversion_key(source: ModelSource, recipe: Recipe, calibration: CalibrationSet | None, workdir: Path,
                   trust_model: bool) -> str | None:
    """The entry key for converting `source` with `recipe` on `calibration`; None when the model
    cannot be identified (then nothing is cached). Exports of Python objects lie in `workdir`.
    `trust_model` is part of the key: a model refused without it is never served from the cache."""
    model_digest = _model_digest(source, workdir)
    if model_digest is None:
        return None
    loading = {key: value for key, value in source.request().items() if key != "path"}
    parts = {"format": _FORMAT, "model": model_digest, "loading": loading, "trust_model": trust_model,
             "recipe": recipe.to_dict(),
             "data": data_digest(calibration) if calibration is not None else None,
             "tensorflow": _tensorflow_version(), "quantdoctor": _code_digest()}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def lookup(key: str) -> CachedConversion | None:
    """The entry for `key`, marked as recently used; None when absent or incomplete."""
    root = cache_root()
    if root is None:
        return None
    entry = root / key
    if not all((entry / name).is_file() for name in _ENTRY_FILES):
        return None
    try:
        os.utime(entry)
    except OSError:
        return None
    return CachedConversion(entry)


def store(key: str, workdir: Path, response: dict[str, Any]) -> None:
    """Keep a worker's successful calibrating conversion from `workdir` (skipped when a file is missing)."""
    root = cache_root()
    sources = {name: workdir / name for name in _ENTRY_FILES if name != RESPONSE}
    if root is None or (root / key).exists() or not all(path.is_file() for path in sources.values()):
        return
    partial = Path(tempfile.mkdtemp(prefix=".partial-", dir=root))
    try:
        write_json(partial / RESPONSE, response)
        for name, path in sources.items():
            shutil.copyfile(path, partial / name)
        for path in partial.iterdir():
            path.chmod(0o600)
        os.rename(partial, root / key)  # atomic; fails when another process stored it first
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)
        return
    _evict(root, _max_bytes())


def data_digest(calibration: CalibrationSet) -> str:
    """A digest of the samples exactly as recorded: packaging, names, dtypes, shapes and values."""
    digest = hashlib.sha256()
    for sample in calibration.samples:
        digest.update(json.dumps([sample.kind, sample.signature_key, sample.note, sample.not_arrays]).encode())
        for name, array in sample.values.items():
            digest.update(json.dumps([name, array.dtype.str, list(array.shape)]).encode())
            digest.update(array.tobytes())
    digest.update(json.dumps([calibration.truncated, calibration.generator_error]).encode())
    return digest.hexdigest()


def _model_digest(source: ModelSource, workdir: Path) -> str | None:
    path = Path(source.path)
    if workdir.resolve() in path.resolve().parents:  # exported here from a Python object
        return _export_digest(path) if path.is_dir() else None
    return _files_digest(path)


def _files_digest(path: Path, suffixes: tuple[str, ...] | None = None) -> str:
    """A digest of a file, or of a directory's files (those with `suffixes` when given) and their
    relative paths."""
    digest = hashlib.sha256()
    files = [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and (suffixes is None or p.suffix in suffixes)
                       and "__pycache__" not in p.parts)
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode() + b"\0")
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _export_digest(path: Path) -> str | None:
    """TensorFlow's fingerprint of a SavedModel exported from a Python object: its graph program,
    signatures, object graph and checkpoint (the export's bytes differ from one export to the next)."""
    import tensorflow as tf

    try:
        fingerprint = tf.saved_model.experimental.read_fingerprint(str(path))
    except Exception:  # no fingerprint written: not identifiable
        return None
    return "savedmodel:" + ":".join(str(value) for value in (
        fingerprint.graph_def_program_hash, fingerprint.signature_def_hash,
        fingerprint.saved_object_graph_hash, fingerprint.checkpoint_hash))


def _tensorflow_version() -> str | None:
    for name in ("tensorflow-cpu", "tensorflow"):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


@lru_cache(maxsize=1)
def _code_digest() -> str:
    """A digest of quantdoctor's own code and data: an entry made by other code is not reused."""
    return _files_digest(Path(quantdoctor.__file__).resolve().parent, (".py", ".json"))


def _max_bytes() -> int:
    try:
        return int(float(os.environ.get("QUANTDOCTOR_CACHE_MAX_MB", DEFAULT_MAX_MB)) * 1024 * 1024)
    except ValueError:
        return DEFAULT_MAX_MB * 1024 * 1024


def _evict(root: Path, max_bytes: int) -> None:
    """Remove least recently used entries until the cache holds at most `max_bytes`."""
    entries = []
    for entry in root.iterdir():
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        try:
            entries.append((entry.stat().st_mtime, sum(f.stat().st_size for f in entry.iterdir()), entry))
        except OSError:
            continue
    total = sum(size for _, size, _ in entries)
    for _, size, entry in sorted(entries, key=lambda item: item[0]):
        if total <= max_bytes:
            break
        shutil.rmtree(entry, ignore_errors=True)
        total -= size
