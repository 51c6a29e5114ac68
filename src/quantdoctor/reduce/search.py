"""The search for the smallest set of layer calls that still fails: bisection, then delta debugging.

`fails(calls)` converts the sub-model of those calls (indices into the model's calls, in graph
order) and says whether it fails the same way. The whole model is known to fail. Bisection finds
the shortest failing prefix (its last call ends the culprit), then the shortest failing suffix
of that prefix (its first call starts it): about 2·log2(N) conversions. What lies between is then
shrunk to a minimal failing set by delta debugging (ddmin), which costs nothing more when the
culprit is one call.
"""

from __future__ import annotations

from typing import Callable

Oracle = Callable[[frozenset[int]], bool]


def smallest_failing(count: int, fails: Oracle) -> list[int]:
    """The calls (sorted indices) of a minimal failing sub-model of a `count`-call model that fails whole."""
    remembered: dict[frozenset[int], bool] = {frozenset(range(count)): True}

    def check(calls: frozenset[int]) -> bool:
        if calls not in remembered:
            remembered[calls] = bool(calls) and fails(calls)
        return remembered[calls]

    low, high = 0, count  # the prefix of `high` calls fails, that of `low` does not
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if check(frozenset(range(middle))) else (middle, high)
    end = high
    low, high = 0, end  # the calls from `low` to `end` fail, those from `high` do not
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if check(frozenset(range(middle, end))) else (low, middle)
    return ddmin(list(range(low, end)), check)


def ddmin(calls: list[int], check: Oracle) -> list[int]:
    """Zeller's delta debugging: a failing subset of the failing `calls` from which no single part
    (at the finest split tried) can be removed."""
    parts = 2
    while len(calls) >= 2:
        chunks = [calls[i * len(calls) // parts:(i + 1) * len(calls) // parts] for i in range(parts)]
        chunks = [chunk for chunk in chunks if chunk]
        for chunk in chunks:
            if check(frozenset(chunk)):
                calls, parts = chunk, 2
                break
        else:
            for chunk in chunks:
                rest = [call for call in calls if call not in chunk]
                if len(chunks) > 2 and check(frozenset(rest)):
                    calls, parts = rest, max(parts - 1, 2)
                    break
            else:
                if parts >= len(calls):
                    break
                parts = min(len(calls), parts * 2)
    return sorted(calls)
