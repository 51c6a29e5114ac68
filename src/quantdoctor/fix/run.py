"""`quantdoctor.fix`: from a failing conversion to a verified model, and the script that makes it."""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quantdoctor.audit.checks import check_target
from quantdoctor.compare.labels import read_labels
from quantdoctor.convert.cleanup import run_interruptible
from quantdoctor.convert.runner import DEFAULT_TIMEOUT, check_limits
from quantdoctor.diagnose import calibration_set, recipe_and_data
from quantdoctor.errors import UsageError
from quantdoctor.fix.origin import ModelOrigin
from quantdoctor.fix.plan import Plan
from quantdoctor.fix.repairs import Blocked, Repair
from quantdoctor.fix.rounds import DEFAULT_MAX_ROUNDS, Rounds, Settings, run_rounds
from quantdoctor.fix.script import write_script
from quantdoctor.fix.verify import Verification
from quantdoctor.intake import options
from quantdoctor.intake.data import DEFAULT_MAX_SAMPLES, CalibrationSet
from quantdoctor.intake.model import is_converter
from quantdoctor.report.model import SCHEMA_VERSION, Report


@dataclass
class FixResult:
    """What fix did: the verified model (None when no repair reached one), the script, the repairs in
    order, the reports before and after, the verification, and what is left for the user.

    `origin`, `plan` and `calibration` are where further work on the model starts, such as an
    accuracy budget: `origin.source(plan.model_steps, workdir)` is the fixed model for the worker,
    `plan.recipe` its converter settings, `calibration` the samples it was calibrated on.
    """

    model: bytes | None
    script: str
    applied: list[Repair]
    before: Report
    after: Report
    verification: Verification
    blocked: list[Blocked] = field(default_factory=list)
    conversions: int = 0
    seconds: float = 0.0
    plan: Plan | None = field(default=None, repr=False)
    calibration: CalibrationSet | None = field(default=None, repr=False)
    origin: ModelOrigin | None = field(default=None, repr=False)

    @property
    def verified(self) -> bool:
        """True when `model` passed every check."""
        return self.model is not None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: the repairs, the verification, what is left, and both reports."""
        from quantdoctor import __version__

        return {"schema_version": SCHEMA_VERSION, "tool": {"name": "quantdoctor", "version": __version__},
                "verified": self.verified, "applied": [r.to_dict() for r in self.applied],
                "verification": self.verification.to_dict(), "blocked": [b.to_dict() for b in self.blocked],
                "conversions": self.conversions, "seconds": round(self.seconds, 3),
                "settings": self.plan.recipe.to_dict() if self.plan else None,
                "target": self.plan.target if self.plan else None,
                "model_bytes": len(self.model) if self.model else None,
                "before": self.before.to_dict(), "after": self.after.to_dict()}

    def __str__(self) -> str:
        from quantdoctor.fix.render import render_fix_plain

        return render_fix_plain(self)


@run_interruptible
def fix(model: Any, data: Any = None, *, mode: str | None = None, io: str | None = None,
        select_tf_ops: bool = False, signature_keys: list[str] | None = None, target: str | None = None,
        eval_data: Any = None, labels: Any = None, max_samples: int = DEFAULT_MAX_SAMPLES,
        max_rounds: int = DEFAULT_MAX_ROUNDS, timeout: float = DEFAULT_TIMEOUT, memory_limit_mb: int | None = None,
        trust_model: bool = False, output_name: str = "model_int8.tflite") -> FixResult:
    """Diagnose `model`, apply the automatic repairs, convert again, and verify, in rounds.

    Takes what `diagnose` takes (a converter keeps its own settings). `target` ("cpu", "gpu",
    "int8-accelerator", "microcontroller") decides repairs that depend on it: Select TF ops and
    float fallback only where float ops run; integer-only settings imply "int8-accelerator". With
    `eval_data` the model is also compared with the float model and any QD5xx error blocks it.
    The user's files are only read; Keras files with Lambda layers load only with `trust_model=True`.
    Returns a `FixResult`; `result.model` is None unless verified.
    """
    check_target(target)
    check_limits(timeout, memory_limit_mb)
    max_samples = options.count(max_samples, "max_samples")
    max_rounds = options.count(max_rounds, "max_rounds")
    started = time.perf_counter()
    recipe, calibration = recipe_and_data(model, data, mode, io, options.flag(select_tf_ops, "select_tf_ops"),
                                          max_samples)
    evaluation = calibration_set(eval_data, max_samples, "eval data")
    if labels is not None and evaluation is None:
        raise UsageError("labels go with eval data: pass eval_data too")
    settings = Settings(evaluation=evaluation, truth=read_labels(labels, evaluation) if labels is not None else None,
                        max_rounds=max_rounds, timeout=timeout, memory_limit_mb=memory_limit_mb,
                        trust_model=options.flag(trust_model, "trust_model"),
                        mode_requested=not is_converter(model))
    if target is None and recipe.mode == "int8-strict":
        target = "int8-accelerator"
    origin = ModelOrigin.of(model, options.names(signature_keys, "signature_keys"))
    workdir = Path(tempfile.mkdtemp(prefix="quantdoctor-fix-"))
    try:
        rounds = run_rounds(origin, Plan(recipe, target), calibration, workdir, settings)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return FixResult(
        model=rounds.after.tflite_model if rounds.verification.verified else None,
        script=_script(rounds, origin, data, max_samples, output_name), applied=rounds.applied,
        before=rounds.before, after=rounds.after, verification=rounds.verification, blocked=rounds.blocked,
        conversions=rounds.conversions, seconds=time.perf_counter() - started, plan=rounds.plan,
        calibration=rounds.calibration, origin=origin)


def _script(rounds: Rounds, origin: ModelOrigin, data: Any, max_samples: int, output_name: str) -> str:
    data_path = Path(data) if isinstance(data, (str, Path)) else None
    classes = rounds.after.model.get("layer_classes") or rounds.before.model.get("layer_classes") or {}
    return write_script(rounds.plan, rounds.applied, model_path=origin.path, keras_model=origin.editable,
                        data_path=data_path, output=output_name, max_samples=max_samples,
                        lambda_layers="Lambda" in classes.values(), signature_keys=origin.signature_keys)
