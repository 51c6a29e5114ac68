"""The worker process: loads the model, runs the real TFLiteConverter, reports through files.

Run as `python -m quantdoctor.convert.worker REQUEST.json`. The response file is rewritten at
each stage, so when the process dies (segfault, abort, out of memory) the parent still knows how
far it got and what the model looks like.
"""

from __future__ import annotations

import contextlib
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from quantdoctor import tf_private
from quantdoctor.convert.converter_trace import ConverterTrace, own_trace, preflight_inventory
from quantdoctor.convert.model_identity import ModelDigest
from quantdoctor.errors import UsageError
from quantdoctor.intake.data import CalibrationSet
from quantdoctor.intake.imports import import_handed_over
from quantdoctor.intake.model import lambda_layer_names, written_by_tf_keras
from quantdoctor.intake.recipe import Recipe
from quantdoctor.isolation.crash import out_of_memory
from quantdoctor.isolation.protocol import Message, StagedResponse, StateFile, serve, write_json, write_message
from quantdoctor.runtime.eval_fit import REFUSED, check_eval_shapes, declared_inputs

# Every refusal of Keras's safe mode (a Lambda's stored bytecode, a TFSMLayer, an outside vocabulary
# file) tells how to override it with these words.
KERAS_SAFE_MODE_REFUSAL = "safe_mode=False"


@dataclass
class RunCheckFiles(Message):
    """Where the run check (`runtime.check`) of the produced model keeps its files: the float model it
    compares with (written by the converter when it calibrates), and its state, written before each stage."""

    float_model: str
    state: str


@dataclass
class ConversionRequest(Message):
    """Load `model` (`ModelSource.request()`: how to load it, and fix's edits or reduce's cut) and convert it
    with `recipe` (`Recipe.to_dict()`), calibrating on the samples saved at `data`; `convert` False stops
    after describing and tracing the model. The rest is optional work around the conversion: eval sample
    shapes to check first, compare's float twin, the calibration kept for accuracy budgets, the digest of the
    loaded model for the conversion cache (its `model_identity` kind), the run check of the produced model.
    `response` and `output` (the produced model) are set by `runner.run_worker`."""

    model: dict[str, Any]
    recipe: dict[str, Any]
    data: str | None = None
    convert: bool = True
    trust_model: bool = False
    response: str = ""
    output: str = ""
    eval_shapes: list[Any] | None = None
    float_twin_output: str | None = None
    calibration_output: str | None = None
    model_identity: str | None = None
    run_check: RunCheckFiles | None = None


@dataclass
class ModelDescription(Message):
    """The loaded model as the worker describes it: its inputs (`{"name", "shape", "dtype"}` each), a Keras
    model's layers (`{"name", "class"}`), the TF name scope each was traced under and the layer producing each
    output; a SavedModel's signatures, their inputs, and those the converter chose to convert (None: unknown)."""

    inputs: list[dict[str, Any]] = field(default_factory=list)
    layers: list[dict[str, str]] = field(default_factory=list)
    layer_scopes: dict[str, str] | None = None
    output_layers: list[str | None] = field(default_factory=list)
    signature_keys: list[str] | None = None
    signature_inputs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    converted_signature_keys: list[str] | None = None


@dataclass
class ConversionResponse(StagedResponse):
    """The conversion so far, rewritten at each stage (`loading`, `converting`, `done`): the model as loaded
    (`model`: its inputs, layers, scopes and signatures) and its preflight inventory; once done, the outcome
    (`ok`, `error`, `load_error`, `edit_error`, `skipped`, `eval_data_refused`) with the converter's exception
    or the refusal (`refused_unsafe`: Keras's safe mode refused the file), the conversion's seconds and the
    model's size; then the float twin ("ok" or its error), the loaded model's digest (None when it changed while
    converting) and the run check's last state. A worker that does more after converting in the same process
    (`compare.joint_worker`) adds the seconds that took, which `seconds` leaves out."""

    model: ModelDescription | None = None
    preflight: dict[str, Any] | None = None
    refused_unsafe: bool = False
    exception_type: str | None = None
    exception_class: str | None = None
    seconds: float | None = None
    model_bytes: int | None = None
    float_twin: str | None = None
    model_digest: str | None = None
    run_check: dict[str, Any] | None = None
    after_conversion_seconds: float | None = None


def main(request: ConversionRequest) -> int:
    """Serve one conversion request; the exit code is 0 whether or not the conversion failed.

    Only the calls into the user's model and converter are guarded: what they raise is the
    model's or the converter's outcome. An exception from quantdoctor's own code escapes to
    `protocol.serve`, which reports it as the bug it is.
    """
    response_path = Path(request.response)
    response = ConversionResponse(stage="loading")
    write_message(response_path, response)

    import tensorflow as tf

    convert, trust_model, source = request.convert, request.trust_model, request.model
    # For the conversion cache: the digest of the model bytes loaded here, withdrawn if they change before
    # the conversion ends.
    identity = request.model_identity
    loaded_digest = ModelDigest.take(source["path"], identity) if identity else None
    data = request.data
    try:
        import_handed_over(source.get("imports"))  # the user's code, handed over with --import
        loaded = _load(tf, source, trust_model)
    except Exception as exc:  # the user's model, not quantdoctor, failed to load
        return _refused(response, response_path, "load_error", exc,
                        refused_unsafe=not trust_model and KERAS_SAFE_MODE_REFUSAL in str(exc))
    if source.get("edits"):  # fix's model steps: quantdoctor's own code, never the user's load error
        try:
            loaded = _edited(loaded, source["edits"])
        except Exception as exc:
            return _refused(response, response_path, "edit_error", exc)
    if source.get("cut"):  # reduce's candidate: some of the model's layers, on their activations
        try:
            loaded, data = _cut(loaded, source["cut"], data)
        except _CutFailed:  # quantdoctor's own bug, reported as one by `protocol.serve`
            raise
        except Exception as exc:  # a model with no layer graph to cut
            return _refused(response, response_path, "load_error", exc)
    loaded_at = time.perf_counter()
    # A Keras model that converts is traced once, by the converter, and the preflight reads that trace.
    trace = None
    if convert and source["loader"] == "keras_file":
        trace = ConverterTrace(loaded, response, response_path, loaded_at)
    make_converter, response.model, function = _describe(tf, source, loaded, trace is None)
    refusal = _eval_data_refusal(response.model, request.eval_shapes)
    if refusal:  # the user's data is wrong: nothing to convert for
        response.stage, response.outcome, response.error_message = "done", REFUSED, refusal
        write_message(response_path, response)
        return 0
    if trace is None:
        response.preflight = preflight_inventory(function, loaded_at)
        if not convert:
            response.stage, response.outcome = "done", "skipped"
            write_message(response_path, response)
            return 0
        response.stage = "converting"
        write_message(response_path, response)

    started = time.perf_counter()
    twin = Path(request.float_twin_output) if request.float_twin_output else None
    check = request.run_check
    # The float model the quantizer starts from: compare's reference, and the run check's.
    before_quantization = twin or (Path(check.float_model) if check else None)
    calibration = CalibrationSet.load(Path(data)) if data else None
    recipe = Recipe.from_dict(request.recipe)
    try:
        with _kept_calibration(request.calibration_output), \
                trace.recording() if trace else contextlib.nullcontext():
            tflite_model = _convert(make_converter, recipe, calibration, before_quantization, trace)
    except _ConverterFailed as failed:
        exc = failed.__cause__
        _die_if_out_of_memory(exc)
        response.outcome, response.seconds = "error", time.perf_counter() - started
        response.exception_type, response.error_message = type(exc).__name__, str(exc)
        response.exception_class = f"{type(exc).__module__}:{type(exc).__qualname__}"
    else:
        Path(request.output).write_bytes(tflite_model)
        response.outcome, response.seconds = "ok", time.perf_counter() - started
        response.model_bytes = len(tflite_model)
    if trace is not None:  # before the outcome is written: a failure may be quantdoctor's reading of the trace
        trace.settle(converted=response.outcome == "ok")
    response.stage = "done"
    write_message(response_path, response)
    if response.outcome == "ok" and twin:
        response.float_twin = "ok" if twin.exists() else _convert_float_twin(make_converter, twin)
        write_message(response_path, response)
    if identity:
        response.model_digest = loaded_digest.digest if loaded_digest and loaded_digest.unchanged() else None
        write_message(response_path, response)
    if response.outcome == "ok" and check:
        response.run_check = checked_run(Path(request.output), before_quantization if calibration else None,
                                         calibration, check)
        write_message(response_path, response)
    return 0


def checked_run(model: Path, float_model: Path | None, calibration: CalibrationSet | None,
                files: RunCheckFiles) -> dict[str, Any] | None:
    """The run check of the produced `model` (`runtime.check`): its last state, None when it recorded none.
    Each stage goes to a small file of its own before it starts (the whole response is large), so a parent
    whose worker the interpreter killed still knows where; the end joins the response."""
    from quantdoctor.runtime.check import run_check

    states: list[dict[str, Any]] = []
    state_file = StateFile(Path(files.state))

    def record(state: dict[str, Any]) -> None:
        states[:] = [state]
        state_file.write(state)

    try:
        run_check(model, float_model, calibration.samples if calibration else [], record)
    finally:
        state_file.close()
    return states[0] if states else None


def _refused(response: ConversionResponse, response_path: Path, outcome: str, exc: Exception,
             refused_unsafe: bool = False) -> int:
    """End the request with `outcome` (the model could not be loaded, edited or cut) and the exception."""
    _die_if_out_of_memory(exc)
    _raise_if_tensorflow_changed(exc)
    response.stage, response.outcome, response.refused_unsafe = "done", outcome, refused_unsafe
    response.error_message = f"{type(exc).__name__}: {exc}"
    write_message(response_path, response)
    return 0


def _eval_data_refusal(model: ModelDescription, shapes: Any) -> str | None:
    """Why the eval samples (their `eval_shapes`) do not fit the loaded model's inputs, or None."""
    if not shapes:
        return None
    try:
        check_eval_shapes(declared_inputs(model.inputs), shapes, converted=False)
    except UsageError as exc:
        return str(exc)
    return None


class _ConverterFailed(Exception):
    """The user's converter raised (its exception is the __cause__)."""


class _CutFailed(Exception):
    """Cutting the model failed for a reason other than the model having no layer graph (a bug)."""


def _cut(model: Any, cut: dict[str, Any], data: str | None) -> tuple[Any, str | None]:
    """reduce's sub-model and its calibration file; a model with no layer graph is the model's problem."""
    from quantdoctor.edits.call_graph import NotCuttable
    from quantdoctor.edits.cut import cut_model

    try:
        return cut_model(model, cut, data)
    except NotCuttable:
        raise
    except Exception as exc:
        raise _CutFailed(f"cutting the model failed: {type(exc).__name__}: {exc}") from exc


def _convert(make_converter: Callable[[], Any], recipe: Recipe, calibration: CalibrationSet | None,
             before_quantization: Path | None, trace: ConverterTrace | None = None) -> bytes:
    """Build the converter, apply the settings and convert; the converter's own errors become _ConverterFailed.
    When it calibrates, the float model it hands its quantizer is written to `before_quantization`; with
    `trace`, the converter's trace of the model is its preflight."""
    try:
        converter = make_converter()
    except Exception as exc:  # a bad signature key, say: the user's conversion error to diagnose
        _raise_if_tensorflow_changed(exc)
        raise _ConverterFailed() from exc
    recipe.apply(converter)
    if calibration is not None:
        converter.representative_dataset = calibration.replay  # the samples exactly as the user's yielded them
        if before_quantization:
            _keep_model_before_quantization(converter, before_quantization)
    if trace is not None:
        trace.install(converter)
    try:
        return converter.convert()
    except Exception as exc:
        _raise_if_tensorflow_changed(exc)
        raise _ConverterFailed() from exc


def _raise_if_tensorflow_changed(exc: Exception) -> None:
    """A hook of quantdoctor's that failed inside the converter is TensorFlow having changed, never the
    user's conversion error (QD904): it ends the worker as `tensorflow_changed` (`protocol.serve`)."""
    changed = tf_private.changed_in(exc)
    if changed is not None:
        raise changed from exc


def _die_if_out_of_memory(exc: Exception) -> None:
    """Re-raise an allocation failure (MemoryError, ResourceExhaustedError, or one wrapped by Keras)
    so that it ends the process: the runner reports every out-of-memory death the same way (QD903)."""
    if out_of_memory(f"{type(exc).__name__}: {exc}"):
        raise exc


def _keep_model_before_quantization(converter: Any, output: Path) -> None:
    """Write the float model the converter hands to its quantizer to `output`: compare's float
    reference, from the very conversion it is compared with (the quantizer keeps its tensor names)."""
    tf_private.shadow_optimize_tflite_model(converter, output.write_bytes)


@contextlib.contextmanager
def _kept_calibration(directory: str | None) -> Iterator[None]:
    """Within the block, keep what the quantizer is handed in `directory` (when given): the calibrated
    float model (`calibrated.tflite`) and the quantizer's arguments (`quantizer.json`), from which
    accuracy budgets make their variants without calibrating again."""
    if not directory:
        yield
        return
    with tf_private.capture_quantizer_calls() as calls:
        yield
    if calls:
        Path(directory, "calibrated.tflite").write_bytes(calls[-1].calibrated)
        write_json(Path(directory, "quantizer.json"), calls[-1].arguments)


def _convert_float_twin(make_converter: Callable[[], Any], output: Path) -> str:
    """Convert the model again without quantization (compare's reference, for settings that do not
    calibrate) into `output`: "ok", or the error. Same process: TensorFlow and the model load once."""
    try:
        output.write_bytes(_convert(make_converter, Recipe.for_mode("float"), None, None))
    except _ConverterFailed as failed:
        return f"{type(failed.__cause__).__name__}: {failed.__cause__}"
    return "ok"


def _load(tf: Any, model: dict[str, Any], trust_model: bool) -> Any:
    """The user's model, loaded, and nothing else (so what this raises is the model's problem): a Keras
    model, a SavedModel object, or a frozen graph's concrete function. Keras files load in Keras's safe
    mode, which refuses to run code stored in the file, unless the user trusts the model."""
    if model["loader"] == "keras_file":
        if (model.get("cut") or {}).get("library") == "tf_keras":  # reduce's save of a tf_keras model
            import tf_keras

            return tf_keras.models.load_model(model["path"], compile=False, safe_mode=not trust_model)
        if written_by_tf_keras(Path(model["path"])):
            return _load_tf_keras(model["path"], trust_model)
        import keras

        return keras.saving.load_model(model["path"], compile=False, safe_mode=not trust_model)
    if model["loader"] == "frozen_graph":
        return _import_frozen_graph(tf, model)
    return tf.saved_model.load(model["path"])


def _load_tf_keras(path: str, trust_model: bool) -> Any:
    """An .h5 file tf_keras wrote, loaded by tf_keras (its TFOpLambda layers name TensorFlow ops, no code).
    Its Lambda layers would run code stored in the file: refused as Keras's safe mode refuses them."""
    if not trust_model and lambda_layer_names(Path(path)):
        raise ValueError(f"Lambda layers run code stored in the file; load it with {KERAS_SAFE_MODE_REFUSAL}")
    try:
        import tf_keras
    except ImportError:
        raise ImportError("this .h5 file was written by tf_keras (Keras 2), whose TFOpLambda layers Keras 3 cannot "
                          "load: pip install tf-keras, or export a SavedModel with tf_keras "
                          "(model.export('saved_model_dir')) and pass that directory") from None
    try:
        return tf_keras.models.load_model(path, compile=False)
    except ValueError as exc:
        if not _TFMOT_LAYER.search(str(exc)):
            raise
    with _tfmot_scope():  # a QAT model tfmot saved: tfmot's guide loads it under quantize_scope
        return tf_keras.models.load_model(path, compile=False)


# How tf_keras names a class of tfmot's QAT models (preflight/qat.py's TFMOT_LAYER_CLASSES) it cannot deserialize.
_TFMOT_LAYER = re.compile(r"Unknown layer: '(?:QuantizeLayer|QuantizeWrapper|QuantizeWrapperV2)'")


def _tfmot_scope() -> Any:
    """tfmot's `quantize_scope`, which registers its QAT layers and quantizers (library classes, no code
    from the file); an ImportError naming the package when tfmot is not installed."""
    try:
        import tensorflow_model_optimization as tfmot
    except ImportError:
        raise ImportError("this .h5 file holds tfmot's quantization-aware layers (QuantizeLayer, QuantizeWrapperV2): "
                          "pip install tensorflow-model-optimization, or export a SavedModel with tf_keras "
                          "(model.export('saved_model_dir')) and pass that directory") from None
    return tfmot.quantization.keras.quantize_scope()


def _describe(tf: Any, model: dict[str, Any], loaded: Any,
              trace: bool) -> tuple[Callable[[], Any], ModelDescription, Any]:
    """A factory for the loaded model's converter, a description of its inputs and layers, and its
    serving function (a Keras model's only when `trace`: else the converter traces it, see `ConverterTrace`).

    A Keras file converts through `from_keras_model`, exactly as the user's own code would; a
    SavedModel through `from_saved_model`, whose own choice of signatures is reported
    (`converted_signature_keys`); a frozen graph through `from_concrete_functions` without a
    trackable object, the converter's frozen-graph path.
    """
    if model["loader"] == "keras_file":
        return _describe_keras_model(tf, loaded, trace)
    if model["loader"] == "frozen_graph":
        return _describe_frozen_graph(tf, loaded)
    return _describe_saved_model(tf, model, loaded)


def _describe_keras_model(tf: Any, keras_model: Any, trace: bool) -> tuple[Callable[[], Any], ModelDescription, Any]:
    from quantdoctor.intake.model import keras_layers, keras_output_layers

    inputs = getattr(keras_model, "inputs", None) or []  # a subclassed model loaded from a file has no `inputs`
    info = ModelDescription(inputs=[_spec(x.name, x.shape, x.dtype) for x in inputs], layers=keras_layers(keras_model),
                            output_layers=keras_output_layers(keras_model), layer_scopes={})

    def converter() -> Any:
        return tf.lite.TFLiteConverter.from_keras_model(keras_model)

    if not trace:  # the converter's own trace records the scopes (`ConverterTrace`)
        return converter, info, None
    with tf_private.recorded_layer_scopes(keras_model) as scopes:
        function = own_trace(keras_model)  # traced as the converter traces it, for the preflight
    info.layer_scopes = dict(scopes)
    return converter, info, function


def _describe_saved_model(tf: Any, model: dict[str, Any],
                          loaded: Any) -> tuple[Callable[[], Any], ModelDescription, Any]:
    """Build the converter now: which signatures it converts is its own choice (a Keras 3
    `model.export()` directory converts 'serving_default' only). A converter that cannot be built
    (an unknown signature key) is the conversion step's error to report, not a load error."""
    signature_keys = model.get("signature_keys")

    def make_converter() -> Any:
        return tf.lite.TFLiteConverter.from_saved_model(model["path"], signature_keys=signature_keys)

    info = ModelDescription(signature_keys=list(loaded.signatures.keys()),
                            signature_inputs={key: _signature_specs(function)
                                              for key, function in loaded.signatures.items()})
    try:
        first = make_converter()
    except Exception:
        first = None
    else:
        info.converted_signature_keys = tf_private.converter_signature_keys(first)
    keys = info.converted_signature_keys or signature_keys or info.signature_keys
    function = None
    if len(keys) == 1 and keys[0] in loaded.signatures:
        function = loaded.signatures[keys[0]]
        info.inputs = _signature_specs(function)
    pending = [first] if first is not None else []
    return (lambda: pending.pop() if pending else make_converter()), info, function


def _edited(keras_model: Any, edits: list[dict[str, Any]]) -> Any:
    """fix's model steps applied to the loaded copy (the user's file is never written)."""
    from quantdoctor.edits.plan import edit_model

    return edit_model(keras_model, edits)


def _signature_specs(function: Any) -> list[dict[str, Any]]:
    """The inputs of a signature function, by name."""
    _, kwargs = function.structured_input_signature
    return [_spec(name, spec.shape, spec.dtype) for name, spec in kwargs.items()]


def _import_frozen_graph(tf: Any, model: dict[str, Any]) -> Any:
    """The frozen graph the user's converter converts, as a concrete function again: its node
    names, inputs and outputs are the originals, so the converter produces the same model."""
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(Path(model["path"]).read_bytes())

    def import_graph() -> None:
        tf.compat.v1.import_graph_def(graph_def, name="")

    wrapped = tf.compat.v1.wrap_function(import_graph, [])
    return wrapped.prune(feeds=[wrapped.graph.get_tensor_by_name(name) for name in model["graph_inputs"]],
                         fetches=[wrapped.graph.get_tensor_by_name(name) for name in model["graph_outputs"]])


def _describe_frozen_graph(tf: Any, function: Any) -> tuple[Callable[[], Any], ModelDescription, Any]:
    info = ModelDescription(inputs=[_spec(t.name.rsplit(":", 1)[0], t.shape, t.dtype) for t in function.inputs
                                    if t.dtype != tf.resource],
                            signature_keys=[], converted_signature_keys=[])
    return lambda: tf.lite.TFLiteConverter.from_concrete_functions([function]), info, function


def _spec(name: str, shape: Any, dtype: Any) -> dict[str, Any]:
    dims = shape.as_list() if hasattr(shape, "as_list") else list(shape)
    return {"name": name, "shape": dims, "dtype": getattr(dtype, "name", str(dtype))}


if __name__ == "__main__":
    sys.exit(serve(main, sys.argv[1], ConversionRequest))
