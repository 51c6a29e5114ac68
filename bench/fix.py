"""Benchmark: quantdoctor fix over two sets of failing models, each a tiny model built in code.

- "catalog": the catalog's example failures (the tests' tiny models).
- "real": failures rebuilt from public reports (GitHub issues), each citing its thread, with the user's
  own converter settings. Each case's row records what the plain converter does with it (a fresh
  process: convert, then allocate and invoke in TensorFlow's interpreter); reports that no longer fail
  on this TensorFlow are listed in NOT_REPRODUCED, not run.

For each case it reports whether fix ends in a verified model (or, where none can exist, whether it
says why not), how many conversions it took, and the time to the fixed model as a ratio to one plain
conversion of that fixed model: a fresh Python process that builds the same model, applies the same
changes, configures the converter with the fixed settings and converts (what a user pays for one
attempt). Each fix starts cold: no zygote left by the case before (its workers import TensorFlow anew). Results go to bench/results/fix.json and bench/results/fix.md.

    QUANTDOCTOR_NO_CACHE=1 python bench/fix.py   # both sets, cache off
    python bench/fix.py --set real -k GRU        # the real-report cases whose name contains GRU
    python bench/fix.py --summarise              # fix.json summarised again, fix.md written
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "tests"), str(HERE.parent / "src")]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _cases() -> dict[str, Callable[[Path], tuple[Any, Any, dict[str, Any]]]]:
    """Case name -> builder(tmp dir) -> (model, data, fix options). Each fails to convert as given."""
    import keras
    import numpy as np
    import tensorflow as tf
    from models import (
        Float64Scale,
        Projection,
        dataset_from,
        image_model,
        int8_converter,
        lambda_layer,
        lstm_model,
        smooth_images,
        two_input_model,
        vectors,
        with_layer,
    )

    def samples(items):
        return lambda: iter(items)

    def random_float64(_):
        return int8_converter(image_model(), samples([[np.random.rand(1, 16, 16, 3)] for _ in range(10)])), None, {}

    def data_mix(_):
        images = smooth_images(120).astype(np.float64)
        images[7, 3, 3, 0] = np.nan
        return int8_converter(image_model(), samples(list(images))), None, {}

    def list_order(_):
        images, meta = smooth_images(120, size=8), vectors(120, 4)
        return int8_converter(two_input_model(), samples([[m[None], i[None]] for i, m in zip(images, meta)])), None, {}

    def dict_keys(_):
        images, meta = smooth_images(120, size=8), vectors(120, 4)
        return int8_converter(two_input_model(), samples([{"img": i[None], "metadata": m[None]}
                                                          for i, m in zip(images, meta)])), None, {}

    def signatures(tmp):
        module = Projection()
        tf.saved_model.save(module, str(tmp / "sm"), signatures={"encode": module.encode, "decode": module.decode})
        return str(tmp / "sm"), samples([[row[None]] for row in vectors(120, 4)]), {}

    def float16_int8(target):
        def build(_):
            converter = int8_converter(image_model(), dataset_from(smooth_images(120)), strict=True)
            converter.target_spec.supported_types = [tf.float16]
            return converter, None, {"target": target}
        return build

    def det(target):
        def build(_):
            layer = lambda_layer(lambda x: tf.reshape(tf.linalg.det(tf.reshape(x, (-1, 2, 2, 2))), (-1, 2)), "my_det")
            return int8_converter(with_layer(layer), dataset_from(vectors(120))), None, {"target": target}
        return build

    def cumsum(mode, target=None):
        def build(_):
            model = with_layer(lambda_layer(lambda x: tf.math.cumsum(x, axis=-1), "my_cumsum"))
            return model, vectors(120), {"mode": mode, "target": target}
        return build

    def lstm(batch_size):
        return lambda _: (lstm_model(batch_size=batch_size), vectors(120, 40).reshape(120, 10, 4), {})

    def mixed(_):
        keras.mixed_precision.set_global_policy("mixed_float16")
        try:
            model = keras.Sequential([keras.Input((8,), name="features"), keras.layers.Dense(8, name="dense_fp16"),
                                      keras.layers.Dense(2, name="head", dtype="float32")], name="mixed")
        finally:
            keras.mixed_precision.set_global_policy("float32")
        return model, vectors(120), {}

    def invalid_name(_):
        inputs = keras.Input((8,), name="my features")
        return keras.Model(inputs, keras.layers.Dense(2, name="head")(inputs)), vectors(120), {}

    def igamma(_):
        layer = lambda_layer(lambda x: tf.math.igamma(tf.abs(x) + 1.0, tf.abs(x) + 1.0), "my_igamma")
        return with_layer(layer), vectors(120), {"select_tf_ops": True}

    return {
        "QD201 seed example 3 (random float64)": random_float64,
        "QD303+QD201+QD306+QD307 data mistakes": data_mix,
        "QD313 list order, two inputs": list_order,
        "QD305 dict keys, two inputs": dict_keys,
        "QD315 two signatures": signatures,
        "QD203 seed example 2, int8 reading": float16_int8(None),
        "QD203 seed example 2, gpu reading": float16_int8("gpu"),
        "QD101 seed example 1, cpu (Flex)": det(None),
        "QD101 seed example 1, int8-accelerator": det("int8-accelerator"),
        "QD105 CUMSUM int8-strict on cpu": cumsum("int8-strict", "cpu"),
        "QD113 CUMSUM in 16x8": cumsum("int16x8"),
        "QD103 LSTM dynamic batch": lstm(None),
        "QD108 LSTM calibration crash": lstm(1),
        "QD207 mixed_float16": mixed,
        "QD405 invalid input name": invalid_name,
        "QD301 no data": lambda _: (image_model(), None, {"mode": "int8-strict"}),
        "QD202 float64 math in a layer": lambda _: (with_layer(Float64Scale(name="to_f64")), vectors(120), {}),
        "QD102 op with no kernel": igamma,
    }


def _real_cases() -> dict[str, Callable[[Path], tuple[Any, Any, dict[str, Any]]]]:
    """Real public reports, rebuilt as tiny models: case name -> builder(tmp dir) -> (model or the user's
    converter, data, fix options). Each builder carries the thread it rebuilds and what the user saw;
    `REAL_EXPECTED` says whether a verified model exists for the user's settings."""
    import keras
    import numpy as np
    import tensorflow as tf
    from models import smooth_images, vectors

    rng = np.random.default_rng(7)

    def converter_of(model, dataset, ops=None, io=None):
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = dataset
        if ops is not None:
            converter.target_spec.supported_ops = ops
        if io is not None:
            converter.inference_input_type = converter.inference_output_type = io
        return converter

    int16x8 = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]

    def div_16x8(_):
        # https://github.com/tensorflow/tensorflow/issues/57725 (2022): log, pow and div convert under int8 but
        # the 16x8 conversion stops with "Quantization to 16x8-bit not yet supported for op" (LOG converts in
        # TF 2.21; DIV still stops).
        inputs = keras.Input((1,), batch_size=1, name="x")
        model = keras.Model(inputs, keras.layers.Lambda(lambda x: tf.math.divide(x, x + 1.0), name="div")(inputs))

        def data():
            for value in range(1, 100):
                yield [np.array([[value]], dtype=np.float32)]
        return converter_of(model, data, int16x8, tf.int16), None, {}

    class ResidueDense(keras.layers.Layer):
        """A residue-number-system dense layer: matmul and bias taken modulo 2**n (divmod in the report)."""

        def __init__(self, units, n=4, **kwargs):
            super().__init__(**kwargs)
            self.units, self.n = units, n

        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1], self.units), initializer="glorot_uniform", name="w")
            self.b = self.add_weight(shape=(self.units,), initializer="zeros", name="b")

        def call(self, inputs):
            x = tf.math.floormod(inputs, 2.0 ** self.n)
            return tf.math.floormod(tf.matmul(x, self.w) + self.b, 2.0 ** self.n)

    def floormod_16x8(_):
        # https://github.com/tensorflow/tensorflow/issues/61343 (2023): a custom layer using divmod; the 16x8
        # conversion raises "Quantization to 16x8-bit not yet supported for op: 'FLOOR_MOD'".
        inputs = keras.Input((8,), name="residues")
        hidden = ResidueDense(8, name="rns_dense")(inputs)
        model = keras.Model(inputs, keras.layers.Dense(2, name="head")(hidden))
        samples = (np.abs(vectors(100)) * 8).astype(np.float32)
        return converter_of(model, lambda: ([row[None]] for row in samples), int16x8), None, {}

    def squared_difference_16x8(_):
        # https://github.com/google-ai-edge/LiteRT/issues/4383 (2025): tf.math.squared_difference under 16x8
        # converts without a word, then invoking fails: "SquaredDifference only supports FLOAT32 and INT32 now,
        # got 7".
        inputs = keras.Input((8,), name="features")
        hidden = keras.layers.Dense(8, name="dense")(inputs)
        diff = keras.layers.Lambda(lambda x: tf.math.squared_difference(x, 0.5), name="sq_diff")(hidden)
        model = keras.Model(inputs, keras.layers.Dense(2, name="head")(diff))
        samples = vectors(100)
        return converter_of(model, lambda: ([row[None]] for row in samples), int16x8), None, {}

    def layer_norm_16x8(_):
        # https://github.com/tensorflow/tensorflow/issues/59506 (2023): an encoder's layer normalization quantized
        # 16x8 fails in allocate_tensors: "Type INT16 is unsupported by op Rsqrt ... (RSQRT) failed to prepare"
        # (in TF 2.21 Keras' LayerNormalization stops the conversion earlier, at its NEG).
        inputs = keras.Input((6, 8), name="frames")
        hidden = keras.layers.Dense(8, name="proj")(inputs)
        normed = keras.layers.LayerNormalization(name="norm")(hidden)
        model = keras.Model(inputs, keras.layers.Dense(4, name="head")(normed))
        samples = vectors(100, 48).reshape(100, 6, 8)
        return converter_of(model, lambda: ([row[None]] for row in samples), int16x8), None, {}

    def lstm_16x8(_):
        # https://github.com/tensorflow/tensorflow/issues/60884 (2023): an LSTM (batch 1) quantized with int16
        # activations converts, but the model fails in allocate_tensors.
        inputs = keras.Input((10, 6), batch_size=1, name="input_0")
        model = keras.Model(inputs, keras.layers.LSTM(6, return_sequences=True, name="lstm")(inputs))
        samples = rng.random((10, 1, 10, 6)).astype(np.float32)
        converter = converter_of(model, lambda: ({"input_0": row} for row in samples),
                                 [tf.lite.OpsSet.TFLITE_BUILTINS] + int16x8)
        return converter, None, {}

    def gru_int8(_):
        # https://github.com/tensorflow/tensorflow/issues/62281 (2023): a GRU with batch size 1, full int8
        # (TFLITE_BUILTINS_INT8, int8 I/O): the converter segfaults from TF 2.14 on.
        inputs = keras.Input((10, 16), batch_size=1)
        model = keras.Model(inputs, keras.layers.GRU(16)(inputs))

        def data():
            for _ in range(20):
                yield [tf.random.uniform((1, 10, 16), minval=-1, maxval=1)]
        return converter_of(model, data, [tf.lite.OpsSet.TFLITE_BUILTINS_INT8], tf.int8), None, {}

    def gru_sequences(_):
        # https://github.com/tensorflow/tensorflow/issues/55267 (2022): GRU(return_sequences) -> Flatten ->
        # Dense with a dynamic batch: "Max and min for dynamic tensors should be recorded during calibration".
        model = keras.Sequential([keras.Input((8, 8)), keras.layers.GRU(5, return_sequences=True),
                                  keras.layers.Flatten(), keras.layers.Dense(10)])
        images = smooth_images(50, size=8)[..., 0]
        return converter_of(model, lambda: ([row[None]] for row in images)), None, {}

    def conv_lstm_int8(_):
        # https://github.com/tensorflow/tensorflow/issues/101050 (2025, TF 2.19, Keras 3): a Conv1D + LSTM model
        # given a fixed batch of 1 converts as float but crashes the int8 conversion.
        inner = keras.Sequential([keras.Input((20, 8)), keras.layers.Conv1D(8, 3, activation="relu"),
                                  keras.layers.LSTM(8), keras.layers.Dense(3, activation="softmax")])
        fixed = keras.Input((20, 8), batch_size=1, name="fixed_batch_input")
        model = keras.Model(fixed, inner(fixed))
        samples = rng.normal(size=(30, 20, 8)).astype(np.float32)
        converter = converter_of(model, lambda: ([row[None]] for row in samples), [tf.lite.OpsSet.TFLITE_BUILTINS_INT8],
                                 tf.int8)
        return converter, None, {}

    def floormod_int8(_):
        # https://github.com/tensorflow/tensorflow/issues/56535 (2022): with TFLITE_BUILTINS_INT8 the converter
        # still leaves FLOOR_MOD float (DEQUANTIZE/QUANTIZE around it) instead of refusing.
        model = keras.Sequential([keras.Input((5,), batch_size=1), keras.layers.Dense(5), keras.layers.Dense(5),
                                  keras.layers.Lambda(lambda x: tf.math.floormod(x, 3.0))])
        rows = np.array([[0, 1, 2, 3, 4], [2, 0, 2, 3, 4], [0, 3, 2, 3, 4], [4, 1, 2, 3, 4], [5, 1, 2, 3, 4]],
                        dtype=np.float32)
        return converter_of(model, lambda: ([row[None]] for row in rows), [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]), \
            None, {}

    def resize_bare_tensor(_):
        # https://github.com/tensorflow/tensorflow/issues/50838 (2021): tf.image.resize, and a generator that
        # yields the image tensor itself instead of a list: "NumDimensions(input) != 4 (3 != 4) ...
        # (RESIZE_BILINEAR) failed to prepare".
        inputs = keras.Input((24, 32, 3), batch_size=1)
        model = keras.Model(inputs, keras.layers.Lambda(lambda x: tf.image.resize(x, (12, 16)), name="resize")(inputs))

        def data():
            for _ in range(20):
                yield tf.random.uniform(shape=(1, 24, 32, 3), dtype=tf.float32)
        return converter_of(model, data, [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]), None, {}

    def two_inputs_order(tmp):
        # https://github.com/tensorflow/tensorflow/issues/55424 (2022): a two-input SavedModel, full int8;
        # the representative samples were not in the converter's input order and the calibration run failed
        # in a kernel's prepare step on a shape mismatch.
        query, context = keras.Input((20,), name="query"), keras.Input((40,), name="context")
        merged = keras.layers.Concatenate()([keras.layers.Dense(16)(query), keras.layers.Dense(16)(context)])
        model = keras.Model([query, context], keras.layers.Dense(2)(merged))
        model.export(str(tmp / "sm"), verbose=False)
        queries, contexts = vectors(60, 20), vectors(60, 40, seed=1)
        data = lambda: ([q[None], c[None]] for q, c in zip(queries, contexts))  # noqa: E731
        return str(tmp / "sm"), data, {"mode": "int8-strict", "io": "int8"}



    def waveform_uint8_samples(_):
        # https://github.com/tensorflow/tensorflow/issues/56313 (2022): an audio model on a float waveform,
        # calibrated with samples cast to uint8: "Cannot set tensor: Got value of type UINT8 but expected type
        # FLOAT32 for input 0".
        inputs = keras.Input((256,), name="waveform")
        x = keras.layers.Reshape((256, 1))(inputs)
        x = keras.layers.Conv1D(8, 9, strides=4, activation="relu")(x)
        outputs = keras.layers.Dense(5)(keras.layers.GlobalAveragePooling1D()(x))

        def data():
            for _ in range(30):
                yield [np.random.choice([-32768, 0, 1, 32767], size=(1, 256)).astype(np.uint8)]
        converter = converter_of(keras.Model(inputs, outputs), data,
                                 [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS], tf.int8)
        return converter, None, {}


    def saved_model_layer(tmp):
        # https://github.com/tensorflow/tensorflow/issues/76675 (2024, TF 2.17, Keras 3): an exported model
        # reloaded as keras.layers.TFSMLayer and handed to from_keras_model for full int8 with uint8 I/O: the
        # conversion fails (it worked in TF 2.16).
        inner = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2)])
        inner.export(str(tmp / "exported"), verbose=False)
        layer = keras.layers.TFSMLayer(str(tmp / "exported"), call_endpoint="serve")
        samples = vectors(60)
        return converter_of(layer, lambda: ([row[None]] for row in samples), [tf.lite.OpsSet.TFLITE_BUILTINS_INT8],
                            tf.uint8), None, {}

    def gru_state_input(_):
        # https://github.com/tensorflow/tensorflow/issues/87468 (2025): a streaming GRU whose state is a second
        # input (batch 1) segfaults the quantized conversion.
        frame = keras.Input((1, 8), batch_size=1, name="gru_input")
        state = keras.Input((16,), batch_size=1, name="gru_state_in")
        output, new_state = keras.layers.GRU(16, return_state=True, name="gru")(frame, initial_state=state)
        model = keras.Model([frame, state], [output, new_state])
        frames, states = rng.normal(size=(30, 1, 1, 8)), rng.normal(size=(30, 1, 16)) * 0.5
        return converter_of(model, lambda: ([f.astype(np.float32), s.astype(np.float32)] for f, s in
                                            zip(frames, states))), None, {}

    return {
        "tf#57725 DIV in 16x8": div_16x8,
        "tf#61343 FLOOR_MOD custom layer in 16x8": floormod_16x8,
        "LiteRT#4383 SQUARED_DIFFERENCE in 16x8": squared_difference_16x8,
        "tf#59506 LayerNormalization in 16x8": layer_norm_16x8,
        "tf#60884 LSTM batch 1 in 16x8": lstm_16x8,
        "tf#62281 GRU batch 1 full int8": gru_int8,
        "tf#55267 GRU sequences, dynamic batch": gru_sequences,
        "tf#101050 Conv1D+LSTM batch 1 int8": conv_lstm_int8,
        "tf#56535 FLOOR_MOD under TFLITE_BUILTINS_INT8": floormod_int8,
        "tf#50838 generator yields a bare tensor": resize_bare_tensor,
        "tf#55424 two inputs, samples out of order": two_inputs_order,
        "tf#56313 float waveform, uint8 samples": waveform_uint8_samples,
        "tf#76675 TFSMLayer handed to the converter": saved_model_layer,
        "tf#87468 GRU with a state input": gru_state_input,
    }


# The catalog cases where no verified model can exist here: the right answer is "cannot, and why".
CATALOG_CANNOT: dict[str, str] = {
    "QD101 seed example 1, cpu (Flex)": "LiteRT here has no Flex delegate: the run check cannot pass",
    "QD101 seed example 1, int8-accelerator": "a Flex op on an integer-only target",
    "QD301 no data": "no calibration data at all for int8-strict",
    "QD202 float64 math in a layer": "the layer's own code computes in float64",
    "QD102 op with no kernel": "neither TFLite nor Select TF ops has a kernel for the op",
}

# Whether a verified model exists for the user's settings and target, decided from the report and the
# settings alone (before running fix): where none does, the right answer is "cannot, and why".
REAL_EXPECTED: dict[str, dict[str, Any]] = {
    "tf#57725 DIV in 16x8": {"thread": "https://github.com/tensorflow/tensorflow/issues/57725", "possible": True, "why": "DIV may stay float (cpu) or run in int8"},
    "tf#61343 FLOOR_MOD custom layer in 16x8": {"thread": "https://github.com/tensorflow/tensorflow/issues/61343", "possible": True, "why": "FLOOR_MOD may stay float on a cpu"},
    "LiteRT#4383 SQUARED_DIFFERENCE in 16x8": {"thread": "https://github.com/google-ai-edge/LiteRT/issues/4383", "possible": True, "why": "the op runs in int8, or float on a cpu"},
    "tf#59506 LayerNormalization in 16x8": {"thread": "https://github.com/tensorflow/tensorflow/issues/59506", "possible": True, "why": "the norm's ops run in int8, or float on a cpu"},
    "tf#60884 LSTM batch 1 in 16x8": {"thread": "https://github.com/tensorflow/tensorflow/issues/60884", "possible": True, "why": "an unrolled LSTM quantizes"},
    "tf#62281 GRU batch 1 full int8": {"thread": "https://github.com/tensorflow/tensorflow/issues/62281", "possible": True, "why": "an unrolled GRU is fully integer"},
    "tf#55267 GRU sequences, dynamic batch": {"thread": "https://github.com/tensorflow/tensorflow/issues/55267", "possible": True, "why": "an unrolled GRU quantizes"},
    "tf#101050 Conv1D+LSTM batch 1 int8": {"thread": "https://github.com/tensorflow/tensorflow/issues/101050", "possible": True, "why": "an unrolled LSTM is fully integer"},
    "tf#56535 FLOOR_MOD under TFLITE_BUILTINS_INT8": {"thread": "https://github.com/tensorflow/tensorflow/issues/56535", 
        "possible": False, "why": "FLOOR_MOD has no integer kernel and the settings ask for integer ops only"},
    "tf#50838 generator yields a bare tensor": {"thread": "https://github.com/tensorflow/tensorflow/issues/50838", "possible": True, "why": "samples packaged as a list calibrate"},
    "tf#55424 two inputs, samples out of order": {"thread": "https://github.com/tensorflow/tensorflow/issues/55424", "possible": True, "why": "samples in the converter's order"},
    "tf#56313 float waveform, uint8 samples": {"thread": "https://github.com/tensorflow/tensorflow/issues/56313", "possible": True, "why": "float32 samples calibrate"},
    "tf#76675 TFSMLayer handed to the converter": {"thread": "https://github.com/tensorflow/tensorflow/issues/76675", "possible": True, "why": "the SavedModel itself converts"},
    "tf#87468 GRU with a state input": {"thread": "https://github.com/tensorflow/tensorflow/issues/87468", "possible": True, "why": "an unrolled GRU quantizes"},
}

# Researched and rebuilt, but the plain converter of TensorFlow 2.21 no longer fails as reported: kept out
# of the set (a case must fail as the report says), listed in bench/results/fix.md with what it does now.
NOT_REPRODUCED: list[dict[str, str]] = [
    {"thread": "https://github.com/tensorflow/model-optimization/issues/857",
     "report": "a uint8 model input cast to float inside; the int8 model segfaulted when invoked",
     "now": "converts (the CAST stays float under TFLITE_BUILTINS) and runs"},
    {"thread": "https://github.com/tensorflow/tensorflow/issues/58119",
     "report": "a classification and a regression head: the uint8 model listed its outputs in another order",
     "now": "the float and the uint8 models list their outputs in the same order"},
    {"thread": "https://github.com/tensorflow/tensorflow/issues/52028",
     "report": "Reshape((-1, 21)) after a (1, 126) input: the converted RESHAPE had a wrong output shape",
     "now": "the output shape is (1, 6, 21), as in Keras"},
    {"thread": "https://github.com/tensorflow/tensorflow/issues/83754",
     "report": "MobileNetV3 (Keras 3) fails full integer quantization with a representative dataset",
     "now": "a tiny MobileNetV3Small (random weights, 32x32) converts with TFLITE_BUILTINS_INT8 and uint8 I/O"},
]


def run_case(name: str, build: Callable, tmp: Path) -> dict[str, Any]:
    import quantdoctor as qd
    from quantdoctor.isolation import prefork

    model, data, options = build(tmp)
    prefork.shutdown()  # cold: each fix starts its own zygote (TensorFlow's import), as a user's first run does
    started = time.perf_counter()
    try:
        result = qd.fix(model, data, **options)
    except Exception as error:  # noqa: BLE001 - a fix that raises is a result of the bench, not its end
        return {"case": name, "verified": False, "conversions": None, "blocked": [],
                "fix_seconds": round(time.perf_counter() - started, 2),
                "exception": f"{type(error).__name__}: {_words(str(error))}"}
    seconds = time.perf_counter() - started
    row = {"case": name, "verified": result.verified, "conversions": result.conversions,
           "fix_seconds": round(seconds, 2), "applied": [r.code for r in result.applied],
           "blocked": [b.code for b in result.blocked],
           "diagnosis": [f.code for f in result.before.findings if f.severity == "error"],
           "after": [f.code for f in result.after.findings if f.severity == "error"]}
    if result.verified:
        plan_dir = tmp / "plan"
        plan_dir.mkdir()
        (plan_dir / "plan.json").write_text(json.dumps({
            "recipe": result.plan.recipe.to_dict(), "model_steps": [s.to_dict() for s in result.plan.model_steps]}))
        if result.calibration is not None and result.plan.recipe.calibrate:
            result.calibration.save(plan_dir / "calibration.npz")
        started = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--plain", name, str(plan_dir)], check=True, capture_output=True)
        row["plain_seconds"] = round(time.perf_counter() - started, 2)
        row["ratio"] = round(seconds / row["plain_seconds"], 2)
    return row


def plain_conversion(name: str, plan_dir: Path) -> None:
    """One plain conversion of the fixed model, in this fresh process (no quantdoctor worker)."""
    import tensorflow as tf

    from quantdoctor.edits.plan import edit_model
    from quantdoctor.intake.data import CalibrationSet
    from quantdoctor.intake.recipe import Recipe

    plan = json.loads((plan_dir / "plan.json").read_text())
    model, _, _ = _all_cases()[name](plan_dir)
    if isinstance(model, str):
        converter = tf.lite.TFLiteConverter.from_saved_model(model)
    else:
        keras_model = model._keras_model if hasattr(model, "target_spec") else model
        converter = tf.lite.TFLiteConverter.from_keras_model(edit_model(keras_model, plan["model_steps"]))
    Recipe.from_dict(plan["recipe"]).apply(converter)
    if (plan_dir / "calibration.npz").exists():
        converter.representative_dataset = CalibrationSet.load(plan_dir / "calibration.npz").replay
    converter.convert()


def _all_cases() -> dict[str, Callable]:
    """Both sets by case name: the catalog's examples and the real reports."""
    return {**_cases(), **_real_cases()}


def _users_converter(model: Any, data: Any, options: dict[str, Any]):
    """The converter as the user configured it: their own, or one from a SavedModel path with the case's settings."""
    import tensorflow as tf

    if not isinstance(model, str):
        return model if hasattr(model, "target_spec") else tf.lite.TFLiteConverter.from_keras_model(model)
    converter = tf.lite.TFLiteConverter.from_saved_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = data
    if options.get("mode") == "int8-strict":
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if options.get("io") == "int8":
        converter.inference_input_type = converter.inference_output_type = tf.int8
    return converter


def _first_sample(converter) -> Any:
    """The first sample the user's representative dataset yields (None without one)."""
    dataset = getattr(converter, "representative_dataset", None)
    if dataset is None:
        return None
    generator = dataset() if callable(dataset) else dataset.input_gen()
    return next(iter(generator), None)


def plain_original(name: str, tmp: Path) -> None:
    """The user's own conversion of a real-report case in this fresh process, as the report ran it: convert,
    then load, allocate and invoke the model in TensorFlow's interpreter on the first calibration sample.
    Prints one JSON line: outcome (error / runtime_error / converts), the converter's or the kernel's words,
    the ops left float, and the output names in order."""
    import numpy as np
    import tensorflow as tf

    model, data, options = _real_cases()[name](tmp)
    converter = _users_converter(model, data, options)
    sample = _first_sample(converter)
    try:
        flatbuffer = converter.convert()
    except Exception as error:  # noqa: BLE001 - the converter's own failure is the outcome
        print(json.dumps({"outcome": "error", "message": _words(str(error))}))
        return
    result: dict[str, Any] = {"outcome": "converts"}
    try:
        interpreter = tf.lite.Interpreter(model_content=flatbuffer)
        ops = interpreter._get_ops_details()
        tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
        result["float_ops"] = sorted({op["op_name"] for op in ops if op["op_name"] not in ("DEQUANTIZE", "QUANTIZE")
                                      and any(tensors[i]["dtype"] == np.float32 for i in op["outputs"] if i in tensors)})
        result["outputs"] = [d["name"] for d in interpreter.get_output_details()]
        interpreter.allocate_tensors()
        inputs = interpreter.get_input_details()
        values = list(sample.values()) if isinstance(sample, dict) else list(sample) if sample is not None else []
        for detail, value in zip(inputs, values):
            value = np.asarray(value)
            scale, zero = detail["quantization"]
            if np.issubdtype(detail["dtype"], np.integer) and scale and not np.issubdtype(value.dtype, np.integer):
                value = np.round(value / scale + zero)
            interpreter.set_tensor(detail["index"], value.reshape(detail["shape"]).astype(detail["dtype"]))
        interpreter.invoke()
    except Exception as error:  # noqa: BLE001 - the kernel's own failure is the outcome
        result.update(outcome="runtime_error", message=_words(str(error)))
    print(json.dumps(result))


def _words(message: str) -> str:
    """The line of a converter or kernel message that says what failed (the first error line, else the first)."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    for line in lines:
        if "error" in line.lower() and "traceback" not in line.lower():
            return line[:300]
    return (lines[0] if lines else "")[:300]


def original_outcome(name: str) -> dict[str, Any]:
    """The plain converter's outcome on a real-report case, in a fresh process: a crash is a signal."""
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        done = subprocess.run([sys.executable, __file__, "--plain-original", name, tmp], capture_output=True,
                              text=True, timeout=900)
        seconds = round(time.perf_counter() - started, 2)
    if done.returncode < 0:
        return {"outcome": f"crash (signal {-done.returncode})", "seconds": seconds}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"outcome": f"exit {done.returncode}", "message": _words(done.stderr[-2000:]), "seconds": seconds}
    return {**json.loads(lines[-1]), "seconds": seconds}


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per set: verified over the cases where a verified model exists, a blocked answer over the rest,
    conversions per fix, the time of a verified fix over one plain conversion of its model (median, max), and
    for real reports the median time of any fix over the user's own conversion attempt."""
    possible = [row for row in rows if row.get("possible", True)]
    impossible = [row for row in rows if not row.get("possible", True)]
    verified = [row for row in possible if row["verified"]]
    answered = [row for row in impossible if not row["verified"] and row["blocked"]]
    ratios = [row["ratio"] for row in rows if "ratio" in row]
    counts = [row["conversions"] for row in rows if row["conversions"] is not None]
    users = [row["fix_seconds"] / row["plain"]["seconds"] for row in rows if row.get("plain")]
    return {"cases": len(rows), "verified_model_exists": len(possible), "verified": len(verified),
            "share_verified": round(len(verified) / len(possible), 3) if possible else None,
            "cannot": len(impossible), "cannot_answered": len(answered),
            "share_cannot_answered": round(len(answered) / len(impossible), 3) if impossible else None,
            "median_conversions": statistics.median(counts) if counts else None,
            "median_ratio_to_plain_conversion": statistics.median(ratios) if ratios else None,
            "max_ratio_to_plain_conversion": max(ratios) if ratios else None,
            "median_ratio_to_users_conversion": round(statistics.median(users), 2) if users else None}


def write_markdown(results: dict[str, Any], path: Path) -> None:
    """bench/results/fix.md: the figures per set, and a row per real-report case (case, thread, plain outcome,
    quantdoctor's diagnosis, fix outcome)."""
    lines = ["# quantdoctor fix: bench/fix.py", "",
             "Written by `bench/fix.py` (cache off: `QUANTDOCTOR_NO_CACHE=1`). The ratio is the time of a verified fix, "
             "started cold (its workers import TensorFlow anew), over one plain conversion of the fixed model in a "
             "fresh process (TensorFlow's import included), measured in the same run on the same case.", "",
             "| set | cases | verified / a model exists | cannot, answered / cannot | median conversions | "
             "time ratio, median (max) |", "| --- | --- | --- | --- | --- | --- |"]
    for name, result in results.items():
        summary = result["summary"]
        lines.append(f"| {name} | {summary['cases']} | {summary['verified']} / {summary['verified_model_exists']} | "
                     f"{summary['cannot_answered']} / {summary['cannot']} | {summary['median_conversions']} | "
                     f"{summary['median_ratio_to_plain_conversion']} ({summary['max_ratio_to_plain_conversion']}) |")
    if "real" in results:
        lines += ["", "## Real reports", "",
                  "| case | thread | plain converter (TF 2.21) | quantdoctor diagnosis | fix outcome |",
                  "| --- | --- | --- | --- | --- |"]
        for row in results["real"]["cases"]:
            plain = row["plain"]["outcome"] + (f": {row['plain']['message']}" if row["plain"].get("message") else "")
            if row["plain"].get("float_ops"):
                plain += f" (float ops: {', '.join(row['plain']['float_ops'])})"
            lines.append(f"| {row['case']} | {REAL_EXPECTED[row['case']]['thread']} | {_cell(plain, 140)} | "
                         f"{_cell(', '.join(row.get('diagnosis') or []) or '-', 60)} | {_cell(_fix_outcome(row), 160)} |")
        lines += ["", "### Researched, not reproduced on TensorFlow 2.21 (not in the set)", ""]
        lines += [f"- {item['thread']}: {item['report']}. Now: {item['now']}." for item in NOT_REPRODUCED]
    path.write_text("\n".join(lines) + "\n")


def _fix_outcome(row: dict[str, Any]) -> str:
    """One cell: verified (with the repairs), blocked (with the codes), or the exception."""
    if row.get("exception"):
        return f"exception: {row['exception']}"
    applied = ", ".join(row.get("applied") or [])
    if row["verified"]:
        return f"verified ({applied or 'no repair'}; {row['conversions']} conversions, ratio {row.get('ratio')})"
    blocked = ", ".join(row.get("blocked") or [])
    return (f"not verified (applied: {applied or 'none'}; blocked: {blocked or 'none'}; left: "
            f"{', '.join(row.get('after') or []) or 'none'}; {row['conversions']} conversions)")


def _cell(text: str, limit: int) -> str:
    """Text for a Markdown table cell: one line, no pipes, at most `limit` characters."""
    text = " ".join(str(text).split()).replace("|", "/")
    return text if len(text) <= limit else text[:limit - 1] + "…"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", default="", help="run only the cases whose name contains this")
    parser.add_argument("--set", choices=("catalog", "real", "both"), default="both", help="which set to run")
    parser.add_argument("--plain", nargs=2, metavar=("CASE", "PLAN_DIR"), help=argparse.SUPPRESS)
    parser.add_argument("--plain-original", nargs=2, metavar=("CASE", "DIR"), help=argparse.SUPPRESS)
    parser.add_argument("--summarise", action="store_true",
                        help="only summarise bench/results/fix.json again and write bench/results/fix.md")
    parser.add_argument("--originals-only", action="store_true",
                        help="only run the plain converter on each real-report case, no fix")
    args = parser.parse_args()
    if args.plain:
        plain_conversion(args.plain[0], Path(args.plain[1]))
        return
    if args.plain_original:
        plain_original(args.plain_original[0], Path(args.plain_original[1]))
        return
    if args.summarise:
        results = json.loads((HERE / "results" / "fix.json").read_text())
        for result in results.values():
            for row in result["cases"]:
                row.update({"possible": False, "why": CATALOG_CANNOT[row["case"]]} if row["case"] in CATALOG_CANNOT
                           else REAL_EXPECTED.get(row["case"], {}))
            result["summary"] = summarise(result["cases"])
        (HERE / "results" / "fix.json").write_text(json.dumps(results, indent=2))
        write_markdown(results, HERE / "results" / "fix.md")
        return
    sets = {"catalog": _cases(), "real": _real_cases()}
    results: dict[str, Any] = {}
    for set_name, cases in sets.items():
        if args.set not in (set_name, "both"):
            continue
        rows = []
        for name, build in cases.items():
            if args.k not in name:
                continue
            row: dict[str, Any] = {"case": name}
            if name in CATALOG_CANNOT:
                row.update(possible=False, why=CATALOG_CANNOT[name])
            if set_name == "real":
                row.update(REAL_EXPECTED[name], plain=original_outcome(name))
            if not args.originals_only:
                with tempfile.TemporaryDirectory() as tmp:
                    row.update(run_case(name, build, Path(tmp)))
            rows.append(row)
            print(json.dumps(row), flush=True)
        results[set_name] = {"summary": summarise(rows) if not args.originals_only else None, "cases": rows}
    if args.originals_only:
        print(json.dumps(results, indent=2))
        return
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "fix.json").write_text(json.dumps(results, indent=2))
    write_markdown(results, HERE / "results" / "fix.md")
    print(json.dumps({name: result["summary"] for name, result in results.items()}, indent=2))

if __name__ == "__main__":
    main()
