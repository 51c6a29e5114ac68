"""The realistic test-bed: small models trained briefly on scikit-learn's bundled digits.

Built by this script, trained weights cached in bench/.cache/testbed (nothing is downloaded):

- mobilenet_v2: keras.applications.MobileNetV2(alpha=0.35) on digits upscaled to 48x48x3
- resnet: a small residual CNN (Conv-BN-ReLU blocks with identity shortcuts) on 16x16x1
- transformer: rows of the 8x8 digit as 8 tokens; MultiHeadAttention, LayerNormalization, GELU
- sequence: a 1-D convolution sequence model over the same 8 tokens

On those four, plain INT8 loses nothing. On the next three it loses far more than 5 points, each
for a different reason (`HURTING`, used by bench/budget.py):

- detector: a small CNN (six convolutions) on 16x16 digits with a detection-style head: boxes in
  pixels (0..640) concatenated with the class scores (0..1) into one output, whose one int8 scale
  crushes the scores. Judged by the top-1 accuracy of the score columns (`score_accuracy`).
- outliers: the same CNN, then a feature layer with two outlier channels, 200 (1 + x), next to 62
  of order 1 (the "massive activations" of large transformers): the tensor's one int8 scale
  leaves the other channels a few levels.
- attention: an attention block whose residual stream carries a large common offset (a "massive
  activation"); LayerNormalization removes it in float, but int8 must span it, so the deviations
  LayerNormalization then amplifies get a few levels.

For each: float accuracy, default INT8 accuracy (full integer, 300 calibration samples), top-1
agreement, and what `compare` finds, on 400 held-out digits. Results: bench/results/testbed.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache" / "testbed"
sys.path.insert(0, str(HERE))

from run import RESULTS  # noqa: E402

HURTING = ("detector", "outliers", "attention")
OUTLIER = 200.0  # the outliers model's two outlier channels: 200 (1 + x), next to the other 62


def digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    data = load_digits()
    return (data.images / 16.0).astype(np.float32), data.target


def views(images: np.ndarray) -> dict[str, np.ndarray]:
    """The input each test-bed model takes, from the same 8x8 digits."""
    big = np.repeat(np.repeat(images, 6, axis=1), 6, axis=2)[..., None]
    small = np.repeat(np.repeat(images, 2, axis=1), 2, axis=2)[..., None]
    return {"mobilenet_v2": np.repeat(big, 3, axis=-1) * 2 - 1,
            "resnet": small,
            "transformer": images, "sequence": images, "detector": small, "outliers": small,
            "attention": images}


def boxes(images: np.ndarray) -> np.ndarray:
    """Each digit's bounding box (ymin, xmin, ymax, xmax) in the pixels of a 640x640 image."""
    rows = []
    for image in images.reshape(len(images), images.shape[1], images.shape[2]):
        ys, xs = np.nonzero(image > 0.3)
        rows.append([ys.min(), xs.min(), ys.max() + 1, xs.max() + 1])
    return np.asarray(rows, np.float32) * (640.0 / images.shape[1])


def score_accuracy(labels: np.ndarray, outputs: np.ndarray) -> float:
    """The detector's metric: top-1 accuracy of the class scores (the columns after the 4 box columns)."""
    return float(np.mean(np.asarray(outputs)[:, 4:].argmax(-1) == np.asarray(labels)))


def _position_layer():
    import keras

    class AddPosition(keras.layers.Layer):
        """A learned position embedding added to each token."""

        def build(self, shape):
            self.table = self.add_weight(shape=tuple(shape[1:]), initializer="random_normal", name="table")

        def call(self, tokens):
            return tokens + self.table

    return AddPosition


def build(name: str):
    import keras

    if name == "mobilenet_v2":
        base = keras.applications.MobileNetV2(alpha=0.35, input_shape=(48, 48, 3), weights=None, include_top=False)
        for layer in base.layers:  # moving statistics that settle within a short training run
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = 0.9
        inputs = keras.Input((48, 48, 3), name="image")
        pooled = keras.layers.GlobalAveragePooling2D(name="pool")(base(inputs))
        return keras.Model(inputs, keras.layers.Dense(10, name="classifier")(pooled), name=name)
    if name == "resnet":
        inputs = keras.Input((16, 16, 1), name="image")
        x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="stem")(inputs)
        for block in range(2):
            y = keras.layers.Conv2D(16, 3, padding="same", name=f"block{block}_conv1")(x)
            y = keras.layers.ReLU(name=f"block{block}_relu")(keras.layers.BatchNormalization(name=f"block{block}_bn")(y))
            y = keras.layers.Conv2D(16, 3, padding="same", name=f"block{block}_conv2")(y)
            x = keras.layers.ReLU(name=f"block{block}_out")(keras.layers.Add(name=f"block{block}_add")([x, y]))
        pooled = keras.layers.GlobalAveragePooling2D(name="pool")(x)
        return keras.Model(inputs, keras.layers.Dense(10, name="classifier")(pooled), name=name)
    if name == "transformer":
        inputs = keras.Input((8, 8), name="tokens")
        x = keras.layers.Dense(32, name="embed")(inputs)
        attended = keras.layers.MultiHeadAttention(num_heads=2, key_dim=16, name="attention")(x, x)
        x = keras.layers.LayerNormalization(name="norm1")(keras.layers.Add(name="residual1")([x, attended]))
        hidden = keras.layers.Dense(64, activation=lambda t: keras.activations.gelu(t, approximate=True),
                                    name="mlp_gelu")(x)
        x = keras.layers.LayerNormalization(name="norm2")(
            keras.layers.Add(name="residual2")([x, keras.layers.Dense(32, name="mlp_out")(hidden)]))
        pooled = keras.layers.GlobalAveragePooling1D(name="pool")(x)
        return keras.Model(inputs, keras.layers.Dense(10, name="classifier")(pooled), name=name)
    if name in HURTING:
        return _hurting(name)
    inputs = keras.Input((8, 8), name="tokens")
    x = keras.layers.Conv1D(32, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv1D(32, 3, padding="same", activation="relu", name="conv2")(x)
    pooled = keras.layers.GlobalMaxPooling1D(name="pool")(x)
    return keras.Model(inputs, keras.layers.Dense(10, name="classifier")(pooled), name=name)


def _hurting(name: str):
    import keras

    if name in ("detector", "outliers"):  # a small convolutional backbone, then the head
        inputs = keras.Input((16, 16, 1), name="image")
        x = inputs
        for stage, (filters, stride) in enumerate(((16, 1), (32, 2), (64, 2)), 1):
            x = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", activation="relu",
                                    name=f"conv{stage}a")(x)
            x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{stage}b")(x)
        features = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    if name == "detector":
        trunk = keras.layers.Dense(64, activation="relu", name="trunk")(features)
        box = keras.layers.Dense(4, name="box_head")(trunk)
        scores = keras.layers.Dense(10, activation="softmax", name="class_head")(trunk)
        return keras.Model(inputs, keras.layers.Concatenate(name="detections")([box, scores]), name=name)
    if name == "outliers":
        x = keras.layers.Dense(64, activation="relu", name="features")(features)
        outliers = np.array([OUTLIER] * 2 + [0.0] * 62, np.float32)  # two channels ~200x the others
        x = keras.layers.Rescaling(np.where(outliers > 0, OUTLIER, 1.0), offset=outliers, name="outlier_channels")(x)
        x = keras.layers.ReLU(name="activation")(x)  # the activation carrying them (no affine op to fold away)
        x = keras.layers.Dense(32, activation="relu", name="hidden")(x)
        return keras.Model(inputs, keras.layers.Dense(10, name="classifier")(x), name=name)
    inputs = keras.Input((8, 8), name="tokens")
    x = _position_layer()(name="position")(keras.layers.Dense(32, name="embed")(inputs))
    attended = keras.layers.MultiHeadAttention(num_heads=2, key_dim=16, name="attention")(x, x)
    offset = keras.layers.Dense(32, kernel_initializer="zeros", trainable=False, name="offset",
                                bias_initializer=keras.initializers.Constant(300.0))(inputs)
    x = keras.layers.LayerNormalization(name="norm")(keras.layers.Add(name="residual")([x, attended, offset]))
    pooled = keras.layers.GlobalAveragePooling1D(name="pool")(x)
    return keras.Model(inputs, keras.layers.Dense(10, name="classifier")(pooled), name=name)


EPOCHS = {"mobilenet_v2": 25, "resnet": 30, "transformer": 30, "sequence": 30, "detector": 30, "outliers": 30,
          "attention": 30}


def trained(name: str, x: np.ndarray, y: np.ndarray):
    """The model, trained once; its weights are cached (the architecture is rebuilt from code)."""
    import keras

    keras.utils.set_random_seed(0)
    model = build(name)
    path = CACHE / f"{name}.weights.h5"
    if path.exists():
        model.load_weights(path)
        return model
    if name == "detector":  # trained on both heads; deployed with them concatenated
        heads = keras.Model(model.inputs, [model.get_layer("box_head").output, model.get_layer("class_head").output])
        heads.compile("adam", ["mse", "sparse_categorical_crossentropy"], loss_weights=[1e-4, 1.0])
        heads.fit(x, [boxes(x), y], epochs=EPOCHS[name], batch_size=32, verbose=0)
    else:
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(x, y, epochs=EPOCHS[name], batch_size=32, verbose=0)
    CACHE.mkdir(parents=True, exist_ok=True)
    model.save_weights(path)
    return model


def main() -> None:
    import quantdoctor as qd

    images, labels = digits()
    train, held_out = slice(0, 1300), slice(1397, 1797)
    rows = []
    for name, x in views(images).items():
        model = trained(name, x[train], labels[train])
        metric = score_accuracy if name == "detector" else None
        report = qd.compare(model, x[:300], eval_data=x[held_out], labels=labels[held_out], metric=metric)
        e2e = report.comparison["end_to_end"]
        worst = report.comparison["layers"][0] if report.comparison["layers"] else {}
        rows.append({"model": name, "float_accuracy": e2e.get("accuracy_float"),
                     "int8_accuracy": e2e.get("accuracy_quant"), "top1_agreement": e2e.get("top1_agreement"),
                     "output_sqnr_db": e2e["sqnr_db"], "fully_integer": report.audit["fully_integer"],
                     "worst_layer": f"{worst.get('layer')} ({worst.get('op')}, own drop {worst.get('own_sqnr_drop_db')} dB)",
                     "findings": [f"{f.code} {f.location.describe()}" for f in report.findings]})
        print(json.dumps(rows[-1]))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "testbed.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
