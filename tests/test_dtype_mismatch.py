"""QD2xx against tiny models and data that really trigger each signature under the pinned TensorFlow."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_finding, root
from models import Float64Scale, dataset_from, image_model, int8_converter, smooth_images, vectors, with_layer

import quantdoctor as qd


@pytest.mark.code("QD201", "QD308", "QD309")
@pytest.mark.matcher("set-tensor-type")
def test_seed_example_3_float64_random_samples_root_cause_is_the_dtype():
    def representative_dataset_gen():
        for _ in range(10):
            yield [np.random.rand(1, 16, 16, 3)]

    report = qd.diagnose(int8_converter(image_model(), representative_dataset_gen))
    finding = root(report)
    assert_finding(finding, "QD201", "dtype_mismatch", "error", input="image")
    assert ".astype(np.float32)" in finding.fix.code
    assert "FLOAT64" in finding.evidence["converter_message"]  # the converter's own words, confirmed
    others = {f.code: f for f in report.findings}
    assert_finding(others["QD308"], "QD308", "calibration", "warning")
    assert_finding(others["QD309"], "QD309", "calibration", "warning", input="image")
    assert [f.code for f in report.findings] == ["QD201", "QD309", "QD308"]


@pytest.mark.code("QD202")
def test_float64_inside_the_graph_is_a_dtype_problem_not_an_unsupported_mul():
    report = qd.diagnose(int8_converter(with_layer(Float64Scale(name="to_f64")), dataset_from(vectors(120))))
    finding = root(report)
    assert_finding(finding, "QD202", "dtype_mismatch", "error", layer="to_f64")
    assert finding.location.op in ("tf.Mul", "tf.AddV2")
    assert not [f for f in report.findings if f.code == "QD101"]


@pytest.mark.code("QD203")
@pytest.mark.matcher("float16-with-int8-only")
def test_seed_example_2_float16_with_int8_only_ops():
    converter = int8_converter(image_model(), dataset_from(smooth_images(120)), strict=True)
    converter.target_spec.supported_types = [tf.float16]
    finding = root(qd.diagnose(converter))
    assert_finding(finding, "QD203", "dtype_mismatch", "error")
    assert finding.evidence["converter_message"].startswith("As full integer quantization has been enabled")


@pytest.mark.code("QD204")
@pytest.mark.matcher("set-tensor-type")
def test_integer_samples_for_a_float_input():
    images = (smooth_images(120) * 255).astype(np.int32)
    finding = root(qd.diagnose(int8_converter(image_model(), dataset_from(images))))
    assert_finding(finding, "QD204", "dtype_mismatch", "error", input="image")
    assert finding.evidence["sample_dtype"] == "int32"
    assert "INT32" in finding.evidence["converter_message"]


@pytest.mark.code("QD205")
@pytest.mark.matcher("io-types-must-be-float")
def test_int8_io_without_representative_dataset():
    converter = int8_converter(image_model(), None, int8_io=True)
    report = qd.diagnose(converter)
    finding = root(report)
    assert_finding(finding, "QD205", "dtype_mismatch", "error")
    assert "must be tf.float32" in finding.evidence["converter_message"]
    assert len(report.findings) == 1


@pytest.mark.code("QD206", "QD302")
def test_empty_dataset_silently_drops_int8_io_and_integer_ops():
    def empty():
        return iter([])

    report = qd.diagnose(int8_converter(image_model(), empty, strict=True, int8_io=True))
    assert report.conversion["outcome"] == "ok"  # the converter says nothing
    assert_finding(root(report), "QD302", "calibration", "error")
    io = [f for f in report.findings if f.code == "QD206"]
    assert {f.evidence["produced"] for f in io} == {"float32"} and len(io) == 2
    assert_finding(io[0], "QD206", "dtype_mismatch", "error")
    assert any(f.code == "QD105" for f in report.findings)


@pytest.fixture
def mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_float16")
    yield
    keras.mixed_precision.set_global_policy("float32")


@pytest.mark.code("QD207")
def test_mixed_float16_policy_layers(mixed_precision):
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8, name="dense_fp16"),
                              keras.layers.Dense(2, name="head", dtype="float32")], name="mixed")
    report = qd.diagnose(model, dataset_from(vectors(120)))
    finding = root(report)
    assert_finding(finding, "QD207", "dtype_mismatch", "error", layer="dense_fp16")
    assert finding.evidence["op_types"].count("f16")
