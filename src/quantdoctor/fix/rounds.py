"""Diagnose, repair, convert again: the rounds of `fix`, within a bound on the rounds.

Each round converts once, in the isolated worker. Between conversions every repair that applies
goes into the plan: the settings and model repairs for the report's errors, then the data repairs
until the data checks (NumPy, in this process) find nothing more to repair. So a model with three
data mistakes converts again once, not three times.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from quantdoctor import catalog
from quantdoctor.compare.compare_models import with_comparison
from quantdoctor.compare.labels import labels_for_model
from quantdoctor.diagnosis.classify_failure import excerpt
from quantdoctor.diagnosis.pipeline import diagnose_prepared
from quantdoctor.edits.plan import Plan, apply_data_steps
from quantdoctor.errors import EditFailed, InputShapesUnknown, UsageError
from quantdoctor.fix.origin import ModelOrigin
from quantdoctor.fix.repairs import REPAIRS, Bench, Blocked, Repair, blocked_without_repair
from quantdoctor.fix.verify import Verification, check_report, check_runs
from quantdoctor.intake.data import CalibrationSet
from quantdoctor.intake.model import keras_call_arguments
from quantdoctor.isolation.runner import DEFAULT_TIMEOUT
from quantdoctor.preflight.data_checks import (
    InputSpec,
    check_calibration,
    check_input_names,
    check_signature_coverage,
    check_unused_data,
    data_is_used,
)
from quantdoctor.report.model import Finding, Report, rank_findings

DEFAULT_MAX_ROUNDS = 4
ROUND = "round"  # the progress step of a round of fix (its count is the round's number)
_UNVERIFIED = ("the model converted but did not pass verification: no repair answers this; the script (--script) "
               "reproduces it for you to run where the check can pass")
_UNCONVERTED = ("no automatic repair answers the root cause: apply its fix (the last diagnosis) by hand; the script "
                "(--script) reproduces the conversion")
_MAX_DATA_PASSES = 8


@dataclass
class Rounds:
    """What the rounds did: the first and last reports, the repairs, and where it stopped."""

    before: Report
    after: Report
    plan: Plan
    calibration: CalibrationSet | None
    verification: Verification
    applied: list[Repair] = field(default_factory=list)
    blocked: list[Blocked] = field(default_factory=list)
    conversions: int = 0


@dataclass
class Settings:
    """How fix runs each round."""

    evaluation: CalibrationSet | None = None
    truth: Any = None  # the eval labels, as compare reads them
    labels_for_metric: bool = False  # a metric of the user's reads the labels (they need not be classes)
    max_rounds: int = DEFAULT_MAX_ROUNDS
    timeout: float = DEFAULT_TIMEOUT
    memory_limit_mb: int | None = None
    trust_model: bool = False
    mode_requested: bool = True  # the settings came from --mode, not from the user's converter
    progress: Callable[[str, int], None] | None = None  # called with (ROUND, its number) as each round starts


def run_rounds(origin: ModelOrigin, plan: Plan, data: CalibrationSet | None, workdir: Path,
               settings: Settings) -> Rounds:
    """Repair until the model is verified, no repair applies, or the rounds run out."""
    applied: list[Repair] = []
    blocked: list[Blocked] = []
    before = None
    converted: Rounds | None = None  # the last round that converted, should the next one's model edit fail
    conversions = 0
    for number in range(1, settings.max_rounds + 1):
        round_dir = workdir / f"round{number}"
        round_dir.mkdir()
        if settings.progress:
            settings.progress(ROUND, number)
        try:
            report, float_model = _convert(origin, plan, data, round_dir, settings)
        except EditFailed as exc:
            if converted is None:  # the user's own plan, before any repair of fix's: nothing to fall back to
                raise
            return replace(converted, blocked=[Blocked(
                "edit", str(exc), "the repairs that need this model edit cannot apply to this model; the model "
                "above is the last one quantdoctor converted")])
        conversions += report.conversion.get("attempted", False)
        before = before or report
        calibration = apply_data_steps(data, plan.data_steps)
        report, verification = _verify(report, float_model, calibration, round_dir, settings)
        if verification.verified:
            return Rounds(before, report, plan, calibration, verification, applied, [], conversions)
        last = number == settings.max_rounds
        converted = Rounds(before, report, plan.copy(), calibration, verification, list(applied), [], conversions)
        repairs, blocked = plan_repairs(Bench(plan.copy() if last else plan, report, data, origin.editable))
        if repairs and last:
            blocked = [Blocked("rounds", f"The {number} rounds ran out with repairs still to make.",
                               "run fix again with a higher --max-rounds")]
        if not repairs or last:
            break
        applied += repairs
    if not blocked and report.conversion.get("outcome") != "ok":
        blocked = [Blocked("verify", "The model still does not convert (see the last diagnosis).", _UNCONVERTED)]
    if not blocked:
        blocked = [Blocked("verify", "The converted model did not pass verification (see above).", _UNVERIFIED)]
    return Rounds(before, report, plan, calibration, verification, applied, blocked, conversions)


def _convert(origin: ModelOrigin, plan: Plan, data: CalibrationSet | None, round_dir: Path,
             settings: Settings) -> tuple[Report, bytes | None]:
    """One diagnosis of the plan in the worker (or, for invalid Keras input names, without converting)."""
    invalid = origin.invalid_input_names(plan.model_steps)
    if invalid:
        return _unexportable(origin, plan, invalid), None
    calibration = apply_data_steps(data, plan.data_steps)
    unused = check_unused_data(calibration, plan.recipe, mode_requested=settings.mode_requested)
    try:
        source = origin.source(plan.model_steps, round_dir)
    except InputShapesUnknown as exc:
        return _inputs_unknown(origin, plan, exc), None
    report, artifacts = diagnose_prepared(source, plan.recipe, calibration, round_dir,
                                          target=plan.target, evaluation=settings.evaluation,
                                          float_twin=settings.evaluation is not None, timeout=settings.timeout,
                                          memory_limit_mb=settings.memory_limit_mb,
                                          trust_model=settings.trust_model, settings_findings=unused)
    return report, artifacts.float_twin


def _unexportable(origin: ModelOrigin, plan: Plan, invalid: list[Any]) -> Report:
    """The report for a Keras object whose input names the converter's export fails on (QD405)."""
    inputs = [{"name": x.name, "shape": list(x.shape), "dtype": str(x.dtype)} for x in origin.keras_object.inputs]
    findings = check_input_names([InputSpec.from_dict(spec) for spec in inputs])
    return Report(model={"source": f"Keras model '{origin.keras_object.name}'", "format": "keras", "inputs": inputs,
                         "layers": [layer.name for layer in origin.keras_object.layers]},
                  settings={**plan.recipe.to_dict(), "target": plan.target},
                  findings=catalog.mark_automatic(rank_findings(findings)),
                  conversion={"attempted": False, "outcome": "skipped", "seconds": 0.0, "error_excerpt": None,
                              "model_bytes": None})


def _inputs_unknown(origin: ModelOrigin, plan: Plan, error: InputShapesUnknown) -> Report:
    """The report for a Keras object whose input shapes the converter's export cannot tell (QD408)."""
    model = origin.keras_object
    message = f"{type(error.__cause__).__name__}: {error.__cause__}"
    arguments = keras_call_arguments(model)
    built = bool(getattr(model, "built", False))
    finding = catalog.get("QD408").finding(
        f"TFLiteConverter.from_keras_model cannot tell the input shapes of Keras model {model.name!r}: it has no "
        f"Input layers, and Keras recorded no call the converter can read them from"
        + ("." if built else " (the model was never called, so it has no weights yet)."),
        evidence={"converter_message": message, "call_arguments": arguments, "built": built})
    return Report(model={"source": f"Keras model {model.name!r}", "format": "keras", "inputs": [],
                         "layers": [layer.name for layer in getattr(model, "layers", [])]},
                  settings={**plan.recipe.to_dict(), "target": plan.target},
                  findings=catalog.mark_automatic([finding]),
                  conversion={"attempted": True, "outcome": "error", "seconds": 0.0, "error_excerpt": excerpt(message),
                              "model_bytes": None})


def _verify(report: Report, float_model: bytes | None, calibration: CalibrationSet | None, round_dir: Path,
            settings: Settings) -> tuple[Report, Verification]:
    """The round's report (with its comparison when eval data was given) and how it verified."""
    verification = check_report(report)
    if not verification.audit:
        return report, verification
    check_runs(report.tflite_model, calibration, report.audit.get("flex_ops", []), round_dir, verification)
    if verification.runs and settings.evaluation is not None:
        report = _compare(report, float_model, verification, settings)
    return report, verification


def _compare(report: Report, float_model: bytes | None, verification: Verification, settings: Settings) -> Report:
    if float_model is None:
        verification.compared = False
        verification.details.append("compare had no float reference: the float conversion failed")
        return report
    truth = labels_for_model(settings.truth, report.audit, for_metric=settings.labels_for_metric)  # as compare
    try:
        report = with_comparison(report, float_model, report.model, settings.evaluation, truth=truth,
                                 timeout=settings.timeout)
    except UsageError as exc:
        verification.compared = False
        verification.details.append(f"compare could not run: {exc}")
        return report
    errors = [f for f in report.findings if f.code.startswith("QD5") and f.severity == "error"]
    verification.compared = not errors
    verification.details.append("compare on the eval data: " + (
        "no accuracy error" if not errors else ", ".join(f"{f.code} {f.message}" for f in errors)))
    return report


def plan_repairs(bench: Bench) -> tuple[list[Repair], list[Blocked]]:
    """Every repair that applies now, in the plan; and the errors no repair could answer."""
    repairs: list[Repair] = []
    blocked: dict[str, Blocked] = {}
    data_codes = set()
    for finding in _errors(bench.report.findings):
        if catalog.get(finding.code).repaired_in_data:
            data_codes.add(finding.code)
            continue
        _attempt(finding, bench, repairs, blocked)
    for _ in range(_MAX_DATA_PASSES):  # data repairs until the data checks find nothing more to repair
        progress = False
        for finding in _errors(data_findings(bench)):
            if _attempt(finding, bench, repairs, blocked):
                progress = True
                break
        if not progress:
            break
    return repairs, list(blocked.values())


def _attempt(finding: Finding, bench: Bench, repairs: list[Repair], blocked: dict[str, Blocked]) -> bool:
    repair = REPAIRS.get(finding.code)
    outcome = repair(finding, bench) if repair else blocked_without_repair(finding, bench)
    if isinstance(outcome, Repair):
        repairs.append(outcome)
        blocked.pop(finding.code, None)
        return True
    if isinstance(outcome, Blocked):
        blocked.setdefault(finding.code, outcome)
    return False


def data_findings(bench: Bench) -> list[Finding]:
    """The data checks on the samples as the plan now feeds them."""
    recipe = bench.plan.recipe
    calibration = bench.calibration if data_is_used(recipe) else None
    if calibration is None and not recipe.needs_calibration:
        return []
    inputs = bench.inputs
    signature_keys = bench.report.model.get("signatures") or []
    return rank_findings(check_calibration(calibration, inputs, recipe)
                         + check_signature_coverage(calibration, signature_keys))


def _errors(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == "error"]

