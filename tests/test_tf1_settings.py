"""QD208: TF1 converter settings on a TF2 converter, each reported with what TF2 does instead."""

from __future__ import annotations

import pytest
import tensorflow as tf
from helpers import assert_finding
from models import dataset_from, image_model, int8_converter, smooth_images

import quantdoctor as qd
from quantdoctor import tf_private
from quantdoctor.catalog.tf1_settings import explained
from quantdoctor.intake.recipe import Recipe


def test_every_setting_tensorflow_keeps_for_tf1_is_explained():
    assert [name for name in tf_private.tf1_only_converter_attributes() if not explained(name)] == []


@pytest.mark.code("QD208")
def test_each_tf1_setting_is_reported_and_the_model_is_what_tf2_made_of_it():
    converter = int8_converter(image_model(), dataset_from(smooth_images(8)))
    converter.inference_type = tf.uint8
    converter.quantized_input_stats = {"image": (128.0, 127.0)}
    converter.default_ranges_stats = (0, 6)
    converter.change_concat_input_ranges = True
    converter.reorder_across_fake_quant = True
    report = qd.diagnose(converter)
    found = {f.location.setting: f for f in report.findings if f.code == "QD208"}
    assert sorted(found) == ["change_concat_input_ranges", "default_ranges_stats", "inference_type",
                             "quantized_input_stats", "reorder_across_fake_quant"]
    for name, finding in found.items():
        assert_finding(finding, "QD208", "dtype_mismatch", "warning", setting=name)
        assert "TF2 never reads it" in finding.message
    assert found["inference_type"].evidence["value"] == "uint8"
    assert "converter.inference_input_type = tf.uint8" in found["inference_type"].fix.code
    assert found["quantized_input_stats"].evidence["value"] == {"image": [128.0, 127.0]}
    assert "(raw - mean) / std" in found["quantized_input_stats"].fix.code
    # What TF2 made: an int8 graph whose I/O follow inference_input_type (float32), not inference_type.
    assert report.audit["fully_integer"] is True
    assert [t["dtype"] for t in report.audit["input_types"] + report.audit["output_types"]] == ["float32", "float32"]


@pytest.mark.code("QD208")
def test_post_training_quantize_on_a_tf2_converter_quantizes_nothing():
    converter = tf.lite.TFLiteConverter.from_keras_model(image_model())
    converter.post_training_quantize = True
    converter.target_ops = {tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS}
    report = qd.diagnose(converter)
    found = {f.location.setting: f for f in report.findings if f.code == "QD208"}
    assert_finding(found["post_training_quantize"], "QD208", "dtype_mismatch", "warning",
                   setting="post_training_quantize")
    assert found["post_training_quantize"].fix.code == "converter.optimizations = [tf.lite.Optimize.DEFAULT]"
    assert found["target_ops"].evidence["value"] == ["SELECT_TF_OPS", "TFLITE_BUILTINS"]
    assert "supported_ops = [tf.lite.OpsSet.SELECT_TF_OPS, tf.lite.OpsSet.TFLITE_BUILTINS]" in found["target_ops"].fix.code
    assert report.settings["mode"] == "float"
    assert {op["op"] for op in report.audit["float_ops"]} == {"CONV_2D", "MEAN", "FULLY_CONNECTED"}


def test_a_tf1_converter_reads_its_own_settings_and_is_not_flagged():
    with tf.Graph().as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, 4], name="x")
        with tf.compat.v1.Session() as session:
            converter = tf.compat.v1.lite.TFLiteConverter.from_session(session, [x], [x * 2.0])
    converter.inference_type = tf.uint8
    converter.quantized_input_stats = {"x": (128.0, 127.0)}
    assert Recipe.from_converter(converter).tf1_settings == {}
