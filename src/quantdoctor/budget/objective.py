"""The accuracy budget: which number a variant is judged by, and when it is good enough.

- With labels: top-1 accuracy of the first output, at most `max_drop` below the float model's.
- Without: top-1 agreement with the float model (the float model scores 1), at most `max_drop` below.
- With a metric `metric(labels, outputs) -> float`, called as compare calls it (higher is better;
  `outputs` is the array of a single-output model, else the list of output arrays in the model's
  order): at most `max_drop` below the float model's score.
- With `min_sqnr` (dB): every output keeps at least that SQNR against the float outputs
  (regression-style models, where no top-1 applies); `per_channel`, every channel (last axis) of
  every output that carries signal does (what fix asks when most of an output's channels were lost,
  QD518: the whole output's SQNR does not see them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from quantdoctor.compare.labels import metric_number
from quantdoctor.errors import UsageError
from quantdoctor.intake import options
from quantdoctor.runtime.measures import MAX_SQNR_DB, sqnr_db, worst_channel_sqnr_db

Metric = Callable[[Any, Any], float]
_MAX_DROP = 1e6


@dataclass
class Objective:
    """How variants are scored against the float model; `reference` is the float model's score."""

    name: str
    max_drop: float | None
    min_sqnr: float | None
    labels: np.ndarray | None
    metric: Metric | None
    float_outputs: list[np.ndarray] | None = None
    reference: float | None = None
    per_channel: bool = False

    @classmethod
    def create(cls, *, max_drop: float | None, min_sqnr: float | None, labels: np.ndarray | None,
               metric: Metric | None) -> Objective:
        """Check the budget the user asked for (a UsageError when it is not one) before any work."""
        max_drop, min_sqnr = budget_numbers(max_drop, min_sqnr)
        if (max_drop is None) == (min_sqnr is None):
            raise UsageError("give one accuracy budget: max_drop (a metric drop) or min_sqnr (an SQNR floor in dB)")
        if metric is not None and not callable(metric):
            raise UsageError(f"metric must be a function (labels, outputs) -> float, not {type(metric).__name__}")
        if min_sqnr is not None and metric is not None:
            raise UsageError("min_sqnr judges the outputs' SQNR: it takes no metric")
        if min_sqnr is not None:
            name = "sqnr_db"
        else:
            name = "metric" if metric is not None else "accuracy" if labels is not None else "top1_agreement"
        return cls(name, max_drop, min_sqnr, labels, metric)

    def set_reference(self, float_outputs: list[np.ndarray]) -> None:
        """Score the float model; the budget is measured from it."""
        self.float_outputs = float_outputs
        if self.name in ("accuracy", "top1_agreement"):
            first = float_outputs[0]
            if first.ndim < 2 or first.shape[-1] < 2:
                raise UsageError(f"top-1 {'accuracy' if self.labels is not None else 'agreement'} needs class scores "
                                 f"in the first output, which has shape {list(first.shape)}: give min_sqnr or a metric")
        self.reference = self.score(float_outputs)

    def score(self, outputs: list[np.ndarray]) -> float:
        """The number a variant (or the float model) gets for its outputs on the eval samples."""
        if self.name == "sqnr_db":
            judged = worst_channel_sqnr_db if self.per_channel else sqnr_db
            return min(judged(reference, value) for reference, value in zip(self.float_outputs, outputs))
        if self.name == "metric":
            return metric_number(self.metric(self.labels, outputs[0] if len(outputs) == 1 else outputs))
        top1 = outputs[0].reshape(len(outputs[0]), -1).argmax(-1)
        truth = self.labels if self.name == "accuracy" else self.float_outputs[0].reshape(len(top1), -1).argmax(-1)
        return float(np.mean(top1 == np.asarray(truth).reshape(top1.shape)))

    def meets(self, value: float) -> bool:
        """Whether a variant scoring `value` is within the budget."""
        if self.min_sqnr is not None:
            return value >= self.min_sqnr
        return self.reference - value <= self.max_drop + 1e-9

    def describe(self) -> str:
        """The budget in words, e.g. "accuracy at most 0.01 below the float model's 0.9500"."""
        if self.min_sqnr is not None:
            return f"{'every output channel' if self.per_channel else 'output'} SQNR at least {self.min_sqnr:g} dB"
        what = f"{self.name.replace('_', ' ')} at most {self.max_drop:g} below the float model's"
        return f"{what} {self.reference:.4f}" if self.reference is not None else what

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.name, "max_drop": self.max_drop, "min_sqnr_db": self.min_sqnr,
                "float_value": self.reference, "description": self.describe()}


def budget_numbers(max_drop: Any, min_sqnr: Any) -> tuple[float | None, float | None]:
    """`max_drop` and `min_sqnr` as numbers (None stays None), checked: the one check of both, for the
    Python API and the command line alike (a UsageError names the option)."""
    if max_drop is not None:
        max_drop = options.number(max_drop, "max_drop", 0, _MAX_DROP, "a non-negative drop of the metric")
    if min_sqnr is not None:
        min_sqnr = options.number(min_sqnr, "min_sqnr", -MAX_SQNR_DB, MAX_SQNR_DB,
                                  f"an SQNR floor in dB (an exact output scores {MAX_SQNR_DB:g})")
    return max_drop, min_sqnr
