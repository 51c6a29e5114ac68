"""Findings name the right Keras layer on models with Keras' default names only.

Keras 3 traces the layer `dense` under the scope `dense_1` and the layer `dense_1` under
`dense_1_2`: a scope's text names another layer. quantdoctor records which scope each layer was
traced under while the converter's own trace runs, and attributes by that record.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from helpers import assert_finding, root
from models import vectors

import quantdoctor as qd
from quantdoctor.audit.tflite_model import read_tflite
from quantdoctor.catalog.locations import LayerNames, layer_for_path


def widths_model() -> keras.Model:
    """Dense layers `dense` (3 units), `dense_1` (5 units), `dense_2` (2 units): widths tell their ops apart."""
    keras.backend.clear_session()  # default names count per session: these are a fresh session's
    inputs = keras.Input((8,))
    narrow = keras.layers.Dense(3)(inputs)
    wide = keras.layers.Dense(5)(narrow)
    model = keras.Model(inputs, keras.layers.Dense(2)(wide))
    assert [layer.name for layer in model.layers[1:]] == ["dense", "dense_1", "dense_2"]
    return model


def layer_by_width(report: qd.Report) -> dict[int, str]:
    """Output width of each hidden float op of the produced model -> the layer quantdoctor names for it
    (the output op's tensor is named after the signature, not a scope)."""
    model = read_tflite(report.tflite_model)
    ops = {op.index: op for op in model.ops}
    widths = {ops[entry["index"]].outputs[0].shape[-1]: entry["layer"] for entry in report.audit["float_ops"]}
    return {width: layer for width, layer in widths.items() if width != 2}


def test_recorded_scopes_decide_and_the_text_is_only_a_fallback():
    names = LayerNames(["dense", "dense_1"], {"functional_1/dense_1": "dense", "functional_1/dense_1_2": "dense_1"})
    assert layer_for_path("functional_1/dense_1/MatMul", names) == "dense"
    assert layer_for_path("functional_1/dense_1_2/BiasAdd", names) == "dense_1"
    assert layer_for_path("dense_1/MatMul", names) == "dense"  # a function body's relative path: the scope's tail
    assert layer_for_path("functional_1/dense_1/MatMul", ["dense", "dense_1"]) == "dense_1"  # no record: the text


def test_audit_names_default_named_layers_of_a_keras_object():
    report = qd.diagnose(widths_model(), mode="dynamic")  # dynamic range: every FULLY_CONNECTED computes in float
    assert layer_by_width(report) == {3: "dense", 5: "dense_1"}


def test_audit_names_default_named_layers_of_a_keras_file(tmp_path):
    widths_model().save(tmp_path / "model.keras")
    report = qd.diagnose(tmp_path / "model.keras", mode="dynamic")  # the worker records the scopes
    assert report.model["layer_scopes"]
    assert layer_by_width(report) == {3: "dense", 5: "dense_1"}


def test_converter_error_and_prediction_name_the_first_of_two_default_named_lambdas():
    keras.backend.clear_session()
    inputs = keras.Input((8,))
    doubled = keras.layers.Lambda(lambda x: tf.cast(tf.cast(x, tf.float64) * 2.0, tf.float32))(inputs)  # `lambda`
    hidden = keras.layers.Lambda(tf.nn.relu)(doubled)  # `lambda_1`
    model = keras.Model(inputs, keras.layers.Dense(2)(hidden))
    assert [layer.name for layer in model.layers[1:3]] == ["lambda", "lambda_1"]
    converted = qd.diagnose(model, vectors(120))
    assert_finding(root(converted), "QD202", "dtype_mismatch", "error", layer="lambda")
    predicted = qd.diagnose(model, vectors(120), convert=False)
    assert_finding(root(predicted), "QD202", "dtype_mismatch", "error", layer="lambda")
