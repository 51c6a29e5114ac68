"""The numeric options of the public API, checked at entry: a wrong value is a UsageError naming
the option, before anything runs (the CLI checks the same through its option types)."""

from __future__ import annotations

import math
import numbers
import resource
from typing import Any

from quantdoctor.errors import UsageError

MIN_MEMORY_LIMIT_MB = 64
# setrlimit takes bytes below RLIM_INFINITY (2**64 - 1 on Linux, -1 where the value is signed).
_LARGEST_LIMIT_MB = (resource.RLIM_INFINITY if resource.RLIM_INFINITY > 0 else 2 ** 63) // 2 ** 20 - 1


def count(value: Any, name: str) -> int:
    """A whole number of at least 1 (`max_samples`, ...)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise UsageError(f"{name} must be a whole number of at least 1, not {value!r}")
    return int(value)


def seconds(value: Any, name: str) -> float:
    """A finite, positive number of seconds (`timeout`)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise UsageError(f"{name} must be a positive number of seconds, not {value!r}")
    return float(value)


def memory_limit(value: Any, name: str = "memory_limit_mb") -> int | None:
    """None, or megabytes between 64 and what the system can express as an address-space limit."""
    if value is None:
        return None
    largest = _LARGEST_LIMIT_MB
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not (
            MIN_MEMORY_LIMIT_MB <= value <= largest):
        raise UsageError(f"{name} must be a whole number of megabytes from {MIN_MEMORY_LIMIT_MB} to {largest}, "
                         f"not {value!r}")
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
