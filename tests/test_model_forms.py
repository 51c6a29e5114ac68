"""Whatever the converter accepts, quantdoctor accepts, and converts exactly what the converter converts.

Every way a user hands a model over (a Keras object, a SavedModel path, concrete functions, and
each `TFLiteConverter.from_*` constructor) crossed with every model style (functional,
Sequential, subclassed, nested, tf.Module, tf_keras), on clean data: quantdoctor's verdict is
"ok", and the model it produced has the signatures and the ops of the model the user's own
converter produces.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_finding, only, root, run_in_process
from models import Projection, dataset_from, vectors

import quantdoctor as qd
from quantdoctor.audit.tflite_model import read_tflite
from quantdoctor.intake.imports import handed_over
from quantdoctor.litert import interpreter_module

Interpreter = interpreter_module().Interpreter  # LiteRT's, or tf.lite.Interpreter without it
FEATURES = 4
CLEAN = vectors(100, features=FEATURES)


# --- model styles: tiny, with Keras' default layer names ----------------------------------------------------

def functional() -> keras.Model:
    inputs = keras.Input((FEATURES,))
    return keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Dense(3, activation="relu")(inputs)))


def sequential() -> keras.Model:
    return keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(3, activation="relu"), keras.layers.Dense(2)])


class TwoDense(keras.Model):
    """A subclassed model with no Input: built by calling it once on data."""

    def __init__(self):
        super().__init__()
        self.hidden = keras.layers.Dense(3, activation="relu")
        self.head = keras.layers.Dense(2)

    def call(self, x):
        return self.head(self.hidden(x))


def subclassed() -> keras.Model:
    model = TwoDense()
    model(CLEAN[:1])
    return model


def nested() -> keras.Model:
    inner = keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(3, activation="relu")])
    inputs = keras.Input((FEATURES,))
    return keras.Model(inputs, keras.layers.Dense(2)(inner(inputs)))


class Affine(tf.Module):
    """A plain tf.Module: variables and one serving function."""

    def __init__(self):
        super().__init__()
        self.hidden = tf.Variable(tf.random.normal((FEATURES, 3), seed=1))
        self.head = tf.Variable(tf.random.normal((3, 2), seed=2))

    @tf.function(input_signature=[tf.TensorSpec((None, FEATURES), tf.float32, name="x")])
    def __call__(self, x):
        return tf.matmul(tf.nn.relu(tf.matmul(x, self.hidden)), self.head)


def module() -> tf.Module:
    return Affine()


def keras2() -> Any:
    tf_keras = pytest.importorskip("tf_keras")
    return tf_keras.Sequential([tf_keras.layers.Dense(3, activation="relu", input_shape=(FEATURES,)),
                                tf_keras.layers.Dense(2)])


STYLES: dict[str, Callable[[], Any]] = {"functional": functional, "sequential": sequential, "subclassed": subclassed,
                                        "nested": nested, "module": module, "tf_keras": keras2}
KERAS_STYLES = ("functional", "sequential", "subclassed", "nested", "tf_keras")


# --- constructor forms: (what quantdoctor is given, the user's own converter for the same model) -------------

def quantize(converter: Any) -> Any:
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = dataset_from(CLEAN)
    return converter


def serving_function(model: Any) -> Any:
    """The model's serving tf.function: a tf.Module's own, a Keras model called for inference."""
    if isinstance(model, tf.Module) and not hasattr(model, "layers"):
        return model.__call__
    return tf.function(lambda x: model(x, training=False),
                       input_signature=[tf.TensorSpec((None, FEATURES), tf.float32)])


def save(model: Any, path: Path) -> str:
    """The SavedModel a user of that style writes: Keras 3 `model.export()`, tf_keras and tf.Module
    `tf.saved_model.save`."""
    if isinstance(model, keras.Model):
        model.export(str(path), verbose=False)
    else:
        tf.saved_model.save(model, str(path), signatures=serving_function(model).get_concrete_function())
    return str(path)


def holder(model: Any, function: Any) -> tf.Module:
    """A tf.Module holding the function (and the model whose variables it reads)."""
    if isinstance(model, tf.Module) and not hasattr(model, "layers"):
        return model
    owner = tf.Module()
    owner.model, owner.serve = model, function
    return owner


def form(name: str, model: Any, tmp_path: Path) -> tuple[Any, Any]:
    function = serving_function(model)
    concrete = function.get_concrete_function()
    if name == "object":
        return model, quantize(tf.lite.TFLiteConverter.from_keras_model(model))
    if name == "from_keras_model":
        return quantize(tf.lite.TFLiteConverter.from_keras_model(model)), None
    if name == "savedmodel_path":
        path = save(model, tmp_path / "saved")
        return path, quantize(tf.lite.TFLiteConverter.from_saved_model(path))
    if name == "from_saved_model":
        return quantize(tf.lite.TFLiteConverter.from_saved_model(save(model, tmp_path / "saved"))), None
    if name == "functions":
        return [concrete], quantize(tf.lite.TFLiteConverter.from_concrete_functions([concrete]))
    trackable = {"functions_no_trackable": None, "functions_tf_function": function,
                 "functions_tf_module": holder(model, function)}[name]
    return quantize(tf.lite.TFLiteConverter.from_concrete_functions([concrete], trackable)), None


FORMS = ("object", "from_keras_model", "savedmodel_path", "from_saved_model", "functions", "functions_no_trackable",
         "functions_tf_function", "functions_tf_module")
# One case per form and per style runs in every test session; the rest of the matrix is marked slow.
QUICK = {("functional", "object"), ("sequential", "from_keras_model"), ("subclassed", "from_keras_model"),
         ("nested", "savedmodel_path"), ("module", "from_saved_model"), ("functional", "functions"),
         ("module", "functions_no_trackable"), ("subclassed", "functions_tf_function"),
         ("nested", "functions_tf_module"), ("tf_keras", "from_keras_model")}
# A Keras 3 model tracked by the trackable object keeps its weights as variables (QD406, tested below).
WEIGHTS_LEFT_AS_VARIABLES = {(style, "functions_tf_module") for style in ("functional", "sequential", "subclassed",
                                                                           "nested")}
CASES = [pytest.param(style, name, id=f"{style}-{name}",
                      marks=() if (style, name) in QUICK else pytest.mark.slow)
         for style in STYLES for name in FORMS
         if (style in KERAS_STYLES or name not in ("object", "from_keras_model"))
         and (style, name) not in WEIGHTS_LEFT_AS_VARIABLES]


def summary(tflite: bytes) -> dict[str, Any]:
    """What must agree between two conversions of one model: signatures, inputs, outputs, ops."""
    model = read_tflite(tflite)
    return {"signatures": sorted(s.key for s in model.signatures),
            "inputs": [(t.name, t.dtype, t.shape) for t in model.inputs],
            "outputs": [(t.name, t.dtype, t.shape) for t in model.outputs],
            "ops": [(op.name, [t.dtype for t in op.outputs]) for op in model.all_ops]}


@pytest.mark.parametrize("style, name", CASES)
def test_every_form_and_style_converts_clean_data_like_the_users_converter(style, name, tmp_path):
    model = STYLES[style]()  # held here: concrete functions only hold weak references to its variables
    given, reference = form(name, model, tmp_path / "given")
    users_converter = reference or form(name, model, tmp_path / "users")[0]
    users_model = users_converter.convert()  # the converter accepts this form: so must quantdoctor
    report = qd.diagnose(given, CLEAN if reference is not None else None)
    assert report.conversion["outcome"] == "ok", report.findings
    assert report.verdict == "ok", [(f.code, f.message) for f in report.findings]
    assert report.audit["fully_integer"]
    assert summary(report.tflite_model) == summary(users_model)


@pytest.mark.parametrize("style, name", [pytest.param(*case, id="-".join(case),
                                                      marks=() if case[0] == "nested" else pytest.mark.slow)
                                         for case in sorted(WEIGHTS_LEFT_AS_VARIABLES)])
@pytest.mark.code("QD406")
def test_a_keras_model_as_trackable_keeps_its_weights_as_variables(style, name, tmp_path):
    """The converter's own SavedModel keeps a Keras 3 model's weights as variables: calibration fails
    on READ_VARIABLE. quantdoctor says why, instead of blaming the first sample's shape."""
    model = STYLES[style]()
    with pytest.raises(Exception, match=r"variable != nullptr"):
        form(name, model, tmp_path)[0].convert()
    report = qd.diagnose(form(name, model, tmp_path)[0])
    assert report.conversion["outcome"] == "error"
    finding = root(report)
    assert_finding(finding, "QD406", "metadata", "error", op="READ_VARIABLE")
    assert "(READ_VARIABLE) failed to invoke" in finding.evidence["converter_message"]
    assert "QD310" not in [f.code for f in report.findings]


@pytest.mark.code("QD406")
def test_weights_left_as_variables_convert_silently_without_calibration(tmp_path):
    """`tf.saved_model.save` of a Keras 3 model converts "fine" in float: the model then computes
    with variables nothing assigns (what it reads is whatever memory holds: no test can pin that
    down). The audit of the produced model catches it."""
    model = functional()
    tf.saved_model.save(model, str(tmp_path / "saved"), signatures=serving_function(model).get_concrete_function())
    report = qd.diagnose(tmp_path / "saved", mode="float")
    assert report.conversion["outcome"] == "ok"
    finding = root(report)
    assert_finding(finding, "QD406", "metadata", "error", op="READ_VARIABLE")
    ops = [op.name for op in read_tflite(report.tflite_model).all_ops]
    assert finding.evidence == {"var_handle_ops": ops.count("VAR_HANDLE"), "read_variable_ops": 4}
    assert ops.count("VAR_HANDLE") == 4 and "ASSIGN_VARIABLE" not in ops  # two kernels, two biases
    exported = qd.diagnose(save(model, tmp_path / "exported"), mode="float")  # the catalog's fix
    assert exported.verdict == "ok"


# --- Section 1: Keras 3 model.export() --------------------------------------------------------------------

def test_keras_export_converts_serving_default_only_and_is_no_qd315(tmp_path):
    """`model.export()` writes signatures 'serve' and 'serving_default'; from_saved_model converts
    'serving_default' alone, so there is no second signature left float."""
    path = save(functional(), tmp_path / "exported")
    assert sorted(tf.saved_model.load(path).signatures) == ["serve", "serving_default"]
    np.savez(tmp_path / "calib.npz", CLEAN)
    for extra in ([], ["--no-convert"]):
        result = run_in_process("diagnose", path, "--data", str(tmp_path / "calib.npz"), "--json",
                                str(tmp_path / "report.json"), *extra)
        report = json.loads((tmp_path / "report.json").read_text())
        assert "QD315" not in [f["code"] for f in report["findings"]], (extra, report["findings"])
        assert report["model"]["signatures"] == ["serving_default"]
        assert result.returncode == 0, result.stdout + result.stderr
    assert report["model"]["inputs"][0]["shape"] == [None, FEATURES]  # --no-convert: the converted signature's inputs
    converter = quantize(tf.lite.TFLiteConverter.from_saved_model(path))
    produced = Interpreter(model_content=converter.convert()).get_signature_list()
    report = qd.diagnose(converter)
    assert report.verdict == "ok" and "QD315" not in [f.code for f in report.findings]
    assert list(Interpreter(model_content=report.tflite_model).get_signature_list()) == list(produced) \
        == report.model["signatures"] == ["serving_default"]


def test_two_signature_module_still_gets_qd315_before_and_after_converting(tmp_path):
    module = Projection()
    path = tmp_path / "model"
    tf.saved_model.save(module, str(path), signatures={"encode": module.encode, "decode": module.decode})
    samples = lambda: ([row[None]] for row in CLEAN)  # noqa: E731
    preflight = qd.diagnose(path, samples, convert=False)
    assert sorted(only(preflight, "QD315").evidence["signatures"]) == ["decode", "encode"]
    converted = qd.diagnose(path, samples)
    assert only(converted, "QD315").evidence["float_signatures"] == ["encode"]
    assert sorted(Interpreter(model_content=converted.tflite_model).get_signature_list()) == ["decode", "encode"]


# --- Section 11: concrete functions ---------------------------------------------------------------------------

def test_functions_holding_variables_convert_without_a_trackable():
    """`qd.diagnose([fn])` converts as `from_concrete_functions([fn])`: the frozen graph holds the
    variables' values, and the produced model has no signature, like the converter's."""
    model = functional()
    function = serving_function(model).get_concrete_function()
    report = qd.diagnose([function], CLEAN)
    assert report.verdict == "ok" and report.audit["fully_integer"]
    assert report.model["format"] == "concrete_function" and report.model["signatures"] == []
    reference = quantize(tf.lite.TFLiteConverter.from_concrete_functions([function])).convert()
    assert summary(report.tflite_model) == summary(reference)
    assert read_tflite(reference).signatures == []  # the frozen-graph path names no signature


def test_two_functions_without_a_trackable_are_refused_as_the_converter_refuses_them():
    module = Projection()
    functions = [module.encode.get_concrete_function(), module.decode.get_concrete_function()]
    with pytest.raises(ValueError, match="single ConcreteFunction"):
        tf.lite.TFLiteConverter.from_concrete_functions(functions).convert()
    with pytest.raises(qd.UsageError, match="can only convert a single ConcreteFunction"):
        qd.diagnose(functions, CLEAN)


def test_a_functions_converter_that_already_converted_is_refused():
    """After convert(), TensorFlow holds a reloaded copy of the trackable object instead of the
    user's, and that copy does not convert the same way (a Keras model's weights get frozen)."""
    model = nested()
    function = serving_function(model)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function.get_concrete_function()], model)
    converter.convert()
    with pytest.raises(qd.UsageError, match="already run convert"):
        qd.diagnose(converter)


def test_two_functions_with_their_module_convert_as_two_signatures():
    module = Projection()
    functions = [module.encode.get_concrete_function(), module.decode.get_concrete_function()]
    converter = tf.lite.TFLiteConverter.from_concrete_functions(functions, module)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    names = [f.graph.name for f in functions]  # the converter names each signature by its function's graph
    converter.representative_dataset = lambda: ((key, {"x": row[None]}) for row in CLEAN for key in names)
    report = qd.diagnose(converter)
    reference = converter.convert()
    assert report.verdict == "ok", [(f.code, f.message) for f in report.findings]
    assert sorted(report.model["signatures"]) == sorted(names)
    assert summary(report.tflite_model) == summary(reference)


SUBCLASSED_LAYERS = '''
import keras


@keras.saving.register_keras_serializable(package="forms")
class Subclassed(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.head = keras.layers.Dense(2)

    def call(self, x):
        return self.head(x)
'''


@pytest.mark.tensorflow("2.18", "2.21")  # TF 2.16 aborts on the Keras 3 model first (QD909)
@pytest.mark.code("QD408")
@pytest.mark.matcher("keras-input-shapes-unset")
def test_a_subclassed_model_saved_to_a_keras_file_is_qd408_and_fix_puts_an_input_in_front(tmp_path):
    """Loaded from its file (class handed over), a subclassed model has no `inputs` and the converter cannot
    export it: QD408 (it was QD904, the unrecognised error, and before that quantdoctor's own AttributeError),
    and fix converts it behind an Input shaped like the samples, edited in the worker (the file is only read)."""
    layers = tmp_path / "subclassed_layers.py"
    layers.write_text(SUBCLASSED_LAYERS)
    namespace: dict = {}
    exec(compile(SUBCLASSED_LAYERS, str(layers), "exec"), namespace)
    model = namespace["Subclassed"]()
    model(CLEAN[:1])
    model.save(tmp_path / "subclassed.keras")
    before = (tmp_path / "subclassed.keras").read_bytes()
    with handed_over([str(layers)]):
        report = qd.diagnose(tmp_path / "subclassed.keras", CLEAN)
        fixed = qd.fix(tmp_path / "subclassed.keras", CLEAN)
    assert report.conversion["outcome"] == "error"
    assert_finding(root(report), "QD408", "metadata", "error")
    assert "cannot be saved because the input shapes have not been set" in root(report).evidence["converter_message"]
    assert [repair.code for repair in fixed.applied] == ["QD408"] and fixed.verified
    assert (tmp_path / "subclassed.keras").read_bytes() == before
