"""Tiny real Keras models and calibration data for the tests (each converts in about a second)."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from quantdoctor.environment import current, release

# TensorFlow 2.16 aborts converting the SavedModel that from_keras_model writes for most Keras 3 models
# (quantdoctor reports QD909). There the tests convert Keras' own export with from_saved_model (QD909's fix),
# which checks the same diagnosis; from 2.18 on they convert as users mostly do, with from_keras_model.
CONVERTS_KERAS_MODELS = release(current().tensorflow.version) >= (2, 18)


def keras_source(model: keras.Model) -> keras.Model | str:
    """What a test hands `qd.diagnose` for a Keras model: the model itself, or on TensorFlow 2.16 the
    directory of its `model.export()` (removed when the test process exits)."""
    if CONVERTS_KERAS_MODELS:
        return model
    folder = Path(tempfile.mkdtemp(prefix="quantdoctor-export-"))
    atexit.register(shutil.rmtree, folder, True)
    model.export(str(folder / "exported"), verbose=False)
    return str(folder / "exported")


def keras_converter(model: keras.Model):
    """`from_keras_model(model)`, or on TensorFlow 2.16 `from_saved_model` of its export (`keras_source`)."""
    source = keras_source(model)
    if isinstance(source, str):
        return tf.lite.TFLiteConverter.from_saved_model(source)
    return tf.lite.TFLiteConverter.from_keras_model(source)


def image_model(name: str = "tiny", size: int = 16) -> keras.Model:
    """Conv2D -> pooling -> Dense: converts to a fully integer model."""
    return keras.Sequential([
        keras.Input((size, size, 3), name="image"),
        keras.layers.Conv2D(4, 3, name="conv"),
        keras.layers.GlobalAveragePooling2D(name="pool"),
        keras.layers.Dense(2, name="head"),
    ], name=name)


def with_layer(layer: keras.layers.Layer, features: int = 8, name: str = "tiny") -> keras.Model:
    """Dense -> `layer` -> Dense on a vector input, so `layer` is the one under test."""
    inputs = keras.Input((features,), name="features")
    hidden = keras.layers.Dense(features, name="dense")(inputs)
    outputs = keras.layers.Dense(2, name="head")(layer(hidden))
    return keras.Model(inputs, outputs, name=name)


def lambda_layer(fn, name: str) -> keras.layers.Layer:
    """A Lambda layer wrapping a raw TF op."""
    return keras.layers.Lambda(fn, name=name)


class Float64Scale(keras.layers.Layer):
    """Does its math in float64, as code ported from NumPy often does."""

    def call(self, x):
        y = tf.cast(x, tf.float64) * 2.0 + 1.0
        return tf.cast(y, tf.float32)


def lstm_model(batch_size: int | None = None, name: str = "seq") -> keras.Model:
    inputs = keras.Input((10, 4), batch_size=batch_size, name="sequence")
    outputs = keras.layers.Dense(2, name="head")(keras.layers.LSTM(8, name="my_lstm")(inputs))
    return keras.Model(inputs, outputs, name=name)


def two_input_model() -> keras.Model:
    image = keras.Input((8, 8, 3), name="image")
    meta = keras.Input((4,), name="meta")
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(keras.layers.Conv2D(4, 3, name="conv")(image))
    merged = keras.layers.Concatenate(name="merge")([pooled, keras.layers.Dense(4, name="meta_dense")(meta)])
    return keras.Model([image, meta], keras.layers.Dense(2, name="head")(merged), name="two_inputs")


def smooth_images(count: int, size: int = 16, seed: int = 0) -> np.ndarray:
    """Image-like float32 samples in [0, 1]: smooth gradients plus a little noise, batch axis first."""
    rng = np.random.default_rng(seed)
    grid = np.linspace(0.0, 1.0, size, dtype=np.float32)
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    images = []
    for _ in range(count):
        a, b, c = rng.uniform(0.2, 1.0, 3)
        base = np.stack([a * xx, b * yy, c * (xx + yy) / 2], axis=-1)
        images.append(base + rng.normal(0, 0.02, base.shape))
    return np.clip(np.stack(images), 0, 1).astype(np.float32)


def vectors(count: int, features: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count, features)).astype(np.float32)


def dataset_from(arrays: np.ndarray):
    """The documented representative_dataset form: a list holding one batch-of-1 array."""
    def representative_dataset():
        for row in arrays:
            yield [row[None]]
    return representative_dataset


def int8_converter(model: keras.Model, dataset=None, *, strict: bool = False, int8_io: bool = False):
    """A converter configured the way users configure full integer quantization (`keras_converter`)."""
    converter = keras_converter(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = dataset
    if strict:
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if int8_io:
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter


class Projection(tf.Module):
    """Two functions of one weight matrix: a SavedModel with two signatures."""

    def __init__(self):
        self.weights = tf.Variable(tf.random.normal((4, 2), seed=1))

    @tf.function(input_signature=[tf.TensorSpec((None, 4), tf.float32, name="x")])
    def encode(self, x):
        return tf.matmul(x, self.weights)

    @tf.function(input_signature=[tf.TensorSpec((None, 4), tf.float32, name="x")])
    def decode(self, x):
        return tf.matmul(x, self.weights) * 2.0
