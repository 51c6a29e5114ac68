"""The run check after every conversion: models that convert but do not run (QD112), and outputs that
collapse (QD504) or drown in noise (QD507) on the calibration samples, without eval data."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_finding, only, root
from models import dataset_from, image_model, smooth_images, vectors

import quantdoctor as qd
from quantdoctor.isolation.runner import run_isolated


def fused_layer_norm(x):
    """What tf_keras' LayerNormalization computes: a fused batch norm over each sample (NCHW)."""
    shape = tf.shape(x)
    folded = tf.reshape(x, [1, shape[0], shape[1], 1])
    normed, _, _ = tf.compat.v1.nn.fused_batch_norm(folded, scale=tf.ones([shape[0]]), offset=tf.zeros([shape[0]]),
                                                     epsilon=1e-3, data_format="NCHW")
    return tf.reshape(normed, shape)


def fresh_names() -> None:
    """Keras numbers default layer names per session: start over, so the first Dense is 'dense'."""
    keras.backend.clear_session()


def layer_norm_model(norm) -> keras.Model:
    """Dense -> the normalization `norm()` makes -> Dense, with default layer names."""
    fresh_names()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16,), batch_size=1)
    hidden = keras.layers.Dense(16)(inputs)
    return keras.Model(inputs, keras.layers.Dense(4)(norm()(hidden)))


def runs_in_litert(tflite: bytes, row: np.ndarray, tmp_path) -> bool:
    """Whether LiteRT allocates and invokes the model on `row`, in a process of its own."""
    (tmp_path / "fixed.tflite").write_bytes(tflite)
    np.savez(tmp_path / "row.npz", x=row)
    request = {"model": str(tmp_path / "fixed.tflite"), "sample": str(tmp_path / "row.npz"),
               "response": str(tmp_path / "probe.json"), "invoke": True}
    run = run_isolated("quantdoctor.runtime.probe", request, tmp_path, 120)
    return run.outcome == "done" and run.response["outcome"] == "ok"


@pytest.mark.code("QD112")
def test_int16_layer_norm_that_aborts_the_interpreter_is_pinned_to_its_op_and_the_fix_runs(tmp_path):
    data = vectors(30, features=16)
    model = layer_norm_model(lambda: keras.layers.Lambda(fused_layer_norm))
    report = qd.diagnose(model, data, mode="int16x8")
    assert report.conversion["outcome"] == "ok"
    finding = root(report)
    assert_finding(finding, "QD112", "unsupported_op", "error", layer="lambda", op="SUB")
    assert finding.message.startswith("The converted model does not run in LiteRT: the interpreter was killed by "
                                      "SIGABRT while allocating its tensors (preparing every op) on op #10 SUB in "
                                      "layer 'lambda' (int16) on a calibration sample")
    assert finding.evidence["stage"] == "allocating" and finding.evidence["signal"] == "SIGABRT"
    assert "denylisted_nodes=['functional_1/lambda_1/FusedBatchNormV311']" in finding.fix.code
    assert "quantize to int8 instead of 16x8" in finding.fix.summary

    converter = tf.lite.TFLiteConverter.from_keras_model(model)  # the user's 16x8 conversion, fixed as told
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    converter.representative_dataset = representative_dataset = dataset_from(data)
    namespace = {"tf": tf, "converter": converter, "representative_dataset": representative_dataset}
    exec(finding.fix.code.split("# or quantize to int8")[0], namespace)
    assert runs_in_litert(namespace["tflite_model"], data[:1], tmp_path)


def test_tf_keras_layer_norm_under_int16x8():
    tf_keras = pytest.importorskip("tf_keras")
    tf_keras.backend.clear_session()
    tf.random.set_seed(0)
    inputs = tf_keras.Input((16,), batch_size=1)
    normed = tf_keras.layers.LayerNormalization()(tf_keras.layers.Dense(16)(inputs))
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(4)(normed))
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    converter.representative_dataset = dataset_from(vectors(30, features=16))
    finding = root(qd.diagnose(converter))
    assert_finding(finding, "QD112", "unsupported_op", "error", layer="layer_normalization")
    assert finding.evidence["signal"] == "SIGABRT"


@pytest.mark.code("QD112")
def test_keras_layer_norm_under_int16x8_with_float_fallback_fails_to_invoke():
    converter = tf.lite.TFLiteConverter.from_keras_model(layer_norm_model(keras.layers.LayerNormalization))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8,
                                           tf.lite.OpsSet.TFLITE_BUILTINS]
    converter.representative_dataset = dataset_from(vectors(30, features=16))
    report = qd.diagnose(converter)
    finding = only(report, "QD112")
    assert_finding(finding, "QD112", "unsupported_op", "error", layer="layer_normalization",
                   op="SQUARED_DIFFERENCE")
    assert "the interpreter fails to invoke on op #" in finding.message
    assert finding.message.endswith("SquaredDifference only supports FLOAT32 and INT32 now, got 7.")
    assert report.root_cause is finding


def test_a_model_that_runs_is_checked_on_calibration_rows_or_on_zeros():
    checked = qd.diagnose(image_model(), smooth_images(20))
    assert checked.audit["run_check"]["outcome"] == "ok" and checked.audit["run_check"]["sample"] == "calibration"
    assert checked.audit["run_check"]["rows"] == 20 and len(checked.audit["run_check"]["outputs"]) == 1
    assert not [f for f in checked.findings if f.code in ("QD112", "QD504", "QD507")]
    without_data = qd.diagnose(image_model(), mode="float16")
    assert without_data.audit["run_check"]["outcome"] == "ok" and without_data.audit["run_check"]["sample"] == "zeros"
    free_size = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(2, 3)])
    skipped = qd.diagnose(free_size, mode="dynamic")  # zeros of size 1x1 would fail a 3x3 convolution
    assert skipped.audit["run_check"]["outcome"] == "skipped" and "QD112" not in [f.code for f in skipped.findings]


def detector_with_split_outputs() -> keras.Model:
    """Boxes in pixels and scores in 0..1 concatenated, then split into two outputs again."""
    fresh_names()
    keras.utils.set_random_seed(1)
    inputs = keras.Input((8,))
    trunk = keras.layers.Dense(16, activation="relu")(inputs)
    boxes = keras.layers.Rescaling(640.0)(keras.layers.Dense(4)(trunk))
    merged = keras.layers.Concatenate()([boxes, keras.layers.Dense(2, activation="sigmoid")(trunk)])
    return keras.Model(inputs, [keras.layers.Lambda(lambda t: t[:, :4])(merged),
                                keras.layers.Lambda(lambda t: t[:, 4:])(merged)])


@pytest.mark.code("QD504", "QD506")
def test_probabilities_that_all_quantize_to_one_value_are_an_error_without_eval_data():
    report = qd.diagnose(detector_with_split_outputs(), vectors(50), mode="int8-strict", io="int8")
    collapsed = only(report, "QD504")
    assert_finding(collapsed, "QD504", "accuracy", "error", layer="lambda_1")
    assert collapsed.message.startswith("On 50 calibration sample(s), quantized output 'StatefulPartitionedCall_1:1' "
                                        "(layer 'lambda_1') takes 1 value(s) (scale ")
    crushed = root(report)  # the cause: the merge that gave the scores the boxes' scale
    assert_finding(crushed, "QD506", "accuracy", "error", layer="concatenate", op="CONCATENATION")
    assert "the input from layer 'dense_2' (calibrated range 0.9961)" in crushed.message
    assert report.verdict == "converted_with_problems"


@pytest.mark.code("QD507")
def test_a_difference_lost_in_its_inputs_quantization_is_an_output_destroyed():
    fresh_names()
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda t: t[:, 1:] - t[:, :1])(inputs))
    rng = np.random.default_rng(0)
    position = rng.uniform(0, 640, (50, 1))  # two positions in pixels, about one pixel apart
    data = np.concatenate([position, position + rng.uniform(-1, 1, (50, 1))], axis=1).astype(np.float32)
    finding = only(qd.diagnose(model, data), "QD507")
    assert_finding(finding, "QD507", "accuracy", "error", layer="lambda")
    assert finding.evidence["sqnr_db"] <= 3.0 and finding.evidence["calibration_rows"] == 50


@pytest.mark.code("QD518")
def test_an_output_channel_crushed_by_a_larger_one_is_lost_though_the_whole_output_looks_healthy():
    """One Dense, default names: channel 0 in the hundreds sets the output's scale (about 4), channel 1
    (about +-0.2) rounds to 0. The whole output's SQNR is high; the channel is gone."""
    fresh_names()
    inputs = keras.Input((4,))
    head = keras.layers.Dense(2)
    model = keras.Model(inputs, head(inputs))
    head.set_weights([np.array([[500, 0.1], [-400, -0.1], [300, 0.1], [-200, 0.1]], np.float32), np.zeros(2, np.float32)])

    report = qd.diagnose(model, vectors(50, 4))
    finding = only(report, "QD518")
    assert_finding(finding, "QD518", "accuracy", "warning", layer="dense")
    assert report.verdict == "converted_with_problems" and "QD507" not in [f.code for f in report.findings]
    assert finding.evidence["lost_channels"] == [1] and finding.evidence["sqnr_db"] > 20
    assert "loses channel(s) 1 (last axis)" in finding.message

    compared = qd.compare(model, vectors(50, 4), eval_data=vectors(20, 4, seed=3))
    lost = only(compared, "QD518")  # measured again on the eval data: reported once
    assert lost.evidence["lost_channels"] == [1] and lost.message.startswith("Over the eval samples")


@pytest.mark.code("QD518")
def test_an_output_that_loses_most_of_its_channels_is_an_error_and_never_verified():
    """Three small scores beside a fourth held at -1000 (one scale for all four): the three round to a constant.
    The output's SQNR is high and its values are no probabilities, yet it says nothing of what the float model
    says: an error in diagnose and compare. fix called the plain INT8 model verified, its budget "met" by the whole
    output's SQNR (79 dB): it now judges every channel and keeps the head float."""
    fresh_names()
    inputs = keras.Input((8,))
    head = keras.layers.Dense(4)
    model = keras.Model(inputs, head(inputs))
    kernel = np.random.default_rng(3).normal(size=(8, 4)).astype(np.float32) * 0.01
    kernel[:, 3] = 0.0
    head.set_weights([kernel, np.array([0.0, 0.0, 0.0, -1000.0], np.float32)])

    report = qd.diagnose(model, vectors(120, 8))
    finding = only(report, "QD518")
    assert_finding(finding, "QD518", "accuracy", "error", layer="dense")
    assert finding.evidence["lost_channels"] == [0, 1, 2] and finding.evidence["channels"] == 4
    compared = only(qd.compare(model, vectors(120, 8), eval_data=vectors(60, 8, seed=4)), "QD518")
    assert compared.severity == "error" and compared.evidence["lost_channels"] == [0, 1, 2]
    fixed = qd.fix(model, vectors(120, 8), eval_data=vectors(60, 8, seed=4))
    budget = fixed.after.budget
    assert budget["objective"]["description"] == "every output channel SQNR at least 12 dB"
    assert budget["int8_value"] < 12 and budget["chosen"]["float_ops"] == 1 and fixed.verified
