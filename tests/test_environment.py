"""QD9xx: a converter process that really crashes, hangs past its limit, runs out of memory, or fails oddly."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_finding, only, root
from models import dataset_from, image_model, int8_converter, smooth_images, vectors

import quantdoctor as qd
from quantdoctor.environment import current

pytestmark = pytest.mark.cold_spawn  # crashes, hangs and limits of a real cold process


@pytest.mark.code("QD901")
@pytest.mark.matcher("stage-calibrating")
def test_native_crash_during_calibration_is_a_finding_not_a_dead_process():
    model = keras.Sequential([keras.Input((None, None, 3), name="image"), keras.layers.Conv2D(4, 3, name="conv"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)], name="any_size")
    tiny_images = smooth_images(120, size=2)  # smaller than the 3x3 kernel: SIGFPE in the float conv
    report = qd.diagnose(int8_converter(model, dataset_from(tiny_images)))
    assert report.conversion["outcome"] == "crash"
    finding = root(report)
    assert_finding(finding, "QD901", "environment", "error")
    assert finding.evidence["signal"] == "SIGFPE"
    assert finding.evidence["stage"].startswith("calibrating")
    assert finding.evidence["first_sample_shapes"] == [[1, 2, 2, 3]]
    assert "calibrator.py:" in finding.evidence["last_frames"][0]


@pytest.mark.code("QD307")
@pytest.mark.matcher("stage-quantizing")
def test_infinite_sample_crashes_the_quantizer_and_the_data_is_named_as_the_cause():
    images = smooth_images(120)
    images[5, 1, 1, 1] = np.inf
    report = qd.diagnose(int8_converter(image_model(), dataset_from(images)))
    assert_finding(root(report), "QD307", "calibration", "error", input="image")
    crash = only(report, "QD901")
    assert crash.evidence["signal"] == "SIGSEGV"
    assert crash.evidence["stage"] == "quantizing"  # read from the innermost converter frame of the crash
    assert crash.evidence["last_frames"][0].endswith("in wrapped_experimental_mlir_quantize")
    # The quantizer's own last words differ between releases; quantdoctor's reading of the crash does not.
    said = {"2.16": "illegal scale: INF", "2.18": "illegal scale: INF", "2.21": "scale out of expressed type range"}
    assert said[current().tensorflow_release] in crash.evidence["native_errors"][0]


@pytest.mark.code("QD902")
def test_conversion_past_the_timeout_is_stopped():
    report = qd.diagnose(image_model(), smooth_images(120), timeout=1.0)
    assert report.conversion["outcome"] == "timeout"
    finding = root(report)
    assert_finding(finding, "QD902", "environment", "error")
    assert 1.0 <= finding.evidence["seconds"] < 30


@pytest.mark.code("QD903")
def test_conversion_over_the_memory_limit_is_out_of_memory():
    model = keras.Sequential([keras.Input((512,), name="features"), keras.layers.Dense(4096, name="wide"),
                              keras.layers.Dense(4096, name="wider"), keras.layers.Dense(2)], name="wide_model")
    report = qd.diagnose(model, vectors(120, 512), memory_limit_mb=2000)
    # Where the allocation fails decides the form: a native abort (pthread_create, bad_alloc) or a
    # Python MemoryError raised by the converter. Both are out of memory.
    assert report.conversion["outcome"] in ("crash", "error")
    assert_finding(root(report), "QD903", "environment", "error")


@pytest.mark.code("QD904")
def test_unrecognised_converter_error_keeps_the_raw_message():
    converter = int8_converter(image_model(), dataset_from(smooth_images(120)))
    converter.inference_input_type = tf.float16
    report = qd.diagnose(converter)
    finding = root(report)
    assert_finding(finding, "QD904", "environment", "error")
    assert finding.evidence["exception_type"] == "ValueError"
    assert "must be in ['tf.float32', 'tf.int8', 'tf.uint8', 'tf.int16']" in finding.evidence["excerpt"]
