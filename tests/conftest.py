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


@pytest.fixture(autouse=True)
def signal_state_left_as_found():
    """A test must leave SIGINT/SIGTERM handlers and quantdoctor's cleanup state as it found them: a run that
    returns with its Ctrl-C handling still installed would change the user's own program. What a test
    leaves behind is named in a warning (the suite's summary lists them)."""
    import signal
    import warnings

    from quantdoctor.isolation import cleanup

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM), cleanup._active
    yield
    after = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM), cleanup._active
    if after != before:
        warnings.warn(f"the test left SIGINT, SIGTERM handlers and cleanup state {after}, found {before}", stacklevel=1)


@pytest.fixture
def python_signal_handlers(monkeypatch):
    """Python's own SIGINT and SIGTERM handlers for the test, as a user's process starts with, whatever an
    earlier test in the same pytest process left installed; those come back afterwards."""
    import signal

    from quantdoctor.isolation import cleanup

    monkeypatch.setattr(cleanup, "_active", False)
    defaults = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
    left = {signum: signal.signal(signum, handler) for signum, handler in defaults.items()}
    yield
    for signum, handler in left.items():
        signal.signal(signum, handler)


@pytest.fixture(autouse=True)
def cold_spawn(request, monkeypatch):
    """Tests marked `cold_spawn` test process isolation itself: their workers start as cold processes
    (QUANTDOCTOR_PREFORK=0), as a run with a memory limit does, never forked from a zygote, and from
    Python's own signal handlers (`python_signal_handlers`)."""
    if request.node.get_closest_marker("cold_spawn"):
        monkeypatch.setenv("QUANTDOCTOR_PREFORK", "0")
        request.getfixturevalue("python_signal_handlers")


@pytest.fixture(scope="session")
def image_model_files(tmp_path_factory) -> dict[str, Path]:
    """The user's files several test modules diagnose, built once per pytest(-xdist) worker: the tiny
    image model `user_model` as `.keras`, `.h5` and a SavedModel (`model.export`), 120 smooth images as
    `.npz` (key `image`) and as float64 `.npy`. Shared: read them, never write into their folder (copy
    them to a folder of the test's own first)."""
    from models import image_model, smooth_images

    folder = tmp_path_factory.mktemp("image_model_files")
    model = image_model(name="user_model")
    model.save(folder / "model.keras")
    model.save(folder / "model.h5")
    model.export(str(folder / "saved_model"), verbose=False)
    np.savez(folder / "calib.npz", image=smooth_images(120))
    np.save(folder / "calib64.npy", smooth_images(120).astype(np.float64))
    return {"keras": folder / "model.keras", "h5": folder / "model.h5", "saved_model": folder / "saved_model",
            "npz": folder / "calib.npz", "npy64": folder / "calib64.npy"}


@pytest.fixture(scope="session")
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def pytest_collection_modifyitems(session, config, items):
    """An empty collection is a broken suite, not a pass."""
    if not items:
        raise pytest.UsageError("no tests collected: the suite must never pass empty")


def _recording_diagnose(variable: str, line_for):
    """While the test runs, with the environment variable `variable` naming a file: wrap
    `quantdoctor.diagnose` so that each report's `line_for(report)` (a dict, or None for no line) is
    appended to that file as one JSON line. A generator for a fixture to yield from."""
    path = os.environ.get(variable)
    if not path:
        yield
        return
    import json

    import quantdoctor

    original = quantdoctor.diagnose

    def recording(*args, **kwargs):
        report = original(*args, **kwargs)
        line = line_for(report)
        if line is not None:
            with open(path, "a") as log:
                log.write(json.dumps(line) + "\n")
        return report

    quantdoctor.diagnose = recording
    yield
    quantdoctor.diagnose = original


@pytest.fixture(autouse=True)
def record_preflight_agreement():
    """With QUANTDOCTOR_PREFLIGHT_LOG=FILE, log each report's prediction and real outcome (bench/preflight.py)."""

    def line(report):
        if not (report.preflight and report.preflight["actual"]):
            return None
        return {"model": report.model["source"], "predicted": report.preflight["verdict"],
                "actual": report.preflight["actual"]}

    yield from _recording_diagnose("QUANTDOCTOR_PREFLIGHT_LOG", line)


@pytest.fixture(autouse=True)
def record_early_answers(request):
    """With QUANTDOCTOR_EARLY_ANSWER_LOG=FILE, log each diagnosis whose conversion failed or that made an
    early answer: the predicted code, whether the converter confirmed it, the real root cause
    (bench/early_answers.py computes the agreement)."""

    def line(report):
        early, conversion = report.early_answer, report.conversion
        if not (early or (conversion.get("attempted") and conversion.get("outcome") != "ok")):
            return None
        root = report.root_cause
        return {"test": request.node.nodeid, "model": report.model["source"], "outcome": conversion.get("outcome"),
                "predicted": early["code"] if early else None, "stage": early["stage"] if early else None,
                "confirmed": early["confirmed"] if early else None, "withdrawn": early["withdrawn"] if early else None,
                "root_cause": root.code if root else None}

    yield from _recording_diagnose("QUANTDOCTOR_EARLY_ANSWER_LOG", line)
