"""reduce: the call graph of every Keras model style, the search bound, real reductions, the repro."""

from __future__ import annotations

import ast
import math
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest

from quantdoctor.diagnosis.classify_failure import MATCHERS
from quantdoctor.edits.call_graph import NotCuttable, boundary, call_graph, replay
from quantdoctor.edits.cut import cut_model, describe
from quantdoctor.intake.data import CalibrationSet, Sample
from quantdoctor.intake.recipe import Recipe
from quantdoctor.reduce.reduce_model import reduce
from quantdoctor.reduce.repro import repro_script
from quantdoctor.reduce.search import smallest_failing
from quantdoctor.reduce.signature import Signature


def bound(layers: int) -> float:
    return 2 * math.log2(layers) + 4


@pytest.mark.parametrize("layers", [10, 50, 200])
def test_one_culprit_is_found_within_the_bound(layers):
    for culprit in sorted({0, 1, layers // 3, layers // 2, layers - 2, layers - 1}):
        tried = []

        def fails(calls, culprit=culprit):
            tried.append(calls)
            return culprit in calls

        assert smallest_failing(layers, fails) == [culprit]
        assert len(tried) + 1 <= bound(layers), (culprit, len(tried))  # + 1: the whole model's baseline


def test_a_failure_that_needs_two_layers_keeps_both():
    assert smallest_failing(50, lambda calls: {7, 31} <= calls) == [7, 31]
    assert smallest_failing(12, lambda calls: {3, 4, 5} <= calls) == [3, 4, 5]


def styled_model():
    """Two inputs, two outputs, a nested Sequential, a nested functional block, a shared layer, a skip."""
    image = keras.Input((6,), name="image")
    meta = keras.Input((3,), name="meta")
    block_in = keras.Input((6,))
    block = keras.Model(block_in, keras.layers.Dense(6, name="inner")(block_in), name="block")
    stack = keras.Sequential([keras.Input((6,)), keras.layers.Dense(6, name="s1"), keras.layers.ReLU(name="s2")],
                             name="stack")
    shared = keras.layers.Dense(6, name="shared")
    h = keras.layers.Dense(6, name="d1")(image)
    skip = keras.layers.Add(name="skip")([h, block(h)])
    h = shared(shared(stack(skip)))
    merged = keras.layers.Concatenate(name="merge")([h, keras.layers.Dense(6, name="m1")(meta)])
    return keras.Model([image, meta], [keras.layers.Dense(2, name="head")(merged), h], name="styled")


def test_call_graph_opens_nested_models_and_replays_like_the_model():
    model = styled_model()
    graph = call_graph(model)
    names = [call.name for call in graph.calls]
    assert sorted(names) == sorted(["d1", "block/inner", "skip", "stack/s1", "stack/s2", "shared", "shared#2",
                                    "m1", "merge", "head"])
    assert graph.input_names == ["image", "meta"]
    rng = np.random.default_rng(0)
    feeds = {"image": rng.normal(size=(4, 6)).astype("float32"), "meta": rng.normal(size=(4, 3)).astype("float32")}
    expected = model([feeds["image"], feeds["meta"]])
    values = replay(graph, list(range(len(graph.calls))), dict(zip(graph.inputs, feeds.values())))
    for tid, want in zip(graph.outputs, expected):
        np.testing.assert_allclose(np.asarray(values[tid]), np.asarray(want), rtol=1e-5, atol=1e-6)
    # the add of the skip connection reads two tensors from outside a cut of it alone, and hands one on
    skip = names.index("skip")
    inputs, outputs = boundary(graph, [skip])
    assert len(inputs) == 2 and len(outputs) == 1


def test_a_cut_calibrates_on_the_float_activations_before_it(tmp_path):
    model = styled_model()
    graph = call_graph(model)
    names = [call.name for call in graph.calls]
    keep = [names.index("shared#2"), names.index("merge"), names.index("head")]
    rng = np.random.default_rng(1)
    rows = [(rng.normal(size=(1, 6)).astype("float32"), rng.normal(size=(1, 3)).astype("float32")) for _ in range(5)]
    CalibrationSet([Sample("list", {"image": a, "meta": b}) for a, b in rows], source="test").save(tmp_path / "d.npz")
    cut = {"keep": keep, "data_output": str(tmp_path / "cut.npz"), "describe": str(tmp_path / "g.json")}
    sub, data = cut_model(model, cut, str(tmp_path / "d.npz"))
    assert data == cut["data_output"] and len(sub.inputs) == 2 and len(sub.outputs) == 2
    activations = CalibrationSet.load(tmp_path / "cut.npz")
    assert len(activations) == 5 and activations.samples[0].kind == "dict"
    for (image, meta), sample in zip(rows, activations.samples):
        want = model([image, meta])
        hidden, head = sub(sample.values)  # on its activations, the sub-model gives the whole model's outputs
        np.testing.assert_allclose(np.asarray(head), np.asarray(want[0]), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(np.asarray(hidden), np.asarray(want[1]), rtol=1e-4, atol=1e-5)


def test_tf_keras_models_are_cut_too(tmp_path):
    tf_keras = pytest.importorskip("tf_keras")
    inputs = tf_keras.Input((5,), name="x")
    h = tf_keras.layers.Dense(5, name="a")(inputs)
    outputs = tf_keras.layers.Dense(2, name="b")(tf_keras.layers.Add(name="skip")([h, inputs]))
    model = tf_keras.Model(inputs, outputs)
    graph = call_graph(model)
    assert [call.name for call in graph.calls] == ["a", "skip", "b"]
    sub, _ = cut_model(model, {"keep": [1, 2]}, None)
    assert type(sub).__module__.startswith("tf_keras") and len(sub.inputs) == 2
    assert describe(graph, model)["library"] == "tf_keras"


def test_a_subclassed_model_is_not_cuttable():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    net = Net()
    net(np.zeros((1, 3), "float32"))
    with pytest.raises(NotCuttable, match="subclassed"):
        call_graph(net)


HOSTILE = "x'); import os; os.system('echo pwned') #\n\"\"\""


def test_repro_of_a_custom_layer_imports_the_handed_over_module_or_carries_its_source():
    graph = {"library": "keras", "versions": {}, "inputs": ["t0"], "input_names": ["x"], "outputs": ["t1"],
             "sources": {"layers": "import keras\nVALUE = 1\n"},
             "specs": {"t0": {"shape": [None, 3], "dtype": "float32"}, "t1": {"shape": [None, 3], "dtype": "float32"}},
             "calls": [{"name": "mine", "layer": "mine", "class": "Mine", "module": "layers", "inputs": ["t0"],
                        "outputs": ["t1"], "serialized": {"class_name": "Mine", "registered_name": "user>Mine",
                                                          "config": {"name": "mine"}},
                        "arguments": {"args": [{"tensor": "t0"}], "kwargs": {}}}]}
    imports = [{"file": "/somewhere/layers.py"}]
    plain = repro_script(graph, [0], Recipe.for_mode("int8"), Signature("QD904"), imports=imports)
    assert "importlib.import_module('layers')" in plain and "USER_SOURCES" not in plain
    assert "# Needs your custom layer(s) ['user>Mine']" in plain
    inlined = repro_script(graph, [0], Recipe.for_mode("int8"), Signature("QD904"), imports=imports, with_source=True)
    assert "USER_SOURCES = {'layers': 'import keras\\nVALUE = 1\\n'}" in inlined
    assert "importlib.import_module('layers')" not in inlined
    ast.parse(inlined)


def test_repro_takes_hostile_names_as_data_only():
    graph = {"library": "keras", "versions": {"tensorflow": HOSTILE}, "inputs": ["t0"], "input_names": [HOSTILE],
             "outputs": ["t1"], "specs": {"t0": {"shape": [None, 3], "dtype": "float32"},
                                          "t1": {"shape": [None, 2], "dtype": "float32"}},
             "calls": [{"name": HOSTILE, "layer": HOSTILE, "class": "Dense", "module": "keras.layers", "inputs": ["t0"], "outputs": ["t1"],
                        "serialized": {"class_name": "Dense", "config": {"name": HOSTILE, "units": 2}},
                        "arguments": {"args": [{"tensor": "t0"}], "kwargs": {}}}]}
    script = repro_script(graph, [0], Recipe.for_mode("int8"), Signature("QD904", f"exception:{HOSTILE}"))
    tree = ast.parse(script)
    called = {node.func.attr for node in ast.walk(tree) if isinstance(node, ast.Call)
              and isinstance(node.func, ast.Attribute)}
    assert "system" not in called
    assert sum(1 for node in ast.walk(tree) if isinstance(node, ast.Constant) and node.value == HOSTILE) >= 2
    assert all(line.startswith("#") or not line.startswith(" #") for line in script.splitlines())


def lstm_pipeline():
    """A recurrent model whose INT8 calibration segfaults (QD108), in the middle of other layers:
    a nested block, a skip connection."""
    inputs = keras.Input((10, 4), batch_size=1, name="sequence")
    block_in = keras.Input((10, 4), batch_size=1)
    block = keras.Model(block_in, keras.layers.Dense(4, name="pre")(block_in), name="block")
    h = keras.layers.Add(name="skip")([inputs, block(inputs)])
    h = keras.layers.LSTM(8, name="my_lstm")(h)
    h = keras.layers.Dense(6, name="post")(h)
    return keras.Model(inputs, keras.layers.Dense(2, name="head")(h), name="pipeline")


@pytest.mark.code("QD108")
def test_reduce_finds_the_recurrent_layer_of_a_calibration_crash_and_writes_a_repro(tmp_path):
    model_path = tmp_path / "pipeline.keras"
    lstm_pipeline().save(model_path)
    data = np.random.default_rng(0).normal(size=(6, 10, 4)).astype("float32")
    result = reduce(model_path, data, repro=tmp_path / "repro.py")
    assert result.signature == Signature("QD108", None, "SIGSEGV", None)
    assert "quantdoctor reduce MODEL --data DATA --repro repro.py" in result.report.root_cause.fix.summary
    assert [c["name"] for c in result.culprits] == ["my_lstm"]
    culprit = result.culprits[0]
    assert culprit["class"] == "LSTM" and culprit["input_shapes"] == [[1, 10, 4]] and "While" in culprit["op_types"]
    assert result.layer_count == 5 and result.conversions <= bound(5)
    assert result.to_dict()["culprits"][0]["layer"] == "my_lstm"
    script = (tmp_path / "repro.py").read_text()
    assert "# Failure signature: 'QD108 (signal SIGSEGV)'" in script and "'tensorflow': " in script
    ran = subprocess.run([sys.executable, "-I", str(tmp_path / "repro.py")], cwd=tmp_path, capture_output=True,
                         text=True, timeout=600)
    assert ran.returncode == -signal.SIGSEGV, ran.stderr[-2000:]


def test_generic_repairs_go_cheapest_first_and_respect_the_target():
    from quantdoctor.edits.plan import Plan
    from quantdoctor.fix.generic_repairs import Culprit, generic_plans

    culprit = Culprit("QD904", ["odd"], ["Conv2D"])
    changes = [option[1].change for option in generic_plans(Plan(Recipe.for_mode("int16x8"), None), culprit)]
    assert changes[0].startswith("16x8 quantization switched to int8") and changes[1].startswith("dynamic range")
    plans = generic_plans(Plan(Recipe.for_mode("int16x8"), None), culprit)
    assert "TFLITE_BUILTINS" in plans[0][0].recipe.supported_ops  # the copy changed, int8 with float fallback
    strict = generic_plans(Plan(Recipe.for_mode("int8-strict"), "int8-accelerator"), culprit)
    assert all(not isinstance(option, tuple) for option in strict)  # nothing float on an integer-only target
    assert [option.reason.split(":")[0] for option in strict] == [
        "keeping 'odd' float is not allowed", "dynamic range quantization is not integer, and these settings ask "
        "for an integer model", "Select TF ops for 'odd' are not allowed"]
    cpu = generic_plans(Plan(Recipe.for_mode("int8-strict"), "cpu"), culprit)
    assert [option[1].change.split(" ")[0] for option in cpu] == ["float", "dynamic", "Select"]
    assert "NOT integer" in cpu[1][1].cost and cpu[1][0].recipe.calibrate is False
    int8_io = generic_plans(Plan(Recipe.for_mode("int8", io="int8"), "cpu"), culprit)
    assert [type(option).__name__ for option in int8_io] == ["Blocked"]  # integer I/O needs calibration


def test_a_tf_keras_model_reduces_and_its_repro_with_real_weights_fails_the_same_way(tmp_path):
    tf_keras = pytest.importorskip("tf_keras")
    inputs = tf_keras.Input((8,), name="features")
    hidden = tf_keras.layers.Dense(8, name="dense")(inputs)
    hidden = tf_keras.layers.Dense(8, dtype="float64", name="wide_f64")(hidden)  # float64 math in a builtin layer
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(2, name="head")(hidden))
    result = reduce(model, vectors_for_test(), repro=tmp_path / "repro.py", with_weights=True)
    assert [c["name"] for c in result.culprits] == ["wide_f64"] and result.culprits[0]["dtype_policy"] == "float64"
    assert result.conversions <= bound(3)
    signature = result.signature
    assert signature.message_class == "op-neither-custom-nor-flex" and signature.op == "tf.MatMul"
    script = (tmp_path / "repro.py").read_text()
    assert "import tf_keras as keras" in script and "WITH_WEIGHTS = True" in script
    with np.load(tmp_path / "repro_weights.npz") as saved:
        np.testing.assert_array_equal(saved["1/0"], model.get_layer("wide_f64").get_weights()[0])
    ran = subprocess.run([sys.executable, "-I", str(tmp_path / "repro.py")], cwd=tmp_path, capture_output=True,
                         text=True, timeout=600)
    matcher = next(m for m in MATCHERS if m.name == signature.message_class)
    assert ran.returncode != 0 and matcher.search(ran.stderr) and "tf.MatMul" in ran.stderr, ran.stderr[-2000:]


def vectors_for_test():
    return np.random.default_rng(0).normal(size=(20, 8)).astype("float32")
