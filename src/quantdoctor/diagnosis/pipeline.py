"""The diagnose pipeline: intake -> calibration checks -> isolated conversion -> audit -> report."""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from quantdoctor import catalog
from quantdoctor.aeq.findings import with_aeq_findings
from quantdoctor.aeq.inputs import check_float_model
from quantdoctor.audit.checks import audit_findings, float_ops, summarize
from quantdoctor.audit.edgetpu import edgetpu_audit
from quantdoctor.audit.ethos_u import npu_audit
from quantdoctor.audit.normalisation import double_normalisation_findings
from quantdoctor.audit.quantizers import input_ranges
from quantdoctor.audit.tflite_model import TFLiteModel, read_tflite
from quantdoctor.catalog.locations import LayerNames
from quantdoctor.convert import cache as conversion_cache
from quantdoctor.convert.aeq_worker import AeqRequest, AeqResponse
from quantdoctor.convert.worker import ConversionRequest, ConversionResponse, ModelDescription, RunCheckFiles
from quantdoctor.diagnosis.classify_failure import FailureContext, classify_failure, excerpt
from quantdoctor.diagnosis.confirmation import CONFIRMED_PRECEDENCE, merge_confirmed
from quantdoctor.diagnosis.early_answer import NOT_ATTEMPTED, EarlyAnswers, StopAtPrediction
from quantdoctor.diagnosis.process_failures import process_finding
from quantdoctor.environment import require_tensorflow
from quantdoctor.errors import EditFailed, UsageError
from quantdoctor.intake import float_tflite, keras_config, options
from quantdoctor.intake import model as model_intake
from quantdoctor.intake.cache_settings import check_cache_root
from quantdoctor.intake.data import DEFAULT_MAX_SAMPLES, CalibrationSet
from quantdoctor.intake.paths import check_outputs, copy_into, prepare_keep_workdir
from quantdoctor.intake.recipe import Recipe
from quantdoctor.intake.user_input import calibration_set, eval_set, model_source, recipe_and_data
from quantdoctor.isolation.cleanup import run_interruptible
from quantdoctor.isolation.crash import crash_frames, native_errors
from quantdoctor.isolation.protocol import Message, read_json
from quantdoctor.isolation.runner import DEFAULT_TIMEOUT, WorkerRun, response_path, run_worker
from quantdoctor.preflight.data_checks import (
    InputSpec,
    check_against_inference,
    check_against_qat_ranges,
    check_calibration,
    check_input_names,
    check_input_shapes,
    check_list_order,
    check_signature_coverage,
    check_unused_data,
    data_is_used,
)
from quantdoctor.preflight.npu_placement import npu_preflight
from quantdoctor.preflight.predict import Prediction, actual_verdict, predict
from quantdoctor.preflight.qat import is_qat_model, qat_aware
from quantdoctor.preflight.settings_checks import check_settings
from quantdoctor.report.model import Finding, Report, rank_findings
from quantdoctor.runtime.eval_fit import REFUSED, check_eval_shapes, declared_inputs, eval_shapes
from quantdoctor.runtime.feed import tflite_inputs
from quantdoctor.runtime.findings import run_check_findings, settle_crushed_merges


@run_interruptible
def diagnose(model: Any, data: Any = None, *, mode: str | None = None, io: str | None = None,
             select_tf_ops: bool = False, signature_keys: list[str] | None = None,
             max_samples: int = DEFAULT_MAX_SAMPLES,
             timeout: float = DEFAULT_TIMEOUT, memory_limit_mb: int | None = None,
             target: str | None = None, convert: bool = True, eval_data: Any = None,
             keep_workdir: str | Path | None = None, trust_model: bool = False,
             aeq_recipe: str | Path | None = None, fail_fast: bool = False,
             on_event: Callable[[dict[str, Any]], None] | None = None) -> Report:
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
    `keep_workdir` (a new or empty directory) receives the worker's request, samples and logs.
    A `.keras`/`.h5` file that would run code stored in it when loaded (Lambda layers) is refused
    with an `UnsafeModelError` unless `trust_model=True`.
    A float `.tflite` model is quantized with ai-edge-quantizer (the `aeq` extra): `mode` picks its recipe
    (int8, int8-strict, int16x8, dynamic, weight-only), or `aeq_recipe` names a recipe JSON file of the user's.
    A failure the data checks or the preflight predict with certainty (see `diagnosis/early_answer.py`) is
    known before converting: `on_event` (a function) receives it as the `predicted` event, among the events
    `started`, `converted`, `audited` and `done`, each a dict; the report's `early_answer` says whether the
    converter confirmed it. With `fail_fast=True` the conversion is not attempted after such a prediction.
    Returns the report, root cause first.
    """
    answers = EarlyAnswers(on_event, options.flag(fail_fast, "fail_fast"))
    return _diagnose(model, data, mode=mode, io=io, select_tf_ops=select_tf_ops, signature_keys=signature_keys,
                     max_samples=max_samples, timeout=timeout, memory_limit_mb=memory_limit_mb, target=target,
                     convert=convert, eval_data=eval_data, keep_workdir=keep_workdir, trust_model=trust_model,
                     aeq_recipe=aeq_recipe, answers=answers)[0]


@run_interruptible
def diagnose_with_float_twin(model: Any, data: Any = None, *, mode: str | None = None, io: str | None = None,
                             max_samples: int = DEFAULT_MAX_SAMPLES, timeout: float = DEFAULT_TIMEOUT,
                             trust_model: bool = False, eval_fit: CalibrationSet | None = None,
                             target: str | None = None,
                             after_conversion: AfterConversion | None = None) -> tuple[Report, bytes | None]:
    """`diagnose`, and when the conversion succeeds, compare's float reference from the same worker:
    the float model the converter handed its quantizer, or, for settings that do not calibrate, the
    model converted again without quantization (TensorFlow starts and the model loads once). The
    float model is None when that second conversion failed. Eval data in `eval_fit` that does not fit
    the model is refused before converting (a UsageError), and not otherwise checked. `after_conversion` is
    work the conversion's worker does next in the same process (compare's comparison)."""
    report, artifacts = _diagnose(model, data, mode=mode, io=io, max_samples=max_samples, timeout=timeout,
                                  float_twin=True, trust_model=trust_model, eval_fit=eval_fit, target=target,
                                  after_conversion=after_conversion)
    return report, artifacts.float_twin


@run_interruptible
def diagnose_with_calibration(model: Any, data: Any = None, *, mode: str | None = None, io: str | None = None,
                              max_samples: int = DEFAULT_MAX_SAMPLES, timeout: float = DEFAULT_TIMEOUT,
                              trust_model: bool = False) -> tuple[Report, ConversionArtifacts]:
    """`diagnose`, and from the same calibrating conversion (or the conversion cache): compare's float
    reference, the calibrated float model and the quantizer's arguments, from which accuracy budgets
    make their variants without calibrating again."""
    return _diagnose(model, data, mode=mode, io=io, max_samples=max_samples, timeout=timeout, float_twin=True,
                     keep_calibration=True, trust_model=trust_model)


@dataclass
class AfterConversion:
    """Work a worker does after converting, in the conversion's process (TensorFlow and the model loaded once).

    `module` serves the conversion request exactly as the conversion worker (or AEQ's) does, then this
    work; `request` makes its request from the conversion request (the conversion's, with the work joined);
    `poll` is called while the worker runs. The worker adds the seconds the work took to its response
    (`after_conversion_seconds`), which the conversion's own time leaves out. A cached conversion runs no
    worker, hence none of this work.
    """

    module: str
    request: Callable[[ConversionRequest], Message]
    poll: Callable[[], None] | None = None


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
              float_twin: bool = False, keep_calibration: bool = False,
              trust_model: bool = False, eval_fit: CalibrationSet | None = None,
              aeq_recipe: str | Path | None = None, answers: EarlyAnswers | None = None,
              after_conversion: AfterConversion | None = None) -> tuple[Report, ConversionArtifacts]:
    require_tensorflow()
    checked = options.RunOptions.checked(timeout=timeout, memory_limit_mb=memory_limit_mb, max_samples=max_samples,
                                         target=target)
    max_samples = checked.max_samples
    convert = options.flag(convert, "convert")
    select_tf_ops = options.flag(select_tf_ops, "select_tf_ops")
    trust_model = options.flag(trust_model, "trust_model")
    signature_keys = options.names(signature_keys, "signature_keys")
    converter_model = getattr(model, "saved_model_dir", None) if model_intake.is_converter(model) else None
    check_cache_root(inputs=(model, data, eval_data, converter_model, aeq_recipe),
                     outputs={"--keep-workdir": keep_workdir})
    if aeq_recipe is not None and not float_tflite.is_tflite_path(model):
        raise UsageError("an AEQ recipe applies to a float .tflite model only")
    keep = None
    if keep_workdir is not None:
        check_outputs(inputs=(model, data, eval_data, aeq_recipe), outputs={"--keep-workdir": keep_workdir})
        keep = prepare_keep_workdir(keep_workdir)
    if answers is not None:
        answers.emit("started", model=str(model) if isinstance(model, (str, Path)) else type(model).__name__,
                     convert=convert)
    workdir = Path(tempfile.mkdtemp(prefix="quantdoctor-"))
    try:
        source, recipe, calibration = _intake(model, data, mode, io, select_tf_ops, max_samples, workdir, aeq_recipe)
        unused = check_unused_data(calibration, recipe, mode_requested=not model_intake.is_converter(model))
        evaluation = eval_set(eval_data, max_samples)  # read before the long conversion: fail early
        if signature_keys:
            if source.format != "savedmodel":
                raise UsageError("signature keys apply to SavedModel directories only")
            source.signature_keys = list(signature_keys)
        report, artifacts = diagnose_prepared(
            source, recipe, calibration, workdir, target=target, evaluation=evaluation, convert=convert,
            float_twin=float_twin, keep_calibration=keep_calibration, timeout=timeout,
            memory_limit_mb=memory_limit_mb, trust_model=trust_model, settings_findings=unused,
            cache=keep is None, eval_fit=eval_fit, answers=answers, after_conversion=after_conversion)
        if answers is not None:
            root = report.root_cause
            answers.emit("done", verdict=report.verdict, root_cause=root.code if root else None,
                         findings=len(report.findings),
                         prediction_confirmed=(report.early_answer or {}).get("confirmed"))
        return report, artifacts
    finally:
        try:
            if keep is not None:
                copy_into(workdir, keep)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


def diagnose_prepared(source: model_intake.ModelSource, recipe: Recipe, calibration: CalibrationSet | None,
                      workdir: Path, *, target: str | None = None, evaluation: CalibrationSet | None = None,
                      convert: bool = True, float_twin: bool = False, keep_calibration: bool = False,
                      timeout: float = DEFAULT_TIMEOUT, memory_limit_mb: int | None = None,
                      trust_model: bool = False, settings_findings: list[Finding] | None = None,
                      cache: bool = True, eval_fit: CalibrationSet | None = None,
                      answers: EarlyAnswers | None = None,
                      after_conversion: AfterConversion | None = None) -> tuple[Report, ConversionArtifacts]:
    """One diagnosis of a model already taken in, in `workdir`: the report, and its artifacts: with
    `float_twin` compare's float reference (see `diagnose_with_float_twin`), with `keep_calibration`
    the calibrated model and quantizer arguments (see `diagnose_with_calibration`).
    `settings_findings` are findings about the settings made before (unused data). A successful
    calibrating conversion is kept in the conversion cache (`convert/cache.py`) and taken from it
    the next time, unless `cache` is False or a memory limit is set. `fix` runs its rounds through it.
    Eval data (`evaluation`, or `eval_fit` to check only that) that does not fit the model's inputs is
    a UsageError, raised before converting (`runtime/eval_fit.py`). `answers` receives the early answer
    (a failure predicted with certainty before converting) and the stages' events, and stops at the
    prediction when it is set to fail fast. `after_conversion` is more work for the conversion's worker
    (see `AfterConversion`)."""
    if source.loader == "keras_file" and not trust_model and model_intake.holds_stored_code(Path(source.path)):
        raise model_intake.unsafe_model_error(source, "")  # the worker's safe mode would refuse it: say so at once
    fitting = evaluation if evaluation is not None else eval_fit
    shapes = eval_shapes(fitting) if fitting is not None else []
    data = None
    if calibration is not None and recipe.calibrate:  # a converter's dataset goes along even when unused
        calibration.save(workdir / "calibration.npz")
        data = str(workdir / "calibration.npz")
    aeq = source.loader == "aeq"
    # The worker stops after loading the model when the eval shapes do not fit.
    settings = dict(model=source.request(), recipe=recipe.to_dict(), data=data, convert=convert,
                    trust_model=trust_model, eval_shapes=shapes or None)
    request = AeqRequest(**settings, aeq_recipe=source.quantizer_recipe) if aeq else ConversionRequest(**settings)
    calibrating = convert and data is not None and data_is_used(recipe)
    key = None
    if calibrating and cache and memory_limit_mb is None and not aeq:  # a memory limit is a question to ask anew
        key = conversion_cache.conversion_key(source, recipe, calibration, workdir, trust_model)
    cached = conversion_cache.lookup(key, workdir) if key else None
    checked = calibration if data_is_used(recipe) else None  # data the converter never reads is not judged
    # No early answer for AEQ's own quantizer, nor for a preflight-only run (it converts nothing to confirm).
    predicting = answers if convert and not aeq else None
    if cached is not None:
        stored = dict(cached.response)
        seconds = stored.pop(conversion_cache.WORKER_SECONDS, 0.0)
        response = ConversionResponse.from_json(stored)
        check_eval_shapes(declared_inputs((response.model or ModelDescription()).inputs), shapes, converted=False)
        run = WorkerRun(outcome="ok", seconds=seconds, response=response,
                        tflite_path=cached.path(conversion_cache.MODEL))
        artifacts = ConversionArtifacts.read(cached.directory, twin_written=True, calibration=calibration)
    else:
        kept = calibrating and (keep_calibration or key is not None)
        if float_twin or kept:  # free when calibrating: the model handed to the quantizer
            request.float_twin_output = str(workdir / conversion_cache.FLOAT_TWIN)
        if kept:
            request.calibration_output = str(workdir)
        if key is not None:  # the worker digests the model bytes it loads: the entry's key
            request.model_identity = key.identity
        if convert:  # after converting, the worker runs the produced model once (runtime/check)
            request.run_check = RunCheckFiles(float_model=str(workdir / FLOAT_REFERENCE),
                                              state=str(workdir / RUN_CHECK_STATE))
        declared = _declared_inputs(source, checked)
        if predicting is not None and declared is not None:  # before TensorFlow starts: the samples alone
            inputs = [InputSpec.from_dict(spec) for spec in declared]
            predicting.predict(check_input_names(inputs) + check_calibration(checked, inputs, recipe)
                               + check_settings(recipe), "data")
        run = _run_watched(request, workdir, timeout, memory_limit_mb, aeq, predicting,
                           lambda response: _judge(source, recipe, checked, response, None, target, evaluation,
                                                   settings_findings or []).before_converting, after_conversion)
        response = run.response
        run.seconds -= response.after_conversion_seconds or 0.0  # the conversion's own time
        response.after_conversion_seconds = None
        if run.outcome == REFUSED:
            raise UsageError(response.error_message)
        if convert and not response.run_check:  # the worker died in the check: where it was
            response.run_check = read_json(workdir / RUN_CHECK_STATE) or None
        if key is not None and run.outcome == "ok":
            conversion_cache.store(key, response.model_digest, workdir,
                                   {**response.to_json(), conversion_cache.WORKER_SECONDS: round(run.seconds, 3)})
        artifacts = ConversionArtifacts.read(workdir, twin_written=response.float_twin == "ok",
                                             calibration=calibration if calibrating else None)
    if answers is not None:
        answers.emit("converted", attempted=run.outcome not in ("skipped", NOT_ATTEMPTED), outcome=run.outcome,
                     conversion_seconds=round(run.seconds, 3), cached=cached is not None)
    if target is None and recipe.mode == "int8-strict":
        target = "int8-accelerator"
    report = _build_report(source, recipe, checked, run, target, evaluation, settings_findings or [])
    if shapes and report.tflite_model is not None:  # samples paired in order: the converted model's order
        produced = read_tflite(report.tflite_model)
        if len(produced.signatures) <= 1:  # compare runs one signature; others' samples are not its inputs'
            check_eval_shapes(tflite_inputs(produced), shapes, converted=True)
    float_path = next((path for path in (cached.path(conversion_cache.FLOAT_TWIN) if cached else None,
                                         workdir / conversion_cache.FLOAT_TWIN, workdir / FLOAT_REFERENCE)
                       if path is not None and path.is_file()), None)
    if float_path is not None:  # the float model the converter quantized: its own input normalisation
        report = replace(report, findings=rank_findings(report.findings + double_normalisation_findings(
            read_tflite(float_path.read_bytes()), {"calibration data": calibration, "eval data": evaluation})))
    if aeq:
        report = with_aeq_findings(report, source, recipe, run)
    if run.outcome == NOT_ATTEMPTED:
        report = replace(report, conversion={**report.conversion, "not_attempted_because": answers.not_attempted})
    if cached is not None:
        report = replace(report, conversion={**report.conversion, "cached": True})
    if answers is not None:
        report = replace(report, early_answer=answers.record(report))
        if report.audit is not None:
            answers.emit("audited", fully_integer=report.audit["fully_integer"],
                         float_ops=len(report.audit["float_ops"]), op_count=report.audit["op_count"])
    return report, artifacts


def _declared_inputs(source: model_intake.ModelSource, checked: CalibrationSet | None) -> list[dict[str, Any]] | None:
    """The model's inputs as its file declares them, read without TensorFlow (a `.keras` file that quantdoctor
    does not edit or cut); an empty list when no data is read (a missing dataset needs no inputs); else None."""
    if checked is None:
        return []
    if source.loader != "keras_file" or source.edits or source.cut:
        return None
    return keras_config.declared_inputs(source.path)


def _run_watched(request: ConversionRequest, workdir: Path, timeout: float, memory_limit_mb: int | None, aeq: bool,
                 answers: EarlyAnswers | None, judge: Callable[[ConversionResponse], list[Finding]],
                 after_conversion: AfterConversion | None = None) -> WorkerRun:
    """Run the conversion worker (`after_conversion`'s module when given); with `answers`, judge its response
    once it has traced the model (the early answer from the graph), and stop it there when they fail fast.
    The run's response is the worker's `ConversionResponse` (AEQ's `AeqResponse`)."""
    started = time.perf_counter()
    response_type = AeqResponse if aeq else ConversionResponse
    watch = answers.watch(response_path(workdir), judge) if answers is not None else None
    module = "quantdoctor.convert.aeq_worker" if aeq else "quantdoctor.convert.worker"
    polls = [poll for poll in (watch, after_conversion and after_conversion.poll) if poll is not None]
    try:
        return run_worker(after_conversion.request(request) if after_conversion else request, workdir,
                          timeout=timeout, memory_limit_mb=memory_limit_mb,
                          on_poll=(lambda: [poll() for poll in polls]) if polls else None,
                          module=after_conversion.module if after_conversion else module,
                          needs_tensorflow=not aeq, response_type=response_type)
    except StopAtPrediction:  # the worker was killed before converting, with what it said before
        return WorkerRun(outcome=NOT_ATTEMPTED, seconds=time.perf_counter() - started,
                         response=response_type.from_json(read_json(response_path(workdir))))


def _intake(model: Any, data: Any, mode: str | None, io: str | None, select_tf_ops: bool, max_samples: int,
            workdir: Path, aeq_recipe: str | Path | None = None
            ) -> tuple[model_intake.ModelSource, Recipe, CalibrationSet | None]:
    if float_tflite.is_tflite_path(model):  # quantized with ai-edge-quantizer: the user's recipe, or AEQ's for the mode
        if aeq_recipe is not None:
            entries = float_tflite.load_recipe(aeq_recipe)
            recipe = float_tflite.recipe_settings(entries)
        else:
            recipe = float_tflite.converter_settings(mode, io, select_tf_ops)
        source = model_intake.from_path(model)
        check_float_model(source)
        source.quantizer_recipe = entries if aeq_recipe is not None else float_tflite.aeq_recipe_name(mode)
        return source, recipe, calibration_set(data, max_samples)
    recipe, calibration = recipe_and_data(model, data, mode, io, select_tf_ops, max_samples)
    if model_intake.is_converter(model):
        return model_intake.from_converter(model, workdir), recipe, calibration
    return model_source(model, workdir), recipe, calibration


def _build_report(source: model_intake.ModelSource, recipe: Recipe, calibration: CalibrationSet | None,
                  run: WorkerRun, target: str | None, evaluation: CalibrationSet | None,
                  settings_findings: list[Finding]) -> Report:
    response: ConversionResponse = run.response
    if run.outcome == "load_error":
        if response.refused_unsafe:
            raise model_intake.unsafe_model_error(source, response.error_message or "")
        raise model_intake.load_error(source.source, response.error_message or "")
    if run.outcome == "edit_error":
        raise EditFailed(f"quantdoctor's edit of the model failed: {response.error_message or ''}")
    tflite_bytes = run.tflite_path.read_bytes() if run.outcome == "ok" else None
    produced = read_tflite(tflite_bytes) if tflite_bytes is not None else None
    judged = _judge(source, recipe, calibration, response, produced, target, evaluation, settings_findings)
    model_info, layers, layer_names = judged.model_info, judged.layers, judged.layer_names
    input_specs, signature_keys, inventory = judged.input_specs, judged.signature_keys, judged.inventory
    inputs, data_findings, prediction = judged.inputs, judged.data_findings, judged.prediction
    attempted = run.outcome not in ("skipped", NOT_ATTEMPTED)
    conversion = {"attempted": attempted, "outcome": run.outcome, "seconds": round(run.seconds, 3),
                  "error_excerpt": None, "model_bytes": None}
    audit = None
    outcome_findings: list[Finding] = []
    if produced is not None:
        conversion["model_bytes"] = len(tflite_bytes)
        audit = summarize(produced, layer_names)
        output_layers = source.output_layers or model_info.output_layers
        outcome_findings = audit_findings(produced, layer_names, recipe, target, output_layers)
        npu, npu_findings = npu_audit(tflite_bytes, target, produced, layer_names, output_layers)
        if npu:
            audit["npu"] = npu
            outcome_findings += npu_findings
        edgetpu, edgetpu_findings = edgetpu_audit(target, produced, layer_names)
        if edgetpu:
            audit["edgetpu"] = edgetpu
            outcome_findings += edgetpu_findings
        check = response.run_check
        audit["run_check"] = check
        outcome_findings += run_check_findings(check, run.signal_name, run.stderr, tflite_bytes, produced,
                                               layer_names, output_layers, recipe, calibration)
        outcome_findings = settle_crushed_merges(outcome_findings, check)
        if recipe.qat_model:
            outcome_findings += check_against_qat_ranges(input_ranges(produced), inputs, {
                "calibration data": calibration, "eval data": evaluation})
    elif run.outcome == "error":
        # The converter's error message followed by its stderr: what the catalog matches against.
        error_text = "\n".join(part for part in (response.error_message, run.stderr) if part)
        conversion["error_excerpt"] = excerpt(error_text)
        conversion["exception"] = response.exception_class  # module:qualname, what convert() raised
        outcome_findings = classify_failure(FailureContext(
            error_text, response.exception_type or "", layer_names, calibration, layers))
    elif attempted:
        conversion["error_excerpt"] = "\n".join(native_errors(run.stderr) + crash_frames(run.stderr)) or None
        # What the process did (crashed, hung, ran out of memory) was seen, not inferred: it ranks before
        # the data errors it does not confirm.
        outcome_findings = [replace(process_finding(run, layers, calibration), precedence=CONFIRMED_PRECEDENCE + 1)]
    if prediction and run.outcome not in ("ok", "error"):
        outcome_findings += prediction.findings  # no converter verdict to stand on: the prediction explains
    findings = catalog.mark_automatic(rank_findings(merge_confirmed(data_findings, outcome_findings)))
    model = {"source": source.source, "format": source.format, "inputs": input_specs,
             "layers": list(layer_names), "layer_scopes": layer_names.scopes,
             "output_layers": source.output_layers or model_info.output_layers,
             "signatures": signature_keys, "signature_inputs": model_info.signature_inputs,
             "layer_classes": {layer["name"]: layer["class"] for layer in layers}}
    preflight = None
    if prediction is not None:
        preflight = {**prediction.to_dict(), "seconds": inventory.get("seconds"),
                     "actual": actual_verdict(conversion, audit, recipe)}
        npu_prediction = npu_preflight(inventory, recipe, layer_names, target, (audit or {}).get("npu"))
        if npu_prediction is not None:
            preflight["npu"] = npu_prediction
    return Report(model=model, settings={**recipe.to_dict(), "target": target}, findings=findings,
                  conversion=conversion, audit=audit, preflight=preflight, tflite_model=tflite_bytes)


@dataclass
class _Judged:
    """The model as the worker described it, and what the data checks and the preflight make of it."""

    model_info: ModelDescription
    layers: list[dict[str, str]]
    layer_names: LayerNames
    input_specs: list[dict[str, Any]]
    inputs: list[InputSpec]
    signature_keys: list[str]
    inventory: dict[str, Any] | None
    data_findings: list[Finding]
    prediction: Prediction | None

    @property
    def before_converting(self) -> list[Finding]:
        """Every finding known before the converter ran: the data checks' and the preflight's."""
        return self.data_findings + (self.prediction.findings if self.prediction else [])


def _judge(source: model_intake.ModelSource, recipe: Recipe, calibration: CalibrationSet | None,
           response: ConversionResponse, produced: TFLiteModel | None, target: str | None,
           evaluation: CalibrationSet | None, settings_findings: list[Finding]) -> _Judged:
    """The data checks and the preflight prediction, on the worker's `response` (as far as it got) and the
    produced model (None before converting, or when none was produced)."""
    model_info = response.model or ModelDescription()
    layers = source.layers or model_info.layers
    layer_names = LayerNames([layer["name"] for layer in layers], source.layer_scopes or model_info.layer_scopes)
    input_specs = _in_converter_order(model_info.inputs, produced)
    inputs = [InputSpec.from_dict(spec) for spec in input_specs]
    signature_keys, float_signatures = _converted_signatures(source, model_info, produced)
    inventory = response.preflight
    recipe.qat_model = is_qat_model(inventory, layers)
    data_findings = (settings_findings + check_input_names(inputs) + check_calibration(calibration, inputs, recipe)
                     + check_list_order(calibration, inputs, produced.input_names if produced else None,
                                        _declared_order(source, model_info))
                     + check_signature_coverage(calibration, signature_keys, float_signatures)
                     + check_input_shapes(inputs, target))
    if evaluation is not None:
        data_findings += check_against_inference(calibration, evaluation, inputs)
    data_findings = qat_aware(data_findings) if recipe.qat_model else data_findings
    data_findings += check_settings(recipe)
    prediction = predict(inventory, recipe, layer_names, inputs, data_findings) if inventory else None
    return _Judged(model_info, layers, layer_names, input_specs, inputs, signature_keys, inventory, data_findings,
                   prediction)


def _in_converter_order(specs: list[dict[str, Any]], produced: TFLiteModel | None) -> list[dict[str, Any]]:
    """The model's inputs in the order of the produced model, which is the order the calibrator
    paired list samples with; as the worker described them when nothing was produced."""
    by_name = {spec["name"]: spec for spec in specs}
    order = produced.input_names if produced is not None else []
    return [by_name[name] for name in order] if order and set(order) == set(by_name) else specs


def _declared_order(source: model_intake.ModelSource, model_info: ModelDescription) -> list[str] | None:
    """The Keras model's own input order (`model.inputs`); None for a SavedModel or functions, which declare none."""
    if source.input_order:
        return source.input_order
    return [spec["name"] for spec in model_info.inputs] if source.loader == "keras_file" else None


def _converted_signatures(source: model_intake.ModelSource, model_info: ModelDescription,
                          produced: TFLiteModel | None) -> tuple[list[str], list[str] | None]:
    """The signatures the conversion has, and those of them that compute in float.

    The produced model is the truth when there is one. Before that, the converter's own choice as
    the worker read it back, else what was asked for; which of them stay float is then unknown (None).
    """
    if produced is not None:
        float_subgraphs = {op.subgraph for op in float_ops(produced)}
        return ([s.key for s in produced.signatures],
                [s.key for s in produced.signatures if s.subgraph in float_subgraphs])
    converted = model_info.converted_signature_keys
    if converted is not None:
        return list(converted), None
    return list(source.signature_keys or model_info.signature_keys or []), None


FLOAT_REFERENCE = "float_reference.tflite"  # the run check's float model, when compare asked for no twin
RUN_CHECK_STATE = "run_check.json"  # the worker's run check records each stage here before it starts
