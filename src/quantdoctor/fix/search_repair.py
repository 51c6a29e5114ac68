"""`fix`'s repair by search: reduce a converter bug to its culprit layers, then try generic repairs.

Runs after the catalogue's rounds ended unverified on a `reducible` root cause (a converter
crash, timeout or unrecognised error). Each generic repair (`fix/generic_repairs.py`) is converted and
verified by one more round of `fix`; the first verified one is kept.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from quantdoctor import catalog
from quantdoctor.errors import UsageError
from quantdoctor.fix.generic_repairs import Culprit, generic_plans
from quantdoctor.fix.origin import ModelOrigin
from quantdoctor.fix.repairs import Blocked
from quantdoctor.fix.rounds import Rounds, Settings, run_rounds
from quantdoctor.intake.data import CalibrationSet
from quantdoctor.reduce.reduce_model import DEFAULT_REDUCE_SAMPLES, reduce


def reducible(rounds: Rounds) -> bool:
    """True when the rounds ended unverified on a converter failure worth reducing."""
    cause = rounds.before.root_cause
    return (not rounds.verification.verified and cause is not None and cause.code in catalog.CHECKS
            and catalog.get(cause.code).reducible)


def repair_by_search(model: Any, data: Any, rounds: Rounds, origin: ModelOrigin, calibration: CalibrationSet | None,
                     workdir: Path, settings: Settings, **conversion: Any) -> tuple[Rounds, dict[str, Any]]:
    """Reduce the root cause to its culprit, then try the generic repairs on the last plan, cheapest
    first. `conversion` is what the user's fix call set: mode, io, select_tf_ops, max_samples.
    Returns the rounds to keep (a verified one when a repair worked) and what was done, as JSON."""
    cause = rounds.before.root_cause
    max_samples = min(conversion.pop("max_samples"), DEFAULT_REDUCE_SAMPLES)
    try:
        reduced = reduce(model, data, target=rounds.plan.target, code=cause.code, max_samples=max_samples,
                         timeout=settings.timeout, memory_limit_mb=settings.memory_limit_mb,
                         trust_model=settings.trust_model, **conversion)
    except UsageError as exc:  # not a Keras model, or the failure does not reproduce: no culprit to name
        return rounds, {"reduced": False, "reason": str(exc), "tried": []}
    culprit = Culprit(cause.code, [c["name"] for c in reduced.culprits],
                      sorted({op for c in reduced.culprits for op in c["op_types"]}))
    summary: dict[str, Any] = {"reduced": True, "signature": reduced.signature.describe(),
                               "culprits": reduced.culprits, "conversions": reduced.conversions, "tried": []}
    conversions = rounds.conversions + reduced.conversions
    blocked: list[Blocked] = []
    for number, option in enumerate(generic_plans(rounds.plan, culprit)):
        if isinstance(option, Blocked):
            blocked.append(option)
            summary["tried"].append({**option.to_dict(), "verified": False})
            continue
        plan, repair = option
        attempt_dir = workdir / f"generic{number}"
        attempt_dir.mkdir()
        attempt = run_rounds(origin, plan, calibration, attempt_dir, replace(settings, max_rounds=1))
        conversions += attempt.conversions
        summary["tried"].append({**repair.to_dict(), "verified": attempt.verification.verified})
        if attempt.verification.verified:
            return Rounds(rounds.before, attempt.after, attempt.plan, attempt.calibration, attempt.verification,
                          [*rounds.applied, repair], [], conversions), summary
    rounds.conversions = conversions
    rounds.blocked = [*rounds.blocked, *blocked]
    return rounds, summary
