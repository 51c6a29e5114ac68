"""Calibrated conversions kept on disk, so `diagnose`, `compare` and `fix` calibrate once.

An entry is one successful calibrating conversion: the worker's response, the quantized model,
compare's float reference from the same conversion, and the calibrated float model with the
quantizer's arguments (from which accuracy budgets make their variants). Its key digests:

- the model: the bytes of the file or SavedModel directory the worker actually loaded, digested
  by the worker itself (`convert/model_identity.py`; a model that changed during the conversion
  is not stored); for a model handed over as a Python object (exported to a SavedModel first),
  TensorFlow's own SavedModel fingerprint of that export, stable within one Python process;
- the calibration samples, exactly as recorded;
- how the model is loaded, the converter settings, the TensorFlow version and quantdoctor's own code.

Where the cache lives and how large it grows: `intake/cache_settings.py`. The rules:

- Only entries quantdoctor made are read or removed: a directory named by a key (64 hex digits),
  the user's own and not a link, holding the marker file with its exact text. Anything else under
  the root is never read, removed or changed, and the root's mode is never changed: a missing root
  is created private (0700); an existing one is used only when it is the user's own directory and
  no one else can write in it.
- An entry is written in a temporary directory beside it and renamed into place, so a reader never
  sees half of one, and of two runs storing one key the first wins.
- Every file of an entry has its SHA-256 in the entry's manifest. A lookup copies the entry into the
  run's private work directory, checking each file as it goes; any read, parse or checksum failure
  is a miss: the entry is removed and the conversion runs as if uncached.
- Past the size bound, least recently used entries go first.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import secrets
import stat
import tempfile
import time
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from quantdoctor.convert.model_identity import FILES, FINGERPRINT, ModelDigest
from quantdoctor.intake.cache_settings import cache_settings
from quantdoctor.intake.data import CalibrationSet
from quantdoctor.intake.model import ModelSource
from quantdoctor.intake.recipe import Recipe

_FORMAT = 2
# What a worker that kept everything leaves in its work directory, and what an entry holds.
RESPONSE, MODEL, FLOAT_TWIN, CALIBRATED, QUANTIZER = (
    "response.json", "model.tflite", "float_twin.tflite", "calibrated.tflite", "quantizer.json")
# What an entry's response holds besides the worker's own fields: the seconds the worker took.
WORKER_SECONDS = "worker_seconds"
_ENTRY_FILES = (RESPONSE, MODEL, FLOAT_TWIN, CALIBRATED, QUANTIZER)
_MARKER, _MANIFEST = "quantdoctor-entry", "manifest.json"
_MARKER_TEXT = b"quantdoctor conversion cache entry\n"
_KEY = re.compile(r"[0-9a-f]{64}")
_PARTIAL = ".partial-"  # an entry being written
_STALE_PARTIAL_SECONDS = 3600  # a partial entry this old was left by a run that died while writing it
_BLOCK = 1 << 20


@dataclass(frozen=True)
class ConversionKey:
    """Everything that identifies a calibrating conversion but the model's bytes, and where and how to
    digest those (`model_identity.FILES` or `FINGERPRINT`)."""

    settings: str
    model_path: Path
    identity: str

    def entry_name(self, model_digest: str) -> str:
        """The entry's name for the model whose digest is `model_digest`."""
        return hashlib.sha256(f"{_FORMAT}\0{self.settings}\0{model_digest}".encode()).hexdigest()


@dataclass(frozen=True)
class CachedConversion:
    """One entry, checked and copied into a private directory: the worker's response and the models it made."""

    directory: Path
    response: dict[str, Any]

    def path(self, name: str) -> Path:
        """The path of one of the entry's files (`MODEL`, `FLOAT_TWIN`, `CALIBRATED`, `QUANTIZER`)."""
        return self.directory / name


def conversion_key(source: ModelSource, recipe: Recipe, calibration: CalibrationSet | None, workdir: Path,
                   trust_model: bool) -> ConversionKey | None:
    """The key for converting `source` with `recipe` on `calibration`; None when the cache is off or the
    model cannot be identified (then nothing is cached). Exports of Python objects lie in `workdir`.
    `trust_model` is part of the key: a model refused without it is never served from the cache."""
    if cache_settings().root is None:
        return None
    path = Path(source.path)
    identity = FILES
    if workdir.resolve() in path.resolve().parents:  # exported here from a Python object
        if not path.is_dir():
            return None  # a frozen graph: its bytes differ from one export to the next, and it has no fingerprint
        identity = FINGERPRINT
    loading = {key: value for key, value in source.request().items() if key != "path"}
    parts = {"loading": loading, "trust_model": trust_model, "recipe": recipe.to_dict(),
             "data": data_digest(calibration) if calibration is not None else None,
             "tensorflow": _tensorflow_version(), "quantdoctor": _code_digest()}
    return ConversionKey(hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest(),
                         path, identity)


def lookup(key: ConversionKey, workdir: Path) -> CachedConversion | None:
    """The entry for the model as it is now, checked and copied into a new directory in `workdir`, and
    marked as recently used; None when there is none, or when it fails a check (then it is removed)."""
    root = _root(create=False)
    digest = ModelDigest.take(key.model_path, key.identity) if root is not None else None
    if root is None or digest is None:
        return None
    entry = root / key.entry_name(digest.digest)
    if not _is_entry(entry):
        return None
    try:
        copy = Path(tempfile.mkdtemp(prefix="cached-", dir=workdir))
    except OSError:
        return None
    try:
        response = _copy_checked(entry, copy)
    except (OSError, ValueError, RecursionError):  # unreadable, truncated, tampered with: a miss; the entry goes
        _discard(entry)
        _remove_entry(copy)
        return None
    try:
        os.utime(entry)
    except OSError:
        pass
    return CachedConversion(copy, response)


def store(key: ConversionKey, model_digest: str | None, workdir: Path, response: dict[str, Any]) -> None:
    """Keep a worker's successful calibrating conversion from `workdir`, keyed on `model_digest`, the
    worker's digest of the model it loaded (None when the model changed while it worked: nothing is
    stored). Skipped when a file is missing or the entry exists."""
    root = _root(create=True)
    sources = {name: workdir / name for name in _ENTRY_FILES if name != RESPONSE}
    if root is None or model_digest is None or not all(path.is_file() for path in sources.values()):
        return
    entry = root / key.entry_name(model_digest)
    if os.path.lexists(entry):
        return
    try:
        partial = Path(tempfile.mkdtemp(prefix=_PARTIAL, dir=root))
    except OSError:
        return
    try:
        _write_new(partial / _MARKER, _MARKER_TEXT)  # first: a partial entry left by a killed run is recognisable
        checksums = {RESPONSE: _write_new(partial / RESPONSE, json.dumps(response, default=str).encode())}
        for name, path in sources.items():
            checksums[name] = _copy_new(path, partial / name)
        _write_new(partial / _MANIFEST, json.dumps({"format": _FORMAT, "key": entry.name,
                                                     "files": checksums}).encode())
        if os.path.lexists(entry):
            raise FileExistsError(entry)
        os.rename(partial, entry)  # atomic; refused when another run stored this key first
    except OSError:
        _remove_entry(partial)
        return
    _evict(root, cache_settings().max_bytes)


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


def _root(create: bool) -> Path | None:
    """The cache root when it may be used (created private when missing and `create`); None otherwise."""
    root = cache_settings().root
    if root is None:
        return None
    try:
        if create:
            _make_private_directories(root)
        info = os.lstat(root)
    except OSError:
        return None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
        return None  # a link, someone else's directory, or one others write in: its models would be trusted
    return root


def _make_private_directories(path: Path) -> None:
    """Create `path` and the missing directories above it, each 0700 (existing ones stay as they are)."""
    missing = []
    while not os.path.lexists(path) and path != path.parent:
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            pass


def _is_entry(directory: Path, name: re.Pattern[str] | None = _KEY) -> bool:
    """True for a directory quantdoctor made: named by a key (when `name` is given), the user's own,
    not a link, with the marker file holding its exact text."""
    if name is not None and not name.fullmatch(directory.name):
        return False
    try:
        info = os.lstat(directory)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            return False
        return _read_small(directory / _MARKER, len(_MARKER_TEXT) + 1) == _MARKER_TEXT
    except OSError:
        return False


def _copy_checked(entry: Path, copy: Path) -> dict[str, Any]:
    """Copy the entry's files into `copy`, checking each against the manifest; the parsed response.
    A ValueError or an OSError when anything is missing, unparsable or not as written."""
    manifest = json.loads(_read_small(entry / _MANIFEST, 1 << 16))
    if not isinstance(manifest, dict):
        raise ValueError("the manifest is not an object")
    checksums = manifest.get("files")
    if (manifest.get("format") != _FORMAT or manifest.get("key") != entry.name or not isinstance(checksums, dict)
            or set(checksums) != set(_ENTRY_FILES)):
        raise ValueError("not an entry of this format")
    for name in _ENTRY_FILES:
        if _copy_new(entry / name, copy / name) != checksums[name]:
            raise ValueError(f"{name} does not match its checksum")
    response = json.loads((copy / RESPONSE).read_bytes())
    quantizer = json.loads((copy / QUANTIZER).read_bytes())
    if not isinstance(response, dict) or response.get("outcome") != "ok" or not isinstance(quantizer, dict):
        raise ValueError("not a successful conversion")
    return response


def _read_small(path: Path, limit: int) -> bytes:
    """At most `limit` bytes of a regular file, never through a link."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        return os.read(descriptor, limit)
    finally:
        os.close(descriptor)


def _copy_new(source: Path, target: Path) -> str:
    """Copy the regular file `source` (never through a link) to the new private file `target`; the
    SHA-256 of what was copied."""
    digest = hashlib.sha256()
    descriptor = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with open(descriptor, "rb") as reader:
        if not stat.S_ISREG(os.fstat(reader.fileno()).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(source))
        with _open_new(target) as writer:
            for block in iter(lambda: reader.read(_BLOCK), b""):
                digest.update(block)
                writer.write(block)
    return digest.hexdigest()


def _write_new(target: Path, content: bytes) -> str:
    """Write `content` to the new private file `target`; its SHA-256."""
    with _open_new(target) as writer:
        writer.write(content)
    return hashlib.sha256(content).hexdigest()


def _open_new(path: Path):
    return open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600), "wb")


def _remove_entry(directory: Path) -> None:
    """Remove an entry (or a partial one, or a lookup's copy) quantdoctor made: its own files, the
    marker last, then the directory if nothing else is in it."""
    for name in (*_ENTRY_FILES, _MANIFEST, _MARKER):
        try:
            os.unlink(directory / name)
        except OSError:
            pass
    try:
        os.rmdir(directory)
    except OSError:
        pass


def _discard(entry: Path) -> None:
    """Remove an entry of the cache root: first renamed out of its key's name (atomic, so of two runs
    discarding it one does), then emptied. Emptied in place, the key's directory could meanwhile receive
    another run's new entry (a rename onto an empty directory succeeds), which the remover would then take
    half of, leaving a directory that is no entry and that blocks its key for good."""
    removed = entry.parent / f"{_PARTIAL}{secrets.token_hex(8)}"
    try:
        os.rename(entry, removed)
    except OSError:  # gone already, or renamed by another run
        return
    _remove_entry(removed)


def _evict(root: Path, max_bytes: int) -> None:
    """Remove partial entries left by runs that died, then least recently used entries until the cache
    holds at most `max_bytes`. Only quantdoctor's own entries are considered. Runs that store at once
    evict one after the other (a lock on the root): two at the same time would both count one victim
    as removed and leave the cache over its bound."""
    try:
        lock = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _evict_locked(root, max_bytes)
    finally:
        os.close(lock)  # releases the lock


def _evict_locked(root: Path, max_bytes: int) -> None:
    entries = []
    now = time.time()
    try:
        children = list(root.iterdir())
    except OSError:
        return
    for child in children:
        if child.name.startswith(_PARTIAL):
            try:
                if now - os.lstat(child).st_mtime > _STALE_PARTIAL_SECONDS and _is_entry(child, name=None):
                    _remove_entry(child)
            except OSError:
                pass
            continue
        if not _is_entry(child):
            continue
        try:
            size = sum(os.lstat(child / name).st_size for name in (*_ENTRY_FILES, _MANIFEST, _MARKER)
                       if os.path.lexists(child / name))
            entries.append((os.lstat(child).st_mtime, size, child))
        except OSError:
            continue
    total = sum(size for _, size, _ in entries)
    for _, size, entry in sorted(entries, key=lambda item: item[0]):
        if total <= max_bytes:
            break
        _discard(entry)
        total -= size


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
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parents[1]
    for file in sorted(p for p in package.rglob("*") if p.suffix in (".py", ".json") and p.is_file()
                       and "__pycache__" not in p.parts):
        digest.update(file.relative_to(package).as_posix().encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()
