"""Merges that crush an input: YOLO-style heads measured by compare (QD503), and the same read from the
quantization parameters of any integer model, no data needed (QD506)."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from helpers import assert_finding, only, root, run_in_process
from models import smooth_images

import quantdoctor as qd


def yolo_head() -> keras.Model:
    """A detector head: per anchor, 4 box coordinates in pixels and 3 class scores, as one
    [1, anchors, 4 + classes] tensor. Dense on the rank-3 features lowers to RESHAPE /
    FULLY_CONNECTED / RESHAPE, so a RESHAPE sits between each head and the concatenation."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(1)
    inputs = keras.Input((16, 16, 3))
    features = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inputs)
    anchors = keras.layers.Reshape((-1, 8))(features)  # [1, 49, 8]
    boxes = keras.layers.Rescaling(640.0)(keras.layers.Dense(4)(anchors))
    scores = keras.layers.Dense(3, activation="sigmoid")(anchors)
    return keras.Model(inputs, keras.layers.Concatenate()([boxes, scores]))


@pytest.mark.code("QD503")
def test_compare_finds_the_crushed_scores_of_a_yolo_head_and_counts_what_is_lost():
    report = qd.compare(yolo_head(), smooth_images(60), eval_data=smooth_images(30, seed=3))
    assert report.comparison["end_to_end"]["sqnr_db"] > 30  # the whole output looks healthy
    finding = only(report, "QD503")
    assert_finding(finding, "QD503", "accuracy", "error", layer="concatenate", op="CONCATENATION")
    assert finding.message.endswith("under one scale: 3 of its 7 channels (147 values per sample) quantize to a "
                                    "constant and carry nothing.")
    assert finding.evidence["lost_channels"] == [4, 5, 6]
    assert "QD506" not in [f.code for f in report.findings]  # the static finding, confirmed: reported once
    assert report.root_cause is finding


@pytest.mark.code("QD506")
def test_the_crushed_merge_is_found_without_data_in_any_integer_tflite(tmp_path):
    report = qd.diagnose(yolo_head(), smooth_images(60), mode="int8-strict", io="int8")
    finding = root(report)
    assert_finding(finding, "QD506", "accuracy", "error", layer="concatenate", op="CONCATENATION")
    assert "the input from layer 'dense_1' (calibrated range 0.9961) spans 0.26 output step(s), so its 3 " \
           "channel(s) (147 values per sample) keep at most 1 level(s)" in finding.message
    (tmp_path / "det.tflite").write_bytes(report.tflite_model)
    alone = only(qd.audit(tmp_path / "det.tflite"), "QD506")  # the .tflite alone: no layer names, no data
    assert_finding(alone, "QD506", "accuracy", "error", op="CONCATENATION")
    assert alone.evidence["output_steps"] == finding.evidence["output_steps"] < 2


def test_cli_never_says_no_problems_found_for_a_detector_whose_scores_are_lost(tmp_path):
    yolo_head().save(tmp_path / "det.keras")
    np.save(tmp_path / "calib.npy", smooth_images(60))
    result = run_in_process("diagnose", str(tmp_path / "det.keras"), "--data", str(tmp_path / "calib.npy"),
                            "--mode", "int8-strict", "--io", "int8", "--json", str(tmp_path / "report.json"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "No problems found" not in result.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["findings"][0]["code"] == "QD506"
    assert report["audit"]["run_check"]["outcome"] == "ok"


def test_a_well_scaled_concatenation_is_not_flagged():
    keras.backend.clear_session()
    inputs = keras.Input((8,))
    left, right = keras.layers.Dense(4)(inputs), keras.layers.Dense(4)(inputs)
    model = keras.Model(inputs, keras.layers.Concatenate()([left, right]))
    report = qd.diagnose(model, np.random.default_rng(0).normal(size=(60, 8)).astype(np.float32))
    assert not [f for f in report.findings if f.code in ("QD503", "QD506", "QD504", "QD507")]
