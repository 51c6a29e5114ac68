"""QD1xx against tiny models that really trigger each signature under the pinned TensorFlow."""

from __future__ import annotations

import keras
import pytest
import tensorflow as tf
from helpers import assert_finding, only, root
from models import (
    dataset_from,
    int8_converter,
    keras_converter,
    keras_source,
    lambda_layer,
    lstm_model,
    vectors,
    with_layer,
)

import quantdoctor as qd
from quantdoctor.environment import current


def square(x):
    """(batch, 8) -> (batch, 2, 2): a stack of small square matrices."""
    return tf.reshape(x, (-1, 2, 2, 2))


@pytest.mark.code("QD101")
@pytest.mark.matcher("op-neither-custom-nor-flex")
def test_flex_only_op_names_the_layer_and_says_select_tf_ops_helps():
    model = with_layer(lambda_layer(lambda x: tf.reshape(tf.linalg.det(square(x)), (-1, 2)), "my_det"))
    report = qd.diagnose(int8_converter(model, dataset_from(vectors(20))))
    finding = root(report)
    assert_finding(finding, "QD101", "unsupported_op", "error", layer="my_det", op="tf.MatrixDeterminant")
    assert finding.evidence["error_code"] == "ERROR_NEEDS_FLEX_OPS"
    assert finding.evidence["converter_message"] == "'tf.MatrixDeterminant' op is neither a custom op nor a flex op"
    assert "SELECT_TF_OPS" in finding.fix.code
    assert report.verdict == "failed"


@pytest.mark.code("QD102")
def test_op_without_any_kernel_says_select_tf_ops_does_not_help():
    model = with_layer(lambda_layer(lambda x: tf.math.igamma(tf.abs(x) + 1.0, tf.abs(x) + 1.0), "my_igamma"))
    report = qd.diagnose(model, dataset_from(vectors(20)), select_tf_ops=True)
    finding = root(report)
    assert_finding(finding, "QD102", "unsupported_op", "error", layer="my_igamma", op="tf.Igamma")
    assert "not available through Select TF ops" in finding.message


@pytest.mark.code("QD103")
@pytest.mark.matcher("tensor-list-lowering")
def test_lstm_with_dynamic_batch_explains_static_batch_and_select_tf_ops():
    report = qd.diagnose(int8_converter(lstm_model(batch_size=None), dataset_from(vectors(20, 40).reshape(20, 10, 4))))
    finding = root(report)
    assert_finding(finding, "QD103", "unsupported_op", "error", layer="my_lstm")
    assert finding.evidence["converter_message"] == ("'tf.TensorListReserve' op requires element_shape to be static "
                                                      "during TF Lite transformation pass")
    assert "batch_size=1" in finding.fix.code and "_experimental_lower_tensor_list_ops = False" in finding.fix.code


@pytest.mark.code("QD108")
def test_lstm_with_static_batch_crashes_the_calibrator_and_the_crash_is_diagnosed():
    report = qd.diagnose(int8_converter(lstm_model(batch_size=1), dataset_from(vectors(120, 40).reshape(120, 10, 4))))
    assert report.conversion["outcome"] == "crash"
    finding = root(report)
    assert_finding(finding, "QD108", "unsupported_op", "error", layer="my_lstm")
    assert finding.evidence["signal"] == "SIGSEGV"
    assert finding.evidence["stage"].startswith("calibrating")


def test_unrolled_lstm_quantizes_fully_as_the_fix_promises():
    inputs = keras.Input((10, 4))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.LSTM(8, unroll=True, name="my_lstm")(inputs)))
    report = qd.diagnose(int8_converter(model, dataset_from(vectors(120, 40).reshape(120, 10, 4)), strict=True))
    assert report.conversion["outcome"] == "ok"
    assert report.audit["fully_integer"] is True


@pytest.mark.code("QD104")
@pytest.mark.matcher("legacy-quantizer-no-int8")
def test_legacy_quantizer_refuses_an_op_without_int8_kernel():
    model = with_layer(lambda_layer(lambda x: tf.math.atan2(x, x + 2.0), "my_atan2"))
    converter = int8_converter(model, dataset_from(vectors(20)), strict=True)
    converter.experimental_new_quantizer = False
    finding = root(qd.diagnose(converter))
    assert_finding(finding, "QD104", "unsupported_op", "error", op="ATAN2")
    assert finding.evidence["converter_message"] == "Quantization not yet supported for op: 'ATAN2'"


@pytest.mark.code("QD105")
def test_op_left_float_under_int8_only_settings_is_an_error_naming_the_layer():
    model = with_layer(lambda_layer(lambda x: tf.math.cumsum(x, axis=-1), "my_cumsum"))
    report = qd.diagnose(int8_converter(model, dataset_from(vectors(120)), strict=True, int8_io=True))
    assert report.conversion["outcome"] == "ok"
    finding = root(report)
    assert_finding(finding, "QD105", "unsupported_op", "error", layer="my_cumsum", op="CUMSUM")
    assert report.audit["fully_integer"] is False
    assert {"op": "CUMSUM", "layer": "my_cumsum"}.items() <= report.audit["float_ops"][0].items()
    assert report.verdict == "converted_with_problems"
    assert report.settings["target"] == "int8-accelerator"  # implied by integer-only settings
    assert only(report, "QD110").evidence["islands"][0]["layers"] == ["my_cumsum"]


@pytest.mark.code("QD106")
def test_flex_op_converts_with_select_tf_ops_and_is_reported_in_the_model():
    det = lambda_layer(lambda x: tf.reshape(tf.linalg.det(square(x)), (-1, 2)), "my_det")
    report = qd.diagnose(with_layer(det), mode="dynamic", select_tf_ops=True)
    assert report.conversion["outcome"] == "ok"
    flex = only(report, "QD106")
    assert_finding(flex, "QD106", "unsupported_op", "warning")
    assert flex.evidence["flex_ops"] == ["FlexMatrixDeterminant"]


@pytest.mark.code("QD107")
def test_custom_op_allowed_by_the_user_is_reported_in_the_model():
    svd = lambda_layer(lambda x: tf.reshape(tf.linalg.svd(square(x), compute_uv=False), (-1, 4)), "my_svd")
    converter = keras_converter(with_layer(svd))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.allow_custom_ops = True
    custom = only(qd.diagnose(converter), "QD107")
    assert_finding(custom, "QD107", "unsupported_op", "warning")
    assert custom.evidence["custom_ops"] == ["Svd"]


@pytest.mark.code("QD109")
@pytest.mark.matcher("kernel-failed-to-prepare")
def test_flex_op_blocks_int8_calibration():
    det = lambda_layer(lambda x: tf.reshape(tf.linalg.det(square(x)), (-1, 2)), "my_det")
    report = qd.diagnose(keras_source(with_layer(det)), dataset_from(vectors(120)), select_tf_ops=True)
    if current().tensorflow_release in ("2.16", "2.18"):
        # TF 2.16's and 2.18's calibrators still run Flex ops: the model converts, the Flex runtime its only cost.
        assert report.conversion["outcome"] == "ok" and [f.code for f in report.findings] == ["QD106"], report
        return
    finding = root(report)
    assert_finding(finding, "QD109", "unsupported_op", "error", op="FlexMatrixDeterminant")
    assert "(FlexMatrixDeterminant) failed to prepare" in finding.evidence["converter_message"]
    assert "representative_dataset = None" in finding.fix.code


@pytest.mark.code("QD109")
@pytest.mark.matcher("kernel-failed-to-prepare", "unresolved-custom-op")
def test_custom_op_blocks_int8_calibration():
    svd = lambda_layer(lambda x: tf.reshape(tf.linalg.svd(square(x), compute_uv=False), (-1, 4)), "my_svd")
    converter = int8_converter(with_layer(svd), dataset_from(vectors(120)))
    converter.allow_custom_ops = True
    finding = root(qd.diagnose(converter))
    assert_finding(finding, "QD109", "unsupported_op", "error", op="Svd")
    assert "a custom op" in finding.message
    assert finding.evidence["converter_message"] == "Encountered unresolved custom op: Svd"
