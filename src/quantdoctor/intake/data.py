"""Calibration data: read from files or from the user's own representative_dataset generator.

Whatever the source, the samples become a `CalibrationSet` that keeps exactly what the user
gave, mistakes included (float64 arrays, bare arrays instead of lists, wrong keys, NaN), so the
data checks can name them. It is written once to an `.npz` that the isolated worker replays to
the converter, so the converter and the checks see the same samples.
"""

from __future__ import annotations

import inspect
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from quantdoctor.errors import DataLoadError
from quantdoctor.intake.array_files import NUMERIC_KINDS, NpzArchive, describe_dtype, read_npy
from quantdoctor.intake.paths import regular_file

DEFAULT_MAX_SAMPLES = 500
_FORMAT = "quantdoctor-calibration-1"


@dataclass
class Sample:
    """One item the representative dataset yielded.

    `kind` is how it was packaged: "list" (the documented form), "dict" (input name -> value),
    "signature" (a `(signature_key, dict)` tuple), "tuple" (any other tuple), "array" (a bare
    array where a list was expected) or "other" (anything else, kept as its repr in `note`).
    """

    kind: str
    values: dict[str, np.ndarray] = field(default_factory=dict)
    signature_key: str | None = None
    note: str | None = None
    # Items that are not numeric arrays (a function, None, text, a ragged list), by list position or
    # dict key: what was yielded, described (`describe_value`), since the object itself cannot be kept.
    not_arrays: dict[str, str] = field(default_factory=dict)

    @property
    def arrays(self) -> list[np.ndarray]:
        """The sample's arrays in the order they were given."""
        return list(self.values.values())

    @property
    def holds_non_arrays(self) -> bool:
        """True when the sample, or an item of it, is not a numeric array."""
        return self.kind == "other" or bool(self.not_arrays)

    def replay(self) -> Any:
        """The sample packaged as the user packaged it, for the converter. An item that was not an
        array comes back as a `NotAnArray` standing in for it."""
        items: dict[str, Any] = {**self.values, **{key: NotAnArray(what) for key, what in self.not_arrays.items()}}
        if self.kind in ("list", "tuple"):
            ordered = [items[key] for key in sorted(items, key=int)] if self.not_arrays else self.arrays
            return ordered if self.kind == "list" else tuple(ordered)
        if self.kind == "dict":
            return items
        if self.kind == "signature":
            return (self.signature_key, items)
        if self.kind == "array":
            return self.arrays[0]
        return NotAnArray(str(self.note))


class NotAnArray:
    """Stands in, when samples are replayed, for something a representative dataset yielded that is
    not a numeric array and cannot be stored (a function object, None, text). The converter fails
    on it where it fails on the original, which has no `shape` either: reading an attribute raises
    an AttributeError that names what was yielded."""

    def __init__(self, description: str) -> None:
        self.description = description

    def __getattr__(self, name: str) -> Any:
        if name == "description":  # not set yet (a copy made without __init__)
            raise AttributeError(name)
        raise AttributeError(f"the representative dataset yielded {self.description} where an array belongs: "
                             f"it has no attribute {name!r}")

    def __repr__(self) -> str:
        return self.description


@dataclass
class CalibrationSet:
    """The calibration samples plus what happened while collecting them."""

    samples: list[Sample]
    source: str
    truncated: bool = False
    generator_error: str | None = None
    available: int | None = None  # samples the source holds, when it can tell (files and arrays)

    def __len__(self) -> int:
        return len(self.samples)

    def replay(self) -> Iterable[Any]:
        """Yield the samples as the user's generator did, and fail where it failed."""
        for sample in self.samples:
            yield sample.replay()
        if self.generator_error is not None:
            raise RuntimeError(f"the representative dataset raised {self.generator_error}")

    def save(self, path: Path) -> None:
        """Write the samples to an `.npz` file that `load` (and the worker) reads back unchanged."""
        arrays: dict[str, np.ndarray] = {
            "__format__": np.array(_FORMAT),
            "__source__": np.array(self.source),
            "__truncated__": np.array(self.truncated),
            "__kinds__": np.array([s.kind for s in self.samples], dtype=str),
        }
        if self.generator_error is not None:
            arrays["__generator_error__"] = np.array(self.generator_error)
        for i, sample in enumerate(self.samples):
            for name, value in sample.values.items():
                arrays[f"{i}/v/{name}"] = value
            for name, what in sample.not_arrays.items():
                arrays[f"{i}/x/{name}"] = np.array(what)
            if sample.signature_key is not None:
                arrays[f"{i}/signature"] = np.array(sample.signature_key)
            if sample.note is not None:
                arrays[f"{i}/note"] = np.array(sample.note)
        np.savez(path, **arrays)

    @classmethod
    def load(cls, path: Path, max_samples: int | None = None) -> CalibrationSet:
        """Read a set written by `save` (its first `max_samples` samples with a limit)."""
        with NpzArchive(Path(path), text=True) as npz:
            return cls._from_archive(npz, max_samples)

    @classmethod
    def _from_archive(cls, npz: NpzArchive, max_samples: int | None) -> CalibrationSet:
        try:
            kinds = [str(k) for k in npz.read("__kinds__")]
            count = len(kinds) if max_samples is None else min(len(kinds), max_samples)
            samples = [Sample(kind=kind) for kind in kinds[:count]]
            for key in npz.names:
                if key.startswith("__"):
                    continue
                index, part, *rest = key.split("/", 2)
                if int(index) >= count:
                    continue
                sample = samples[int(index)]
                if part == "v":
                    value = npz.read(key)
                    if value.dtype.kind not in NUMERIC_KINDS:
                        raise DataLoadError(f"sample {index} holds {describe_dtype(value.dtype)}")
                    sample.values[rest[0]] = value
                elif part == "x":
                    sample.not_arrays[rest[0]] = str(npz.read(key))
                elif part == "signature":
                    sample.signature_key = str(npz.read(key))
                elif part == "note":
                    sample.note = str(npz.read(key))
            error = str(npz.read("__generator_error__")) if "__generator_error__" in npz.names else None
            truncated = bool(npz.read("__truncated__")) or count < len(kinds)
            return cls(samples, source=str(npz.read("__source__")), truncated=truncated, generator_error=error,
                       available=len(kinds))
        except (ValueError, IndexError, TypeError, DataLoadError) as exc:  # a member missing, a key `save` never writes
            raise DataLoadError(f"{npz.path.name} is not a valid quantdoctor calibration file: {exc}") from exc


def from_generator(dataset: Callable[[], Iterable[Any]] | Any,
                   max_samples: int = DEFAULT_MAX_SAMPLES) -> CalibrationSet:
    """Consume a representative_dataset callable once, keeping at most `max_samples` samples.

    An exception raised by the generator is recorded, not raised: the samples before it are kept.
    So is a generator object or dataset passed where the converter needs a function.
    """
    samples: list[Sample] = []
    error = None
    truncated = False
    name = getattr(dataset, "__name__", type(dataset).__name__)
    if not callable(dataset):
        return CalibrationSet([], source=f"representative_dataset {name}", generator_error=(
            f"TypeError: representative_dataset is a {type(dataset).__name__} object, not a function; the "
            "converter calls it, so pass the generator function itself (gen, not gen()), or wrap it: "
            "lambda: iter(dataset)"))
    source = f"representative_dataset {name}()"
    try:
        iterator = iter(dataset())
    except Exception as exc:  # the user's function failing is a finding, not a crash
        return CalibrationSet([], source=source, generator_error=_generator_error(exc, 0))
    while True:
        try:
            item = next(iterator, _END)
        except Exception as exc:  # the user's generator failing is a finding, not a crash
            error = _generator_error(exc, len(samples))
            break
        if item is _END:
            break
        if len(samples) == max_samples:
            truncated = True
            break
        samples.append(_package(item))
    return CalibrationSet(samples, source=source, truncated=truncated, generator_error=error)


_END = object()


def _generator_error(exc: Exception, position: int) -> str:
    """The user's exception, with where their generator raised it."""
    frame = traceback.extract_tb(exc.__traceback__)[-1]
    return f"{type(exc).__name__}: {exc} (at {Path(frame.filename).name}:{frame.lineno}, sample {position})"


def from_file(path: str | Path, max_samples: int = DEFAULT_MAX_SAMPLES,
              what: str = "calibration data") -> CalibrationSet:
    """Read calibration data from `.npz` (one array per input, samples along axis 0) or `.npy`.

    `.npz` keys are input names, or `arr_0`, `arr_1`, ... for inputs in order (a single array feeds
    the single input whatever its key). Each sample is one row with its batch axis kept (shape
    `(1, ...)`), as a representative dataset yields it. Only the first `max_samples` rows are read.
    """
    path = regular_file(Path(path), what, DataLoadError)
    if path.suffix == ".npy":
        array, header = read_npy(path, max_samples)
        return _stacked({"arr_0": array}, {"arr_0": header.rows}, str(path), max_samples)
    if path.suffix != ".npz":
        raise DataLoadError(f"unsupported data file '{path.name}': use .npz (one array per input) or .npy")
    with NpzArchive(path, text=True) as npz:
        if "__format__" in npz.names:
            return CalibrationSet._from_archive(npz, max_samples)
        counts = {}
        for name in npz.names:
            header = npz.header(name)
            if header.dtype.kind not in NUMERIC_KINDS:
                raise DataLoadError(f"{path.name}: array {name!r} holds {describe_dtype(header.dtype)}: data must "
                                    "be numeric arrays")
            counts[name] = header.rows
        _check_counts(counts, str(path))  # before reading any row
        arrays = {name: npz.read(name, max_samples) for name in npz.names}
    return _stacked(arrays, counts, str(path), max_samples)


def from_arrays(arrays: dict[str, np.ndarray], source: str = "arrays",
                max_samples: int = DEFAULT_MAX_SAMPLES) -> CalibrationSet:
    """Split stacked arrays (one per input, samples along axis 0) into batch-of-1 samples."""
    counts = {key: (len(a) if a.ndim else None) for key, a in arrays.items()}
    return _stacked(arrays, counts, source, max_samples)


def _stacked(arrays: dict[str, np.ndarray], counts: dict[str, int | None], source: str,
             max_samples: int) -> CalibrationSet:
    """Samples from arrays holding (at least) their first `max_samples` rows; `counts` are the full row counts."""
    if not arrays:
        return CalibrationSet([], source=source, available=0)
    _check_counts(counts, source)
    count = next(iter(counts.values())) or 0
    positional = len(arrays) == 1 or all(key == f"arr_{i}" for i, key in enumerate(arrays))
    kind = "list" if positional else "dict"
    samples = [Sample(kind=kind, values={key: a[i:i + 1] for key, a in arrays.items()})
               for i in range(min(count, max_samples))]
    return CalibrationSet(samples, source=source, truncated=count > max_samples, available=count)


def _check_counts(counts: dict[str, int | None], source: str) -> None:
    scalars = [key for key, count in counts.items() if count is None]
    if scalars:
        which = "holds a scalar" if len(counts) == 1 else f"array {scalars[0]!r} is a scalar"
        raise DataLoadError(f"{source} {which}, not samples: stack the samples of each input along axis 0, "
                            "shape (samples, ...)")
    if len(set(counts.values())) > 1:
        raise DataLoadError(f"{source}: arrays hold different sample counts {counts}; "
                            "each array must stack the samples of one input along axis 0")


def _package(item: Any) -> Sample:
    if isinstance(item, dict):
        return _packaged("dict", item.items())
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], dict):
        sample = _packaged("signature", item[1].items())
        sample.signature_key = str(item[0])
        return sample
    if isinstance(item, (list, tuple)):
        return _packaged("list" if isinstance(item, list) else "tuple", enumerate(item))
    if isinstance(item, np.ndarray) or hasattr(item, "numpy"):
        sample = _packaged("array", [("0", item)])
        return sample if sample.values else Sample("other", note=sample.not_arrays["0"])
    return Sample("other", note=describe_value(item))


def _packaged(kind: str, items: Iterable[tuple[Any, Any]]) -> Sample:
    """A sample of this packaging: its numeric arrays, and a description of every other item."""
    sample = Sample(kind)
    for key, value in items:
        array = _numeric_array(value)
        if array is None:
            sample.not_arrays[str(key)] = describe_value(value)
        else:
            sample.values[str(key)] = array
    return sample


def _numeric_array(value: Any) -> np.ndarray | None:
    """The value as a NumPy array of numbers (or booleans); None when it is not one."""
    try:
        if hasattr(value, "numpy"):
            value = value.numpy()
        array = np.asarray(value)
    except (ValueError, TypeError):  # ragged nesting, an object NumPy cannot convert
        return None
    return array if array.dtype.kind in NUMERIC_KINDS else None


def describe_value(value: Any) -> str:
    """What a yielded value that is not an array is, for messages: "the function 'load_image' (...)",
    "None", "the text 'cat.png'", "a list of 2 items that ...". After its article, the first word
    says what kind of value it is."""
    if value is None:
        return "None"
    if inspect.isfunction(value) or inspect.ismethod(value) or inspect.isbuiltin(value):
        return f"the function '{getattr(value, '__qualname__', value.__name__)}' (a function object, not its result)"
    if inspect.isclass(value):
        return f"the class '{value.__qualname__}' (a class, not an instance)"
    if inspect.isgenerator(value):
        return f"a generator object '{value.__qualname__}' (the generator, not its items)"
    if isinstance(value, (str, bytes)):
        text = repr(value)
        return f"the {'text' if isinstance(value, str) else 'bytes'} {text[:60] + '...' if len(text) > 60 else text}"
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of {len(value)} items that do not form an array of numbers"
    if hasattr(value, "numpy") or isinstance(value, np.ndarray):
        dtype = getattr(value, "dtype", None)
        return f"a {type(value).__name__} of {getattr(dtype, 'name', dtype)} values, not numbers"
    name = type(value).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name} object"
