"""Ethos-U benchmark: the preflight's predicted CPU layers against Vela's placement, and Vela's added time.

- Agreement: on each model, `diagnose(..., target=ethos-u55-128)` predicts the layers Vela leaves on
  the CPU from the TF graph, then Vela compiles the converted model; a model counts as agreeing when
  the predicted and the actual CPU layers are the same set. The models: Keras applications built
  with random weights (MobileNet, MobileNetV2, MobileNetV3Small at alpha 0.35 and small inputs) and
  tiny models with the refusals the catalog covers (float ops, strides, pool sizes, 16-bit
  activations) and without them.
- Time: Vela's compilation (its worker process) as a ratio to the model's one plain conversion,
  both as measured inside the same diagnose.

Run: `python bench/npu.py` (about 12 minutes on 2 loaded cores); `--quick` runs the first 8 models,
`--start N` begins at model N.
"""

from __future__ import annotations

import argparse
import statistics
import time

import keras
import numpy as np
import tensorflow as tf

TARGET = "ethos-u55-128"


def _head(x):
    return keras.layers.Dense(4)(keras.layers.GlobalAveragePooling2D()(x))


def _conv_net(*middle, size=16, channels=3):
    inputs = keras.Input((size, size, channels))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    for make in middle:
        x = make()(x)
    return keras.Model(inputs, _head(x))


def _lambda(fn):
    return lambda: keras.layers.Lambda(fn)


def models() -> list[tuple[str, keras.Model, dict]]:
    """(name, model, diagnose options): the benchmark's models."""
    apps = keras.applications
    return [
        ("conv", _conv_net(), {}),
        ("depthwise_s2", _conv_net(lambda: keras.layers.DepthwiseConv2D(3, strides=2, padding="same")), {}),
        ("depthwise_s4", _conv_net(lambda: keras.layers.DepthwiseConv2D(3, strides=4)), {}),
        ("conv_s4_same", _conv_net(lambda: keras.layers.Conv2D(8, 3, strides=4, padding="same")), {}),
        ("conv_s4_valid", _conv_net(lambda: keras.layers.Conv2D(8, 4, strides=4)), {}),
        ("avgpool_12_same", _conv_net(lambda: keras.layers.AveragePooling2D(12, strides=1, padding="same")), {}),
        ("avgpool_2", _conv_net(lambda: keras.layers.AveragePooling2D(2)), {}),
        ("maxpool_3_s2", _conv_net(lambda: keras.layers.MaxPooling2D(3, strides=2)), {}),
        ("cumsum", _conv_net(_lambda(lambda t: tf.math.cumsum(t, axis=-1))), {}),
        ("floor_mod", _conv_net(_lambda(lambda t: tf.math.floormod(t, 2.0))), {}),
        ("sin", _conv_net(_lambda(tf.math.sin)), {}),
        ("softmax", _conv_net(lambda: keras.layers.Softmax()), {}),
        ("hard_swish", _conv_net(lambda: keras.layers.Activation("hard_swish")), {}),
        ("leaky_relu", _conv_net(lambda: keras.layers.LeakyReLU(0.1)), {}),
        ("tanh_16x8", _conv_net(lambda: keras.layers.Activation("tanh")), {"mode": "int16x8"}),
        ("upsample", _conv_net(lambda: keras.layers.UpSampling2D(interpolation="bilinear")), {}),
        ("attention_16x8", _attention(), {"mode": "int16x8"}),
        ("attention_int8", _attention(), {}),
        ("mobilenet", apps.MobileNet((64, 64, 3), alpha=0.25, weights=None, classes=4), {}),
        ("mobilenet_v2", apps.MobileNetV2((64, 64, 3), alpha=0.35, weights=None, classes=4), {}),
        ("mobilenet_v3_small", apps.MobileNetV3Small((64, 64, 3), alpha=0.75, weights=None, classes=4,
                                                     include_preprocessing=False), {}),
    ]


def _attention() -> keras.Model:
    inputs = keras.Input((6, 8), batch_size=1)
    keys = keras.layers.Dense(8)(inputs)
    return keras.Model(inputs, keras.layers.Dense(4)(keras.layers.Dot(axes=2)([keys, keys])))


def _data(model: keras.Model) -> np.ndarray:
    shape = tuple(d or 1 for d in model.inputs[0].shape[1:])
    return np.random.default_rng(0).uniform(0, 1, (8, *shape)).astype(np.float32)


def main() -> None:
    import quantdoctor as qd

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the first 8 models only")
    parser.add_argument("--start", type=int, default=0, help="begin at this model (0-based)")
    args = parser.parse_args()
    rows = []
    for name, model, options in models()[args.start:8 if args.quick else None]:
        started = time.perf_counter()
        io = "int8" if "mode" not in options else "float"  # integer I/O needs int8 activations
        report = qd.diagnose(model, _data(model), io=io, target=TARGET, max_samples=8, **options)
        npu, predicted = report.audit and report.audit.get("npu"), (report.preflight or {}).get("npu")
        if not npu or npu["outcome"] != "ok" or not predicted:
            rows.append((name, None, None, None, None))
            print(f"{name:20} Vela: {npu and npu['outcome']}  conversion: {report.conversion['outcome']}")
            continue
        ratio = npu["seconds"] / report.conversion["seconds"]
        rows.append((name, predicted["agrees"], predicted["predicted_cpu_layers"], predicted["actual_cpu_layers"],
                     ratio))
        print(f"{name:20} agrees={predicted['agrees']!s:5}  predicted={predicted['predicted_cpu_layers']}  "
              f"actual={predicted['actual_cpu_layers']}  vela {npu['seconds']:.1f} s / conversion "
              f"{report.conversion['seconds']:.1f} s = {ratio:.2f}  ({time.perf_counter() - started:.0f} s)")
    judged = [row for row in rows if row[1] is not None]
    agreeing = sum(1 for row in judged if row[1])
    print(f"\nprediction agrees with Vela on {agreeing} of {len(judged)} models compiled "
          f"({len(rows) - len(judged)} not compiled)")
    if judged:
        print(f"Vela's time / one plain conversion: median {statistics.median(r[4] for r in judged):.2f}, "
              f"max {max(r[4] for r in judged):.2f}")


if __name__ == "__main__":
    main()
