"""Options of the public API and the CLI, checked once at entry: a wrong value is a UsageError
naming the option, before anything runs.

`Mode` and `Target` name the accepted modes and targets (and what each target can run);
`RunOptions` holds the limits every command that converts shares (timeout, memory limit, sample
count, target), checked in one place for the API, the CLI and `qd.watch()`.
"""

from __future__ import annotations

import importlib.util
import math
import numbers
from dataclasses import dataclass
from enum import Enum
from typing import Any

from quantdoctor.errors import UsageError
from quantdoctor.intake.data import DEFAULT_MAX_SAMPLES
from quantdoctor.isolation.runner import DEFAULT_TIMEOUT, check_limits

VELA_INSTALL = "pip install 'quantdoctor[ethos-u]'"


class Mode(str, Enum):
    """The quantization modes (`mode=`, `--mode`): each stands for the converter settings of
    `Recipe.for_mode`."""

    INT8 = "int8"
    INT8_STRICT = "int8-strict"
    INT16X8 = "int16x8"
    DYNAMIC = "dynamic"
    FLOAT16 = "float16"
    FLOAT = "float"

    def __str__(self) -> str:
        return self.value


class Target(str, Enum):
    """Where the model will run (`target=`, `--target`), and what that hardware can run."""

    CPU = "cpu"
    GPU = "gpu"
    INT8_ACCELERATOR = "int8-accelerator"
    MICROCONTROLLER = "microcontroller"
    ETHOS_U55_128 = "ethos-u55-128"
    ETHOS_U55_256 = "ethos-u55-256"
    ETHOS_U65_256 = "ethos-u65-256"
    ETHOS_U85_256 = "ethos-u85-256"
    EDGETPU = "edgetpu"

    def __str__(self) -> str:
        return self.value

    @property
    def ethos_u(self) -> bool:
        """An Arm Ethos-U configuration: compiled by Vela."""
        return self.value.startswith("ethos-u")

    @property
    def npu(self) -> bool:
        """An integer-only NPU: a float op leaves it for the CPU."""
        return self.ethos_u or self is Target.EDGETPU

    @property
    def runs_float_ops(self) -> bool:
        """Float ops run there as they are (a CPU or GPU delegate); elsewhere they fall back or fail."""
        return self in (Target.CPU, Target.GPU)


def checked_mode(value: Any) -> str:
    """A known mode name (the default, int8, for None)."""
    if value is None:
        return Mode.INT8.value
    if value not in {m.value for m in Mode}:
        raise UsageError(f"unknown mode '{value}': choose one of {', '.join(m.value for m in Mode)}")
    return str(value)


def checked_target(value: Any) -> str | None:
    """A known target name, or None; an Ethos-U target needs Arm's Vela compiler installed."""
    if value is None:
        return None
    if value not in {t.value for t in Target}:
        raise UsageError(f"unknown target '{value}': choose one of {', '.join(t.value for t in Target)}")
    if Target(value).ethos_u and importlib.util.find_spec("ethosu") is None:
        raise UsageError(f"target {value} needs Arm's Vela compiler, which is not installed: {VELA_INSTALL}")
    return str(value)


@dataclass(frozen=True)
class RunOptions:
    """The limits a command that converts runs under, checked (`RunOptions.checked`)."""

    timeout: float = DEFAULT_TIMEOUT
    memory_limit_mb: int | None = None
    max_samples: int = DEFAULT_MAX_SAMPLES
    target: str | None = None

    @classmethod
    def checked(cls, *, timeout: Any = DEFAULT_TIMEOUT, memory_limit_mb: Any = None,
                max_samples: Any = DEFAULT_MAX_SAMPLES, target: Any = None) -> RunOptions:
        """The options, each checked: a UsageError naming the first wrong one, before any work."""
        check_limits(timeout, memory_limit_mb)
        return cls(float(timeout), memory_limit_mb, count(max_samples, "max_samples"), checked_target(target))


def count(value: Any, name: str) -> int:
    """A whole number of at least 1 (`max_samples`, ...)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise UsageError(f"{name} must be a whole number of at least 1, not {value!r}")
    return int(value)


def flag(value: Any, name: str) -> bool:
    """A bool (`convert`, `select_tf_ops`)."""
    if not isinstance(value, bool):
        raise UsageError(f"{name} must be True or False, not {value!r}")
    return value


def names(value: Any, name: str) -> list[str] | None:
    """None, or a list of strings (`signature_keys`); a single string is refused, not split into letters."""
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or not all(isinstance(item, str) for item in value):
        raise UsageError(f"{name} must be a list of strings, not {value!r}")
    return list(value)


def number(value: Any, name: str, low: float, high: float, meaning: str) -> float:
    """A real number from `low` to `high` (`max_drop`, `min_sqnr`): a string, a bool, NaN, an infinity
    or a value out of range is refused; `meaning` says what the number is, for the message."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
            or not low <= value <= high:
        raise UsageError(f"{name} must be {meaning}, a number from {low:g} to {high:g}, not {value!r}")
    return float(value)
