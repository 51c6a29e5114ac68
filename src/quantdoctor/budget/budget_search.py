"""Accuracy budgets for `fix`: the INT8 model with the fewest float ops that meets a metric budget.

`fix(..., max_drop=...)` (or `min_sqnr=`) checks the budget before any conversion
(`budget_objective`, `check_budget_settings`), runs its repair rounds, and then searches the float
fallback on the repaired model (`search_budget`): one calibrating conversion (usually taken from
the conversion cache, which the last round filled), then `budget_search` in the variant worker.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from quantdoctor import catalog
from quantdoctor.audit.checks import audit_findings, output_layer_names, summarize
from quantdoctor.audit.ethos_u import npu_audit
from quantdoctor.audit.tflite_model import TFLiteModel, read_tflite
from quantdoctor.budget.graph import SCALE_SHARING_OPS, OpGraph
from quantdoctor.budget.objective import Metric, Objective
from quantdoctor.budget.search import Evaluator, Progress, SearchOutcome, Strategy, pareto, search
from quantdoctor.budget.session import VariantSession
from quantdoctor.catalog.accuracy import keep_float_code
from quantdoctor.catalog.locations import LayerNames
from quantdoctor.compare.labels import Labels
from quantdoctor.errors import UsageError
from quantdoctor.intake.data import CalibrationSet
from quantdoctor.intake.model import ModelSource
from quantdoctor.intake.options import Target
from quantdoctor.intake.recipe import Recipe
from quantdoctor.isolation.runner import DEFAULT_TIMEOUT
from quantdoctor.report.model import Finding, Location


@dataclass
class BudgetOutcome:
    """What the search on a repaired model found: the chosen model (meeting the budget, or the best
    effort), the report's `budget` object, its findings (QD513, QD514), and the ops kept float as
    (node name, what it is) for the script; `float_model`, the float twin the variants were measured against.
    On an Ethos-U target, `npu_findings` are Vela's on the chosen model (QD120 for each op on the CPU, QD121),
    and `budget["npu"]` its `audit.npu`."""

    model: bytes
    budget: dict[str, Any]
    findings: list[Finding]
    keep_float: list[tuple[str, str]]
    audit_errors: list[Finding]
    npu_findings: list[Finding] = field(default_factory=list)
    float_model: bytes | None = field(default=None, repr=False)

    @property
    def met(self) -> bool:
        return bool(self.budget["met_budget"])


def budget_objective(max_drop: float | None, min_sqnr: float | None, metric: Metric | None, truth: Labels | None,
                     evaluation: CalibrationSet | None) -> Objective | None:
    """The accuracy budget asked for, checked before any work (a UsageError when it is not one);
    None when none was asked for."""
    if max_drop is None and min_sqnr is None:
        if metric is not None:
            raise UsageError("a metric judges an accuracy budget: give max_drop (or min_sqnr) with it")
        return None
    if evaluation is None:
        raise UsageError("an accuracy budget is measured on eval data: pass eval_data")
    labels = None if truth is None else truth.values if metric is not None else truth.classes
    return Objective.create(max_drop=max_drop, min_sqnr=min_sqnr, labels=labels, metric=metric)


def check_budget_settings(recipe: Recipe) -> None:
    """An accuracy budget keeps ops float inside an INT8 model: only full integer with float fallback allows it."""
    if recipe.mode != "int8":
        raise UsageError(f"an accuracy budget keeps ops in float inside an INT8 model, which mode {recipe.mode} does "
                         "not allow: use mode int8 (float fallback), with target int8-accelerator to put fewer "
                         "integer partitions first")


def search_budget(source: ModelSource, recipe: Recipe, calibration: CalibrationSet | None, workdir: Path,
                  evaluation: CalibrationSet, objective: Objective, *, target: str | None,
                  timeout: float = DEFAULT_TIMEOUT, trust_model: bool = False,
                  progress: Progress | None = None) -> BudgetOutcome:
    """Convert `source` once through the calibrating quantizer (or take it from the cache), then search
    the fewest float ops that meet the budget on `evaluation`."""
    from quantdoctor.diagnosis.pipeline import diagnose_prepared

    started = time.perf_counter()
    report, artifacts = diagnose_prepared(source, recipe, calibration, workdir, target=target, float_twin=True,
                                          keep_calibration=True, timeout=timeout, trust_model=trust_model)
    if report.tflite_model is None or artifacts.calibrated is None or artifacts.float_twin is None:
        raise UsageError("the repaired model did not convert through the calibrating quantizer, so no op can be "
                         "kept float: give calibration data")
    converted = time.perf_counter()
    layer_names, output_layers = LayerNames.from_model(report.model), report.model.get("output_layers", [])
    outcome, graph, chosen_model = budget_search(artifacts.float_twin, artifacts.calibrated, artifacts.quantizer,
                                                 evaluation, objective, layer_names, output_layers, target, timeout,
                                                 progress)
    kept = kept_float(outcome, graph)
    finished = time.perf_counter()
    produced = read_tflite(chosen_model)
    budget = {
        "objective": objective.to_dict(), "met_budget": outcome.met_budget, "target": target,
        "int8_value": outcome.candidates[0].metric, "chosen_value": outcome.chosen.metric,
        "kept_float": kept, "chosen": outcome.chosen.to_dict(graph), "audit": summarize(produced, layer_names),
        "candidates": [c.to_dict(graph) for c in outcome.candidates],
        "pareto": [c.to_dict(graph) for c in pareto(outcome.candidates)],
        "evaluations": len(outcome.candidates), "candidate_ops": len(graph.candidates),
        "conversion_cached": bool(report.conversion.get("cached")),
        "seconds": {"conversion": round(converted - started, 3),
                    "variant_worker": round(finished - converted - outcome.search_seconds, 3),
                    "ranking": round(outcome.ranking_seconds, 3), "search": round(outcome.search_seconds, 3),
                    "total": round(finished - started, 3)},
    }
    errors = [f for f in audit_findings(produced, layer_names, recipe, target)
              if f.severity == "error" and not catalog.get(f.code).keeps_float]  # kept float on purpose
    npu, npu_findings = npu_audit(chosen_model, target, produced, layer_names, output_layers)
    if npu is not None:  # the float ops kept, and the ops Vela refuses anyway, all run on the CPU
        budget["npu"] = npu
        budget["chosen"].update(cpu_ops=npu["cpu_ops"], cpu_partitions=npu["cpu_partitions"],
                                npu_partitions=npu["npu_partitions"], cpu_mac_share=npu["cpu_mac_share"])
        npu_findings = kept_on_cpu(npu_findings, produced)
    return BudgetOutcome(chosen_model, budget, budget_findings(outcome, graph, objective, kept),
                         [(row["node"], f"{row['layer'] or 'op'} ({row['op']})") for row in kept], errors,
                         npu_findings, float_model=artifacts.float_twin)


def kept_on_cpu(npu_findings: list[Finding], produced: TFLiteModel) -> list[Finding]:
    """Vela's QD120 for an op that computes in float becomes a warning that says so: the plain INT8 model
    had none (a float op on an Ethos-U target blocks the search), so the budget kept it float, a price it
    chose, counted in the partitions and CPU MACs of QD121. QD120 for any other op stays as it is."""
    floats = {t.name for op in produced.ops if op.computes_in_float for t in op.outputs}
    return [replace(f, severity="warning", message=f"{f.message} The accuracy budget keeps this op float.")
            if f.code == "QD120" and f.location.tensor in floats else f for f in npu_findings]


def budget_search(float_model: bytes, calibrated: bytes, quantizer: dict[str, Any], evaluation: CalibrationSet,
                  objective: Objective, layer_names: list[str], output_layers: list[str | None],
                  target: str | None = None, timeout: float = DEFAULT_TIMEOUT, progress: Progress | None = None,
                  strategy: Strategy = search) -> tuple[SearchOutcome, OpGraph, bytes]:
    """The search on its own, from a calibrating conversion's artifacts: the outcome, the op graph
    (names of the candidates), and the chosen model's bytes. `output_layers` names the layer making
    each output, in the Keras model's order. Runs the variant worker; `strategy` is the search run
    in it (benchmarks pass others)."""
    workdir = Path(tempfile.mkdtemp(prefix="quantdoctor-budget-"))
    try:
        with VariantSession(workdir, float_model, calibrated, quantizer, evaluation, timeout) as session:
            objective.set_reference(session.float_outputs())
            started = time.perf_counter()
            evaluate = Evaluator(session, objective, progress)
            quantized = evaluate(frozenset(), "int8")
            if quantized.model_path is None:
                raise UsageError(f"the fully quantized model cannot run on the eval data: {quantized.error}")
            float_graph = read_tflite(calibrated)
            outputs = output_layer_names(float_graph, output_layers)
            graph = OpGraph(float_graph, read_tflite(quantized.model_path.read_bytes()), layer_names, outputs)
            # on an accelerator each float island splits the integer graph, and the NPU's with it: fewest first
            outcome = strategy(evaluate, graph, layer_names, outputs, _partitioned(target))
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


def _value(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _partitioned(target: str | None) -> bool:
    """Whether the search puts fewer integer partitions first: on an int8 accelerator or an NPU, the
    float ops it keeps run on the CPU between the parts."""
    return target is not None and (target == Target.INT8_ACCELERATOR or Target(target).npu)
