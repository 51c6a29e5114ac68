"""`quantdoctor.fix`: from a failing conversion to a verified model, and the script that makes it."""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from quantdoctor import catalog
from quantdoctor._version import __version__
from quantdoctor.budget.budget_search import BudgetOutcome, budget_objective, check_budget_settings, search_budget
from quantdoctor.budget.objective import Metric, Objective, budget_numbers
from quantdoctor.budget.search import Progress
from quantdoctor.catalog.accuracy import DEGRADED_OUTPUT
from quantdoctor.compare.compare_models import with_comparison
from quantdoctor.compare.labels import labels_for_model, read_labels
from quantdoctor.edits.plan import Plan
from quantdoctor.environment import current, require_tensorflow
from quantdoctor.errors import UsageError
from quantdoctor.fix.origin import ModelOrigin
from quantdoctor.fix.render import render_fix_plain
from quantdoctor.fix.repairs import Blocked, Repair, allows_float_ops
from quantdoctor.fix.rounds import DEFAULT_MAX_ROUNDS, Rounds, Settings, run_rounds
from quantdoctor.fix.script import write_script
from quantdoctor.fix.search_repair import reducible, repair_by_search
from quantdoctor.fix.verify import Verification
from quantdoctor.intake import options
from quantdoctor.intake.cache_settings import check_cache_root
from quantdoctor.intake.data import DEFAULT_MAX_SAMPLES, CalibrationSet
from quantdoctor.intake.model import is_converter
from quantdoctor.intake.paths import check_outputs
from quantdoctor.intake.user_input import eval_set, recipe_and_data
from quantdoctor.isolation.cleanup import run_interruptible
from quantdoctor.isolation.runner import DEFAULT_TIMEOUT
from quantdoctor.report.model import SCHEMA_VERSION, Report, rank_findings
from quantdoctor.runtime.measures import FOLLOWS_SQNR_DB
from quantdoctor.viz.overlay import write_overlay


@dataclass
class FixResult:
    """What fix did: the verified model (None when no repair reached one), the script, the repairs in
    order, the reports before and after, the verification, and what is left for the user.

    With an accuracy budget, `budget` is the report's `budget` object (also in `after.budget`) and
    `model` the variant with the fewest float ops that meets it, or, when none does, the best
    effort (then not verified: `met_budget` is False and QD513 says so).

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
    budget: dict[str, Any] | None = None
    reduced: dict[str, Any] | None = None  # repair by search: the culprit layers and the generic repairs tried

    @property
    def verified(self) -> bool:
        """True when `model` passed every check (an accuracy budget's included)."""
        return self.model is not None and self.verification.verified

    @property
    def met_budget(self) -> bool | None:
        """Whether `model` meets the accuracy budget (None without one, or when no search ran)."""
        return self.budget["met_budget"] if self.budget else None

    @property
    def kept_float(self) -> list[dict[str, Any]]:
        """The ops the accuracy budget keeps float: layer, op, node name, and gain (the metric lost
        when that op alone is quantized again)."""
        return self.budget["kept_float"] if self.budget else []

    @property
    def pareto(self) -> list[dict[str, Any]]:
        """The variants no other beats on both float ops and metric (`budget["candidates"]`: all tried)."""
        return self.budget["pareto"] if self.budget else []

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: the repairs, the verification, what is left, and both reports."""
        return {"schema_version": SCHEMA_VERSION, "tool": {"name": "quantdoctor", "version": __version__},
                "environment": current().to_dict(), "verified": self.verified,
                "applied": [r.to_dict() for r in self.applied],
                "verification": self.verification.to_dict(), "blocked": [b.to_dict() for b in self.blocked],
                "conversions": self.conversions, "seconds": round(self.seconds, 3),
                "settings": self.plan.recipe.to_dict() if self.plan else None,
                "target": self.plan.target if self.plan else None,
                "model_bytes": len(self.model) if self.model else None,
                **({"budget": self.budget} if self.budget is not None else {}),
                **({"reduce": self.reduced} if self.reduced is not None else {}),
                "before": self.before.to_dict(), "after": self.after.to_dict()}

    def __str__(self) -> str:
        return render_fix_plain(self)


@run_interruptible
def fix(model: Any, data: Any = None, *, mode: str | None = None, io: str | None = None,
        select_tf_ops: bool = False, signature_keys: list[str] | None = None, target: str | None = None,
        eval_data: Any = None, labels: Any = None, max_samples: int = DEFAULT_MAX_SAMPLES,
        max_rounds: int = DEFAULT_MAX_ROUNDS, timeout: float = DEFAULT_TIMEOUT, memory_limit_mb: int | None = None,
        trust_model: bool = False, output_name: str = "model_int8.tflite", max_drop: float | None = None,
        min_sqnr: float | None = None, metric: Metric | None = None, html: str | Path | None = None,
        progress: Progress | None = None, model_explorer: str | Path | None = None) -> FixResult:
    """Diagnose `model`, apply the automatic repairs, convert again, and verify, in rounds.

    Takes what `diagnose` takes (a converter keeps its own settings). `target` ("cpu", "gpu",
    "int8-accelerator", "microcontroller") decides repairs that depend on it: Select TF ops and
    float fallback only where float ops run; integer-only settings imply "int8-accelerator". With
    `eval_data` the model is also compared with the float model and any QD5xx error blocks it.
    The user's files are only read; Keras files with Lambda layers load only with `trust_model=True`.

    An accuracy budget on `eval_data` (full integer with float fallback, mode "int8"): `max_drop`,
    an absolute drop against the float model of top-1 accuracy with `labels`, of top-1 agreement
    without, or of `metric(labels, outputs) -> float` (higher is better, as compare calls it); or `min_sqnr`, an SQNR
    floor in dB on every output. Once the rounds have a model that converts and runs, the fewest
    ops kept float that meet it are searched (`quantdoctor.budget`); "int8-accelerator" and the NPU
    targets then put fewer integer partitions first (on an Ethos-U target, Vela compiles the variant
    returned: `budget["npu"]`). When the float model itself is already wrong on the eval data
    (QD510, QD511), nothing is searched: the result is not verified and says so. Labels naming
    classes the model lacks are refused as compare refuses them. `html` writes the after report
    with the budget's Pareto plot; `progress(step, count)` is called with ("round", its number) as each round
    starts, then with (the search step, the variants tried so far) as the budget's variants are tried.
    `model_explorer` writes the Model Explorer overlay of the model fix returns (or, unverified, the last one
    it made): the after report's per-layer SQNR and causes, and the ops the budget keeps float.
    Returns a `FixResult`; `result.model` is None unless verified (with a budget: the best effort).
    """
    require_tensorflow()
    max_samples = options.RunOptions.checked(timeout=timeout, memory_limit_mb=memory_limit_mb, max_samples=max_samples,
                                             target=target).max_samples
    max_drop, min_sqnr = budget_numbers(max_drop, min_sqnr)
    max_rounds = options.count(max_rounds, "max_rounds")
    started = time.perf_counter()
    recipe, calibration = recipe_and_data(model, data, mode, io, options.flag(select_tf_ops, "select_tf_ops"),
                                          max_samples)
    evaluation = eval_set(eval_data, max_samples)
    if labels is not None and evaluation is None:
        raise UsageError("labels go with eval data: pass eval_data too")
    truth = read_labels(labels, evaluation, for_metric=metric is not None) if labels is not None else None
    settings = Settings(evaluation=evaluation, truth=truth, labels_for_metric=metric is not None,
                        max_rounds=max_rounds, timeout=timeout, memory_limit_mb=memory_limit_mb,
                        trust_model=options.flag(trust_model, "trust_model"),
                        mode_requested=not is_converter(model), progress=progress)
    objective = budget_objective(max_drop, min_sqnr, metric, settings.truth, evaluation)
    if objective is not None:
        check_budget_settings(recipe)
    outputs = {"html": html, "model_explorer": model_explorer}
    check_outputs(inputs=(model, data, eval_data, labels), outputs=outputs)
    check_cache_root(inputs=(model, data, eval_data, labels), outputs=outputs)
    if target is None and recipe.mode == "int8-strict":
        target = "int8-accelerator"
    origin = ModelOrigin.of(model, options.names(signature_keys, "signature_keys"))
    workdir = Path(tempfile.mkdtemp(prefix="quantdoctor-fix-"))
    try:
        rounds = run_rounds(origin, Plan(recipe, target), calibration, workdir, settings)
        reduced = None
        if reducible(rounds):  # a converter bug the catalogue could not repair: reduce, then generic repairs
            rounds, reduced = repair_by_search(model, data, rounds, origin, calibration, workdir, settings, mode=mode,
                                               io=io, select_tf_ops=select_tf_ops, max_samples=max_samples)
        budget = None
        if objective is None and _searchable(rounds) and _output_broken(rounds, target):
            # QD504/QD507/QD518/QD519 on a target that runs float ops: the float fallback that makes the outputs
            # follow the float model again (an SQNR floor at what OK means, per channel when most of an output's
            # channels were lost: the whole output's SQNR does not see them), on the eval data or the samples
            objective = replace(budget_objective(None, FOLLOWS_SQNR_DB, None, None, evaluation or rounds.calibration),
                                per_channel=any(f.code == "QD518" and f.severity == "error"
                                                for f in rounds.after.findings))
            evaluation = evaluation or rounds.calibration
        wrong = _float_model_wrong(rounds) if objective is not None else []
        if objective is not None and not wrong and _searchable(rounds):
            labels_for_model(settings.truth, rounds.after.audit, for_metric=metric is not None)  # as compare
            budget_dir = workdir / "budget"
            budget_dir.mkdir()
            budget = search_budget(origin.source(rounds.plan.model_steps, budget_dir), rounds.plan.recipe,
                                   rounds.calibration, budget_dir, evaluation, objective, target=rounds.plan.target,
                                   timeout=timeout, trust_model=settings.trust_model, progress=progress)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result = FixResult(
        model=rounds.after.tflite_model if rounds.verification.verified else None,
        script=_script(rounds, origin, data, max_samples, output_name, budget, objective), applied=rounds.applied,
        before=rounds.before, after=rounds.after, verification=rounds.verification, blocked=rounds.blocked,
        conversions=rounds.conversions, seconds=time.perf_counter() - started, plan=rounds.plan,
        calibration=rounds.calibration, origin=origin, reduced=reduced)
    if budget is not None:
        _take_budget(result, budget)
    elif wrong:
        result.verification.details.append(
            f"no float fallback searched: the float model is already wrong on the eval data ({', '.join(wrong)}), "
            "and an accuracy budget measured against it means nothing")
    produced = result.model or result.after.tflite_model
    overlay = Path(model_explorer) if model_explorer and produced is not None else None
    if overlay is not None:
        write_overlay(overlay, _measured(result, budget, evaluation, timeout), produced, result.kept_float)
    if html:
        from quantdoctor.report.html import write_html

        write_html(result.after, Path(html), overlay)
    return result


def _measured(result: FixResult, budget: BudgetOutcome | None, evaluation: CalibrationSet | None,
              timeout: float) -> Report:
    """The report the overlay shows: the after report, or, when the budget's model replaced the one it measured,
    a copy measured again on the budget's model against the same float twin (its own layers and findings)."""
    if budget is None or budget.float_model is None or evaluation is None:
        return result.after
    measured = replace(result.after, tflite_model=budget.model, findings=[], comparison=None)
    return with_comparison(measured, budget.float_model, result.after.model, evaluation, timeout=timeout)


def _output_broken(rounds: Rounds, target: str | None) -> bool:
    """An output error (QD504, QD507, QD518, QD519) on a target where ops may stay float, with samples to measure on."""
    return allows_float_ops(target) and rounds.calibration is not None and bool(rounds.calibration.samples) and \
        any(f.code in DEGRADED_OUTPUT and f.severity == "error" for f in rounds.after.findings)


def _searchable(rounds: Rounds) -> bool:
    """The rounds' model converts and runs, and only accuracy findings (QD5xx) block it: what a float
    fallback can answer."""
    errors = [f for f in rounds.after.findings if f.severity == "error" and f.category != "accuracy"]
    return (rounds.after.tflite_model is not None and not errors and rounds.verification.runs is not False
            and rounds.plan.recipe.mode == "int8")


def _float_model_wrong(rounds: Rounds) -> list[str]:
    """The codes of the errors saying the float model itself fails on the eval data (QD510, QD511)."""
    return sorted({f.code for f in rounds.after.findings
                   if f.severity == "error" and catalog.get(f.code).float_model_fails})


def _take_budget(result: FixResult, budget: BudgetOutcome) -> None:
    """The budget's model replaces the plain one: verified by its own run on the eval data (every
    variant ran there in LiteRT), its audit, and the budget. On an Ethos-U target, Vela's placement of
    the budget's model replaces the plain model's: the ops kept float run on the CPU."""
    result.model, result.budget = budget.model, budget.budget
    accuracy_errors = [f for f in result.after.findings if f.category == "accuracy" and f.severity == "error"]
    findings = [f for f in result.after.findings if f not in accuracy_errors] + budget.findings + budget.audit_errors
    audit = result.after.audit
    npu = budget.budget.get("npu")
    if npu is not None:  # the plain model's Vela audit no longer describes the model returned
        audit = {**(audit or {}), "npu": npu}
        findings = [f for f in findings if not catalog.get(f.code).from_vela] + budget.npu_findings
    result.after = replace(result.after, budget=budget.budget, audit=audit, findings=rank_findings(findings))
    objective = budget.budget["objective"]
    details = [f"accuracy budget ({objective['description']}): {'met' if budget.met else 'missed'}, "
               f"{budget.budget['chosen_value']:.4f} with {budget.budget['chosen']['float_ops']} op(s) kept float"]
    if npu is not None:
        details.append(f"on {npu['accelerator']} (Vela): {npu['cpu_ops']} op(s) on the CPU in {npu['cpu_partitions']} "
                       f"CPU partition(s) and {npu['npu_partitions']} NPU partition(s), "
                       f"{npu['cpu_mac_share']:.1%} of the MACs on the CPU")
    if accuracy_errors:
        details.append("the plain INT8 model's " + ", ".join(sorted({f.code for f in accuracy_errors}))
                       + " answered by keeping ops float")
    result.verification = Verification(converted=True, audit=not budget.audit_errors, runs=True,
                                       compared=budget.met, details=details)
    result.blocked = [] if budget.met else [Blocked(
        "QD513", "No float fallback meets the accuracy budget; the model is the best effort.",
        catalog.get("QD513").fix)]


def _script(rounds: Rounds, origin: ModelOrigin, data: Any, max_samples: int, output_name: str,
            budget: BudgetOutcome | None, objective: Objective | None) -> str:
    data_path = Path(data) if isinstance(data, (str, Path)) else None
    classes = rounds.after.model.get("layer_classes") or rounds.before.model.get("layer_classes") or {}
    return write_script(rounds.plan, rounds.applied, model_path=origin.path, keras_model=origin.editable,
                        data_path=data_path, output=output_name, max_samples=max_samples,
                        lambda_layers="Lambda" in classes.values(), signature_keys=origin.signature_keys,
                        keep_float=budget.keep_float if budget else None,
                        budget=objective.describe() if objective else "")
