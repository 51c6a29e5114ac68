"""The measures every float-vs-quantized comparison shares, on plain sums (no Numba here).

compare's streaming statistics (`metrics.ErrorStats`) and the run check after a conversion (a few
calibration samples, plain NumPy) read their numbers through these, so both call the same thing
collapsed or lost.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

EPS = 1e-30
MAX_SQNR_DB = 120.0  # what an exact tensor scores
LOST_SQNR_DB = 1.0  # a channel whose quantization noise is as large as its signal (a constant 0 scores 0 dB)
COLLAPSED_STD_RATIO = 0.01  # a quantized tensor moving under 1% of the float one's spread
DESTROYED_SQNR_DB = 3.0  # an output whose quantization noise is half as strong as its signal or more
MIN_RELATIVE_SPREAD = 0.01  # a float tensor moving less than this share of its magnitude says nothing


def db(signal: float, noise: float) -> float:
    """Signal-to-noise ratio in dB from the two energies; an exact match scores MAX_SQNR_DB."""
    if noise <= EPS:
        return MAX_SQNR_DB
    return float(10.0 * math.log10(max(signal, EPS) / noise))


def sqnr_db(reference: np.ndarray, value: np.ndarray) -> float:
    """The SQNR of `value` against `reference` over the whole tensor, in dB (computed in float64)."""
    reference, value = reference.astype(np.float64), value.astype(np.float64)
    return db(float(np.sum(reference ** 2)), float(np.sum((value - reference) ** 2)))


def worst_channel_sqnr_db(reference: np.ndarray, value: np.ndarray) -> float:
    """The lowest SQNR of `value` against `reference` among the channels (last axis) that carry signal, in dB
    (computed in float64); the whole tensor's when none does."""
    reference, value = reference.astype(np.float64), value.astype(np.float64)
    width = reference.shape[-1] if reference.ndim else 1
    signal = np.sum(reference.reshape(-1, width) ** 2, axis=0)
    noise = np.sum((value - reference).reshape(-1, width) ** 2, axis=0)
    live = [db(float(s), float(n)) for s, n in zip(signal, noise) if s > EPS]
    return min(live) if live else sqnr_db(reference, value)


def varies(low: float, high: float) -> bool:
    """True when float values from `low` to `high` move by more than a sliver of their magnitude (a
    model whose output is the same for every input has nothing for quantization to lose)."""
    return high - low > MIN_RELATIVE_SPREAD * max(abs(low), abs(high))


def outputs_constant(float_ranges: list[list[float]]) -> bool:
    """Whether the float model holds every output constant (none `varies`), from each output's range over the rows:
    quantization has nothing to lose there, and no error inside the model can reach an output."""
    return bool(float_ranges) and not any(varies(*bounds) for bounds in float_ranges)


def holds_probabilities(low: float, high: float) -> bool:
    """True when every float value of an output lies in [0, 1] (softmax or sigmoid scores): a class
    that no sample predicts has a channel of near-zero values, and quantizing those to 0 loses nothing."""
    return low >= 0.0 and high <= 1.0


def lost_channel_indices(signal: np.ndarray, noise: np.ndarray) -> list[int]:
    """The channels (last axis) that carry signal in float and none once quantized, from their
    energies: quantization noise as large as the signal (a channel crushed to a constant scores 0 dB)."""
    return [int(c) for c, (s, n) in enumerate(zip(signal, noise)) if s > EPS and db(s, n) <= LOST_SQNR_DB]


def collapsed(float_variance: float, quant_variance: float) -> bool:
    """True when the float values vary and the quantized ones barely move (stuck at a value, or
    squeezed into a sliver of the real range)."""
    return float_variance > EPS and quant_variance < COLLAPSED_STD_RATIO ** 2 * float_variance


# What "the quantized output follows the float one" means, in numbers (the README's "What OK means").
FOLLOWS_SQNR_DB = 12.0  # under this the output drifts: its noise is over 6% of the signal's power
FOLLOWS_TOP1 = 0.9  # a classifier follows when its rows show this top-1 agreement or more ...
TOP1_CONFIDENCE = 0.95  # ... at this one-sided confidence: the Wilson lower bound (the two-sided 90% interval's end)
MIN_TOP1_CHANGES = 2  # under this many rows changing class nothing is shown either way (one flip in 8 rows)
SUGGESTED_ROWS = 100  # the eval rows QD519 asks for when the rows measured do not show FOLLOWS_TOP1 (95 agreeing do)
COLLAPSED_TOP1 = 0.5  # its predictions collapse (an error) when more than half of the rows change class
MIN_CLASSES = 5  # an output of unbounded values narrower than this may be regression targets, not class scores


def reads_as_class_scores(low: float, high: float, channels: int) -> bool:
    """Whether an output's argmax means a class: probabilities (every value in [0, 1]) over 2 channels or more,
    or at least MIN_CLASSES scores. A narrower output may be regression targets (a box, a price next to a
    rate), whose largest channel says nothing."""
    return channels >= 2 and (holds_probabilities(low, high) or channels >= MIN_CLASSES)


def top1_agreement(reference: np.ndarray, quantized: np.ndarray) -> float | None:
    """The share of rows whose largest channel (last axis) is the same in both models; None without channels."""
    if reference.ndim < 2 or reference.shape[-1] < 2:
        return None
    width = reference.shape[-1]
    return float(np.mean(reference.reshape(-1, width).argmax(-1) == quantized.reshape(-1, width).argmax(-1)))


def agreement_lower_bound(agreeing: int, rows: int) -> float:
    """The least top-1 agreement that `agreeing` rows out of `rows` leave plausible: the Wilson score interval's
    lower end at TOP1_CONFIDENCE (30 of 32 rows: 0.83; 32 of 32: 0.92; 95 of 100: 0.90; 94 of 100: 0.89)."""
    if rows <= 0:
        return 0.0
    z = NormalDist().inv_cdf(TOP1_CONFIDENCE)  # 1.645
    share, z_squared = agreeing / rows, z ** 2
    spread = z * math.sqrt(share * (1.0 - share) / rows + z_squared / (4 * rows ** 2))
    return (share + z_squared / (2 * rows) - spread) / (1.0 + z_squared / rows)


def agreeing_rows(agreement: float, rows: int) -> int:
    """How many of `rows` rows a (rounded) top-1 agreement counts."""
    return round(agreement * rows)


def agreeing_rows_to_show(rows: int) -> int | None:
    """The fewest agreeing rows out of `rows` that show FOLLOWS_TOP1 agreement (95 of 100); None when even all of
    them do not (under 25 rows)."""
    return next((k for k in range(rows + 1) if agreement_lower_bound(k, rows) >= FOLLOWS_TOP1), None)


def top1_counts(agreement: float | None, rows: int) -> dict[str, float | int]:
    """The numbers behind a top-1 agreement over `rows` rows, as evidence: the rows agreeing, the rows measured and
    the least agreement they leave plausible (`agreement_lower_bound`); empty for an output without classes."""
    if agreement is None:
        return {}
    agreeing = agreeing_rows(agreement, rows)
    return {"top1_agreeing_rows": agreeing, "top1_rows": rows,
            "top1_lower_bound": round(agreement_lower_bound(agreeing, rows), 4)}


def output_state(float_range: list[float], sqnr_db: float, is_collapsed: bool, agreement: float | None,
                 rows: int) -> str:
    """The one rule the run check and compare apply to a model output, from the float model's range over
    the rows, the output's SQNR, whether it collapsed and its top-1 agreement (None: not class scores):

    - `constant`: the float output does not vary over the rows; there is nothing for quantization to lose;
    - `collapsed` (QD504), `destroyed` (QD507: SQNR at or under DESTROYED_SQNR_DB);
    - `top1_collapsed` (QD519 error): under COLLAPSED_TOP1 agreement, whatever the SQNR (a constant offset
      common to every class raises the SQNR and means nothing to the argmax);
    - `drifts` (QD519 warning): under FOLLOWS_SQNR_DB, or under FOLLOWS_TOP1 agreement with at least
      MIN_TOP1_CHANGES rows changing class;
    - `unshown` (QD519 warning): FOLLOWS_TOP1 agreement or more, with at least MIN_TOP1_CHANGES rows changing
      class, that the rows do not show (`agreement_lower_bound` under FOLLOWS_TOP1): 30 of 32 rows agreeing
      (94%) are not enough, nor 94 of 100;
    - `follows`: what an OK verdict means, shown by the rows measured, not merely not refuted.
    """
    if not varies(*float_range):
        return "constant"
    if is_collapsed:
        return "collapsed"
    if sqnr_db <= DESTROYED_SQNR_DB:
        return "destroyed"
    agreeing = None if agreement is None else agreeing_rows(agreement, rows)
    changed = 0 if agreeing is None else rows - agreeing
    if changed >= MIN_TOP1_CHANGES and agreement < COLLAPSED_TOP1:
        return "top1_collapsed"
    if sqnr_db < FOLLOWS_SQNR_DB or (changed >= MIN_TOP1_CHANGES and agreement < FOLLOWS_TOP1):
        return "drifts"
    if changed >= MIN_TOP1_CHANGES and agreement_lower_bound(agreeing, rows) < FOLLOWS_TOP1:
        return "unshown"
    return "follows"
