"""QD214's evidence: the integer levels a raw cast of floats gives (`x.astype(np.uint8)`), against
the levels a script feeds an integer model input.

A raw cast truncates each float toward zero and wraps what falls outside the type (-1.0 becomes
255 in uint8), so the floats of a narrow calibrated range (a normalised input) collapse to a
handful of levels: {0, 1} for [0, 1], {255, 0, 1} for [-1, 1] in uint8, {-1, 0, 1} in int8.
A feed is judged by the set of levels it holds, never by its min and max: {0, 1, 255} spans the
whole uint8 range. A feed of one single such level (all zeros: every float strictly between -1
and 1 truncates to 0) says nothing on its own (a warm-up is often zeros), so it counts only when
each of the first checked feeds is one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

# A calibrated range this narrow (a normalised input) collapses to a few integers when cast.
RAW_CAST_MAX_SPAN = 16.0
# Feeds per input (of one interpreter or signature runner) checked for raw casts.
CHECKED_FEEDS = 3


@dataclass
class Feeds:
    """The checked feeds of one integer input of one interpreter or signature runner."""

    checked: int = 0
    constant: int = 0  # how many of them held one single cast level
    constant_levels: set[int] = field(default_factory=set)

    @property
    def done(self) -> bool:
        """All the feeds to check have been checked."""
        return self.checked >= CHECKED_FEEDS


@dataclass(frozen=True)
class RawCast:
    """Feeds that hold what a raw cast of the calibrated floats gives, not quantized values."""

    fed: list[int]    # the levels fed: of the feed at hand, or of every constant feed
    cast: list[int]   # the levels a raw cast of the calibrated range gives
    constant: bool    # each checked feed held a single level


def cast_levels(dtype: np.dtype, low: float, high: float, step: float) -> frozenset[int]:
    """The levels `floats.astype(dtype)` gives, with this NumPy on this machine, for floats in the
    calibrated range [low, high] widened by one quantization `step` on each side (the data's own
    ends, -1.0 and 1.0, round to the grid just outside it)."""
    first, last = math.trunc(low - step), math.trunc(high + step)
    with np.errstate(invalid="ignore", over="ignore"):  # the wrap-around is the point
        return frozenset(int(level) for float_type in (np.float32, np.float64)
                         for level in np.arange(first, last + 1, dtype=float_type).astype(dtype))


def examine(value: np.ndarray, dtype: np.dtype, calibrated: tuple[float, float], step: float,
            feeds: Feeds) -> RawCast | None:
    """Record one feed of an integer input of type `dtype` calibrated on `calibrated` with
    quantization `step`; a RawCast when the feeds so far show a raw cast:
    - this feed holds two levels or more, all of them cast levels, and not just the type's first and
      last (a two-valued input quantized correctly, black and white, holds those two);
    - or each of the first CHECKED_FEEDS feeds held one single cast level.
    None for anything else, and for every feed after the checked ones.
    """
    if feeds.done:
        return None
    feeds.checked += 1
    low, high = calibrated
    if value.dtype != dtype or value.size < 2 or high - low > RAW_CAST_MAX_SPAN:
        return None
    cast = cast_levels(dtype, low, high, step)
    fed = {int(level) for level in np.unique(value)}
    if not fed <= cast:
        return None
    if len(fed) == 1:
        feeds.constant += 1
        feeds.constant_levels |= fed
        if feeds.constant < CHECKED_FEEDS:
            return None
        return RawCast(sorted(feeds.constant_levels), sorted(cast), constant=True)
    limits = np.iinfo(dtype)
    if fed <= {int(limits.min), int(limits.max)}:
        return None
    return RawCast(sorted(fed), sorted(cast), constant=False)
