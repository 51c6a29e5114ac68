"""The preflight judges the patterns the converter fuses as the fused builtin: an exact GELU's Erfc has no
kernel on its own, yet the converter turns tf.nn.gelu into one int8 GELU."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from models import smooth_images

import quantdoctor as qd
from quantdoctor.audit.tflite_model import read_tflite


def gelu_model(style: str) -> keras.Model:
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    if style == "sequential":  # Dense(activation="gelu"), default names
        return keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="gelu"), keras.layers.Dense(4)])
    inputs = keras.Input((8,), name="features")  # an Activation layer of its own, as ConvNeXt's MLP has
    hidden = keras.layers.Activation("gelu", name="mlp_act")(keras.layers.Dense(16, name="mlp_in")(inputs))
    return keras.Model(inputs, keras.layers.Dense(4, name="mlp_out")(hidden))


@pytest.mark.parametrize("style", ["sequential", "functional"])
def test_an_exact_gelu_is_predicted_as_the_int8_gelu_the_converter_makes(style):
    model, data = gelu_model(style), np.random.default_rng(0).normal(size=(100, 8)).astype(np.float32)
    predicted = qd.diagnose(model, data, mode="int8-strict", convert=False)
    assert predicted.findings == [], [f.message for f in predicted.findings]  # no QD102 on Erfc, no QD105 on Neg
    assert predicted.preflight["verdict"] == "fully_integer"
    gelu = next(op for op in predicted.preflight["ops"] if op["op"] == "Gelu")
    assert gelu["class"] == "int8" and gelu["fused_by_converter"] and gelu["count"] >= 2
    assert not [op for op in predicted.preflight["ops"] if op["op"] in ("Erfc", "Erf", "Neg")]
    assert gelu["layers"] == (["dense"] if style == "sequential" else ["mlp_act"])

    converted = qd.diagnose(model, data, mode="int8-strict")
    assert converted.preflight["actual"] == "fully_integer" == converted.preflight["verdict"]
    assert "GELU" in {op.name for op in read_tflite(converted.tflite_model).ops}


def test_ops_on_constants_and_weights_alone_are_folded_not_judged():
    """A Normalization layer's Sqrt and Maximum of its variance, and the reshapes of its statistics, run on
    constants only: the converter folds them (SQRT has no int8 kernel; an op judged alone was a false QD105)."""
    keras.backend.clear_session()
    inputs = keras.Input((8, 8, 3))  # default names
    x = keras.layers.Normalization(mean=[120.0, 110.0, 100.0], variance=[3000.0, 2900.0, 2800.0])(inputs)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(x))
    model = keras.Model(inputs, keras.layers.Dense(3)(x))
    data = smooth_images(100, size=8) * 255.0
    predicted = qd.diagnose(model, data, mode="int8-strict", convert=False)
    ops = {op["op"] for op in predicted.preflight["ops"]}
    assert not ops & {"Sqrt", "Maximum", "Reshape"} and {"Sub", "RealDiv", "Conv2D"} <= ops
    assert predicted.preflight["verdict"] == "fully_integer" and predicted.findings == []

    converted = qd.diagnose(model, data, mode="int8-strict")
    assert converted.preflight["actual"] == "fully_integer" == converted.preflight["verdict"]
    assert not {"SQRT", "MAXIMUM"} & {op.name for op in read_tflite(converted.tflite_model).ops}


def test_a_custom_gradients_function_is_not_judged_it_never_runs():
    """Swish (EfficientNet's activation) is a custom gradient: its gradient function, with a Square, sits in the
    traced graph's library but never runs; the preflight judged that Square (a false QD105 on EfficientNetB0)."""
    keras.backend.clear_session()
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="swish"), keras.layers.Dense(4)])
    data = np.random.default_rng(0).normal(size=(100, 8)).astype(np.float32)
    predicted = qd.diagnose(model, data, mode="int8-strict", convert=False)
    assert "Square" not in {op["op"] for op in predicted.preflight["ops"]}
    assert predicted.preflight["verdict"] == "fully_integer" and predicted.findings == []
    converted = qd.diagnose(model, data, mode="int8-strict")
    assert converted.preflight["actual"] == "fully_integer" == converted.preflight["verdict"]
