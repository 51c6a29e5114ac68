"""Calibration data: read from files or from the user's own representative_dataset generator.

Whatever the source, the samples become a `CalibrationSet` that keeps exactly what the user
gave, mistakes included (float64 arrays, bare arrays instead of lists, wrong keys, NaN), so the
data checks can name them. It is written once to an `.npz` that the isolated worker replays to
the converter, so the converter and the checks see the same samples.
"""

from __future__ import annotations

import itertools
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from quantdoctor.errors import DataLoadError

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

    @property
    def arrays(self) -> list[np.ndarray]:
        """The sample's arrays in the order they were given."""
        return list(self.values.values())

    def replay(self) -> Any:
        """The sample packaged as the user packaged it, for the converter."""
        if self.kind == "list":
            return self.arrays
        if self.kind == "tuple":
            return tuple(self.arrays)
        if self.kind == "dict":
            return dict(self.values)
        if self.kind == "signature":
            return (self.signature_key, dict(self.values))
        if self.kind == "array":
            return self.arrays[0]
        return self.note


@dataclass
class CalibrationSet:
    """The calibration samples plus what happened while collecting them."""

    samples: list[Sample]
    source: str
    truncated: bool = False
    generator_error: str | None = None

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
            if sample.signature_key is not None:
                arrays[f"{i}/signature"] = np.array(sample.signature_key)
            if sample.note is not None:
                arrays[f"{i}/note"] = np.array(sample.note)
        np.savez(path, **arrays)

    @classmethod
    def load(cls, path: Path) -> CalibrationSet:
        """Read a set written by `save`."""
        with np.load(path, allow_pickle=False) as npz:
            kinds = [str(k) for k in npz["__kinds__"]]
            samples = [Sample(kind=kind) for kind in kinds]
            for key in npz.files:
                if key.startswith("__"):
                    continue
                index, part, *rest = key.split("/", 2)
                sample = samples[int(index)]
                if part == "v":
                    sample.values[rest[0]] = npz[key]
                elif part == "signature":
                    sample.signature_key = str(npz[key])
                elif part == "note":
                    sample.note = str(npz[key])
            error = str(npz["__generator_error__"]) if "__generator_error__" in npz.files else None
            return cls(samples, source=str(npz["__source__"]), truncated=bool(npz["__truncated__"]),
                       generator_error=error)


def from_generator(dataset: Callable[[], Iterable[Any]] | Any, max_samples: int = DEFAULT_MAX_SAMPLES) -> CalibrationSet:
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
    try:
        iterator = iter(dataset())
        for item in itertools.islice(iterator, max_samples):
            samples.append(_package(item))
        truncated = len(samples) == max_samples and next(iterator, _END) is not _END
    except Exception as exc:  # the user's generator failing is a finding, not a crash
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        error = f"{type(exc).__name__}: {exc} (at {Path(frame.filename).name}:{frame.lineno}, sample {len(samples)})"
    return CalibrationSet(samples, source=f"representative_dataset {name}()", truncated=truncated,
                          generator_error=error)


_END = object()


def from_file(path: str | Path, max_samples: int = DEFAULT_MAX_SAMPLES) -> CalibrationSet:
    """Read calibration data from `.npz` (one array per input, samples along axis 0) or `.npy`.

    `.npz` keys are input names, or `arr_0`, `arr_1`, ... for inputs in order (a single array feeds
    the single input whatever its key). Each sample is one
    row with its batch axis kept (shape `(1, ...)`), as a representative dataset yields it.
    """
    path = Path(path)
    if not path.exists():
        raise DataLoadError(f"calibration data not found: {path}")
    try:
        if path.suffix == ".npy":
            arrays = {"arr_0": np.load(path, allow_pickle=False)}
        elif path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                if "__format__" in npz.files:
                    return CalibrationSet.load(path)
                arrays = {key: npz[key] for key in npz.files}
        else:
            raise DataLoadError(f"unsupported data file '{path.name}': use .npz (one array per input) or .npy")
    except (OSError, ValueError) as exc:
        raise DataLoadError(f"cannot read calibration data {path}: {exc}") from exc
    return from_arrays(arrays, source=str(path), max_samples=max_samples)


def from_arrays(arrays: dict[str, np.ndarray], source: str = "arrays",
                max_samples: int = DEFAULT_MAX_SAMPLES) -> CalibrationSet:
    """Split stacked arrays (one per input, samples along axis 0) into batch-of-1 samples."""
    if not arrays:
        return CalibrationSet([], source=source)
    counts = {key: (len(a) if a.ndim else 0) for key, a in arrays.items()}
    if len(set(counts.values())) != 1:
        raise DataLoadError(f"{source}: arrays hold different sample counts {counts}; "
                            "each array must stack the samples of one input along axis 0")
    count = next(iter(counts.values()))
    positional = len(arrays) == 1 or all(key == f"arr_{i}" for i, key in enumerate(arrays))
    kind = "list" if positional else "dict"
    samples = [Sample(kind=kind, values={key: a[i:i + 1] for key, a in arrays.items()})
               for i in range(min(count, max_samples))]
    return CalibrationSet(samples, source=source, truncated=count > max_samples)


def _package(item: Any) -> Sample:
    if isinstance(item, dict):
        return Sample("dict", values={str(k): _to_array(v) for k, v in item.items()})
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], dict):
        return Sample("signature", values={str(k): _to_array(v) for k, v in item[1].items()},
                      signature_key=str(item[0]))
    if isinstance(item, (list, tuple)):
        kind = "list" if isinstance(item, list) else "tuple"
        return Sample(kind, values={str(i): _to_array(v) for i, v in enumerate(item)})
    if isinstance(item, np.ndarray) or hasattr(item, "numpy"):
        return Sample("array", values={"0": _to_array(item)})
    return Sample("other", note=repr(item)[:200])


def _to_array(value: Any) -> np.ndarray:
    if hasattr(value, "numpy"):
        value = value.numpy()
    return np.asarray(value)
