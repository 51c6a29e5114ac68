"""Read `.npy` and `.npz` files the user gives: only the rows that are used, never pickled objects.

A `.npz` is a zip archive of `.npy` members. Each member's header (shape, dtype, order) is read
first and checked against the bytes the member really holds, so a header declaring terabytes
is refused before any allocation. Then only the first rows are read from the member's stream
(a `.npy` file is memory-mapped): a 1 GB file read for 500 samples costs the 500 samples.
Anything malformed is a `DataLoadError` of one line.
"""

from __future__ import annotations

import math
import struct
import tokenize
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from quantdoctor.errors import DataLoadError

NUMERIC_KINDS = "biufc"
REAL_KINDS = "iuf"  # what has a range: complex values have none (NumPy would drop their imaginary part)
_TEXT_KINDS = "US"
_CHUNK = 16 * 1024 * 1024
# What the zip module and zlib raise on a damaged archive or member.
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, struct.error, ValueError, OSError)
# What NumPy's header parser raises on a malformed header (it tokenizes headers written by Python 2).
_HEADER_ERRORS = (ValueError, SyntaxError, TypeError, RecursionError, MemoryError, tokenize.TokenError)


@dataclass(frozen=True)
class ArrayHeader:
    """A `.npy` header: what the array declares to be, and where its data starts."""

    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    data_offset: int

    @property
    def rows(self) -> int | None:
        """Samples along axis 0; None for a 0-d array."""
        return self.shape[0] if self.shape else None

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def read_npy(path: Path, rows: int | None = None, *, text: bool = False) -> tuple[np.ndarray, ArrayHeader]:
    """The first `rows` rows (all with None) of a `.npy` file, and its header.

    The file is memory-mapped: only the pages of those rows are read.
    """
    with open(path, "rb") as stream:
        header = _read_header(stream, path.name, path.stat().st_size, text)
    count = header.rows if rows is None or header.rows is None else min(rows, header.rows)
    if header.nbytes == 0 or count == 0:
        return np.zeros(_head_shape(header.shape, count), header.dtype), header
    order = "F" if header.fortran_order else "C"
    mapped = np.memmap(path, dtype=header.dtype, mode="r", offset=header.data_offset, shape=header.shape,
                       order=order)
    try:
        return np.array(mapped[:count] if header.shape else mapped), header
    finally:
        del mapped


class NpzArchive:
    """A `.npz` file opened for reading member by member (use as a context manager)."""

    def __init__(self, path: Path, *, text: bool = False):
        self.path = path
        self._text = text
        try:
            self._zip = zipfile.ZipFile(path)
            infos = self._zip.infolist()
        except _ZIP_ERRORS as exc:
            raise DataLoadError(f"{path.name} is not a valid .npz file (a zip archive of .npy arrays): "
                                f"{_reason(exc)}") from exc
        self._members = {}
        for info in infos:
            if info.is_dir():
                continue
            if not info.filename.endswith(".npy"):
                raise DataLoadError(f"{path.name}: member {info.filename!r} is not a .npy array; save the data "
                                    "with np.savez")
            self._members[info.filename[:-len(".npy")]] = info
        self._headers: dict[str, ArrayHeader] = {}

    def __enter__(self) -> NpzArchive:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._zip.close()

    @property
    def names(self) -> list[str]:
        """The array names, in archive order (np.savez's `arr_0`, `arr_1`, ... or the keywords used)."""
        return list(self._members)

    def header(self, name: str) -> ArrayHeader:
        """The header of member `name`, checked against the member's size."""
        if name not in self._headers:
            info = self._info(name)
            with self._open(info) as stream:
                self._headers[name] = _read_header(stream, f"{self.path.name}:{name!r}", info.file_size, self._text)
        return self._headers[name]

    def read(self, name: str, rows: int | None = None) -> np.ndarray:
        """The first `rows` rows of member `name` (all with None), read from the member's stream."""
        header = self.header(name)
        count = header.rows if rows is None or header.rows is None else min(rows, header.rows)
        shape = _head_shape(header.shape, count)
        wanted = math.prod(shape) * header.dtype.itemsize
        if header.fortran_order and count != header.rows:
            wanted = header.nbytes  # rows of a Fortran-ordered array are spread over all of it
        info = self._info(name)
        with self._open(info) as stream:
            _skip(stream, header.data_offset, f"{self.path.name}:{name!r}")
            data = _read_exactly(stream, wanted, f"{self.path.name}:{name!r}")
        if header.fortran_order:
            array = np.frombuffer(data, header.dtype, count=math.prod(header.shape)).reshape(header.shape, order="F")
            return np.array(array[:count] if header.shape else array)
        return np.frombuffer(data, header.dtype).reshape(shape)

    def _info(self, name: str) -> zipfile.ZipInfo:
        if name not in self._members:
            raise DataLoadError(f"{self.path.name} has no array {name!r}")
        return self._members[name]

    def _open(self, info: zipfile.ZipInfo) -> IO[bytes]:
        try:
            return self._zip.open(info)
        except (*_ZIP_ERRORS, RuntimeError) as exc:  # RuntimeError: an encrypted member
            raise DataLoadError(f"{self.path.name}: cannot read member {info.filename!r}: {_reason(exc)}") from exc


def _read_header(stream: IO[bytes], name: str, size: int, text: bool) -> ArrayHeader:
    """Parse and check a `.npy` header; `size` is the number of bytes the member or file holds."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(stream)
        if version == (1, 0):
            shape, fortran_order, dtype = fmt.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, fortran_order, dtype = fmt.read_array_header_2_0(stream)
        else:
            raise DataLoadError(f"{name}: unsupported .npy format version {version[0]}.{version[1]}; "
                                "save it again with np.save")
        offset = stream.tell()
    except _ZIP_ERRORS + _HEADER_ERRORS as exc:
        if "magic string" in str(exc):
            raise DataLoadError(f"{name} is not a NumPy .npy array (it lacks the NUMPY header)") from exc
        raise DataLoadError(f"{name}: corrupt .npy header: {_reason(exc)}") from exc
    if any(dim < 0 for dim in shape):
        raise DataLoadError(f"{name}: corrupt .npy header: negative dimension in shape {shape}")
    if dtype.hasobject:
        raise DataLoadError(f"{name} holds Python objects (pickled data), which quantdoctor never loads: "
                            "save numeric arrays")
    if dtype.kind not in NUMERIC_KINDS + (_TEXT_KINDS if text else ""):
        raise DataLoadError(f"{name} holds {describe_dtype(dtype)}: data must be numeric arrays")
    header = ArrayHeader(tuple(shape), dtype, fortran_order, offset)
    if offset + header.nbytes > size:
        raise DataLoadError(f"{name}: the header declares {_human(header.nbytes)} of data (shape {header.shape}, "
                            f"{dtype}) but the file holds {_human(max(size - offset, 0))}: it is truncated or "
                            "corrupt")
    return header


def describe_dtype(dtype: np.dtype) -> str:
    """"text (<U5)", "structured records (...)" or "float32 values": what an array holds, for messages."""
    if dtype.kind in _TEXT_KINDS:
        return f"text ({dtype.str})"
    if dtype.names:
        return f"structured records ({dtype})"
    return f"{dtype} values"


def _head_shape(shape: tuple[int, ...], count: int | None) -> tuple[int, ...]:
    return (count, *shape[1:]) if shape else ()


def _skip(stream: IO[bytes], offset: int, name: str) -> None:
    try:
        stream.read(offset)
    except _ZIP_ERRORS as exc:
        raise DataLoadError(f"{name}: corrupt member: {_reason(exc)}") from exc


def _read_exactly(stream: IO[bytes], size: int, name: str) -> bytearray:
    """`size` bytes from a member's stream, in chunks, so memory follows the data really there."""
    data = bytearray()
    try:
        while len(data) < size:
            chunk = stream.read(min(_CHUNK, size - len(data)))
            if not chunk:
                raise DataLoadError(f"{name}: the member ends after {_human(len(data))} of the "
                                    f"{_human(size)} its header declares: it is truncated or corrupt")
            data += chunk
    except _ZIP_ERRORS as exc:
        raise DataLoadError(f"{name}: corrupt member: {_reason(exc)}") from exc
    return data


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]


def _human(size: int) -> str:
    """1536 -> "1.5 KiB"."""
    if size < 1024:
        return f"{size} bytes"
    exponent = min(int(math.log(size, 1024)), 4)
    return f"{size / 1024 ** exponent:.1f} {('KiB', 'MiB', 'GiB', 'TiB')[exponent - 1]}"
