"""One test per hook of `quantdoctor.tf_private`: each fails on the first TensorFlow, Keras or
LiteRT release that renames, drops or changes the private attribute behind it."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
import threading

import keras
import numpy as np
import pytest
import tensorflow as tf
from models import CONVERTS_KERAS_MODELS, Projection, dataset_from, image_model, smooth_images, vectors

from quantdoctor import tf_private
from quantdoctor.audit.tflite_model import read_tflite
from quantdoctor.environment import current, release
from quantdoctor.intake.recipe import CONVERTER_FLAGS
from quantdoctor.litert import interpreter_module

litert = interpreter_module()  # LiteRT's interpreter module, or tf.lite's without it
Interpreter = litert.Interpreter


def dense_pair() -> keras.Model:
    """Two Dense layers with Keras' default names, `dense` and `dense_1` (as in a fresh session)."""
    keras.backend.clear_session()  # default names count per session
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(3)(inputs)
    return keras.Model(inputs, keras.layers.Dense(2)(hidden))


def serving_function(model: keras.Model):
    return tf.function(lambda x: model(x, training=False), input_signature=[tf.TensorSpec((1, 4), tf.float32)])


# --- TFLiteConverter: what it was built from ------------------------------------------------------------

def test_converter_functions_are_the_functions_given():
    function = serving_function(dense_pair()).get_concrete_function()
    assert tf_private.converter_functions(tf.lite.TFLiteConverter.from_concrete_functions([function])) == [function]
    assert tf_private.converter_functions(tf.lite.TFLiteConverter.from_keras_model(dense_pair())) is None


def test_converter_trackable_is_the_object_given():
    model = dense_pair()
    function = serving_function(model)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function.get_concrete_function()], function)
    assert tf_private.converter_trackable(converter) is function


def test_converter_keras_model_is_the_model_given(tmp_path):
    model = dense_pair()
    assert tf_private.converter_keras_model(tf.lite.TFLiteConverter.from_keras_model(model)) is model
    model.export(str(tmp_path / "exported"), verbose=False)
    from_saved_model = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "exported"))
    assert tf_private.converter_keras_model(from_saved_model) is None


def test_converter_signature_keys_are_from_saved_models_own_choice(tmp_path):
    model = dense_pair()
    model.export(str(tmp_path / "exported"), verbose=False)  # signatures 'serve' and 'serving_default'
    assert sorted(tf.saved_model.load(str(tmp_path / "exported")).signatures) == ["serve", "serving_default"]
    converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "exported"))
    assert tf_private.converter_signature_keys(converter) == ["serving_default"]
    produced = Interpreter(model_content=converter.convert()).get_signature_list()
    assert list(produced) == ["serving_default"]  # what the hook says is what the converter converts

    module = Projection()
    tf.saved_model.save(module, str(tmp_path / "two"), signatures={"encode": module.encode, "decode": module.decode})
    two = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "two"))
    assert sorted(tf_private.converter_signature_keys(two)) == ["decode", "encode"]


# --- TFLiteConverter: settings --------------------------------------------------------------------------

def test_every_recipe_flag_exists_and_reads_back():
    converter = tf.lite.TFLiteConverter.from_keras_model(dense_pair())
    flags = tf_private.converter_flags(converter, CONVERTER_FLAGS)
    assert flags == {name: getattr(converter, name) for name in CONVERTER_FLAGS if hasattr(converter, name)}
    assert set(CONVERTER_FLAGS) - set(flags) <= set(tf_private.CONVERTER_FLAGS_SINCE)  # newer than this release


def exported(model: keras.Model, folder) -> str:
    """The model exported by Keras itself: a SavedModel every supported release converts (TF 2.16 aborts
    on the one from_keras_model writes for a Conv2D, QD909)."""
    model.export(str(folder))
    return str(folder)


def test_set_converter_flag_takes_effect_and_refuses_a_dropped_flag(tmp_path):
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3)])
    saved = exported(model, tmp_path / "conv")
    scales = {}
    for disabled in (False, True):
        converter = tf.lite.TFLiteConverter.from_saved_model(saved)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = dataset_from(smooth_images(8, size=8))
        tf_private.set_converter_flag(converter, "_experimental_disable_per_channel", disabled)
        interpreter = Interpreter(model_content=converter.convert())
        weights = [d for d in interpreter.get_tensor_details() if len(d["shape"]) == 4 and d["shape"][0] == 4]
        scales[disabled] = len(weights[0]["quantization_parameters"]["scales"])
    assert scales == {False: 4, True: 1}  # per-channel scales, then one scale: the flag reached the quantizer
    with pytest.raises(tf_private.TensorFlowChanged, match="_experimental_no_such_flag"):
        tf_private.set_converter_flag(converter, "_experimental_no_such_flag", True)


# --- TFLiteConverter: its own preparation steps -----------------------------------------------------------

def test_lower_keras_to_saved_model_writes_the_serving_signature(tmp_path, capsys):
    converter = tf.lite.TFLiteConverter.from_keras_model(dense_pair())
    assert tf_private.lower_keras_to_saved_model(converter, tmp_path / "export") is True
    assert capsys.readouterr().out == ""  # Keras' "Saved artifact at ..." went to absl logging
    assert tf_private.converter_signature_keys(converter) == ["serving_default"]
    loaded = tf.saved_model.load(str(tmp_path / "export"))
    assert "serving_default" in loaded.signatures


class CountedDense(keras.layers.Dense):
    """A Dense layer that counts the times TensorFlow traces it (Python runs only while tracing)."""

    traces = 0

    def call(self, inputs):
        CountedDense.traces += 1
        return super().call(inputs)


def counted_model() -> keras.Model:
    inputs = keras.Input((4,))
    return keras.Model(inputs, CountedDense(2, name="counted")(keras.layers.Dense(3)(inputs)))


@pytest.mark.skipif(not CONVERTS_KERAS_MODELS, reason="TensorFlow 2.16 aborts the process converting the SavedModel "
                    "from_keras_model writes for a Keras 3 model (QD909), the hook's only converter")
def test_shadow_keras_export_trace_reports_the_converters_own_trace_as_soon_as_it_is_made():
    CountedDense.traces = 0
    tf.lite.TFLiteConverter.from_keras_model(counted_model()).convert()
    plain, CountedDense.traces = CountedDense.traces, 0  # the converter's own traces (TF 2.21: its export's, 3)
    converter = tf.lite.TFLiteConverter.from_keras_model(counted_model())
    reported = []
    tf_private.shadow_keras_export_trace(converter, lambda function: reported.append((function, CountedDense.traces)))
    converter.convert()
    (function, traces_then), = reported
    assert traces_then == 1  # reported at the converter's first trace, before it writes its SavedModel
    assert CountedDense.traces == plain  # and no trace of its own: the converter's
    assert [tuple(spec.shape) for spec in function.structured_input_signature[0]] == [(None, 4)]
    matmuls = [op.name for op in function.graph.get_operations() if op.type == "MatMul"]
    assert len(matmuls) == 2 and any("/counted" in name for name in matmuls)
    archive_class = type(keras.export.ExportArchive())
    assert "add_endpoint" not in vars(archive_class)  # restored: the method its base class defines


@pytest.mark.skipif(not CONVERTS_KERAS_MODELS, reason="TensorFlow 2.16 aborts the process converting the SavedModel "
                    "from_keras_model writes for a Keras 3 model (QD909), the hook's only converter")
def test_shadow_keras_export_trace_reports_none_for_a_model_it_saves_whole_and_keeps_callback_errors():
    tf_keras = pytest.importorskip("tf_keras")
    keras2 = tf_keras.Sequential([tf_keras.layers.Dense(2, input_shape=(4,))])
    converter = tf.lite.TFLiteConverter.from_keras_model(keras2)
    reported = []
    tf_private.shadow_keras_export_trace(converter, reported.append)
    converter.convert()
    assert reported == [None]  # tf_keras: saved by tf.saved_model.save, no "serve" endpoint traced

    converter = tf.lite.TFLiteConverter.from_keras_model(counted_model())

    def failing(function):
        raise KeyError("quantdoctor's own")

    tf_private.shadow_keras_export_trace(converter, failing)
    with pytest.raises(KeyError, match="quantdoctor's own"):  # not swallowed into the converter's fallback
        converter.convert()
    with pytest.raises(tf_private.TensorFlowChanged, match="_convert_keras_to_saved_model"):
        tf_private.shadow_keras_export_trace(tf.lite.TFLiteConverter.from_concrete_functions([]), reported.append)


def test_keras_printouts_are_off_in_this_thread_only():
    other_thread = []
    with tf_private.keras_printouts_off_in_this_thread():
        assert not keras.config.is_interactive_logging_enabled()
        thread = threading.Thread(target=lambda: other_thread.append(keras.config.is_interactive_logging_enabled()))
        thread.start()
        thread.join()
    assert other_thread == [True]  # a per-thread setting: the script's other threads still print
    assert keras.config.is_interactive_logging_enabled()
    keras.config.disable_interactive_logging()  # a script that turned it off itself keeps it off
    try:
        with tf_private.keras_printouts_off_in_this_thread():
            pass
        assert not keras.config.is_interactive_logging_enabled()
    finally:
        keras.config.enable_interactive_logging()


FREEZE_KERAS_3 = """
import keras, tensorflow as tf
from quantdoctor import tf_private
inputs = keras.Input((4,))
try:
    tf_private.freeze_keras_model(tf.lite.TFLiteConverter.from_keras_model(keras.Model(inputs, keras.layers.Dense(2)(inputs))))
except TypeError as exc:
    print(f"TypeError: {exc}")
"""


def test_freeze_keras_model_is_the_converters_keras_2_fallback():
    """The fallback traces a Keras 2 model; on a Keras 3 model it fails as the converter fails
    (QD405's `TypeError`), on a tf_keras model it folds the variables into constants. The Keras 3 case
    runs in a fresh process: once tf_keras is imported (other tests do), the fallback traces Keras 3 too."""
    fresh = subprocess.run([sys.executable, "-I", "-c", FREEZE_KERAS_3], capture_output=True, text=True, timeout=300)
    assert fresh.stdout.splitlines()[-1:] == ["TypeError: 'NoneType' object is not callable"], fresh.stderr[-2000:]
    tf_keras = pytest.importorskip("tf_keras")
    model = tf_keras.Sequential([tf_keras.layers.Dense(3, input_shape=(4,)), tf_keras.layers.Dense(2)])
    frozen = tf_private.freeze_keras_model(tf.lite.TFLiteConverter.from_keras_model(model))
    ops = {node.op for node in tf.compat.v1.GraphDef.FromString(frozen.graph_def).node}
    assert "MatMul" in ops and not ops & {"VarHandleOp", "ReadVariableOp"}
    assert len(frozen.inputs) == 1 and frozen.inputs[0].endswith(":0") and len(frozen.outputs) == 1


def test_lower_functions_to_saved_model_only_with_a_trackable_that_saves(tmp_path):
    module = Projection()
    function = module.encode.get_concrete_function()
    saved = tf.lite.TFLiteConverter.from_concrete_functions([function], module)
    assert tf_private.lower_functions_to_saved_model(saved, tmp_path / "module") is True
    assert tf_private.converter_signature_keys(saved) == ["serving_default"]
    for trackable in (None, module.encode):  # the converter's frozen-graph path
        frozen = tf.lite.TFLiteConverter.from_concrete_functions([function], trackable)
        assert tf_private.lower_functions_to_saved_model(frozen, tmp_path / "none") is False


def test_freeze_concrete_function_is_the_frozen_graph_path():
    module = Projection()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([module.encode.get_concrete_function()])
    frozen = tf_private.freeze_concrete_function(converter)
    ops = {node.op for node in tf.compat.v1.GraphDef.FromString(frozen.graph_def).node}
    assert "MatMul" in ops and "ReadVariableOp" not in ops
    assert frozen.inputs == ["x:0"]
    both = tf.lite.TFLiteConverter.from_concrete_functions([module.encode.get_concrete_function(),
                                                            module.decode.get_concrete_function()])
    with pytest.raises(ValueError, match="can only convert a single ConcreteFunction"):
        tf_private.freeze_concrete_function(both)


def test_shadow_optimize_tflite_model_sees_the_float_model_before_quantization(tmp_path):
    converter = tf.lite.TFLiteConverter.from_saved_model(exported(dense_pair(), tmp_path / "dense"))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = dataset_from(vectors(8, features=4))
    seen = []
    tf_private.shadow_optimize_tflite_model(converter, seen.append)
    quantized = read_tflite(converter.convert())
    assert len(seen) == 1
    float_model = read_tflite(seen[0])
    assert [op.name for op in float_model.ops] == ["FULLY_CONNECTED", "FULLY_CONNECTED"]
    assert all(op.computes_in_float for op in float_model.ops)
    assert not any(op.computes_in_float for op in quantized.ops if op.name == "FULLY_CONNECTED")


# --- tf.lite: the MLIR quantizer, replayed ------------------------------------------------------------------

def test_capture_quantizer_calls_records_the_calibrated_model_and_arguments_and_restores_tensorflow(tmp_path):
    from tensorflow.lite.python import convert, lite

    converter = tf.lite.TFLiteConverter.from_saved_model(exported(dense_pair(), tmp_path / "dense"))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = dataset_from(vectors(8, features=4))
    with tf_private.capture_quantizer_calls() as calls:
        quantized = converter.convert()
    assert lite._mlir_quantize is convert.mlir_quantize  # restored
    call, = calls
    calibrated = read_tflite(call.calibrated)
    assert [op.name for op in calibrated.ops] == ["FULLY_CONNECTED", "FULLY_CONNECTED"]
    assert all(op.computes_in_float for op in calibrated.ops)  # the float model carrying calibrated ranges
    assert call.arguments["input_data_type"] == call.arguments["output_data_type"] == "float32"
    assert call.arguments["disable_per_channel"] is False
    replayed = tf_private.quantize_calibrated(call.calibrated, call.arguments, [])
    samples = vectors(6, features=4, seed=3)
    assert np.array_equal(_outputs(replayed, samples), _outputs(quantized, samples))  # the very conversion


def test_quantize_calibrated_keeps_the_denylisted_ops_float(tmp_path):
    converter = tf.lite.TFLiteConverter.from_saved_model(exported(dense_pair(), tmp_path / "dense"))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = dataset_from(vectors(8, features=4))
    with tf_private.capture_quantizer_calls() as calls:
        converter.convert()
    first = read_tflite(calls[0].calibrated).ops[0].outputs[0].name
    partly = read_tflite(tf_private.quantize_calibrated(calls[0].calibrated, calls[0].arguments, [first]))
    floats = [op for op in partly.ops if op.name not in ("QUANTIZE", "DEQUANTIZE") and op.computes_in_float]
    assert [(op.name, op.outputs[0].name) for op in floats] == [("FULLY_CONNECTED", first)]


def _outputs(model: bytes, samples: np.ndarray) -> np.ndarray:
    interpreter = Interpreter(model_content=model)
    interpreter.allocate_tensors()
    rows = []
    for row in samples:
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], row[None])
        interpreter.invoke()
        rows.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).copy())
    return np.concatenate(rows)


# --- Keras -------------------------------------------------------------------------------------------------

def test_keras_history_layer_is_the_producing_layer():
    model = dense_pair()
    assert tf_private.keras_history_layer(model.outputs[0]) is model.layers[-1]
    assert tf_private.keras_history_layer(tf.zeros(1)) is None


def test_recorded_layer_scopes_are_the_scopes_of_the_traced_ops():
    model = dense_pair()
    assert [layer.name for layer in model.layers[1:]] == ["dense", "dense_1"]
    with tf_private.recorded_layer_scopes(model) as scopes:
        graph = serving_function(model).get_concrete_function().graph
    matmuls = [op.name for op in graph.get_operations() if op.type == "MatMul"]
    owners = {name: scopes[name.rsplit("/", 1)[0]] for name in matmuls}
    assert sorted(owners.values()) == ["dense", "dense_1"]
    # The first Dense is traced under the scope named like the second one: only the record tells them apart.
    assert owners["functional_1/dense_1/MatMul"] == "dense"
    assert owners["functional_1/dense_1_2/MatMul"] == "dense_1"
    assert keras.src.backend.tensorflow.core.name_scope.__enter__.__name__ == "__enter__"  # restored


def test_keras_input_signature_is_the_converters():
    # Before 2.18 the converter saves a Keras 3 model with Keras' default serving signature: no input
    # names, and a subclassed model's shapes as first built; from 2.18 on with its own (get_save_spec).
    saves_spec = release(current().tensorflow.version) >= release(tf_private.KERAS_SAVE_SPEC_SINCE)
    model = dense_pair()
    functional = tf_private.keras_input_signature(model)
    assert [(tuple(s.shape), s.name) for s in functional] == [((None, 4), model.inputs[0].name if saves_spec else None)]

    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    model = Subclassed()
    with pytest.raises(ValueError, match="never been called"):
        tf_private.keras_input_signature(model)
    model(np.zeros((1, 4), np.float32))
    assert [tuple(s.shape) for s in tf_private.keras_input_signature(model)] == [(None, 4) if saves_spec else (1, 4)]


# --- LiteRT Interpreter ------------------------------------------------------------------------------------

def test_interpreter_ops_lists_every_op_with_its_tensors(tmp_path):
    converter = tf.lite.TFLiteConverter.from_saved_model(exported(image_model(), tmp_path / "image"))
    interpreter = Interpreter(model_content=converter.convert())
    ops = tf_private.interpreter_ops(interpreter)
    assert [op["op_name"] for op in ops][:1] == ["CONV_2D"]
    assert all({"index", "op_name", "inputs", "outputs"} <= set(op) for op in ops)


def test_interpreter_tensor_describes_intermediate_tensors(tmp_path):
    converter = tf.lite.TFLiteConverter.from_saved_model(exported(dense_pair(), tmp_path / "dense"))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = dataset_from(vectors(8, features=4))
    interpreter = Interpreter(model_content=converter.convert())
    hidden = tf_private.interpreter_ops(interpreter)[1]["outputs"][0]
    detail = tf_private.interpreter_tensor(interpreter, hidden)
    assert detail["index"] == hidden and detail["dtype"] == np.int8 and detail["quantization"][0] > 0


# --- quantization-aware graphs and TF1 settings ---

def test_quantization_aware_graph_is_the_converters_own_check():
    plain = tf.function(lambda x: x * 2.0).get_concrete_function(tf.TensorSpec([1, 4], tf.float32))
    fake_quant = tf.function(lambda x: tf.quantization.fake_quant_with_min_max_args(x, -1.0, 1.0)) \
        .get_concrete_function(tf.TensorSpec([1, 4], tf.float32))
    assert tf_private.is_quantization_aware_graph(plain.graph.as_graph_def()) is False
    assert tf_private.is_quantization_aware_graph(fake_quant.graph.as_graph_def()) is True


def test_tf2_converter_is_told_from_the_tf1_one():
    function = tf.function(lambda x: x * 2.0).get_concrete_function(tf.TensorSpec([1, 4], tf.float32))
    assert tf_private.is_tf2_converter(tf.lite.TFLiteConverter.from_concrete_functions([function], None))
    with tf.Graph().as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, 4])
        with tf.compat.v1.Session() as session:
            tf1 = tf.compat.v1.lite.TFLiteConverter.from_session(session, [x], [x * 2.0])
    assert not tf_private.is_tf2_converter(tf1)


def test_tf1_only_converter_attributes_are_read_from_tensorflows_classes():
    names = tf_private.tf1_only_converter_attributes()
    assert {"inference_type", "quantized_input_stats", "default_ranges_stats", "change_concat_input_ranges",
            "reorder_across_fake_quant", "post_training_quantize", "target_ops"} <= set(names)
    assert not {"inference_input_type", "optimizations", "representative_dataset"} & set(names)
    # The two aliases are what the TF1 converter maps onto TF2-style settings.
    with tf.Graph().as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, 4])
        with tf.compat.v1.Session() as session:
            tf1 = tf.compat.v1.lite.TFLiteConverter.from_session(session, [x], [x * 2.0])
    tf1.post_training_quantize = True
    assert tf1.optimizations == [tf.lite.Optimize.DEFAULT]


# --- run/watch: what is patched while the user's script runs ------------------------------------------

def test_converter_classes_are_what_the_public_constructors_return_and_define_convert():
    lite = importlib.import_module(tf_private.CONVERTER_MODULE)
    classes = tf_private.converter_classes(lite)
    model = dense_pair()
    built = [tf.lite.TFLiteConverter.from_keras_model(model),
             tf.lite.TFLiteConverter.from_concrete_functions([tf.function(lambda x: x + 1.0).get_concrete_function(
                 tf.TensorSpec((1, 2), tf.float32))])]
    assert tf.lite.TFLiteConverter in classes
    assert all(type(converter) in classes for converter in built)
    assert all("convert" in vars(cls) for cls in classes)
    assert all(isinstance(converter, tf_private.converter_base(lite)) for converter in built)
    assert lite.TFLiteSavedModelConverterV2 in classes  # what from_saved_model returns in TF 2.21


def test_representative_dataset_function_unwraps_what_convert_leaves_behind(tmp_path):
    dataset = dataset_from(vectors(3, features=4))
    converter = tf.lite.TFLiteConverter.from_saved_model(exported(dense_pair(), tmp_path / "dense"))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = dataset
    converter.convert()
    assert type(converter.representative_dataset).__name__ == "RepresentativeDataset"  # convert() wrapped it
    assert tf_private.representative_dataset_function(converter.representative_dataset) is dataset
    assert tf_private.representative_dataset_function(dataset) is dataset


def test_interpreter_classes_of_litert_and_of_tensorflow():
    assert tf_private.interpreter_classes(litert) == (litert.Interpreter, litert.SignatureRunner)
    tf_module = importlib.import_module(tf_private.TF_INTERPRETER_MODULE)
    interpreter, runner = tf_private.interpreter_classes(tf_module)
    assert interpreter is tf.lite.Interpreter
    for cls in (interpreter, litert.Interpreter):
        assert {"set_tensor", "get_tensor", "invoke", "resize_tensor_input", "allocate_tensors"} <= set(vars(cls))
    assert "__call__" in vars(runner) and "get_input_details" in vars(runner)


def test_tfmot_entry_points_live_in_both_modules_and_its_registry_answers():
    pytest.importorskip("tensorflow_model_optimization")
    tf_keras = pytest.importorskip("tf_keras")
    modules = [importlib.import_module(name) for name in tf_private.TFMOT_QUANTIZE_MODULES]
    functions = [tf_private.tfmot_quantize_functions(module) for module in modules]
    assert set(functions[0]) == set(functions[1]) == set(tf_private.TFMOT_ENTRY_POINTS)
    assert functions[0] == functions[1]  # the public API re-exports the very functions
    import tensorflow_model_optimization as tfmot

    assert tfmot.quantization.keras.quantize_model is functions[1]["quantize_model"]
    assert tf_private.tfmot_supports(tf_keras.layers.Dense(2)) is True
    assert tf_private.tfmot_supports(tf_keras.layers.LayerNormalization()) is False


# --- Keras call nodes (reduce cuts models at them) --------------------------------------------------------

@pytest.mark.parametrize("library", ["keras", "tf_keras"])
def test_keras_call_nodes_give_the_layer_its_arguments_and_outputs(library):
    module = pytest.importorskip(library)
    inputs = module.Input((3,))
    outputs = module.layers.Dense(2, name="d")(inputs)
    layer, node = tf_private.keras_producing_call(outputs)
    assert layer.name == "d"
    args, kwargs = tf_private.keras_call_arguments(node)
    assert args[0] is inputs and kwargs == {}
    assert tf_private.keras_call_outputs(node) == [outputs]
    assert tf_private.keras_producing_call(np.zeros(2)) is None


# --- ai_edge_quantizer (AEQ): its recipe manager, model reader and algorithm checks -------------------------

@pytest.fixture(scope="module")
def exp_float_tflite() -> bytes:
    """Dense -> EXP -> Dense as a float .tflite: EXP is an op AEQ has no op key for (it leaves it float)."""
    pytest.importorskip("ai_edge_quantizer")
    from float_tflite import float_tflite
    from models import with_layer

    keras.utils.set_random_seed(0)
    return float_tflite(with_layer(keras.layers.Activation("exponential", name="my_exp")))


def test_aeq_model_ops_names_each_op_by_its_op_key_and_output_tensor_scope(exp_float_tflite):
    ops = tf_private.aeq_model_ops(exp_float_tflite)
    ours = read_tflite(exp_float_tflite).ops
    assert [(op.subgraph, op.index) for op in ops] == [(0, op.index) for op in ours]
    assert [op.op_key for op in ops] == ["FULLY_CONNECTED", None, "FULLY_CONNECTED"]
    assert [op.scope for op in ops] == ["".join(f"{t.name};" for t in op.outputs) for op in ours]
    assert all(isinstance(op.builtin_code, int) for op in ops)


def test_aeq_recipe_algorithm_is_the_last_supported_matching_entry_else_no_quantize(exp_float_tflite):
    from ai_edge_quantizer import recipe

    entries = recipe.static_wi8_ai8()
    ops = tf_private.aeq_model_ops(exp_float_tflite)
    algorithm = tf_private.aeq_recipe_algorithm(entries)
    assert [algorithm(op.op_key, op.scope) for op in ops if op.op_key] == ["min_max_uniform_quantize"] * 2
    assert algorithm("SQUARED_DIFFERENCE", "x;") == "min_max_uniform_quantize"
    assert tf_private.aeq_recipe_algorithm(recipe.static_wi8_ai16())("SQUARED_DIFFERENCE", "x;") == "no_quantize"
    kept = entries + [{"regex": re.escape(ops[0].scope), "operation": "*", "algorithm_key": "no_quantize"}]
    assert tf_private.aeq_recipe_algorithm(kept)(ops[0].op_key, ops[0].scope) == "no_quantize"  # a later entry wins


def test_aeq_accepts_op_config_checks_the_op_against_the_algorithms_table(exp_float_tflite):
    from ai_edge_quantizer import recipe

    static8, static16 = recipe.static_wi8_ai8()[-1], recipe.static_wi8_ai16()[-1]
    for entry in (static8, static16):
        assert tf_private.aeq_accepts_op_config(entry["algorithm_key"], "FULLY_CONNECTED", entry["op_config"])
    assert not tf_private.aeq_accepts_op_config(static16["algorithm_key"], "SQUARED_DIFFERENCE", static16["op_config"])
    assert tf_private.aeq_accepts_op_config(static8["algorithm_key"], "SQUARED_DIFFERENCE", static8["op_config"])
