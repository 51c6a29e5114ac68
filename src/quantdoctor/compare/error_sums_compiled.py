"""The compiled pass over one tensor pair (Numba, outside the GIL): `error_sums.add_pair` in one loop.

It reads the two tensors once, dequantizing on the fly, copies nothing, and runs without the GIL, so
the compare worker's lanes (one per core) run it side by side. Its kernels are compiled (or loaded
from Numba's cache) when this module is imported, for each stored type: a comparison imports it
only when it pays (`error_sums.compiled_pays`).
"""

from __future__ import annotations

import numba
import numpy as np

from quantdoctor.compare.error_sums import (
    CLIPPED,
    DOT,
    FLOAT_SUM,
    GRID_NOISE,
    HIGH,
    LOW,
    MAX_ABS_ERROR,
    NOISE,
    QUANT_ENERGY,
    QUANT_SUM,
    ROWS,
    SIGNAL,
    STORED_TYPES,
    TOTALS,
)

_BLOCK_ROWS = 256  # rows summed in float32 before they join the float64 totals
_SIGNATURES = [numba.void(numba.float32[:, ::1], numba.from_dtype(np.dtype(t))[:, ::1], numba.float64, numba.float64,
                          numba.float64, numba.float64, numba.float64[:, ::1]) for t in STORED_TYPES]


@numba.njit(_SIGNATURES, nogil=True, cache=True)
def add_pair(reference, stored, scale, zero_point, low_limit, high_limit, sums):  # pragma: no cover - compiled
    """`error_sums.add_pair`, compiled: `stored` is C-ordered and of one of `STORED_TYPES`.

    Element arithmetic is float32, like the tensors, so that it runs on SIMD lanes (3 to 4x
    faster than float64 here); partial sums over `_BLOCK_ROWS` rows are added into the float64
    `sums`, which bounds the rounding of a float32 sum to a few hundred terms.
    """
    rows, channels = reference.shape
    scale32, zero32 = np.float32(scale), np.float32(zero_point)
    low32, high32 = np.float32(low_limit), np.float32(high_limit)
    gridded = np.float32(1.0 if np.isfinite(low_limit) else 0.0)
    grid_low = np.float32(low_limit + scale / 2 if gridded else 0.0)
    grid_high = np.float32(high_limit - scale / 2 if gridded else 0.0)
    block = np.empty((ROWS, channels), np.float32)
    for first in range(0, rows, _BLOCK_ROWS):
        block[:] = 0
        block[LOW], block[HIGH] = np.inf, -np.inf
        for row in range(first, min(rows, first + _BLOCK_ROWS)):
            for channel in range(channels):
                real = reference[row, channel]
                got = (np.float32(stored[row, channel]) - zero32) * scale32
                error = got - real
                block[SIGNAL, channel] += real * real
                block[NOISE, channel] += error * error
                block[DOT, channel] += real * got
                block[QUANT_ENERGY, channel] += got * got
                block[MAX_ABS_ERROR, channel] = max(block[MAX_ABS_ERROR, channel], abs(error))
                block[LOW, channel] = min(block[LOW, channel], real)
                block[HIGH, channel] = max(block[HIGH, channel], real)
                block[CLIPPED, channel] += (real < low32) + (real > high32)
                block[FLOAT_SUM, channel] += real
                block[QUANT_SUM, channel] += got
                on_grid = min(max(np.float32(np.round(real / scale32)) * scale32, grid_low), grid_high)
                grid_error = (on_grid - real) * gridded
                block[GRID_NOISE, channel] += grid_error * grid_error
        for channel in range(channels):
            for total in TOTALS:
                sums[total, channel] += block[total, channel]
            sums[MAX_ABS_ERROR, channel] = max(sums[MAX_ABS_ERROR, channel], block[MAX_ABS_ERROR, channel])
            sums[LOW, channel] = min(sums[LOW, channel], block[LOW, channel])
            sums[HIGH, channel] = max(sums[HIGH, channel], block[HIGH, channel])
