"""Shared fixtures: tiny real models (built per test, seconds each) and a diagnose helper; the
catalog coverage check (every code and matcher proven by a passing real-model test, see
coverage_markers.py)."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Every test converts for real; the conversion cache's own tests turn it on in a temporary directory.
os.environ["QUANTDOCTOR_NO_CACHE"] = "1"

import coverage_markers
import numpy as np
import pytest

pytest_plugins = ["release_markers"]


def pytest_configure(config):
    coverage_markers.install(config, suite_root=Path(__file__).parent)


# tfmot sets TF_USE_LEGACY_KERAS=1 when it is imported, and the QAT tests import it at collection: every
# worker child would then resolve tf.keras to tf_keras (a Keras 3 model with an invalid input name even
# converts there). Each test starts from the environment the suite was started with.
_LEGACY_KERAS = os.environ.get("TF_USE_LEGACY_KERAS")


@pytest.fixture(autouse=True)
def keras_environment_as_started():
    if _LEGACY_KERAS is None:
        os.environ.pop("TF_USE_LEGACY_KERAS", None)
    else:
        os.environ["TF_USE_LEGACY_KERAS"] = _LEGACY_KERAS


@pytest.fixture(scope="session")
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def pytest_collection_modifyitems(session, config, items):
    """An empty collection is a broken suite, not a pass."""
    if not items:
        raise pytest.UsageError("no tests collected: the suite must never pass empty")


@pytest.fixture(scope="session", autouse=True)
def record_preflight_agreement():
    """With QUANTDOCTOR_PREFLIGHT_LOG=FILE, log each report's prediction and real outcome (bench/preflight.py)."""
    path = os.environ.get("QUANTDOCTOR_PREFLIGHT_LOG")
    if not path:
        yield
        return
    import json

    import quantdoctor

    original = quantdoctor.diagnose

    def recording(*args, **kwargs):
        report = original(*args, **kwargs)
        if report.preflight and report.preflight["actual"]:
            with open(path, "a") as log:
                log.write(json.dumps({"model": report.model["source"], "predicted": report.preflight["verdict"],
                                      "actual": report.preflight["actual"]}) + "\n")
        return report

    quantdoctor.diagnose = recording
    yield
    quantdoctor.diagnose = original


@pytest.fixture(autouse=True)
def record_early_answers(request):
    """With QUANTDOCTOR_EARLY_ANSWER_LOG=FILE, log each diagnosis whose conversion failed or that made an
    early answer: the predicted code, whether the converter confirmed it, the real root cause
    (bench/early_answers.py computes the agreement)."""
    path = os.environ.get("QUANTDOCTOR_EARLY_ANSWER_LOG")
    if not path:
        yield
        return
    import json

    import quantdoctor

    original = quantdoctor.diagnose

    def recording(*args, **kwargs):
        report = original(*args, **kwargs)
        early, conversion = report.early_answer, report.conversion
        if early or (conversion.get("attempted") and conversion.get("outcome") != "ok"):
            root = report.root_cause
            with open(path, "a") as log:
                log.write(json.dumps({"test": request.node.nodeid, "model": report.model["source"],
                                      "outcome": conversion.get("outcome"),
                                      "predicted": early["code"] if early else None,
                                      "stage": early["stage"] if early else None,
                                      "confirmed": early["confirmed"] if early else None,
                                      "withdrawn": early["withdrawn"] if early else None,
                                      "root_cause": root.code if root else None}) + "\n")
        return report

    quantdoctor.diagnose = recording
    yield
    quantdoctor.diagnose = original
