"""The measures every float-vs-quantized comparison shares, on plain sums (no Numba here).

compare's streaming statistics (`metrics.ErrorStats`) and the run check after a conversion (a few
calibration samples, plain NumPy) read their numbers through these, so both call the same thing
collapsed or lost.
"""

from __future__ import annotations

import math

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


def varies(low: float, high: float) -> bool:
    """True when float values from `low` to `high` move by more than a sliver of their magnitude (a
    model whose output is the same for every input has nothing for quantization to lose)."""
    return high - low > MIN_RELATIVE_SPREAD * max(abs(low), abs(high))


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
