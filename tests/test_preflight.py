"""Preflight (`convert=False`): the outcome predicted from the graph, the settings and the data."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_finding, only, root
from models import (
    Float64Scale,
    dataset_from,
    image_model,
    int8_converter,
    lambda_layer,
    lstm_model,
    smooth_images,
    vectors,
    with_layer,
)

import quantdoctor as qd


def preflight(model, data=None, **options):
    report = qd.diagnose(model, data, convert=False, **options)
    assert report.conversion == {"attempted": False, "outcome": "skipped", "seconds": report.conversion["seconds"],
                                 "error_excerpt": None, "model_bytes": None}
    return report


def det_layer():
    return lambda_layer(lambda x: tf.reshape(tf.linalg.det(tf.reshape(x, (-1, 2, 2, 2))), (-1, 2)), "my_det")


def test_clean_model_is_predicted_fully_integer_with_every_op_classified():
    report = preflight(image_model(), smooth_images(120), mode="int8-strict")
    assert report.preflight["verdict"] == "fully_integer" and report.findings == []
    classes = {op["op"]: op["class"] for op in report.preflight["ops"]}
    assert classes["Conv2D"] == "int8" and classes["MatMul"] == "int8"
    conv = next(op for op in report.preflight["ops"] if op["op"] == "Conv2D")
    assert conv["layers"] == ["conv"]


@pytest.mark.code("QD101")
def test_flex_op_is_predicted_to_fail_and_named():
    report = preflight(with_layer(det_layer()), vectors(120))
    assert report.preflight["verdict"] == "will_fail"
    assert_finding(root(report), "QD101", "unsupported_op", "error", layer="my_det", op="tf.MatrixDeterminant")


@pytest.mark.code("QD109")
def test_flex_op_with_select_tf_ops_and_calibration_is_predicted_to_fail_calibration():
    report = preflight(with_layer(det_layer()), vectors(120), select_tf_ops=True)
    assert_finding(root(report), "QD109", "unsupported_op", "error", layer="my_det")


def test_op_without_kernel_is_predicted():
    igamma = lambda_layer(lambda x: tf.math.igamma(tf.abs(x) + 1.0, tf.abs(x) + 1.0), "my_igamma")
    assert_finding(root(preflight(with_layer(igamma), vectors(120))), "QD102", "unsupported_op", "error",
                   layer="my_igamma", op="tf.Igamma")


@pytest.mark.code("QD105")
def test_op_without_int8_kernel_is_predicted_to_stay_float():
    cumsum = lambda_layer(lambda x: tf.math.cumsum(x, axis=-1), "my_cumsum")
    report = preflight(with_layer(cumsum), vectors(120), mode="int8-strict")
    assert report.preflight["verdict"] == "converts_with_float_ops"
    assert_finding(only(report, "QD105"), "QD105", "unsupported_op", "error", layer="my_cumsum", op="tf.Cumsum")


@pytest.mark.code("QD202")
def test_float64_math_is_predicted_as_a_dtype_problem():
    report = preflight(with_layer(Float64Scale(name="to_f64")), vectors(120))
    assert_finding(root(report), "QD202", "dtype_mismatch", "error", layer="to_f64")


def test_recurrent_loops_are_predicted_for_dynamic_and_static_batch():
    sequences = vectors(120, 40).reshape(120, 10, 4)
    assert_finding(root(preflight(lstm_model(batch_size=None), sequences)), "QD103", "unsupported_op", "error",
                   layer="my_lstm")
    assert_finding(root(preflight(lstm_model(batch_size=1), sequences)), "QD108", "unsupported_op", "error",
                   layer="my_lstm")
    assert preflight(lstm_model(batch_size=1), mode="dynamic").preflight["verdict"] == "converts_with_float_ops"


def test_data_errors_make_the_prediction_fail():
    report = preflight(image_model(), smooth_images(120).astype(np.float64))
    assert report.preflight["verdict"] == "will_fail"
    assert root(report).code == "QD201"


def test_every_diagnose_records_the_prediction_next_to_the_outcome():
    cumsum = lambda_layer(lambda x: tf.math.cumsum(x, axis=-1), "my_cumsum")
    converted = qd.diagnose(int8_converter(with_layer(cumsum), dataset_from(vectors(120)), strict=True))
    assert converted.preflight["verdict"] == converted.preflight["actual"] == "converts_with_float_ops"
    failed = qd.diagnose(with_layer(det_layer()), vectors(120))
    assert failed.preflight["verdict"] == failed.preflight["actual"] == "will_fail"
    assert 0 <= converted.preflight["seconds"] < 5


@pytest.mark.code("QD404")
def test_unknown_spatial_dimensions_are_flagged_for_integer_targets():
    import keras

    model = keras.Sequential([keras.Input((None, None, 3), name="image"), keras.layers.Conv2D(4, 3),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)], name="any_size")
    report = preflight(model, smooth_images(120), mode="int8-strict")
    finding = only(report, "QD404")
    assert_finding(finding, "QD404", "metadata", "warning", input="image")
    assert finding.evidence["shape"] == [None, None, None, 3]
    assert only(preflight(model, smooth_images(120)), "QD404").severity == "info"
