"""Options of the public API, checked at entry: a wrong value is a UsageError naming the option,
before anything runs (the CLI checks the same through its option types). The time and memory
limits are checked by `convert.runner.check_limits`."""

from __future__ import annotations

import math
import numbers
from typing import Any

from quantdoctor.errors import UsageError


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
