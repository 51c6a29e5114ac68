"""Error statistics between a float tensor and its quantized counterpart, accumulated over samples.

Per-tensor numbers (SQNR, RMSE over the quantization scale) can look healthy when one slice of
a tensor is crushed, e.g. box coordinates in 0..640 next to scores in 0..1 in one output: the
large channel dominates both. `worst_channel_sqnr_db` takes the SQNR of every channel (last
axis) and keeps the lowest, which is what ranking uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

_EPS = 1e-30
RESERVOIR = 2000
_COLLAPSED_STD_RATIO = 0.01


@dataclass
class ErrorStats:
    """Running sums for one tensor pair; `add` one sample at a time, then read the properties."""

    scale: float | None = None
    zero_point: int = 0
    qmin: int = -128
    qmax: int = 127
    signal: float = 0.0
    noise: float = 0.0
    dot: float = 0.0
    quant_energy: float = 0.0
    count: int = 0
    clipped: int = 0
    max_abs_error: float = 0.0
    low: float = np.inf
    high: float = -np.inf
    channel_signal: np.ndarray | None = None
    channel_noise: np.ndarray | None = None
    float_sum: float = 0.0
    quant_sum: float = 0.0
    reservoir: list = field(default_factory=list)

    def add(self, reference: np.ndarray, quantized: np.ndarray) -> None:
        """Accumulate samples stacked on the first axis: `reference` from the float model, `quantized`
        dequantized to float. Channels are the last axis of tensors with two axes or more."""
        ref = reference.astype(np.float32, copy=False)
        got = quantized.astype(np.float32, copy=False)
        error = got - ref
        self.signal += float(np.vdot(ref, ref))
        self.noise += float(np.vdot(error, error))
        self.dot += float(np.vdot(ref, got))
        self.quant_energy += float(np.vdot(got, got))
        self.count += ref.size
        self.max_abs_error = max(self.max_abs_error, float(np.max(np.abs(error))) if error.size else 0.0)
        self.low = min(self.low, float(ref.min()))
        self.high = max(self.high, float(ref.max()))
        if self.scale:
            representable = (self.scale * (self.qmin - self.zero_point), self.scale * (self.qmax - self.zero_point))
            self.clipped += int(np.sum((ref < representable[0] - self.scale / 2) | (ref > representable[1] + self.scale / 2)))
        channels = ref.reshape(-1, ref.shape[-1]) if ref.ndim >= 2 else ref.reshape(-1, 1)
        channel_errors = error.reshape(channels.shape)
        signal = np.einsum("ij,ij->j", channels, channels, dtype=np.float64)
        noise = np.einsum("ij,ij->j", channel_errors, channel_errors, dtype=np.float64)
        self.channel_signal = signal if self.channel_signal is None else self.channel_signal + signal
        self.channel_noise = noise if self.channel_noise is None else self.channel_noise + noise
        self.float_sum += float(np.sum(ref, dtype=np.float64))
        self.quant_sum += float(np.sum(got, dtype=np.float64))
        if len(self.reservoir) < RESERVOIR:
            flat = ref.ravel()
            step = max(1, flat.size // 64)
            self.reservoir.extend(flat[::step][: RESERVOIR - len(self.reservoir)].tolist())

    @property
    def sqnr_db(self) -> float:
        """Signal-to-quantization-noise ratio over the whole tensor, in dB."""
        return _db(self.signal, self.noise)

    @property
    def worst_channel_sqnr_db(self) -> float:
        """The lowest SQNR among the channels (last axis) that carry signal."""
        if self.channel_signal is None:
            return self.sqnr_db
        live = self.channel_signal > _EPS
        if not np.any(live):
            return self.sqnr_db
        return float(min(_db(s, n) for s, n in zip(self.channel_signal[live], self.channel_noise[live])))

    @property
    def cosine(self) -> float:
        return float(self.dot / np.sqrt(max(self.signal * self.quant_energy, _EPS)))

    @property
    def rmse_over_scale(self) -> float | None:
        if not self.scale or not self.count:
            return None
        return float(np.sqrt(self.noise / self.count) / self.scale)

    @property
    def clipped_fraction(self) -> float:
        return self.clipped / self.count if self.count else 0.0

    @property
    def collapsed(self) -> bool:
        """True when the quantized tensor barely moves (standard deviation under 1% of the float one's)
        while the float tensor varies: stuck at a value, or squeezed into a sliver of its real range."""
        if not self.count:
            return False
        float_var = self.signal / self.count - (self.float_sum / self.count) ** 2
        quant_var = self.quant_energy / self.count - (self.quant_sum / self.count) ** 2
        return float_var > _EPS and quant_var < _COLLAPSED_STD_RATIO ** 2 * float_var


def _db(signal: float, noise: float) -> float:
    if noise <= _EPS:
        return 120.0
    return float(10.0 * np.log10(max(signal, _EPS) / noise))
