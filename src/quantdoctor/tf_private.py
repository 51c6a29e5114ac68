"""The one place where quantdoctor touches private TensorFlow, Keras and LiteRT attributes.

quantdoctor reuses the converter's own logic instead of re-deriving it (which signatures it
converts, how it exports a Keras model, when it freezes concrete functions), and that logic lives
behind underscores. Every such use is one small function here, grouped by library, each with a
test in `tests/test_tf_private.py` that fails on the first TensorFlow release that changes it.
A hook that finds its attribute gone raises `TensorFlowChanged` instead of silently doing
nothing. Add new hooks here, one function each, next to those of the same library.

Verified on TensorFlow 2.18 and 2.21 with Keras 3 and ai-edge-litert 1.2 and 2.3 (and, for
`quantdoctor run`, tensorflow-model-optimization 0.8.1 on tf_keras of the same release); their tests
also run on 2.16 with TensorFlow's own interpreter (`make compat`, in CI). `HOOKS_VERIFIED_ON` records
each hook's releases, and a hook that differs between releases carries its per-release fact here
(`CONVERTER_FLAGS_SINCE`, `KERAS_SAVE_SPEC_SINCE`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any

from quantdoctor.environment import SUPPORTED_TENSORFLOW, VERIFIED_TENSORFLOW, current, release


class TensorFlowChanged(RuntimeError):
    """A private attribute quantdoctor relies on is missing or behaves differently: not the user's error."""


def changed_in(exc: BaseException) -> TensorFlowChanged | None:
    """The TensorFlowChanged behind `exc` (itself, or anywhere in its chain of causes), or None: a hook
    that failed inside the converter's own call surfaces wrapped in whatever the converter raised."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, TensorFlowChanged):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _require(owner: Any, name: str) -> Any:
    """`owner.name`, or TensorFlowChanged naming what the installed release lacks."""
    try:
        return getattr(owner, name)
    except AttributeError:
        raise TensorFlowChanged(f"{type(owner).__name__} has no attribute '{name}' in the installed TensorFlow/Keras/"
                                f"LiteRT (TensorFlow {current().tensorflow.version}): quantdoctor supports "
                                f"TensorFlow {SUPPORTED_TENSORFLOW[0]} to {SUPPORTED_TENSORFLOW[1]}") from None


# --- tf.lite.TFLiteConverter: what the converter was built from ---------------------------------

def converter_functions(converter: Any) -> list[Any] | None:
    """The concrete functions a `from_concrete_functions` converter converts (`_funcs`); None for the others."""
    return getattr(converter, "_funcs", None) or None


def converter_trackable(converter: Any) -> Any:
    """The trackable object given to `from_concrete_functions` (`_trackable_obj`)."""
    return _require(converter, "_trackable_obj")


def converter_keras_model(converter: Any) -> Any:
    """The Keras model of a `from_keras_model` converter (`_keras_model`); None for the others."""
    return getattr(converter, "_keras_model", None)


def converter_signature_keys(converter: Any) -> list[str]:
    """The SavedModel signatures the converter converts (`_saved_model_exported_names`).

    `from_saved_model` sets them after its own choices: a Keras 3 `model.export()` artifact
    (signatures 'serve' and 'serving_default') converts as `['serving_default']` alone.
    """
    return list(_require(converter, "_saved_model_exported_names") or [])


# --- tf.lite.TFLiteConverter: settings --------------------------------------------------------------

# Converter settings that older supported releases lack: name -> the first release verified to have it.
# On an older release without it, the setting is neither read nor set (the converter has no such choice).
CONVERTER_FLAGS_SINCE = {"_experimental_disable_per_channel_quantization_for_dense_layers": "2.18"}


def converter_flags(converter: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """The values of the converter settings `names` the installed release has, by name: a setting of
    `CONVERTER_FLAGS_SINCE` missing on a release older than its first is left out; any other
    missing one raises TensorFlowChanged."""
    running = current().tensorflow.version
    return {name: _require(converter, name) for name in names
            if hasattr(converter, name) or name not in CONVERTER_FLAGS_SINCE or running is None
            or release(running) >= release(CONVERTER_FLAGS_SINCE[name])}


def set_converter_flag(converter: Any, name: str, value: Any) -> None:
    """Set a converter setting. The converter ignores attributes it does not know, so a setting
    the installed release dropped raises TensorFlowChanged instead of being set for nothing."""
    _require(converter, name)
    setattr(converter, name, value)


# --- tf.lite.TFLiteConverter: the converter's own preparation steps -----------------------------------

@dataclass(frozen=True)
class FrozenGraph:
    """A graph with its variables folded into constants, as the converter's frozen-graph path converts it."""

    graph_def: bytes
    inputs: list[str]   # tensor names, in the converter's order ("x:0")
    outputs: list[str]


def lower_keras_to_saved_model(converter: Any, export_dir: Path) -> bool:
    """Run a `from_keras_model` converter's own export (`_convert_keras_to_saved_model`) into
    `export_dir`: True when the converter then converts that SavedModel, False when it falls back
    to freezing the model (`freeze_keras_model`).

    Keras' "Saved artifact at ..." printout goes to absl logging instead of stdout, for this thread
    only (`keras_printouts_off_in_this_thread`): the process's stdout is never swapped, so what the
    script's other threads print, and what they convert meanwhile, prints as usual."""
    export = _require(converter, "_convert_keras_to_saved_model")
    with keras_printouts_off_in_this_thread():
        export(str(export_dir))
    return bool(_require(converter, "saved_model_dir"))


@contextlib.contextmanager
def keras_printouts_off_in_this_thread() -> Iterator[None]:
    """Keras 3's messages (`io_utils.print_msg`) go to absl logging rather than stdout while the
    block runs. The switch is Keras' interactive logging, a per-thread setting (its global state is
    a `threading.local`): other threads, and this one afterwards, print as before."""
    import keras

    enabled = keras.config.is_interactive_logging_enabled()
    keras.config.disable_interactive_logging()
    try:
        yield
    finally:
        if enabled:
            keras.config.enable_interactive_logging()


def shadow_keras_export_trace(converter: Any, traced: Callable[[Any], None]) -> None:
    """Call `traced(function)` once, while the converter runs, with the serving function a `from_keras_model`
    converter traces a Keras 3 model into, as soon as it is traced: the graph the converter converts, traced
    once (no second trace for quantdoctor). `traced(None)` when its export traced none (a tf_keras model, which
    it saves whole; a model never called; a trace that failed: the converter then freezes the model instead).

    TF 2.21's `_convert_keras_to_saved_model` adds a "serve" endpoint to a `keras.export.ExportArchive` and
    writes it out, which traces it. An instance attribute shadows that method for this converter only;
    while it runs, the archive's `add_endpoint` (on the backend's archive class) is wrapped to trace the
    endpoint as it is added: the trace that writing it out makes, which then reuses it. What `traced`
    raises is kept from the converter (which would take it for a failed export and freeze the model) and
    raised once the export returns: the caller tells it from the converter's own errors.
    """
    import keras

    export = _require(converter, "_convert_keras_to_saved_model")
    archive_class = type(keras.export.ExportArchive())
    add_endpoint = _require(archive_class, "add_endpoint")

    def export_then_report(*args: Any, **kwargs: Any) -> Any:
        functions: list[Any] = []
        failures: list[BaseException] = []

        def add_and_trace(archive: Any, name: str, fn: Any, *rest: Any, **options: Any) -> Any:
            endpoint = add_endpoint(archive, name, fn, *rest, **options)
            if not functions:
                functions.append(endpoint.get_concrete_function())  # the user's model: a failure is the converter's
                try:
                    traced(functions[0])
                except Exception as exc:  # noqa: BLE001  (quantdoctor's own, raised after the export)
                    failures.append(exc)
            return endpoint

        own = "add_endpoint" in vars(archive_class)
        archive_class.add_endpoint = add_and_trace
        try:
            result = export(*args, **kwargs)
        finally:
            if own:
                archive_class.add_endpoint = add_endpoint
            else:
                del archive_class.add_endpoint
        if failures:
            raise failures[0]
        if not functions:
            traced(None)
        return result

    converter._convert_keras_to_saved_model = export_then_report


def freeze_keras_model(converter: Any) -> FrozenGraph:
    """A `from_keras_model` converter's fallback when its export fails (`_freeze_keras_model`)."""
    return _frozen(_require(converter, "_freeze_keras_model")())


def lower_functions_to_saved_model(converter: Any, export_dir: Path) -> bool:
    """Run a `from_concrete_functions` converter's own choice (`_convert_concrete_functions_to_saved_model`):
    with a trackable object that saves, it saves the functions as signatures into `export_dir` and
    returns True; with no trackable, a `tf.function` as trackable, or a failed save, it returns
    False and the converter freezes the function instead (`freeze_concrete_function`)."""
    _require(converter, "_convert_concrete_functions_to_saved_model")(str(export_dir))
    return bool(_require(converter, "saved_model_dir"))


def freeze_concrete_function(converter: Any) -> FrozenGraph:
    """A `from_concrete_functions` converter's frozen-graph path (`_freeze_concrete_function`): it
    raises, as the converter does, for other than exactly one function."""
    return _frozen(_require(converter, "_freeze_concrete_function")())


def _frozen(result: tuple[Any, ...]) -> FrozenGraph:
    graph_def, input_tensors, output_tensors = result[:3]
    return FrozenGraph(graph_def.SerializeToString(), [t.name for t in input_tensors], [t.name for t in output_tensors])


def shadow_optimize_tflite_model(converter: Any, before: Callable[[bytes], None]) -> None:
    """Call `before(float_model)` with the float model the converter hands its quantizer.

    TF 2.21 passes it to `_optimize_tflite_model` after the float conversion and before calibration;
    an instance attribute shadows that method for this converter only.
    """
    optimize = _require(converter, "_optimize_tflite_model")

    def observe_then_optimize(model: bytes, *args: Any, **kwargs: Any) -> Any:
        before(bytes(model))
        return optimize(model, *args, **kwargs)

    converter._optimize_tflite_model = observe_then_optimize


# --- tf.lite.TFLiteConverter: quantization-aware graphs and TF1 settings ------------------------------

# TFLiteConverterBaseV1.__setattr__ maps these two deprecated names onto TF2-style settings;
# on a TF2 converter they are plain attributes that nothing reads.
TF1_ALIASES = ("post_training_quantize", "target_ops")


def is_quantization_aware_graph(graph_def: Any) -> bool:
    """The converter's own test for a quantization-aware trained graph (FakeQuant or
    QuantizeAndDequantize ops, nested function bodies included): `QuantizationMode
    .is_quantization_aware_trained_model` in `tensorflow/lite/python/lite.py`."""
    from tensorflow.lite.python import lite

    mode = _require(lite, "QuantizationMode")([], lite.TargetSpec(), None, graph_def)
    return bool(_require(mode, "is_quantization_aware_trained_model")())


def is_tf2_converter(converter: Any) -> bool:
    """True for a TF2 `tf.lite.TFLiteConverter` (any of its from_* forms), False for
    `tf.compat.v1.lite.TFLiteConverter`, which honours the TF1 settings."""
    from tensorflow.lite.python import lite

    return isinstance(converter, _require(lite, "TFLiteConverterBaseV2"))


@lru_cache(maxsize=1)
def tf1_only_converter_attributes() -> tuple[str, ...]:
    """The public settings a TF1 converter has and a TF2 converter does not (`inference_type`,
    `quantized_input_stats`, ...), plus the deprecated aliases the TF1 converter maps: read
    from TensorFlow's own converter classes (`TFLiteConverterBaseV1`/`V2`), sorted."""
    from tensorflow.lite.python import lite

    tf1 = set(vars(_require(lite, "TFLiteConverterBaseV1")(experimental_debug_info_func=None)))
    tf2 = set(vars(_require(lite, "TFLiteConverterBaseV2")()))
    return tuple(sorted({name for name in tf1 - tf2 if not name.startswith("_")} | set(TF1_ALIASES)))


# --- tf.lite: the MLIR quantizer, replayed (accuracy budgets calibrate once) -------------------------

@dataclass(frozen=True)
class QuantizerCall:
    """One call of the converter's quantizer: the calibrated float model and the arguments, as JSON."""

    calibrated: bytes
    arguments: dict[str, Any]


@contextlib.contextmanager
def capture_quantizer_calls() -> Iterator[list[QuantizerCall]]:
    """Within the block, every conversion that quantizes appends its `QuantizerCall` to the list
    yielded: the float model carrying the calibrated ranges, and the exact arguments. The
    conversion itself is unchanged.

    TF 2.21's `TFLiteConverterBase._quantize` calls the module-level name
    `tensorflow.lite.python.lite._mlir_quantize` once calibration is done; it is wrapped for the
    duration of the block.
    """
    import inspect

    from tensorflow.lite.python import lite

    original = _require(lite, "_mlir_quantize")
    calls: list[QuantizerCall] = []

    def recording(*args: Any, **kwargs: Any) -> bytes:
        bound = inspect.signature(original).bind(*args, **kwargs)
        data = bound.arguments.pop("input_data_str")
        calls.append(QuantizerCall(bytes(data), _quantizer_arguments_to_json(bound.arguments)))
        return original(*args, **kwargs)

    lite._mlir_quantize = recording
    try:
        yield calls
    finally:
        lite._mlir_quantize = original


def quantize_calibrated(calibrated: bytes, arguments: dict[str, Any], denylisted_nodes: list[str]) -> bytes:
    """The model a captured quantizer call makes, with the ops writing `denylisted_nodes` (their output
    tensors) left in float: `tensorflow.lite.python.convert.mlir_quantize`, what
    `QuantizationDebugger.get_nondebug_quantized_model()` runs, with the tensor names of the full
    conversion and none of its cost (no calibration)."""
    from tensorflow.lite.python import convert

    return _require(convert, "mlir_quantize")(calibrated, **_quantizer_arguments_from_json(arguments),
                                              denylisted_nodes=list(denylisted_nodes) or None)


_DTYPE_ARGUMENTS = ("input_data_type", "output_data_type")


def _quantizer_arguments_to_json(arguments: dict[str, Any]) -> dict[str, Any]:
    """The quantizer's arguments as JSON: dtypes by name, bytes (serialized debug options) in base64."""
    import base64

    result = {}
    for name, value in arguments.items():
        if name in _DTYPE_ARGUMENTS:
            value = value.name
        elif isinstance(value, bytes):
            value = {"base64": base64.b64encode(value).decode()}
        elif hasattr(value, "__int__") and not isinstance(value, bool):
            value = int(value)  # proto enums such as inference_type
        result[name] = value
    return result


def _quantizer_arguments_from_json(arguments: dict[str, Any]) -> dict[str, Any]:
    import base64

    import tensorflow as tf

    result = {}
    for name, value in arguments.items():
        if name in _DTYPE_ARGUMENTS:
            value = tf.as_dtype(value)
        elif isinstance(value, dict) and "base64" in value:
            value = base64.b64decode(value["base64"])
        result[name] = value
    return result


# --- Keras --------------------------------------------------------------------------------------------

def keras_history_layer(tensor: Any) -> Any:
    """The layer that produced a functional model's symbolic tensor (`_keras_history[0]`), or None."""
    history = getattr(tensor, "_keras_history", None)
    return history[0] if history else None


@contextlib.contextmanager
def recorded_layer_scopes(model: Any) -> Iterator[dict[str, str]]:
    """While the block runs, record the TF name scope each Keras 3 layer of `model` is traced
    under: {"functional_1/dense_1": "dense"}. Tracing renames scopes (`dense` becomes `dense_1`,
    `dense_1` becomes `dense_1_2`), so only the record says which layer an op belongs to.

    Keras 3 opens every layer call with its TensorFlow backend's `name_scope`; its `__enter__` is
    wrapped for the duration (tf_keras layers open no such scope: their models record nothing).
    """
    try:
        from keras.src.backend.tensorflow import core
    except ImportError as exc:
        raise TensorFlowChanged(f"Keras 3 has no TensorFlow backend module keras.src.backend.tensorflow.core ({exc}): "
                                "quantdoctor cannot tell which layer each converter op belongs to") from None
    import tensorflow as tf

    layers = {id(layer): layer.name for layer in _nested_layers(model)}
    scopes: dict[str, str] = {}
    original = core.name_scope.__enter__

    def entering(scope: Any) -> Any:
        result = original(scope)
        name = layers.get(id(getattr(scope, "caller", None)))
        if name is not None:
            scopes.setdefault(tf.get_current_name_scope(), name)
        return result

    core.name_scope.__enter__ = entering
    try:
        yield scopes
    finally:
        core.name_scope.__enter__ = original


def _nested_layers(model: Any) -> list[Any]:
    found = []
    for layer in getattr(model, "layers", None) or []:
        found.append(layer)
        found.extend(_nested_layers(layer))
    return found


# The release whose `from_keras_model` first exports a Keras 3 model with the converter's own input signature
# (`tensorflow.lite.python.util.get_save_spec`); older ones save it with Keras' default serving signature.
KERAS_SAVE_SPEC_SINCE = "2.18"


def keras_input_signature(model: Any) -> list[Any]:
    """The input signature a `from_keras_model` converter exports a Keras 3 model with.

    Mirrors `_convert_keras_to_saved_model` of the installed release. From TensorFlow 2.18 on, a
    functional or Sequential model uses its inputs (a list of several wrapped in one more list), any
    other model the spec Keras saved when it was first called (`tensorflow.lite.python.util.get_save_spec`).
    Before 2.18 (`KERAS_SAVE_SPEC_SINCE`), `tf.saved_model.save` takes Keras' default serving signature
    (`_default_save_signature`: the inputs' shapes and dtypes, without names; a subclassed model's built
    shapes). Raises ValueError, as the converter does, for a model never called.
    """
    running = current().tensorflow.version
    if running is not None and release(running) < release(KERAS_SAVE_SPEC_SINCE):
        return _keras_default_save_signature(model)
    import tensorflow as tf
    from keras.src import models
    from tensorflow.lite.python import util

    get_save_spec = _require(util, "get_save_spec")

    if isinstance(model, (models.Functional, models.Sequential)):
        specs = tf.nest.map_structure(lambda x: tf.TensorSpec(x.shape, dtype=x.dtype, name=x.name), model.inputs)
        return [specs] if isinstance(specs, list) and len(specs) > 1 else specs
    save_spec = get_save_spec(model)
    if not save_spec:
        raise ValueError(_NEVER_CALLED)
    return [save_spec]


_NEVER_CALLED = "The model provided has never been called. It must be called at least once before export."


def _keras_default_save_signature(model: Any) -> list[Any]:
    """TensorFlow 2.16's export signature: Keras' `_default_save_signature` (`keras_input_signature`)."""
    if not getattr(model, "built", False):
        raise ValueError(_NEVER_CALLED)
    serving = _require(model, "_default_save_signature")  # a property: the serving tf.function, or None
    signature = list(serving.input_signature) if serving is not None else []
    if not signature:
        raise ValueError(_NEVER_CALLED)
    return signature


# --- LiteRT Interpreter -------------------------------------------------------------------------------

def interpreter_ops(interpreter: Any) -> list[dict[str, Any]]:
    """Every op of the interpreter's first subgraph: {"index", "op_name", "inputs", "outputs"} (`_get_ops_details`)."""
    return _require(interpreter, "_get_ops_details")()


def interpreter_tensor(interpreter: Any, index: int, subgraph: int = 0) -> dict[str, Any]:
    """Details of any tensor, intermediate ones included (`_get_tensor_details`), as `get_tensor_details` gives them."""
    return _require(interpreter, "_get_tensor_details")(index, subgraph_index=subgraph)


# --- run/watch: what is patched while the user's own script runs -------------------------------------
# Module names are hooked on import; the classes and functions come from the module the hook hands in.

# The module defining the TF2 converter classes (`tf.lite.TFLiteConverter` is its TFLiteConverterV2).
CONVERTER_MODULE = "tensorflow.lite.python.lite"
# TensorFlow's own interpreter (`tf.lite.Interpreter`): a class of its own, not LiteRT's.
TF_INTERPRETER_MODULE = "tensorflow.lite.python.interpreter"
# Where tfmot defines quantize_model, quantize_apply, ... and its public API module
# (`tfmot.quantization.keras`), which re-exports them by reference.
TFMOT_QUANTIZE_MODULES = ("tensorflow_model_optimization.python.core.quantization.keras.quantize",
                          "tensorflow_model_optimization.python.core.api.quantization.keras")
TFMOT_ENTRY_POINTS = ("quantize_model", "quantize_apply", "quantize_annotate_model", "quantize_annotate_layer")
_CONVERTER_CLASSES = ("TFLiteConverterV2", "TFLiteKerasModelConverterV2", "TFLiteSavedModelConverterV2")


def converter_classes(lite: ModuleType) -> list[type]:
    """The TF2 converter classes a user gets from `tf.lite.TFLiteConverter` and its `from_*` constructors.

    Each defines its own `convert`: `from_keras_model` returns a TFLiteKerasModelConverterV2,
    `from_saved_model` a TFLiteSavedModelConverterV2, `from_concrete_functions` (and the class
    itself) a TFLiteConverterV2.
    """
    return [_require(lite, name) for name in _CONVERTER_CLASSES]


def converter_base(lite: ModuleType) -> type:
    """The base class whose `__init__` every TF2 converter runs when it is built."""
    return _require(lite, "TFLiteConverterBaseV2")


def representative_dataset_function(dataset: Any) -> Any:
    """The generator function behind `converter.representative_dataset`.

    `convert()` replaces a plain function by a `tf.lite.RepresentativeDataset` wrapping it (and
    users may set one themselves): its `input_gen` is the function.
    """
    return _require(dataset, "input_gen") if type(dataset).__name__ == "RepresentativeDataset" else dataset


def interpreter_classes(interpreter_module: ModuleType) -> tuple[type, type]:
    """The Interpreter and SignatureRunner classes of `ai_edge_litert.interpreter` or of TF's own module."""
    return _require(interpreter_module, "Interpreter"), _require(interpreter_module, "SignatureRunner")


def tfmot_quantize_functions(module: ModuleType) -> dict[str, Any]:
    """tfmot's entry points that annotate and quantize a Keras model, by name, as `module` holds them."""
    return {name: vars(module)[name] for name in TFMOT_ENTRY_POINTS if name in vars(module)}


def tfmot_supports(layer: Any) -> bool:
    """Whether tfmot's default 8-bit scheme has a QuantizeConfig for this (tf_keras) layer."""
    try:
        from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
            default_8bit_quantize_registry,
        )
    except ImportError as exc:
        raise TensorFlowChanged(f"tfmot has no default_8bit_quantize_registry ({exc})") from None

    return default_8bit_quantize_registry.Default8BitQuantizeRegistry().supports(layer)


def keras_producing_call(tensor: Any) -> tuple[Any, Any] | None:
    """The layer that produced a symbolic Keras tensor and the call (node) that did, from
    `_keras_history` and `_inbound_nodes` (Keras 3 and tf_keras alike); None for a tensor with no history."""
    history = getattr(tensor, "_keras_history", None)
    if not history:
        return None
    layer, node_index = history[0], history[1]
    return layer, _require(layer, "_inbound_nodes")[node_index]


def keras_call_arguments(node: Any) -> tuple[Any, dict[str, Any]]:
    """The positional and keyword arguments a Keras call node was made with (symbolic tensors inside):
    Keras 3 keeps them in `node.arguments`, tf_keras in `call_args`/`call_kwargs`."""
    if hasattr(node, "arguments"):
        return tuple(node.arguments.args), dict(node.arguments.kwargs)
    return tuple(_require(node, "call_args")), dict(_require(node, "call_kwargs"))


def keras_call_outputs(node: Any) -> list[Any]:
    """The symbolic tensors a Keras call node produced, flattened (`node.outputs`)."""
    import tensorflow as tf

    return tf.nest.flatten(_require(node, "outputs"))


# --- ai_edge_quantizer (AEQ): the internals behind its public Quantizer and recipes ----------------------

@dataclass(frozen=True)
class AeqOp:
    """One op of a .tflite as AEQ's recipes see it: where it is, its builtin code, the op key a recipe entry's
    `operation` names (None for an op AEQ has no key for) and the scope its `regex` is matched against."""

    subgraph: int
    index: int
    builtin_code: int
    op_key: str | None
    scope: str


def aeq_model_ops(model: bytes) -> list[AeqOp]:
    """Every op of `model` as AEQ names it (`utils.tfl_flatbuffer_utils`: `read_model`, `TFL_OP_CODE_TO_NAME`,
    `get_op_scope`): the scope is the op's output tensor names, each followed by ';'."""
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils as flatbuffer

    read_model, get_op_scope = _require(flatbuffer, "read_model"), _require(flatbuffer, "get_op_scope")
    op_keys = _require(flatbuffer, "TFL_OP_CODE_TO_NAME")
    parsed = read_model(bytearray(model))
    ops = []
    for subgraph_index, subgraph in enumerate(parsed.subgraphs):
        for op_index, op in enumerate(subgraph.operators):
            code = parsed.operatorCodes[op.opcodeIndex].builtinCode
            ops.append(AeqOp(subgraph_index, op_index, code, op_keys.get(code), get_op_scope(op, subgraph.tensors)))
    return ops


def aeq_recipe_algorithm(entries: list[dict[str, Any]]) -> Callable[[str, str], str]:
    """What AEQ's recipe manager (`recipe_manager.RecipeManager`) decides for an op key and scope under the recipe
    `entries`: the algorithm key of the last matching entry AEQ supports for the op, else "no_quantize"."""
    from ai_edge_quantizer import recipe_manager

    manager = _require(recipe_manager, "RecipeManager")()
    _require(manager, "load_quantization_recipe")(entries)
    decide = _require(manager, "get_quantization_configs")

    def algorithm(op_key: str, scope: str) -> str:
        key = decide(op_key, scope)[0]
        return str(getattr(key, "value", key))

    return algorithm


def aeq_accepts_op_config(algorithm_key: str, op_key: str, op_config: dict[str, Any]) -> bool:
    """Whether AEQ's algorithm manager accepts a recipe entry's `op_config` for the op under `algorithm_key`
    (`qtyping.OpQuantizationConfig.from_dict`, `algorithm_manager.check_op_quantization_config`)."""
    from ai_edge_quantizer import algorithm_manager, qtyping

    parsed = _require(_require(qtyping, "OpQuantizationConfig"), "from_dict")(op_config)
    try:
        _require(algorithm_manager, "check_op_quantization_config")(algorithm_key, op_key, parsed)
    except ValueError:
        return False
    return True


# --- Where each hook was verified ---------------------------------------------------------------------

def _verified_hooks() -> dict[str, tuple[str, ...]]:
    hooks = [name for name, value in globals().items()
             if callable(value) and not name.startswith("_") and getattr(value, "__module__", None) == __name__
             and not isinstance(value, type)]
    return {name: VERIFIED_TENSORFLOW for name in hooks}


# Every hook, by name -> the TensorFlow releases (minor versions) its test in tests/test_tf_private.py
# passed on. All hooks hold on every verified release; one verified on fewer lists its own.
HOOKS_VERIFIED_ON: dict[str, tuple[str, ...]] = _verified_hooks()
