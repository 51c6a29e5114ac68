"""`quantdoctor demo`: the three classic failures from real-world reports, a converter crash that
`reduce` isolates, and one clean model.

Each example is built here, small enough to convert in seconds, configured the way users write
it, and diagnosed by the real converter in an isolated process. The failing ones are then fixed:
repaired, converted again and verified, for each reading of the user's intent (the target).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from rich.console import Console
from rich.rule import Rule
from rich.syntax import Syntax

from quantdoctor.diagnosis.pipeline import diagnose
from quantdoctor.errors import UsageError
from quantdoctor.fix.fix_model import fix
from quantdoctor.fix.render import render_fix
from quantdoctor.report.terminal import render


@dataclass
class Example:
    """A model and converter configured as a user would, with the code they wrote."""

    title: str
    user_code: str
    build: Callable[[], Any]
    fix_targets: tuple[str | None, ...] = ()  # fix it for these deployment targets (None: the settings' own)
    reduce: bool = False  # a converter crash: reduce it to the layer that triggers it


def run_demo(out: Console, err: Console) -> None:
    """Build and diagnose every example, printing each report."""
    with err.status("Building the example models (TensorFlow loads in a few seconds)…"):
        import numpy as np
        import tensorflow as tf
    examples = _examples(np, tf)
    for number, example in enumerate(examples, 1):
        out.print(Rule(f"Example {number}/{len(examples)}: {example.title}"))
        out.print(Syntax(example.user_code, "python", theme="ansi_dark", background_color="default"))
        converter = example.build()
        if example.reduce:
            _show_reduce(converter, out, err)
            continue
        if not example.fix_targets:
            with err.status("Diagnosing in an isolated converter process…"):
                report = diagnose(converter)
            render(report, out)
            out.print()
        for number_of_fix, target in enumerate(example.fix_targets):
            with err.status(f"Fixing for target {target or 'as configured'}: repair, convert again, verify…"):
                result = fix(converter, target=target)
            if number_of_fix == 0:
                render(result.before, out)
            out.print(Rule(f"quantdoctor fix{f' --target {target}' if target else ''}", style="dim"))
            render_fix(result, out)
            out.print()


def _show_reduce(converter: Any, out: Console, err: Console) -> None:
    """Diagnose a converter crash, then reduce it to the layer that triggers it."""
    from quantdoctor.reduce.reduce_model import reduce
    from quantdoctor.reduce.render import render_reduce

    with err.status("Diagnosing in an isolated converter process…"):
        report = diagnose(converter)
    render(report, out)
    out.print(Rule("quantdoctor reduce", style="dim"))
    with err.status("Reducing: converting sub-models, calibrated on the samples run through the layers before…"):
        result = reduce(converter)
    render_reduce(result, out)
    out.print("`quantdoctor reduce MODEL --data D --repro repro.py` also writes a standalone script that fails the "
              "same way, for a TensorFlow bug report.", markup=False, soft_wrap=True)
    out.print()


def _examples(np: Any, tf: Any) -> list[Example]:
    import keras

    def custom_op_model():
        class CovarianceDeterminant(keras.layers.Layer):
            """A hand-written layer whose op (MatrixDeterminant) has no TFLite builtin."""

            def call(self, x):
                matrices = tf.reshape(x, (-1, 4, 2, 2))
                return tf.linalg.det(matrices)

        inputs = keras.Input((8, 8, 1), name="image")
        features = keras.layers.Dense(4, name="project")(keras.layers.Flatten(name="flatten")(inputs))
        features = keras.layers.Dense(16, name="expand")(features)
        outputs = keras.layers.Dense(10, name="classifier")(CovarianceDeterminant(name="my_custom_op")(features))
        converter = tf.lite.TFLiteConverter.from_keras_model(keras.Model(inputs, outputs, name="custom_op_net"))
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = _digits_dataset(np, 200)
        return converter

    def float16_with_int8():
        converter = tf.lite.TFLiteConverter.from_keras_model(_digits_cnn(keras, np, train=False))
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.representative_dataset = _digits_dataset(np, 200)
        return converter

    def random_calibration():
        model = keras.Sequential([
            keras.Input((224, 224, 3), name="image"),
            keras.layers.Conv2D(8, 3, strides=4, activation="relu", name="stem"),
            keras.layers.GlobalAveragePooling2D(name="pool"),
            keras.layers.Dense(10, name="classifier"),
        ], name="mobile_net_like")

        def representative_dataset_gen():
            for _ in range(10):
                yield [np.random.rand(1, 224, 224, 3)]

        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative_dataset_gen
        return converter

    def crash_inside():
        inputs = keras.Input((10, 4), batch_size=1, name="sensor_window")
        hidden = keras.layers.Dense(8, activation="relu", name="embed")(inputs)
        hidden = keras.layers.Dense(8, activation="relu", name="mix")(hidden)
        hidden = keras.layers.LSTM(16, name="temporal")(hidden)
        hidden = keras.layers.Dense(16, activation="relu", name="features")(hidden)
        outputs = keras.layers.Dense(3, name="classifier")(hidden)
        converter = tf.lite.TFLiteConverter.from_keras_model(keras.Model(inputs, outputs, name="sensor_net"))
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        windows = np.sin(np.linspace(0, 6, 40))[:, None, None] * np.ones((40, 10, 4)) + np.linspace(0, 1, 10)[:, None]

        def windows_dataset():
            for window in windows.astype(np.float32):
                yield [window[None]]

        converter.representative_dataset = windows_dataset
        return converter

    def clean_digits():
        converter = tf.lite.TFLiteConverter.from_keras_model(_digits_cnn(keras, np, train=True))
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
        converter.representative_dataset = _digits_dataset(np, 300)
        return converter

    return [
        Example("a layer whose op has no TFLite kernel", "class CovarianceDeterminant(keras.layers.Layer):\n"
                "    def call(self, x):\n        return tf.linalg.det(tf.reshape(x, (-1, 4, 2, 2)))\n"
                "converter.optimizations = [tf.lite.Optimize.DEFAULT]", custom_op_model, (None, "int8-accelerator")),
        Example("float16 requested together with INT8-only ops",
                "converter.target_spec.supported_types = [tf.float16]\n"
                "converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]", float16_with_int8,
                (None, "gpu")),
        Example("ten random samples for calibration", "def representative_dataset_gen():\n"
                "    for _ in range(10):\n        yield [np.random.rand(1, 224, 224, 3)]", random_calibration, (None,)),
        Example("the converter itself crashes, somewhere inside the model: reduce finds where",
                "inputs = keras.Input((10, 4), batch_size=1)\n...\nhidden = keras.layers.LSTM(16)(hidden)\n"
                "converter.representative_dataset = windows_dataset", crash_inside, reduce=True),
        Example("a digits classifier calibrated on real digits (clean)",
                "converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]\n"
                "converter.inference_input_type = tf.int8\n"
                "converter.representative_dataset = digits_dataset   # 300 real images", clean_digits),
    ]


def _digits(np: Any) -> tuple[Any, Any]:
    """scikit-learn's bundled 8x8 handwritten digits, scaled to [0, 1], as (N, 8, 8, 1) float32."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise UsageError("the demo uses scikit-learn's bundled digits: pip install 'quantdoctor[examples]'") from exc
    digits = load_digits()
    return (digits.images / 16.0).astype(np.float32)[..., None], digits.target


def _digits_dataset(np: Any, count: int) -> Callable[[], Any]:
    images, _ = _digits(np)

    def digits_dataset():
        for image in images[:count]:
            yield [image[None]]

    return digits_dataset


def _digits_cnn(keras: Any, np: Any, train: bool) -> Any:
    model = keras.Sequential([
        keras.Input((8, 8, 1), name="image"),
        keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv"),
        keras.layers.MaxPooling2D(name="pool"),
        keras.layers.Flatten(name="flatten"),
        keras.layers.Dense(10, name="classifier"),
    ], name="digits_cnn")
    if train:
        images, labels = _digits(np)
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(images, labels, epochs=3, batch_size=64, verbose=0)
    return model
