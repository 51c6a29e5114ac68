"""Labels for compare's accuracy, and for a metric of the user's: checked before any work.

For accuracy, one class index per eval sample.
Accepted: integer indices (shape `(n,)` or `(n, 1)`), floats that are whole numbers, and one-hot
rows (shape `(n, classes)`, each row a single 1), which are read by argmax and reported as such.
Everything else is a UsageError of one line: a scalar, other 2-D arrays, text, pickled objects,
fractional or negative values, and a count that differs from the eval samples' (extra labels
are an error, not silently cut). With a metric, labels that are not class indices (regression
targets, one row of numbers per sample) are handed to it as given; the count is checked all the same.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from quantdoctor.errors import UsageError
from quantdoctor.intake.array_files import NUMERIC_KINDS, describe_dtype, read_npy
from quantdoctor.intake.data import CalibrationSet
from quantdoctor.intake.paths import regular_file
from quantdoctor.runtime.feed import natural_key


@dataclass(frozen=True)
class Labels:
    """The labels of the eval samples used: `values` as given (for a metric), `classes` one class index
    each (for accuracy; None when they are not class labels), and how they were given ("indices",
    "one-hot", or "values" for a metric's own targets)."""

    values: np.ndarray
    classes: np.ndarray | None
    given_as: str


def read_labels(labels: Any, evaluation: CalibrationSet, for_metric: bool = False) -> Labels | None:
    """The labels for the eval samples compare runs on; None stays None. `for_metric`: a metric of the
    user's reads them, so labels that are not class indices are kept as given rather than refused."""
    if labels is None:
        return None
    if isinstance(labels, (str, Path)):
        path = regular_file(Path(labels), "labels")
        if path.suffix != ".npy":
            raise UsageError(f"labels {path.name}: give a .npy file with one class index per eval sample")
        values, _ = read_npy(path)
    else:
        values = np.asarray(labels)
        if values.dtype.kind not in NUMERIC_KINDS:
            raise UsageError(f"labels hold {describe_dtype(values.dtype)}: give one class index per eval sample")
    try:
        classes, given_as = _class_indices(values)
    except UsageError:
        if not for_metric or values.ndim == 0:
            raise
        classes, given_as = None, "values"
    expected = evaluation.available if evaluation.available is not None else len(evaluation)
    too_few = len(values) < len(evaluation)
    if too_few or (len(values) != expected and not (evaluation.truncated and evaluation.available is None)):
        raise UsageError(f"{len(values)} labels for {expected} eval samples: give exactly one label per sample")
    used = len(evaluation)
    return Labels(values[:used], None if classes is None else classes[:used], given_as)


def metric_number(value: Any) -> float:
    """What a metric of the user's returned, as a number; a UsageError when it is none (an array, a
    string) or not a finite one (NaN, infinity)."""
    try:
        number = float(value) if not isinstance(value, (str, bytes)) else None
    except (TypeError, ValueError):
        number = None
    if number is None:
        raise UsageError(f"the metric returned {type(value).__name__}, not a number: reduce it to one "
                         "(np.mean(...))")
    if not np.isfinite(number):
        raise UsageError(f"the metric returned {number}: check it on the float model's outputs")
    return number


def check_classes(labels: Labels | None, output_shape: list[int], for_metric: bool = False) -> Labels | None:
    """The labels, checked against the first output: class labels need one of shape (samples, classes)
    and must name classes it has. With a metric, whole numbers that name no classes of the output are
    the metric's own values (no classes), not an error."""
    if labels is None or labels.classes is None:
        return labels
    problem = None
    if len(output_shape) != 2 or output_shape[-1] < 2:
        problem = (f"labels need a model whose first output is (samples, classes) scores; this one's is "
                   f"shaped {tuple(output_shape)}: pass a metric instead")
    elif int(labels.classes.max()) >= output_shape[-1]:
        problem = (f"label {int(labels.classes.max())} names a class the model does not have: its first output "
                   f"has {output_shape[-1]} classes (0 to {output_shape[-1] - 1})")
    if problem is None:
        return labels
    if for_metric:
        return replace(labels, classes=None, given_as="values")
    raise UsageError(problem)


def labels_for_model(labels: Labels | None, audit: dict[str, Any], for_metric: bool = False) -> Labels | None:
    """`check_classes` against the first output of the model an audit describes: the one check of
    labels against a model, for compare and fix alike (a UsageError before any comparison)."""
    return check_classes(labels, _first_output_shape(audit), for_metric=for_metric)


def _first_output_shape(audit: dict[str, Any]) -> list[int]:
    """The shape of the model's first output, in its signature's order (a Keras model's first output)."""
    signatures = audit.get("signatures") or []
    if len(signatures) == 1 and signatures[0]["outputs"]:
        return min(signatures[0]["outputs"], key=lambda t: natural_key(t["signature_name"]))["shape"]
    return audit["output_types"][0]["shape"] if audit["output_types"] else []


def _class_indices(values: np.ndarray) -> tuple[np.ndarray, str]:
    if values.ndim == 0:
        raise UsageError("labels are a scalar: give one class index per eval sample, shape (samples,)")
    if values.dtype.kind not in "iuf":
        raise UsageError(f"labels hold {describe_dtype(values.dtype)}: give integer class indices")
    given_as = "indices"
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    elif values.ndim == 2 and _one_hot(values):
        values, given_as = values.argmax(axis=1), "one-hot"
    elif values.ndim != 1:
        raise UsageError(f"labels have shape {values.shape}: give one class index per eval sample, shape "
                         "(samples,), or one-hot rows")
    if values.dtype.kind == "f":
        whole = np.isfinite(values) & (values == np.round(values))
        if not whole.all():
            bad = values[~whole][0]
            raise UsageError(f"labels hold fractional values such as {bad:g}: give integer class indices "
                             "(probabilities are not labels)")
    if len(values) and values.min() < 0:
        raise UsageError(f"labels hold a negative class index ({values.min():g}): class indices start at 0")
    return values.astype(np.int64), given_as


def _one_hot(values: np.ndarray) -> bool:
    """Every row a single 1 among 0s."""
    return values.shape[1] > 1 and bool(np.isin(values, (0, 1)).all()) and bool((values.sum(axis=1) == 1).all())
