"""`fix_accuracy`: the INT8 model with the fewest float ops that meets an accuracy budget."""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from quantdoctor import catalog
from quantdoctor.audit.checks import check_target, summarize
from quantdoctor.audit.tflite_model import read_tflite
from quantdoctor.budget.graph import SCALE_SHARING_OPS, OpGraph
from quantdoctor.budget.objective import Metric, Objective
from quantdoctor.budget.script import ScriptSource, render_script
from quantdoctor.budget.search import Evaluator, Progress, SearchOutcome, Strategy, pareto, search
from quantdoctor.budget.session import VariantSession
from quantdoctor.catalog.accuracy import keep_float_code
from quantdoctor.catalog.locations import LayerNames
from quantdoctor.compare.labels import check_classes, read_labels
from quantdoctor.convert.cleanup import run_interruptible
from quantdoctor.convert.runner import DEFAULT_TIMEOUT, check_limits
from quantdoctor.diagnose import calibration_set, diagnose_with_calibration
from quantdoctor.errors import QuantizationError, UsageError
from quantdoctor.intake import model as model_intake
from quantdoctor.intake import options
from quantdoctor.intake.data import DEFAULT_MAX_SAMPLES, CalibrationSet
from quantdoctor.intake.paths import check_outputs
from quantdoctor.intake.recipe import Recipe
from quantdoctor.report.model import Finding, Location, Report, rank_findings


@dataclass
class BudgetResult:
    """What `fix_accuracy` found.

    `model` is the chosen .tflite; `met_budget` says whether it meets the budget (else it is the
    best effort); `kept_float` lists the ops kept in float (Keras layer, op, node name, and gain:
    the metric lost when that op alone is quantized again); `pareto` holds the variants no other
    beats on both float ops and metric, `candidates` every variant tried; `script` is the
    standalone script that makes the model again; `report` is the diagnosis of the plain
    conversion, with all of this in `report.budget`.
    """

    model: bytes
    met_budget: bool
    kept_float: list[dict[str, Any]]
    pareto: list[dict[str, Any]]
    candidates: list[dict[str, Any]]
    script: str
    report: Report

    def to_dict(self) -> dict[str, Any]:
        """The JSON report, with its `budget` object."""
        return self.report.to_dict()


@run_interruptible
def fix_accuracy(model: Any, data: Any = None, *, eval_data: Any, labels: Any = None, metric: Metric | None = None,
                 max_drop: float | None = None, min_sqnr: float | None = None, target: str | None = None,
                 mode: str | None = None, io: str | None = None, max_samples: int = DEFAULT_MAX_SAMPLES,
                 timeout: float = DEFAULT_TIMEOUT, html: str | Path | None = None, script: str | Path | None = None,
                 output_name: str = "model_int8.tflite", progress: Progress | None = None,
                 trust_model: bool = False) -> BudgetResult:
    """The INT8 model with the fewest ops kept in float that meets an accuracy budget on `eval_data`.

    `model` and `data` are as for `diagnose`, quantized in full integer with float fallback (mode
    "int8"). The budget is `max_drop`, an absolute drop of the metric against the float model, or
    `min_sqnr`, an SQNR floor in dB on every output. The metric is top-1 accuracy with `labels`,
    top-1 agreement with the float model without them, or `metric(outputs, labels) -> float`
    (higher is better). `target="int8-accelerator"` puts fewer integer partitions first.

    Calibration runs once (or not at all, from the conversion cache); each variant replays the
    quantizer with a denylist. `html` writes the HTML report with the Pareto plot; `script` writes
    the standalone script that makes the model again as `output_name` (and, beside the script, the
    calibration data and the model when they are not files already). `trust_model` is as for
    `diagnose`. Raises QuantizationError when the model does not convert at all.
    """
    started = time.perf_counter()
    check_target(target)
    check_limits(timeout, None)
    max_samples = options.count(max_samples, "max_samples")
    check_outputs(inputs=(model, data, eval_data, labels), outputs={"html": html, "script": script})
    mode_asked = _mode(model, data, mode)
    if mode_asked != "int8":
        raise UsageError(f"an accuracy budget keeps ops in float inside an INT8 model, which mode {mode_asked} does "
                         "not allow: use mode int8 (float fallback), with target int8-accelerator to put fewer "
                         "integer partitions first")
    evaluation = calibration_set(eval_data, max_samples, "eval data")
    if evaluation is None or not evaluation.samples:
        raise UsageError("an accuracy budget needs eval data with at least one sample")
    truth = read_labels(labels, evaluation)
    objective = Objective.create(max_drop=max_drop, min_sqnr=min_sqnr, labels=truth.classes if truth else None,
                                 metric=metric)
    report, artifacts = diagnose_with_calibration(model, data, mode=mode, io=io, max_samples=max_samples,
                                                  timeout=timeout, trust_model=trust_model)
    if report.tflite_model is None:
        raise QuantizationError(report)
    if objective.name == "accuracy":
        check_classes(truth, report.audit["output_types"][0]["shape"] if report.audit["output_types"] else [])
    if artifacts.calibrated is None or artifacts.float_twin is None:
        raise UsageError("the conversion did not calibrate, so no op can be kept float: give calibration data")
    converted = time.perf_counter()
    layer_names, output_layers = LayerNames.from_model(report.model), report.model.get("output_layers", [])
    outcome, graph, chosen_model = budget_search(artifacts.float_twin, artifacts.calibrated, artifacts.quantizer,
                                                 evaluation, objective, layer_names, output_layers, target, timeout,
                                                 progress)
    kept = kept_float(outcome, graph)
    finished = time.perf_counter()
    report.budget = {
        "objective": objective.to_dict(), "met_budget": outcome.met_budget, "target": target,
        "int8_value": outcome.candidates[0].metric, "chosen_value": outcome.chosen.metric,
        "kept_float": kept, "chosen": outcome.chosen.to_dict(graph),
        "audit": summarize(read_tflite(chosen_model), layer_names),
        "candidates": [c.to_dict(graph) for c in outcome.candidates],
        "pareto": [c.to_dict(graph) for c in pareto(outcome.candidates)],
        "evaluations": len(outcome.candidates), "candidate_ops": len(graph.candidates),
        "seconds": {"conversion": round(converted - started, 3), "variant_worker": round(
                        finished - converted - outcome.search_seconds, 3),
                    "ranking": round(outcome.ranking_seconds, 3), "search": round(outcome.search_seconds, 3),
                    "total": round(finished - started, 3)},
    }
    report.findings = rank_findings(report.findings + budget_findings(outcome, graph, objective, kept))
    source, data_path = _script_inputs(Path(script) if script else None, model, data, artifacts.calibration,
                                       trust_model)
    script_text = render_script(source, _recipe(report), data_path, max_samples,
                                [(row["node"], f"{row['layer'] or 'op'} ({row['op']})") for row in kept],
                                output_name, objective.describe())
    if script:
        Path(script).write_text(script_text)
    if html:
        from quantdoctor.report.html import write_html

        write_html(report, Path(html))
    return BudgetResult(chosen_model, outcome.met_budget, kept, report.budget["pareto"], report.budget["candidates"],
                        script_text, report)


def budget_search(float_model: bytes, calibrated: bytes, quantizer: dict[str, Any], evaluation: CalibrationSet,
                  objective: Objective, layer_names: list[str], output_layers: list[str | None],
                  target: str | None = None, timeout: float = DEFAULT_TIMEOUT, progress: Progress | None = None,
                  strategy: Strategy = search) -> tuple[SearchOutcome, OpGraph, bytes]:
    """The search on its own, from a calibrating conversion's artifacts: the outcome, the op graph
    (names of the candidates), and the chosen model's bytes. Runs the variant worker; `strategy`
    is the search run in it (benchmarks pass others)."""
    workdir = Path(tempfile.mkdtemp(prefix="quantdoctor-budget-"))
    try:
        with VariantSession(workdir, float_model, calibrated, quantizer, evaluation, timeout) as session:
            objective.set_reference(session.float_outputs())
            started = time.perf_counter()
            evaluate = Evaluator(session, objective, progress)
            quantized = evaluate(frozenset(), "int8")
            if quantized.model_path is None:
                raise UsageError(f"the fully quantized model cannot run on the eval data: {quantized.error}")
            graph = OpGraph(read_tflite(calibrated), read_tflite(quantized.model_path.read_bytes()), layer_names,
                            output_layers)
            outcome = strategy(evaluate, graph, layer_names, output_layers, target == "int8-accelerator")
            outcome.search_seconds = time.perf_counter() - started
            return outcome, graph, outcome.chosen.model_path.read_bytes()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def kept_float(outcome: SearchOutcome, graph: OpGraph) -> list[dict[str, Any]]:
    """The chosen variant's float ops: Keras layer, op type, node name and gain, largest gain first."""
    rows = []
    for node in outcome.chosen.nodes:
        candidate = graph.candidate(node)
        gain = outcome.gains.get(node)
        rows.append({"layer": candidate.layer, "op": candidate.op, "node": node,
                     "gain": None if gain is None else round(gain, 6)})
    return sorted(rows, key=lambda row: (-(row["gain"] or 0.0), row["node"]))


def budget_findings(outcome: SearchOutcome, graph: OpGraph, objective: Objective,
                    kept: list[dict[str, Any]]) -> list[Finding]:
    """QD513 when no variant meets the budget; QD514 for each scale-sharing op kept float with its group."""
    findings = []
    chosen = outcome.chosen
    if not outcome.met_budget:
        everything = next((c for c in outcome.candidates if c.step == "all"), None)
        findings.append(catalog.get("QD513").finding(
            f"No variant meets the budget ({objective.describe()}): the best scores {_value(chosen.metric)} with "
            f"{len(chosen.nodes)} op(s) in float"
            + (f", and keeping every quantizable op in float scores {_value(everything.metric)}" if everything else "")
            + ". The model returned is that best effort.",
            evidence={"objective": objective.to_dict(), "best_value": chosen.metric,
                      "all_float_value": everything.metric if everything else None}))
    nodes = {row["node"]: row for row in kept}
    for group in graph.scale_groups():
        merge = next((n for n in group if graph.candidate(n).op in SCALE_SHARING_OPS), None)
        together = sorted(group & chosen.nodes)
        if merge is None or merge not in chosen.nodes or len(together) < 2:
            continue
        row = nodes[merge]
        others = [nodes[n]["layer"] or n for n in together if n != merge]
        findings.append(catalog.get("QD514").finding(
            f"{row['op']} '{row['layer'] or merge}' gives its inputs one scale: it stays float together with "
            f"{', '.join(others)}; alone it would restore nothing.",
            location=Location(layer=row["layer"], op=row["op"], tensor=merge),
            evidence={"kept_together": together}, fix_code=keep_float_code(together)))
    return findings


def _mode(model: Any, data: Any, mode: str | None) -> str:
    """The mode the conversion will run in, read before converting."""
    if model_intake.is_converter(model):
        recipe = Recipe.from_converter(model)
        recipe.calibrate = recipe.calibrate or data is not None
        return recipe.mode
    return Recipe.for_mode(mode or "int8").mode


def _recipe(report: Report) -> Recipe:
    return Recipe.from_dict({key: value for key, value in report.settings.items() if key != "target"})


def _script_inputs(script: Path | None, model: Any, data: Any, calibration: CalibrationSet | None,
                   trusted: bool) -> tuple[ScriptSource, str]:
    """Where the script reads the model and the calibration data. Files the user gave are read in
    place; a Keras object and samples given in Python are written beside the script (when it is
    written), else the script names placeholders to fill in."""
    try:
        keras_model = model_intake.converted_model(model) if model_intake.is_converter(model) else model
    except UsageError:  # concrete functions: no model file to name
        keras_model = None
    if isinstance(keras_model, (str, Path)):
        path = Path(keras_model).resolve()
        source = ScriptSource(str(path), "saved_model" if path.is_dir() else "keras_file", trusted=trusted)
    elif script is not None and model_intake.is_keras_model(keras_model):
        path = script.with_name(f"{script.stem}_model.keras")
        keras_model.save(path)
        source = ScriptSource(str(path.resolve()), "keras_file", trusted=trusted)
    else:
        source = ScriptSource("model.keras", "keras_file", note="save your model here: model.save('model.keras')",
                              trusted=trusted)
    if isinstance(data, (str, Path)) and Path(data).suffix in (".npz", ".npy") and not _quantdoctor_format(Path(data)):
        return source, str(Path(data).resolve())
    stacked = _stacked(calibration)
    if script is not None and stacked is not None:
        path = script.with_name(f"{script.stem}_calibration.npz")
        np.savez(path, **stacked)
        return source, str(path.resolve())
    return source, "calibration.npz"


def _stacked(calibration: CalibrationSet | None) -> dict[str, np.ndarray] | None:
    """The samples stacked per input along axis 0 (the --data format), when they stack."""
    if calibration is None or not calibration.samples or calibration.generator_error:
        return None
    first = calibration.samples[0]
    if first.kind not in ("list", "dict", "array"):
        return None
    try:
        stacked = {name: np.concatenate([s.values[name] for s in calibration.samples]) for name in first.values}
    except (KeyError, ValueError):
        return None
    return stacked if first.kind == "dict" else {f"arr_{i}": a for i, a in enumerate(stacked.values())}


def _quantdoctor_format(path: Path) -> bool:
    if path.suffix != ".npz":
        return False
    with np.load(path, allow_pickle=False) as npz:
        return "__format__" in npz.files


def _value(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
