"""Shared fixtures: tiny real models (built per test, seconds each) and a diagnose helper."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Every test converts for real; the conversion cache's own tests turn it on in a temporary directory.
os.environ["QUANTDOCTOR_NO_CACHE"] = "1"

import numpy as np
import pytest


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
