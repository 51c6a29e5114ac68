"""Error statistics between a float tensor and its quantized counterpart, accumulated over samples.

Per-tensor numbers (SQNR, RMSE over the quantization scale) can look healthy when one slice of
a tensor is crushed, e.g. box coordinates in 0..640 next to scores in 0..1 in one output: the
large channel dominates both. `worst_channel_sqnr_db` takes the SQNR of every channel (last
axis) and keeps the lowest, which is what ranking uses.

Every number is read from per-channel sums (`error_sums`) that one pass over the two tensors
updates: the quantized tensor is dequantized on the fly. The pass is NumPy's, or on a comparison
large enough to pay for its start, the compiled one (`error_sums_compiled`: nothing copied, outside
the GIL, so the compare worker's lanes, one per core, run it side by side).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from quantdoctor.compare import error_sums
from quantdoctor.compare.error_sums import (
    CLIPPED,
    DOT,
    EXTREMES,
    FLOAT_SUM,
    GRID_NOISE,
    HIGH,
    LOW,
    MAX_ABS_ERROR,
    NOISE,
    QUANT_ENERGY,
    QUANT_SUM,
    SIGNAL,
    STORED_TYPES,
)
from quantdoctor.runtime.measures import EPS as _EPS
from quantdoctor.runtime.measures import (
    MAX_SQNR_DB,
    collapsed,
    db,
    lost_channel_indices,
)

_RESERVOIR = 2000  # float values kept for the histogram ...
_RESERVOIR_PER_SAMPLE = 64  # ... evenly strided over each sample's tensor
_VARIES = 1e-6  # a channel whose variation is under this share of its energy counts as constant


@dataclass
class ErrorStats:
    """Running per-channel sums for one tensor pair; `add` samples, then read the properties.

    `scale`/`zero_point` are the quantized tensor's (None: it is stored as real numbers); `qmin`/`qmax`
    bound its stored integers, which gives the calibrated range that `clipped_fraction` measures.
    With `per_channel` False the whole tensor is one channel (its last axis changes between samples).
    """

    scale: float | None = None
    zero_point: int = 0
    qmin: int = -128
    qmax: int = 127
    per_channel: bool = True
    count: int = 0
    sums: np.ndarray | None = None
    reservoir: list = field(default_factory=list)

    def add(self, reference: np.ndarray, stored: np.ndarray, compiled: bool = False) -> None:
        """Accumulate `reference` (the float model's tensor) and `stored` (the quantized model's, as
        stored: integers with this scale and zero point, or floats). Any leading axes are samples
        and positions; the last axis holds the channels. `compiled` sums with the compiled pass
        (see `error_sums`), else with NumPy's."""
        if not reference.size:
            return
        channels = reference.shape[-1] if reference.ndim and self.per_channel else 1
        if self.sums is None:
            self.sums = error_sums.new_sums(channels)
        low, high = self.quantized_range or (-np.inf, np.inf)
        margin = self.scale / 2 if self.scale else 0.0
        add_pair = compiled_pass() if compiled else error_sums.add_pair
        add_pair(_as(reference, np.float32, channels), _as(stored, _stored_type(stored), channels),
                 float(self.scale or 1.0), float(self.zero_point if self.scale else 0), low - margin, high + margin,
                 self.sums)
        self.count += reference.size
        if len(self.reservoir) < _RESERVOIR:
            flat = reference.ravel()
            step = max(1, flat.size // (_RESERVOIR_PER_SAMPLE * (reference.shape[0] if reference.ndim else 1)))
            self.reservoir.extend(flat[::step][: _RESERVOIR - len(self.reservoir)].astype(float).tolist())

    @classmethod
    def merged(cls, parts: list[ErrorStats]) -> ErrorStats:
        """One set of statistics from several over disjoint samples (same tensor, same quantization)."""
        merged = replace(parts[0], count=0, sums=None, reservoir=[])
        for part in parts:
            merged.count += part.count
            merged.reservoir.extend(part.reservoir[: _RESERVOIR - len(merged.reservoir)])
            if part.sums is None:
                continue
            if merged.sums is None:
                merged.sums = part.sums.copy()
                continue
            for row in range(len(merged.sums)):
                merged.sums[row] = EXTREMES.get(row, np.add)(merged.sums[row], part.sums[row])
        return merged

    def dequantize(self, stored: np.ndarray) -> np.ndarray:
        """Stored values of this tensor as real numbers (float32)."""
        if not self.scale:
            return stored.astype(np.float32)
        return (stored.astype(np.float32) - np.float32(self.zero_point)) * np.float32(self.scale)

    def histogram(self, bins: int = 40) -> dict[str, list] | None:
        """Counts and bin edges of the float values kept in the reservoir (None before any)."""
        if not self.reservoir:
            return None
        counts, edges = np.histogram(np.asarray(self.reservoir), bins=bins)
        return {"counts": counts.tolist(), "edges": edges.tolist()}

    @property
    def quantized_range(self) -> tuple[float, float] | None:
        """The real values the stored integers can represent (the calibrated range); None for floats."""
        if not self.scale:
            return None
        return self.scale * (self.qmin - self.zero_point), self.scale * (self.qmax - self.zero_point)

    def _total(self, row: int) -> float:
        return float(self.sums[row].sum()) if self.sums is not None else 0.0

    @property
    def sqnr_db(self) -> float:
        """Signal-to-quantization-noise ratio over the whole tensor, in dB."""
        return db(self._total(SIGNAL), self._total(NOISE))

    @property
    def worst_channel_sqnr_db(self) -> float:
        """The lowest SQNR among the channels (last axis) that carry signal."""
        if self.sums is None:
            return self.sqnr_db
        live = self.sums[SIGNAL] > _EPS
        if not np.any(live):
            return self.sqnr_db
        return float(min(self.channel_sqnr_db[live]))

    @property
    def channel_sqnr_db(self) -> np.ndarray:
        """The SQNR of every channel (last axis), in dB."""
        if self.sums is None:
            return np.zeros(0)
        return np.array([db(s, n) for s, n in zip(self.sums[SIGNAL], self.sums[NOISE])])

    @property
    def lost_channels(self) -> list[int]:
        """Channels that carry signal in float and none once quantized (noise as large as the signal:
        a channel crushed to a constant)."""
        if self.sums is None:
            return []
        return lost_channel_indices(self.sums[SIGNAL], self.sums[NOISE])

    @property
    def worst_channel_grid_sqnr_db(self) -> float:
        """How well the tensor's own int8 grid holds its float values, whatever the error feeding it:
        each value rounded to a multiple of the scale and clipped to the calibrated range, against the
        values' variation around their channel's mean (a large common offset the grid must span then
        counts as noise, not signal). The lowest over the channels that vary; 120 for a tensor stored
        as floats, or one that does not vary."""
        if self.sums is None or not self.scale or not self.count:
            return MAX_SQNR_DB
        rows = self.count / self.sums.shape[1]
        variation = self.sums[SIGNAL] - self.sums[FLOAT_SUM] ** 2 / rows
        live = variation > _VARIES * np.maximum(self.sums[SIGNAL], _EPS)
        if not np.any(live):
            return MAX_SQNR_DB
        return float(min(db(v, n) for v, n in zip(variation[live], self.sums[GRID_NOISE][live])))

    @property
    def cosine(self) -> float:
        """Cosine similarity between the float and the dequantized values, all samples as one vector."""
        energy = self._total(SIGNAL) * self._total(QUANT_ENERGY)
        return float(self._total(DOT) / np.sqrt(max(energy, _EPS)))

    @property
    def rmse_over_scale(self) -> float | None:
        """Root-mean-square error in quantization steps (None for a tensor stored as floats)."""
        if not self.scale or not self.count:
            return None
        return float(np.sqrt(self._total(NOISE) / self.count) / self.scale)

    @property
    def max_abs_error(self) -> float:
        return float(self.sums[MAX_ABS_ERROR].max()) if self.sums is not None else 0.0

    @property
    def low(self) -> float:
        """The smallest float value seen."""
        return float(self.sums[LOW].min()) if self.sums is not None else float("inf")

    @property
    def high(self) -> float:
        """The largest float value seen."""
        return float(self.sums[HIGH].max()) if self.sums is not None else float("-inf")

    @property
    def clipped_fraction(self) -> float:
        """Share of float values more than half a step outside the calibrated range."""
        return self._total(CLIPPED) / self.count if self.count else 0.0

    @property
    def collapsed(self) -> bool:
        """True when the quantized tensor barely moves (standard deviation under 1% of the float one's)
        while the float tensor varies: stuck at a value, or squeezed into a sliver of its real range."""
        if not self.count:
            return False
        float_var = self._total(SIGNAL) / self.count - (self._total(FLOAT_SUM) / self.count) ** 2
        quant_var = self._total(QUANT_ENERGY) / self.count - (self._total(QUANT_SUM) / self.count) ** 2
        return collapsed(float_var, quant_var)


def compiled_pass() -> Callable[..., None]:
    """The compiled `add_pair`: its first call in a process imports Numba and loads its kernels."""
    from quantdoctor.compare.error_sums_compiled import add_pair

    return add_pair


def _stored_type(values: np.ndarray) -> type:
    return values.dtype.type if values.dtype.type in STORED_TYPES else np.float32


def _as(values: np.ndarray, dtype: type, channels: int) -> np.ndarray:
    """`values` as a C-ordered (rows, channels) array of `dtype`: a view of interpreter tensors
    (contiguous, and float32 or a stored type), a converted copy of anything else."""
    return np.ascontiguousarray(values.reshape(-1, channels), dtype=dtype)
