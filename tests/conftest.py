"""Shared fixtures: tiny real models (built per test, seconds each) and a diagnose helper."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest


@pytest.fixture(scope="session")
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def pytest_collection_modifyitems(session, config, items):
    """An empty collection is a broken suite, not a pass."""
    if not items:
        raise pytest.UsageError("no tests collected: the suite must never pass empty")
