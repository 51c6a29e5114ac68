"""The per-channel sums `metrics.ErrorStats` reads, and the NumPy pass that adds one tensor pair into them.

Each row of the sums array is one statistic, each column one channel. Two passes add a
(rows, channels) pair into it, with the same arguments and the same arithmetic (float32 element
values, float64 totals): this NumPy one, and the compiled one (`error_sums_compiled`, Numba, one
loop outside the GIL). Starting the compiled pass costs about half a second of CPU (importing
Numba, loading its cached kernels), more than NumPy takes on a small comparison, so a comparison
starts it only when NumPy would take longer (`compiled_pays`).
"""

from __future__ import annotations

import numpy as np

# Rows of the per-channel sums array: sums, except the extremes.
(SIGNAL, NOISE, DOT, QUANT_ENERGY, MAX_ABS_ERROR, LOW, HIGH, CLIPPED, FLOAT_SUM, QUANT_SUM, GRID_NOISE) = range(11)
ROWS = 11
# The stored types a quantized model's tensors come in (the compiled pass's signatures); others are compared as float32.
STORED_TYPES = (np.int8, np.uint8, np.int16, np.int32, np.float32)
TOTALS = (SIGNAL, NOISE, DOT, QUANT_ENERGY, CLIPPED, FLOAT_SUM, QUANT_SUM, GRID_NOISE)
EXTREMES = {MAX_ABS_ERROR: np.fmax, LOW: np.fmin, HIGH: np.fmax}  # NaN-blind, as the compiled pass's max/min

# What the NumPy pass costs over the compiled one (measured on 2 cores: about 0.1 ms a call and 50 ns a value),
# against the compiled pass's start-up: beyond that, the compiled pass is worth starting.
_NUMPY_CALL_SECONDS = 1e-4
_NUMPY_VALUE_SECONDS = 5e-8
_COMPILED_START_SECONDS = 0.5


def new_sums(channels: int) -> np.ndarray:
    """Empty sums for `channels` channels (the extremes at their neutral values)."""
    sums = np.zeros((ROWS, channels))
    sums[LOW], sums[HIGH] = np.inf, -np.inf
    return sums


def compiled_pays(calls: int, values: int) -> bool:
    """Whether `calls` passes over `values` values in all take longer in NumPy than the compiled pass with its start."""
    return calls * _NUMPY_CALL_SECONDS + values * _NUMPY_VALUE_SECONDS > _COMPILED_START_SECONDS


def add_pair(reference: np.ndarray, stored: np.ndarray, scale: float, zero_point: float, low_limit: float,
             high_limit: float, sums: np.ndarray) -> None:
    """Add one (rows, channels) pair into `sums`: the float values and the stored quantized ones,
    dequantized as (stored - zero_point) * scale. Values outside [low_limit, high_limit] count as
    clipped. Each float value is also put on the tensor's own grid (rounded to a multiple of the
    scale, clipped to the calibrated range) and that error summed (`GRID_NOISE`; zero for a tensor
    stored as floats, whose limits are infinite). Element values are float32, like the tensors; the
    totals are float64."""
    scale32 = np.float32(scale)
    got = (stored.astype(np.float32) - np.float32(zero_point)) * scale32
    error = got - reference
    totals = {SIGNAL: reference * reference, NOISE: error * error, DOT: reference * got, QUANT_ENERGY: got * got,
              FLOAT_SUM: reference, QUANT_SUM: got,
              CLIPPED: (reference < np.float32(low_limit)).astype(np.float32)
              + (reference > np.float32(high_limit)).astype(np.float32)}
    if np.isfinite(low_limit):
        on_grid = np.clip(np.round(reference / scale32) * scale32, np.float32(low_limit + scale / 2),
                          np.float32(high_limit - scale / 2))
        grid_error = on_grid - reference
        totals[GRID_NOISE] = grid_error * grid_error
    for row, values in totals.items():
        sums[row] += np.add.reduce(values, axis=0, dtype=np.float64)
    for row, values in ((MAX_ABS_ERROR, np.abs(error)), (LOW, reference), (HIGH, reference)):
        extreme = EXTREMES[row]
        sums[row] = extreme(sums[row], extreme.reduce(values, axis=0))
