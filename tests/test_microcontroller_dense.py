"""QD114 on the model styles users have: per-channel Dense weights for a microcontroller, named by
the Keras layers, read from the produced model."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from helpers import only
from models import vectors

import quantdoctor as qd


class Scorer(keras.Model):
    def __init__(self):
        super().__init__(name="scorer")
        self.hidden = keras.layers.Dense(8, activation="relu", name="hidden")
        self.scores = keras.layers.Dense(2, name="scores")

    def call(self, x):
        return self.scores(self.hidden(x))


def dense_model(style: str):
    if style == "sequential":  # Keras' default layer names
        keras.backend.clear_session()
        return keras.Sequential([keras.Input((8,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2)]), \
            ["dense", "dense_1"]
    if style == "subclassed":
        model = Scorer()
        model(np.zeros((1, 8), np.float32))
        return model, ["hidden", "scores"]
    tf_keras = pytest.importorskip("tf_keras")
    tf_keras.backend.clear_session()
    inputs = tf_keras.Input((8,))
    hidden = tf_keras.layers.Dense(8, activation="relu", name="hidden")(inputs)
    return tf_keras.Model(inputs, tf_keras.layers.Dense(2, name="scores")(hidden)), ["hidden", "scores"]


@pytest.mark.parametrize("style", ["sequential", "subclassed", "tf_keras"])
def test_per_channel_dense_layers_are_named_for_a_microcontroller(style):
    model, layers = dense_model(style)
    report = qd.diagnose(model, vectors(60), target="microcontroller")
    finding = only(report, "QD114")
    assert finding.severity == "warning" and finding.evidence["layers"] == layers
    assert finding.evidence["channels"] == [8, 2]  # as many scales as output units, in the produced model
    assert finding.message.startswith(f"The FULLY_CONNECTED weights of '{layers[0]}', '{layers[1]}' are quantized "
                                      "per channel (8, 2 scales")
    assert "_experimental_disable_per_channel_quantization_for_dense_layers = True" in finding.fix.code
    assert report.verdict != "failed" and not [f for f in report.findings if f.severity == "error"]
