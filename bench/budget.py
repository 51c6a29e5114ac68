"""fix-accuracy against an NNCF-style baseline, on the same calibrate-once machinery, in one run.

The baseline is the strategy of NNCF's `quantize_with_accuracy_control`: rank every quantizable
unit (the same candidates: ops and scale-sharing groups, as NNCF ranks groups of quantizers) by
the metric gained when it alone stays float, then keep units float one at a time in rank order,
evaluating after each, until the budget holds. quantdoctor ranks from one instrumented pass,
bisects, then prunes (`quantdoctor.budget.search`). Both run in their own variant worker on the
conversion each model's first run leaves in the cache (calibrated once), with the same eval data,
metric and budget (max drop 0.01).

On the three test-bed models where INT8 hurts (bench/testbed.py), per strategy: float ops kept
(quantdoctor's must be no more than the baseline's), wall time of the search (at most 0.5x the
baseline's), variants evaluated. Then `compare` right after a cached `diagnose`, as a ratio to a
cold `compare` (target at most 0.3x), on the MobileNetV2 of bench/compare.py. Results:
bench/results/budget.json.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import RESULTS, prepare  # noqa: E402
from testbed import HURTING, digits, score_accuracy, trained, views  # noqa: E402

MAX_DROP = 0.01


def nncf_strategy(evaluate, graph, layer_names, output_layers, accelerator):
    """NNCF's accuracy control on the same candidates: rank by reverting each alone, then revert in
    rank order, evaluating after each, until the budget holds."""
    from quantdoctor.budget.search import SearchOutcome, best

    quantized = evaluate(frozenset(), "int8")
    if quantized.meets:
        return SearchOutcome(quantized, evaluate.candidates)
    units = graph.units({})
    started = time.perf_counter()
    gains = {unit.nodes: evaluate(unit.nodes, "rank").metric or float("-inf") for unit in units}
    ranking_seconds = time.perf_counter() - started
    kept: frozenset[str] = frozenset()
    for unit in sorted(units, key=lambda u: -gains[u.nodes]):
        if unit.nodes <= kept:
            continue
        kept |= unit.nodes
        if evaluate(kept, "revert").meets:
            return SearchOutcome(evaluate.tried[kept], evaluate.candidates, ranking_seconds=ranking_seconds)
    return SearchOutcome(best(evaluate.candidates, accelerator), evaluate.candidates, ranking_seconds=ranking_seconds)


def run_both(name: str, model, x: np.ndarray, labels: np.ndarray) -> dict:
    """Convert once (through the cache), then both strategies in their own variant workers."""
    from quantdoctor.budget.budget_search import budget_search, kept_float
    from quantdoctor.budget.objective import Objective
    from quantdoctor.budget.search import search
    from quantdoctor.catalog.locations import LayerNames
    from quantdoctor.diagnosis.pipeline import diagnose_with_calibration
    from quantdoctor.intake.user_input import calibration_set

    held_out = slice(1397, 1797)
    started = time.perf_counter()
    report, artifacts = diagnose_with_calibration(model, x[:300])
    conversion_seconds = time.perf_counter() - started
    evaluation = calibration_set(x[held_out])
    row = {"model": name, "conversion_s": round(conversion_seconds, 2), "candidate_ops": None}
    for label, strategy in (("quantdoctor", search), ("nncf_baseline", nncf_strategy)):
        metric = score_accuracy if name == "detector" else None
        objective = Objective.create(max_drop=MAX_DROP, min_sqnr=None, labels=labels[held_out], metric=metric)
        started = time.perf_counter()
        outcome, graph, _ = budget_search(artifacts.float_twin, artifacts.calibrated, artifacts.quantizer, evaluation,
                                          objective, LayerNames.from_model(report.model),
                                          report.model["output_layers"], strategy=strategy)
        chosen = outcome.chosen
        row["candidate_ops"] = len(graph.candidates)
        row["float"] = round(objective.reference, 4)
        row["int8"] = round(outcome.candidates[0].metric, 4)
        row[label] = {"metric": round(chosen.metric, 4), "met_budget": outcome.met_budget,
                      "float_ops": chosen.float_ops, "kept_float": [f"{k['layer'] or k['node']} ({k['op']})"
                                                                  for k in kept_float(outcome, graph)],
                      "variants": len(outcome.candidates), "search_s": round(outcome.search_seconds, 3),
                      "with_worker_s": round(time.perf_counter() - started, 3)}
        print(name, label, json.dumps(row[label]), flush=True)
    ours, baseline = row["quantdoctor"], row["nncf_baseline"]
    row["float_ops_ours_le_baseline"] = ours["float_ops"] <= baseline["float_ops"]
    row["search_time_ratio"] = round(ours["search_s"] / baseline["search_s"], 3)
    row["with_worker_time_ratio"] = round(ours["with_worker_s"] / baseline["with_worker_s"], 3)
    return row


def compare_after_diagnose(rounds: int = 2) -> dict:
    """Seconds of a cold `compare` and of a `compare` right after `diagnose` (the cache filled), on
    the MobileNetV2 of bench/run.py and bench/compare.py (alpha 0.35, 96x96): medians of `rounds`."""
    import statistics

    import quantdoctor as qd

    model_path, good, _ = prepare()
    images = np.load(good)["image"]
    calibration, evaluation = images[:100], images[50:100]
    cold, warm = [], []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as scratch:
            os.environ["QUANTDOCTOR_CACHE_DIR"] = str(Path(scratch) / "cold")
            started = time.perf_counter()
            qd.compare(model_path, calibration, eval_data=evaluation)
            cold.append(time.perf_counter() - started)
            os.environ["QUANTDOCTOR_CACHE_DIR"] = str(Path(scratch) / "after-diagnose")
            qd.diagnose(model_path, calibration)
            started = time.perf_counter()
            report = qd.compare(model_path, calibration, eval_data=evaluation)
            warm.append(time.perf_counter() - started)
            assert report.conversion.get("cached"), "the compare after diagnose did not use the cache"
    result = {"model": "MobileNetV2 alpha 0.35, 96x96x3", "calibration_samples": 100, "eval_samples": 50,
              "cold_compare_s": [round(t, 2) for t in cold], "compare_after_diagnose_s": [round(t, 2) for t in warm]}
    result["ratio"] = round(statistics.median(warm) / statistics.median(cold), 3)
    return result


def main() -> None:
    os.environ.pop("QUANTDOCTOR_NO_CACHE", None)
    images, labels = digits()
    with tempfile.TemporaryDirectory() as scratch:
        os.environ["QUANTDOCTOR_CACHE_DIR"] = scratch  # calibrated once per model, for both strategies
        rows = [run_both(name, trained(name, views(images)[name][:1300], labels[:1300]), views(images)[name], labels)
                for name in HURTING]
    result = {"budget_max_drop": MAX_DROP, "models": rows, "compare_cache": compare_after_diagnose()}
    result["targets"] = {
        "float_ops_ours_le_baseline": all(r["float_ops_ours_le_baseline"] for r in rows),
        "search_time_ratio_le_0.5": all(r["search_time_ratio"] <= 0.5 for r in rows),
        "restored_within_1_point": all(r["quantdoctor"]["met_budget"] for r in rows),
        "compare_after_diagnose_le_0.3": result["compare_cache"]["ratio"] <= 0.3,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "budget.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
