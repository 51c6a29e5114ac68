"""compare in one worker (`compare/joint_worker.py`): the conversion's process compares the models right after
converting them, for a Keras model and for a float .tflite quantized by AEQ, and measures what the compare
worker measures on the same two models; a cached conversion still skips converting (the compare worker then
runs); a float model that fails on the eval data has its variants probed in the same process."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest
from float_tflite import float_tflite, write
from helpers import only
from models import image_model, smooth_images, vectors, with_layer

import quantdoctor as qd
from quantdoctor.compare.compare_models import with_comparison
from quantdoctor.compare.joint import JointComparison
from quantdoctor.diagnosis.pipeline import diagnose_with_float_twin
from quantdoctor.intake.data import DEFAULT_MAX_SAMPLES
from quantdoctor.intake.user_input import eval_set

JOINT, CONVERT, COMPARE, PROBE = ("quantdoctor.compare.joint_worker", "quantdoctor.convert.worker",
                                  "quantdoctor.compare.worker", "quantdoctor.compare.float_probe")
TIMES = ("seconds", "analysis_seconds")


@pytest.fixture
def worker_log(tmp_path, monkeypatch):
    """The worker modules run from here on, in order (QUANTDOCTOR_WORKER_LOG)."""
    log = tmp_path / "workers.jsonl"
    monkeypatch.setenv("QUANTDOCTOR_WORKER_LOG", str(log))
    return lambda: [json.loads(line)["module"] for line in log.read_text().splitlines()] if log.exists() else []


def untimed(comparison: dict) -> dict:
    return {key: value for key, value in comparison.items() if key not in TIMES}


def separately(model, data, evaluation) -> qd.Report:
    """The same comparison as compare made it before the joint worker: the compare worker, on its own."""
    report, float_model = diagnose_with_float_twin(model, data)
    return with_comparison(report, float_model, report.model, eval_set(evaluation, DEFAULT_MAX_SAMPLES))


def test_compare_converts_and_compares_in_one_worker_as_the_compare_worker_would(worker_log):
    keras.utils.set_random_seed(0)
    model, data, evaluation = image_model(), smooth_images(40), smooth_images(12, seed=1)
    report = qd.compare(model, data, eval_data=evaluation)
    assert worker_log() == [JOINT]
    assert report.comparison["samples"] == 12 and report.conversion["outcome"] == "ok"
    # the conversion's time leaves the comparison out; the comparison's is its own
    assert 0 < report.comparison["seconds"] < report.conversion["seconds"]
    reference = separately(model, data, evaluation)
    assert worker_log()[1:] == [CONVERT, COMPARE]  # the conversion worker, then the compare worker
    assert untimed(report.comparison) == untimed(reference.comparison)
    assert [(f.code, f.message) for f in report.findings] == [(f.code, f.message) for f in reference.findings]


def one_class_model() -> keras.Model:
    """Softmax scores with class 2 far ahead for every input: the float model already fails (QD510)."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,), name="features"), keras.layers.Dense(4, activation="softmax")])
    kernel, bias = model.layers[0].get_weights()
    model.layers[0].set_weights([kernel * 0.01, np.array([0.0, 0.0, 6.0, 0.0], np.float32)])
    return model


@pytest.mark.code("QD510")
def test_a_float_model_that_fails_has_its_variants_probed_in_the_same_worker(worker_log):
    model, data, evaluation = one_class_model(), vectors(100), vectors(30, seed=1)
    report = qd.compare(model, data, eval_data=evaluation)
    assert worker_log() == [JOINT]  # no float probe of its own
    failure = only(report, "QD510")
    assert failure.evidence["float_class"] == 2
    reference = separately(model, data, evaluation)
    assert PROBE in worker_log()  # the compare worker's path probes in a process of its own
    assert [(f.code, f.message, f.evidence) for f in report.findings] == \
        [(f.code, f.message, f.evidence) for f in reference.findings]


def test_a_cached_conversion_still_skips_converting_and_the_compare_worker_compares(worker_log, tmp_path,
                                                                                    monkeypatch):
    monkeypatch.delenv("QUANTDOCTOR_NO_CACHE", raising=False)
    monkeypatch.setenv("QUANTDOCTOR_CACHE_DIR", str(tmp_path / "cache"))
    keras.utils.set_random_seed(0)
    image_model().save(tmp_path / "model.keras")
    data, evaluation = smooth_images(40), smooth_images(12, seed=1)
    first = qd.compare(tmp_path / "model.keras", data, eval_data=evaluation)
    second = qd.compare(tmp_path / "model.keras", data, eval_data=evaluation)
    assert worker_log() == [JOINT, COMPARE]
    assert "cached" not in first.conversion and second.conversion["cached"] is True
    assert untimed(first.comparison) == untimed(second.comparison)


def test_compare_on_a_float_tflite_quantizes_with_aeq_and_compares_in_one_worker(worker_log, tmp_path):
    keras.utils.set_random_seed(0)
    model = write(tmp_path / "model_float.tflite", float_tflite(with_layer(keras.layers.Dense(8, name="dense2"))))
    np.savez(tmp_path / "calib.npz", features=vectors(24))
    np.savez(tmp_path / "eval.npz", features=vectors(12, seed=1))
    report = qd.compare(str(model), str(tmp_path / "calib.npz"), eval_data=str(tmp_path / "eval.npz"))
    assert worker_log() == [JOINT]
    reference = separately(str(model), str(tmp_path / "calib.npz"), str(tmp_path / "eval.npz"))
    assert untimed(report.comparison) == untimed(reference.comparison)


def test_a_comparison_the_worker_did_not_finish_is_run_again(tmp_path):
    """Nothing measured (a cached conversion, a worker that died after converting): compare runs the compare
    worker; the directory goes with it."""
    evaluation = eval_set(vectors(4), DEFAULT_MAX_SAMPLES)
    joint = JointComparison(evaluation, None, None)
    assert joint.measured(4) is None
    Path(joint.request.response).write_text(json.dumps({"samples": 3}))
    assert joint.measured(4) is None  # not the rows compare runs
    joint.close()
    assert not joint.directory.exists()
