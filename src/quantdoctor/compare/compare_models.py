"""`quantdoctor.compare`: which layers lose accuracy, on real data, in the user's layer names."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from quantdoctor import catalog
from quantdoctor.aeq.findings import QUANTIZER, in_aeq_terms
from quantdoctor.audit.checks import output_layer_names
from quantdoctor.audit.report import audit
from quantdoctor.audit.tflite_model import read_tflite
from quantdoctor.catalog.accuracy import DEGRADED_OUTPUT
from quantdoctor.catalog.locations import LayerNames
from quantdoctor.compare.analysis import (
    comparison_findings,
    end_to_end,
    layer_rows,
    output_agreements,
)
from quantdoctor.compare.joint import JointComparison, Measured
from quantdoctor.compare.labels import labels_for_model, read_labels
from quantdoctor.compare.preprocessing import float_failure_findings
from quantdoctor.compare.rows import eval_rows
from quantdoctor.compare.worker import CompareRequest, CompareResponse
from quantdoctor.diagnosis.classify_failure import first_line
from quantdoctor.diagnosis.pipeline import diagnose, diagnose_with_float_twin
from quantdoctor.environment import require_tensorflow
from quantdoctor.errors import UsageError
from quantdoctor.intake import model as model_intake
from quantdoctor.intake import options
from quantdoctor.intake.cache_settings import check_cache_root
from quantdoctor.intake.data import DEFAULT_MAX_SAMPLES, CalibrationSet, Sample
from quantdoctor.intake.paths import check_outputs
from quantdoctor.intake.user_input import eval_set
from quantdoctor.isolation.cleanup import run_interruptible
from quantdoctor.isolation.protocol import read_json
from quantdoctor.isolation.runner import DEFAULT_TIMEOUT, run_isolated
from quantdoctor.report.model import (
    Finding,
    Location,
    QuantizationError,
    Report,
    rank_findings,
)
from quantdoctor.runtime.feed import batch_size
from quantdoctor.viz.overlay import write_overlay

Progress = Callable[[int, int], None]


@run_interruptible
def compare(model: Any, data: Any = None, *, eval_data: Any, labels: Any = None,
            metric: Callable[[Any, np.ndarray], float] | None = None, tflite: str | Path | bytes | None = None,
            html: str | Path | None = None, mode: str | None = None, io: str | None = None,
            max_samples: int = DEFAULT_MAX_SAMPLES, timeout: float = DEFAULT_TIMEOUT,
            progress: Progress | None = None, trust_model: bool = False, target: str | None = None,
            model_explorer: str | Path | None = None) -> Report:
    """Float vs quantized, end to end and layer by layer, on `eval_data`.

    `model` and `data` are as for `diagnose` (the quantized model is converted from them), or
    pass the quantized `.tflite` you already have as `tflite`. `labels` (one class per sample)
    add accuracies; `metric(labels, outputs)` adds your own number for both models. Returns the
    diagnose report with a `comparison` object (layers ranked worst first) and QD5xx findings;
    `html` also writes the self-contained HTML report; `model_explorer` the Model Explorer overlay of the
    quantized model (per-layer SQNR and causes: `quantdoctor.viz.overlay`), which the HTML report links.
    `trust_model` and `target` are as for `diagnose`.
    """
    require_tensorflow()
    max_samples = options.RunOptions.checked(timeout=timeout, max_samples=max_samples, target=target).max_samples
    if metric is not None and not callable(metric):
        raise UsageError(f"metric must be a function metric(labels, outputs), not {type(metric).__name__}")
    if tflite is not None and not isinstance(tflite, (str, Path, bytes)):
        raise UsageError(f"tflite must be a .tflite path or its bytes, not {type(tflite).__name__}")
    outputs = {"html": html, "model_explorer": model_explorer}
    check_outputs(inputs=(model, data, eval_data, labels, tflite), outputs=outputs)
    check_cache_root(inputs=(model, data, eval_data, labels, tflite), outputs=outputs)
    evaluation = eval_set(eval_data, max_samples)
    if evaluation is None or not evaluation.samples:
        raise UsageError("compare needs eval data with at least one sample")
    truth = read_labels(labels, _batches_split(evaluation), for_metric=metric is not None)  # one per row
    # The conversion's worker compares the models too, right after converting them (`compare.joint`).
    joint = JointComparison(evaluation, truth, progress) if tflite is None else None
    try:
        report = _compared(model, data, evaluation, truth, joint, tflite=tflite, metric=metric, mode=mode, io=io,
                           max_samples=max_samples, timeout=timeout, progress=progress, trust_model=trust_model,
                           target=target)
    finally:
        if joint is not None:
            joint.close()
    if model_explorer:
        write_overlay(model_explorer, report)
    if html:
        from quantdoctor.report.html import write_html

        write_html(report, Path(html), Path(model_explorer) if model_explorer else None)
    return report


def _compared(model: Any, data: Any, evaluation: CalibrationSet, truth: Any, joint: JointComparison | None, *,
              tflite: str | Path | bytes | None, metric: Callable[[Any, np.ndarray], float] | None,
              mode: str | None, io: str | None, max_samples: int, timeout: float, progress: Progress | None,
              trust_model: bool, target: str | None) -> Report:
    """`compare`'s work once its arguments are checked: convert (unless given `tflite`), then compare."""
    float_model = None
    if joint is not None:
        report, float_model = diagnose_with_float_twin(model, data, mode=mode, io=io, max_samples=max_samples,
                                                       timeout=timeout, trust_model=trust_model, eval_fit=evaluation,
                                                       target=target, after_conversion=joint.after_conversion)
        if report.tflite_model is None or any(f.code == "QD112" for f in report.findings):
            raise QuantizationError(report)  # nothing to compare: no model, or one LiteRT cannot run
    else:
        report = audit(tflite, target=target)  # what the user's model is: islands, I/O types, Flex ops
        report = replace(report, tflite_model=tflite if isinstance(tflite, bytes) else Path(tflite).read_bytes())
    truth = labels_for_model(truth, report.audit, for_metric=metric is not None)
    produced = read_tflite(report.tflite_model)
    evaluation = eval_rows(evaluation, produced)
    if truth is not None and len(truth.values) != len(evaluation):
        raise UsageError(f"{len(truth.values)} labels for {len(evaluation)} eval rows: give exactly one label per "
                         "row the model runs")
    # What the joint worker measured, when it compared these very models (its float twin is `float_model`).
    measured = joint.measured(len(evaluation)) if joint is not None and float_model is not None else None
    float_info = report.model
    if float_model is None:  # a .tflite of the user's, or the float twin failed: convert and report on its own
        float_report = diagnose(_float_model(model), mode="float", timeout=timeout, trust_model=trust_model)
        if float_report.tflite_model is None:
            raise QuantizationError(float_report)
        float_model, float_info = float_report.tflite_model, float_report.model
    return with_comparison(report, float_model, float_info, evaluation, truth=truth, metric=metric,
                           timeout=timeout, progress=progress, measured=measured)


def with_comparison(report: Report, float_model: bytes, float_info: dict[str, Any], evaluation: Any, *,
                    truth: Any = None, metric: Callable[[Any, np.ndarray], float] | None = None,
                    timeout: float = DEFAULT_TIMEOUT, progress: Progress | None = None,
                    measured: Measured | None = None) -> Report:
    """Run `report`'s quantized model and `float_model` side by side on `evaluation` (a CalibrationSet):
    the report with its `comparison` and the QD5xx findings. `float_info` is the float model's report
    `model` object (its layer names); `truth` the labels as `read_labels` read them. `measured` is what a
    worker already measured on these models and rows (`compare.joint`): then nothing runs again."""
    produced = read_tflite(report.tflite_model)
    evaluation = eval_rows(evaluation, produced)  # the rows the models run on (already so when compare calls)
    if measured is None:
        workdir = Path(tempfile.mkdtemp(prefix="quantdoctor-compare-"))
        try:
            measured = Measured(*_run_compare(float_model, report.tflite_model, evaluation, workdir, timeout,
                                              progress))
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    response, outputs, seconds = measured.response, measured.outputs, measured.seconds
    rows = layer_rows(response, LayerNames.from_model(float_info),
                      output_layer_names(produced, float_info.get("output_layers", [])))
    summary = end_to_end(outputs, response.outputs, truth, metric)
    if truth is not None and truth.given_as == "one-hot":
        summary["labels"] = "one-hot, read by argmax"
    comparison = {"samples": response.samples, "seconds": round(seconds, 3),
                  "analysis_seconds": response.analysis_seconds,
                  "end_to_end": summary,
                  "layers": rows, "histograms": _histograms(response, rows)}
    findings = comparison_findings(rows, response.outputs, response.tensors, response.ops,
                                   output_agreements(outputs, response.outputs), response.samples)
    findings += _integer_input_findings(report, evaluation)
    if truth is None or truth.classes is not None:  # labels that are a metric's own values say: no classes
        on_outputs = [f for f in findings if f.code in DEGRADED_OUTPUT]
        findings += float_failure_findings(outputs, truth.classes if truth else None, float_model, evaluation,
                                           timeout, quantization_findings=on_outputs, probed=measured.probed)
    measured = {output["tensor"] for output in response.outputs}
    if report.settings.get("quantizer", {}).get("name") == QUANTIZER:
        findings = in_aeq_terms(findings, read_tflite(float_model))
    return replace(report, comparison=comparison,
                   findings=rank_findings(_unconfirmed_static(report.findings, findings, measured) + findings))


def _batches_split(evaluation: CalibrationSet) -> CalibrationSet:
    """The eval samples with every stack of rows along axis 0 split into rows: what compare runs for
    a model taking one row at a time or a free batch (before the model's own inputs are known)."""
    if all(batch_size(sample.values) == 1 for sample in evaluation.samples):
        return evaluation
    samples = [Sample(sample.kind, {key: array[row:row + 1] for key, array in sample.values.items()},
                      sample.signature_key)
               for sample in evaluation.samples for row in range(batch_size(sample.values))]
    return CalibrationSet(samples, source=evaluation.source, truncated=evaluation.truncated)


def _unconfirmed_static(static: list[Finding], measured: list[Finding], outputs: set[str]) -> list[Finding]:
    """The diagnose findings, less those the eval data measured again: the crushed merges (QD506) that
    a measured one (QD503) confirms at the same layer and op, and the run check's output findings
    (QD504, QD507, QD518, QD519 on a few calibration rows) on the `outputs` compare measured: compare's
    rule on the eval data decides them. Each is reported once, with what the eval data showed."""
    confirmed = {(f.location.layer, f.location.op) for f in measured if f.code == "QD503"}
    return [f for f in static if not (f.code == "QD506" and (f.location.layer, f.location.op) in confirmed)
            and not (f.code in DEGRADED_OUTPUT and f.location.tensor in outputs)]


def _float_model(model: Any) -> Any:
    """What the float conversion starts from: the model itself, or the one a converter was built on."""
    return model_intake.converted_model(model) if model_intake.is_converter(model) else model


def _run_compare(float_model: bytes, quant_model: bytes, evaluation: Any, workdir: Path, timeout: float,
                 progress: Progress | None) -> tuple[CompareResponse, dict[str, np.ndarray], float]:
    """Run both models side by side in the isolated worker: its statistics, the outputs, its wall time."""
    (workdir / "float.tflite").write_bytes(float_model)
    (workdir / "quant.tflite").write_bytes(quant_model)
    evaluation.save(workdir / "eval.npz")
    request = CompareRequest(float_model=str(workdir / "float.tflite"), quant_model=str(workdir / "quant.tflite"),
                             data=str(workdir / "eval.npz"), response=str(workdir / "response.json"),
                             progress=str(workdir / "progress.json"), outputs=str(workdir / "outputs.npz"))

    def poll() -> None:
        state = read_json(Path(request.progress))
        if progress and state:
            progress(state["done"], state["total"])

    run = run_isolated("quantdoctor.compare.worker", request, workdir, timeout, on_poll=poll, needs_tensorflow=False)
    response = CompareResponse.from_json(run.response)
    if response.model_error is not None:
        raise UsageError(f"running the models on the eval data failed: {first_line(response.model_error)}")
    if run.outcome != "done":
        how = f"was killed by {run.signal_name}" if run.signal_name else f"ended: {run.outcome}"
        last = [line for line in run.stderr.splitlines() if line.strip()][-1:] or [""]
        raise UsageError(f"running the models on the eval data failed: the interpreter process {how} {last[0]}")
    poll()
    with np.load(request.outputs) as outputs:
        return response, {key: outputs[key] for key in outputs.files}, run.seconds


def _histograms(response: CompareResponse, rows: list[dict[str, Any]], count: int = 4) -> list[dict[str, Any]]:
    """Float activation histograms of the worst layers, with the calibrated range to mark on them."""
    by_tensor = {t["tensor"]: t["histogram"] for t in response.tensors}
    return [{"tensor": row["tensor"], "layer": row["layer"], **by_tensor[row["tensor"]],
             "calibrated_range": row["quantized_range"]} for row in rows[:count] if by_tensor.get(row["tensor"])]


def _integer_input_findings(report: Report, evaluation: Any) -> list[Any]:
    """QD505 when an integer model input was given float eval data (quantdoctor quantized it)."""
    float_data = all(np.issubdtype(a.dtype, np.floating) for s in evaluation.samples for a in s.arrays)
    findings = []
    for tensor in report.audit["input_types"] if float_data else []:
        if tensor["dtype"] in ("int8", "uint8"):
            findings.append(catalog.get("QD505").finding(
                f"Input '{tensor['name']}' is {tensor['dtype']} (scale {tensor['scale']:.6g}, zero point "
                f"{tensor['zero_point']}); the eval data was quantized with these before feeding it.",
                location=Location(tensor=tensor["name"])))
    return findings
