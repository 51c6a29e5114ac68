"""Quantization-aware trained models: real tfmot 0.8.1 QAT models on tf_keras, converted through
`from_keras_model` converters built by the test, exactly as users build them."""

from __future__ import annotations

import pytest
import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras
from helpers import assert_finding, only, root
from models import dataset_from, vectors

import quantdoctor as qd
from quantdoctor.audit.quantizers import fake_quant_round_trips, input_ranges
from quantdoctor.audit.tflite_model import read_tflite

QAT_INT8_MESSAGE = "For full integer quantization, a `representative_dataset` must be specified."


class CumSum(tf_keras.layers.Layer):
    """A layer tfmot does not annotate: it leaves the tensor after it without a trained range."""

    def call(self, inputs):
        return tf.math.cumsum(inputs, axis=1)


@pytest.fixture(scope="module")
def qat_model():
    """A Sequential Dense model, quantization-aware trained for a few steps on N(0, 1) features."""
    tf_keras.backend.clear_session()  # Keras' default layer names: dense, dense_1
    tf_keras.utils.set_random_seed(0)
    model = tfmot.quantization.keras.quantize_model(tf_keras.Sequential([
        tf_keras.Input((8,)), tf_keras.layers.Dense(8, activation="relu"), tf_keras.layers.Dense(2)]))
    model.compile("adam", "mse")
    features = vectors(128)
    model.fit(features, features[:, :2], epochs=2, verbose=0)
    return model


def qat_converter(model, *, optimize: bool = True, int8_only: bool = False, io: tf.DType | None = None,
                  dataset=None) -> tf.lite.TFLiteConverter:
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if optimize:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if int8_only:
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if io is not None:
        converter.inference_input_type = converter.inference_output_type = io
    converter.representative_dataset = dataset
    return converter


@pytest.mark.code("QD301")
@pytest.mark.matcher("dataset-required")
def test_int8_only_qat_model_without_dataset_names_the_converters_blind_check_and_both_fixes_work(qat_model):
    report = qd.diagnose(qat_converter(qat_model, int8_only=True))
    finding = root(report)
    assert_finding(finding, "QD301", "calibration", "error")
    assert report.settings["qat_model"] is True and report.settings["mode"] == "int8-strict"
    assert finding.evidence["converter_message"] == QAT_INT8_MESSAGE
    assert "does not see the QAT ranges" in finding.message
    assert "Drop TFLITE_BUILTINS_INT8" in finding.fix.summary and "100-500" not in finding.fix.summary
    # Both fixes, on the real converter: without TFLITE_BUILTINS_INT8 the int8 I/O still applies and every op
    # is integer; with two samples (100x off the trained range) the trained ranges are kept all the same.
    dropped = read_tflite(qat_converter(qat_model, io=tf.int8).convert())
    assert [t.dtype for t in dropped.inputs + dropped.outputs] == ["INT8", "INT8"]
    assert {op.name for op in dropped.ops} == {"FULLY_CONNECTED"}
    tiny = read_tflite(qat_converter(qat_model, int8_only=True, dataset=dataset_from(vectors(2) * 100)).convert())
    assert input_ranges(tiny)["input_1"] == pytest.approx(input_ranges(dropped)["input_1"])


def test_int8_io_without_dataset_is_no_error_for_a_qat_model(qat_model):
    report = qd.diagnose(qat_converter(qat_model, io=tf.int8))
    assert report.verdict == "ok", [f.code for f in report.findings]
    assert report.settings["mode"] == "int8"
    assert [t["dtype"] for t in report.audit["input_types"] + report.audit["output_types"]] == ["int8", "int8"]
    assert report.audit["fully_integer"] is True


@pytest.mark.code("QD411")
def test_qat_model_without_optimizations_stays_float_with_fake_quant_round_trips(qat_model):
    report = qd.diagnose(qat_converter(qat_model, optimize=False))
    assert_finding(root(report), "QD411", "metadata", "error")
    assert report.settings["mode"] == "float"
    produced = read_tflite(report.tflite_model)
    assert len(fake_quant_round_trips(produced)) >= 3  # the input and each Dense's output
    assert "QD410" not in [f.code for f in report.findings]  # the cause is named once, by QD411
    assert only(report, "QD411").fix.code == "converter.optimizations = [tf.lite.Optimize.DEFAULT]"


@pytest.mark.code("QD205")
@pytest.mark.matcher("io-types-must-be-float")
def test_int8_io_on_an_unoptimized_qat_model_is_refused_and_the_fix_is_optimizations(qat_model):
    report = qd.diagnose(qat_converter(qat_model, optimize=False, io=tf.int8))
    finding = root(report)
    assert_finding(finding, "QD205", "dtype_mismatch", "error")
    assert finding.evidence["converter_message"] == "The inference_input_type and inference_output_type must be tf.float32."
    assert finding.fix.code == "converter.optimizations = [tf.lite.Optimize.DEFAULT]"
    assert "QD411" not in [f.code for f in report.findings]


@pytest.mark.code("QD410")
def test_partly_qat_model_keeps_a_fake_quant_round_trip_without_dataset():
    """quantize_apply on a functional model: the Dense after an unannotated layer has no trained input range."""
    tf_keras.backend.clear_session()  # Keras' default layer names: dense, dense_1
    tf_keras.utils.set_random_seed(0)
    annotate = tfmot.quantization.keras.quantize_annotate_layer
    inputs = tf_keras.Input((8,))
    hidden = CumSum()(annotate(tf_keras.layers.Dense(8, activation="relu"))(inputs))
    annotated = tf_keras.Model(inputs, annotate(tf_keras.layers.Dense(2))(hidden))
    with tfmot.quantization.keras.quantize_scope({"CumSum": CumSum}):
        model = tfmot.quantization.keras.quantize_apply(annotated)
    report = qd.diagnose(qat_converter(model))
    finding = only(report, "QD410")
    assert_finding(finding, "QD410", "metadata", "warning", layer="quant_dense_1", op="QUANTIZE")
    assert report.settings["qat_model"] is True
    assert "representative_dataset" in finding.fix.code


@pytest.mark.code("QD412", "QD308", "QD314")
def test_eval_data_outside_the_trained_input_range(qat_model):
    calibration = vectors(20)
    report = qd.diagnose(qat_converter(qat_model, dataset=dataset_from(calibration)), eval_data=calibration * 100)
    finding = only(report, "QD412")
    assert_finding(finding, "QD412", "metadata", "error", input="input_1")
    low, high = finding.evidence["qat_range"]
    assert low < -1 and high > 1 and finding.evidence["eval_data"]["clipped_fraction"] > 0.9
    assert "calibration_data" not in finding.evidence  # the calibration samples are within the trained range
    # Findings that judge the samples as a source of ranges are only informative for a QAT model.
    assert_finding(only(report, "QD308"), "QD308", "calibration", "info")
    assert_finding(only(report, "QD314"), "QD314", "calibration", "info")
    assert "trained ranges are used" in only(report, "QD308").message


def test_a_qat_model_tfmot_saved_to_h5_loads_as_tfmots_guide_loads_it(qat_model, tmp_path):
    """tf_keras cannot deserialize tfmot's QuantizeLayer/QuantizeWrapperV2 by itself (the file failed to load
    with "Unknown layer: 'QuantizeLayer'"): the worker loads it under tfmot's quantize_scope."""
    path = tmp_path / "qat.h5"
    qat_model.save(path)
    report = qd.diagnose(path, vectors(120))
    assert report.conversion["outcome"] == "ok" and report.settings["qat_model"]
    assert report.audit["fully_integer"]
