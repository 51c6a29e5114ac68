"""The diagnose pipeline: intake -> calibration checks -> isolated conversion -> audit -> report."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from quantdoctor import catalog
from quantdoctor.audit.checks import audit_findings, check_target, summarize
from quantdoctor.audit.tflite_model import read_tflite
from quantdoctor.catalog.classify_failure import FailureContext, classify_failure, excerpt
from quantdoctor.convert import cache as conversion_cache
from quantdoctor.convert.crash import crash_frames, crash_stage, native_errors, out_of_memory
from quantdoctor.convert.protocol import read_json
from quantdoctor.convert.runner import DEFAULT_TIMEOUT, WorkerRun, run_worker
from quantdoctor.errors import ModelLoadError, UsageError
from quantdoctor.intake import data as data_intake
from quantdoctor.intake import model as model_intake
from quantdoctor.intake.data import DEFAULT_MAX_SAMPLES, CalibrationSet
from quantdoctor.intake.recipe import Recipe
from quantdoctor.preflight.data_checks import (InputSpec, check_against_inference, check_calibration,
                                                     check_input_names, check_input_shapes,
                                                     check_signature_coverage)
from quantdoctor.preflight.predict import actual_verdict, predict
from quantdoctor.report.model import Finding, Location, Report, rank_findings


def diagnose(model: Any, data: Any = None, *, mode: str | None = None, io: str | None = None,
             select_tf_ops: bool = False, signature_keys: list[str] | None = None,
             max_samples: int = DEFAULT_MAX_SAMPLES,
             timeout: float = DEFAULT_TIMEOUT, memory_limit_mb: int | None = None,
             target: str | None = None, convert: bool = True, eval_data: Any = None,
             keep_workdir: str | Path | None = None) -> Report:
    """Convert `model` with the real TFLite converter in an isolated process and explain the outcome.

    `model` is a path (`.keras`, `.h5`, SavedModel directory), a Keras model, a list of concrete
    functions, or a configured `tf.lite.TFLiteConverter` (whose settings and representative
    dataset are used as they are). `data` is a path (`.npz`/`.npy`), a representative_dataset
    callable, stacked arrays (one array, or a dict of input name -> array, samples on axis 0),
    or a `CalibrationSet`. `mode`, `io` and `select_tf_ops` set the converter options
    for models that are not converters; `signature_keys` picks SavedModel signatures.
    `target` ("int8-accelerator" or "microcontroller") is what the produced model is audited
    for; integer-only settings (`int8-strict`) imply "int8-accelerator". With `convert=False`
    only the preflight runs: the graph and the data are checked and the outcome predicted.
    `eval_data` (same forms as `data`) is inference data: calibration ranges are checked against it.
    Returns the report, root cause first.
    """
    return _diagnose(model, data, mode=mode, io=io, select_tf_ops=select_tf_ops, signature_keys=signature_keys,
                     max_samples=max_samples, timeout=timeout, memory_limit_mb=memory_limit_mb, target=target,
                     convert=convert, eval_data=eval_data, keep_workdir=keep_workdir)[0]


def diagnose_with_float_twin(model: Any, data: Any = None, *, mode: str | None = None, io: str | None = None,
                             max_samples: int = DEFAULT_MAX_SAMPLES,
                             timeout: float = DEFAULT_TIMEOUT) -> tuple[Report, bytes | None]:
    """`diagnose`, and when the conversion succeeds, compare's float reference from the same worker:
    the float model the converter handed its quantizer, or, for settings that do not calibrate, the
    model converted again without quantization (TensorFlow starts and the model loads once). The
    float model is None when that second conversion failed."""
    report, artifacts = _diagnose(model, data, mode=mode, io=io, max_samples=max_samples, timeout=timeout,
                                  float_twin=True)
    return report, artifacts.float_twin


def diagnose_with_calibration(model: Any, data: Any = None, *, mode: str | None = None, io: str | None = None,
                              max_samples: int = DEFAULT_MAX_SAMPLES,
                              timeout: float = DEFAULT_TIMEOUT) -> tuple[Report, ConversionArtifacts]:
    """`diagnose`, and from the same calibrating conversion (or the conversion cache): compare's float
    reference, the calibrated float model and the quantizer's arguments, from which accuracy budgets
    make their variants without calibrating again."""
    return _diagnose(model, data, mode=mode, io=io, max_samples=max_samples, timeout=timeout, float_twin=True,
                     keep_calibration=True)


@dataclass
class ConversionArtifacts:
    """What a conversion leaves besides the report: compare's float reference, and for calibrating
    settings the calibrated float model and the quantizer's arguments (JSON)."""

    float_twin: bytes | None = None
    calibrated: bytes | None = None
    quantizer: dict[str, Any] | None = None
    calibration: CalibrationSet | None = None  # the samples the converter calibrated on

    @classmethod
    def read(cls, directory: Path, twin_written: bool, calibration: CalibrationSet | None) -> ConversionArtifacts:
        """The artifacts a worker (or a cache entry) left in `directory`."""
        twin, calibrated = directory / conversion_cache.FLOAT_TWIN, directory / conversion_cache.CALIBRATED
        quantizer = directory / conversion_cache.QUANTIZER
        return cls(float_twin=twin.read_bytes() if twin_written and twin.is_file() else None,
                   calibrated=calibrated.read_bytes() if calibrated.is_file() else None,
                   quantizer=read_json(quantizer) if quantizer.is_file() else None, calibration=calibration)


def _diagnose(model: Any, data: Any, *, mode: str | None, io: str | None, max_samples: int, timeout: float,
              select_tf_ops: bool = False, signature_keys: list[str] | None = None,
              memory_limit_mb: int | None = None, target: str | None = None, convert: bool = True,
              eval_data: Any = None, keep_workdir: str | Path | None = None,
              float_twin: bool = False, keep_calibration: bool = False) -> tuple[Report, ConversionArtifacts]:
    check_target(target)
    workdir = Path(tempfile.mkdtemp(prefix="quantdoctor-"))
    try:
        source, recipe, calibration = _intake(model, data, mode, io, select_tf_ops, max_samples, workdir)
        evaluation = calibration_set(eval_data, max_samples)  # read before the long conversion: fail early
        if signature_keys:
            if source.loader != "saved_model" or source.format == "converter":
                raise UsageError("signature keys apply to SavedModel directories only")
            source.signature_keys = list(signature_keys)
        request: dict[str, Any] = {"model": source.request(), "recipe": recipe.to_dict(), "data": None,
                                   "convert": convert}
        if calibration is not None and recipe.calibrate:
            calibration.save(workdir / "calibration.npz")
            request["data"] = str(workdir / "calibration.npz")
        calibrating = convert and request["data"] is not None
        key = None
        if calibrating and not keep_workdir and memory_limit_mb is None:  # a limit is a question to ask anew
            key = conversion_cache.conversion_key(source, recipe, calibration, workdir)
        cached = conversion_cache.lookup(key) if key else None
        if cached is not None:
            response = cached.response
            run = WorkerRun(outcome="ok", seconds=response.get("worker_seconds", 0.0), response=response,
                            tflite_path=cached.path(conversion_cache.MODEL))
            artifacts = ConversionArtifacts.read(cached.directory, twin_written=True, calibration=calibration)
        else:
            keep = calibrating and (keep_calibration or key is not None)
            if float_twin or keep:  # free when calibrating: the model handed to the quantizer
                request["float_twin_output"] = str(workdir / conversion_cache.FLOAT_TWIN)
            if keep:
                request["calibration_output"] = str(workdir)
            run = run_worker(request, workdir, timeout=timeout, memory_limit_mb=memory_limit_mb)
            if key is not None and run.outcome == "ok":
                conversion_cache.store(key, workdir, {**run.response, "worker_seconds": round(run.seconds, 3)})
            artifacts = ConversionArtifacts.read(workdir, twin_written=run.response.get("float_twin") == "ok",
                                                 calibration=calibration if recipe.calibrate else None)
        if target is None and recipe.mode == "int8-strict":
            target = "int8-accelerator"
        report = _build_report(source, recipe, calibration if recipe.calibrate else None, run, target, evaluation)
        if cached is not None:
            report.conversion["cached"] = True
        return report, artifacts
    finally:
        if keep_workdir:
            shutil.copytree(workdir, Path(keep_workdir), dirs_exist_ok=True)
        shutil.rmtree(workdir, ignore_errors=True)


def _intake(model: Any, data: Any, mode: str | None, io: str | None, select_tf_ops: bool,
            max_samples: int, workdir: Path) -> tuple[model_intake.ModelSource, Recipe, CalibrationSet | None]:
    if model_intake.is_converter(model):
        if mode or io or select_tf_ops:
            raise UsageError("mode, io and select_tf_ops come from the converter itself: set them on the converter")
        recipe = Recipe.from_converter(model)
        source = model_intake.from_converter(model, workdir)
        data = data if data is not None else model.representative_dataset
        recipe.calibrate = data is not None  # data given here acts as the converter's representative_dataset
    else:
        recipe = Recipe.for_mode(mode or "int8", io or "float", select_tf_ops)
        source = _model_source(model, workdir)
    return source, recipe, calibration_set(data, max_samples)


def _model_source(model: Any, workdir: Path) -> model_intake.ModelSource:
    if isinstance(model, (str, Path)):
        return model_intake.from_path(model)
    if isinstance(model, (list, tuple)) and model and all(hasattr(f, "graph") for f in model):
        return model_intake.from_concrete_functions(list(model), None, workdir)
    if hasattr(model, "graph") and hasattr(model, "structured_input_signature"):
        return model_intake.from_concrete_functions([model], None, workdir)
    if hasattr(model, "layers") and hasattr(model, "inputs"):
        return model_intake.from_keras_model(model, workdir)
    raise UsageError(f"cannot diagnose a {type(model).__name__}: pass a model path, a Keras model, "
                     "concrete functions or a tf.lite.TFLiteConverter")


def calibration_set(data: Any, max_samples: int = DEFAULT_MAX_SAMPLES) -> CalibrationSet | None:
    """Calibration (or eval) data in any accepted form, as a CalibrationSet; None stays None."""
    if data is None or isinstance(data, CalibrationSet):
        return data
    if isinstance(data, (str, Path)):
        return data_intake.from_file(data, max_samples)
    if isinstance(data, np.ndarray):
        return data_intake.from_arrays({"arr_0": data}, max_samples=max_samples)
    if isinstance(data, dict) and all(isinstance(v, np.ndarray) for v in data.values()):
        return data_intake.from_arrays(data, max_samples=max_samples)
    if callable(data) or hasattr(data, "__iter__"):
        return data_intake.from_generator(data, max_samples)
    raise UsageError(f"unsupported calibration data {type(data).__name__}: pass a .npz/.npy path or a "
                     "representative_dataset function")


def _build_report(source: model_intake.ModelSource, recipe: Recipe, calibration: CalibrationSet | None,
                  run: WorkerRun, target: str | None, evaluation: CalibrationSet | None) -> Report:
    if run.outcome == "load_error":
        raise ModelLoadError(f"cannot load {source.source}: {run.response.get('error_message')}")
    model_info = run.response.get("model", {})
    layers = source.layers or model_info.get("layers", [])
    layer_names = [layer["name"] for layer in layers]
    inputs = [InputSpec.from_dict(spec) for spec in model_info.get("inputs", [])]
    signature_keys = source.signature_keys or model_info.get("signature_keys") or []
    data_findings = (check_input_names(inputs) + check_calibration(calibration, inputs, recipe)
                     + check_signature_coverage(calibration, signature_keys) + check_input_shapes(inputs, target))
    if evaluation is not None:
        data_findings += check_against_inference(calibration, evaluation, inputs)
    inventory = run.response.get("preflight")
    prediction = predict(inventory, recipe, layer_names, inputs, data_findings) if inventory else None
    conversion = {"attempted": run.outcome != "skipped", "outcome": run.outcome, "seconds": round(run.seconds, 3),
                  "error_excerpt": None, "model_bytes": None}
    audit = tflite_bytes = None
    outcome_findings: list[Finding] = []
    if run.outcome == "ok":
        tflite_bytes = run.tflite_path.read_bytes()
        produced = read_tflite(tflite_bytes)
        conversion["model_bytes"] = len(tflite_bytes)
        audit = summarize(produced, layer_names)
        outcome_findings = audit_findings(produced, layer_names, recipe, target)
    elif run.outcome == "error":
        conversion["error_excerpt"] = excerpt(run.error_text)
        outcome_findings = classify_failure(FailureContext(
            run.error_text, run.response.get("exception_type", ""), layer_names, calibration))
    elif run.outcome != "skipped":
        conversion["error_excerpt"] = "\n".join(native_errors(run.stderr) + crash_frames(run.stderr)) or None
        outcome_findings = [_process_finding(run, layers, calibration)]
    if prediction and run.outcome not in ("ok", "error"):
        outcome_findings += prediction.findings  # no converter verdict to stand on: the prediction explains
    findings = rank_findings(_merge_confirmed(data_findings, outcome_findings))
    model = {"source": source.source, "format": source.format, "inputs": model_info.get("inputs", []),
             "layers": layer_names, "output_layers": source.output_layers or model_info.get("output_layers", [])}
    preflight = None
    if prediction is not None:
        preflight = {**prediction.to_dict(), "seconds": inventory.get("seconds"),
                     "actual": actual_verdict(conversion, audit, recipe)}
    return Report(model=model, settings={**recipe.to_dict(), "target": target}, findings=findings,
                  conversion=conversion, audit=audit, preflight=preflight, tflite_model=tflite_bytes)


def _merge_confirmed(data_findings: list[Finding], outcome_findings: list[Finding]) -> list[Finding]:
    """Data findings the converter's error confirms absorb it, so the root cause is reported once.

    A converter error quantdoctor cannot classify (QD904) adds nothing when the data checks already
    found an error: its raw text stays in the report's conversion excerpt.
    """
    if any(f.severity == "error" for f in data_findings) and [f.code for f in outcome_findings] == ["QD904"]:
        return list(data_findings)
    by_code = {f.code: f for f in data_findings}
    merged = list(data_findings)
    for finding in outcome_findings:
        known = by_code.get(finding.code)
        if known is None:
            merged.append(finding)
        elif "converter_message" in finding.evidence:
            index = merged.index(known)
            merged[index] = replace(known, evidence={**known.evidence,
                                                     "converter_message": finding.evidence["converter_message"]})
            by_code[finding.code] = merged[index]
    return merged


RNN_LAYER_CLASSES = ("LSTM", "GRU", "SimpleRNN", "RNN", "Bidirectional", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D")


def _process_finding(run: WorkerRun, layers: list[dict[str, str]], calibration: CalibrationSet | None) -> Finding:
    """A finding for a worker that did not report a result: timeout, out of memory, or crash."""
    stage = crash_stage(run.stderr, run.response.get("stage", "starting"))
    evidence = {"stage": stage, "exit_code": run.returncode, "signal": run.signal_name,
                "seconds": round(run.seconds, 1), "last_frames": crash_frames(run.stderr),
                "native_errors": native_errors(run.stderr)}
    if run.outcome == "timeout":
        return catalog.get("QD902").finding(
            f"The converter was stopped after {run.seconds:.0f} s while {stage}.", evidence=evidence)
    if run.signal_name == "SIGKILL" or out_of_memory(run.stderr):
        return catalog.get("QD903").finding(f"The converter ran out of memory while {stage}.", evidence=evidence)
    how = f"was killed by {run.signal_name}" if run.signal_name else f"exited with code {run.returncode}"
    rnn_layers = [layer["name"] for layer in layers if layer["class"] in RNN_LAYER_CLASSES]
    if rnn_layers and stage.startswith("calibrating"):
        return catalog.get("QD108").finding(
            f"The calibrator {how} while running the recurrent loop of layer '{rnn_layers[0]}'.",
            location=Location(layer=rnn_layers[0]), evidence={**evidence, "rnn_layers": rnn_layers})
    shapes = ""
    if stage.startswith("calibrating") and calibration is not None and calibration.samples:
        evidence["first_sample_shapes"] = [list(a.shape) for a in calibration.samples[0].arrays]
        shapes = f" on samples shaped {', '.join(str(tuple(a.shape)) for a in calibration.samples[0].arrays)}"
    return catalog.get("QD901").finding(f"The converter process {how} while {stage}{shapes}.", evidence=evidence)
