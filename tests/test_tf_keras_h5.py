"""An .h5 file written by tf_keras (Keras 2) with TFOpLambda layers loads with tf_keras, not Keras 3."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import quantdoctor as qd
from quantdoctor.errors import UnsafeModelError


def test_a_tf_keras_h5_with_tf_op_lambda_layers_is_diagnosed(tmp_path):
    tf_keras = pytest.importorskip("tf_keras")
    tf_keras.backend.clear_session()
    inputs = tf_keras.Input((8,), name="features")
    hidden = tf_keras.layers.Dense(16)(inputs)
    scaled = tf.nn.relu(hidden) * 0.5  # TensorFlow ops on a Keras 2 tensor: TFOpLambda layers
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(4, name="head")(scaled))
    assert "TFOpLambda" in {type(layer).__name__ for layer in model.layers}
    model.save(tmp_path / "model.h5")

    report = qd.diagnose(str(tmp_path / "model.h5"), np.random.default_rng(0).normal(size=(100, 8)).astype(np.float32))
    assert report.conversion["outcome"] == "ok" and report.verdict == "ok", [f.message for f in report.findings]
    assert report.audit["fully_integer"]


def test_a_tf_keras_h5_with_a_lambda_layer_is_refused_unless_trusted(tmp_path):
    tf_keras = pytest.importorskip("tf_keras")
    tf_keras.backend.clear_session()
    inputs = tf_keras.Input((8,))
    model = tf_keras.Model(inputs, tf_keras.layers.Lambda(lambda x: x * 2.0, name="double")(inputs))
    model.save(tmp_path / "lambda.h5")
    with pytest.raises(UnsafeModelError, match="contains Lambda layers \\('double'\\)"):
        qd.diagnose(str(tmp_path / "lambda.h5"), convert=False)
