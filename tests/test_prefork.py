"""Workers forked from a zygote that imported TensorFlow once (quantdoctor.isolation.prefork) against cold
workers: the same reports and the same models, and one run's crash, hang or imports never reach the next."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from float_tflite import float_tflite, write
from models import image_model, smooth_images, vectors, with_layer

import quantdoctor as qd
from quantdoctor.errors import UsageError
from quantdoctor.intake.imports import handed_over
from quantdoctor.isolation import prefork


@pytest.fixture
def worker_log(tmp_path, monkeypatch):
    """The runner's log of worker runs (QUANTDOCTOR_WORKER_LOG): read it with `starts()`."""
    path = tmp_path / "workers.jsonl"
    monkeypatch.setenv("QUANTDOCTOR_WORKER_LOG", str(path))

    def starts() -> list[str]:
        return [json.loads(line)["started_by"] for line in path.read_text().splitlines()] if path.exists() else []

    return starts


def without_seconds(value):
    """A report's dict without its timings (the only part that differs between two runs)."""
    if isinstance(value, dict):
        return {key: without_seconds(item) for key, item in value.items() if key != "seconds"}
    if isinstance(value, list):
        return [without_seconds(item) for item in value]
    return value


def tf_keras_h5(folder: Path) -> str:
    tf_keras = pytest.importorskip("tf_keras")
    model = tf_keras.Sequential([tf_keras.layers.Dense(3, activation="relu", input_shape=(8,), name="hidden"),
                                 tf_keras.layers.Dense(2, name="head")])
    model.save(folder / "model.h5")
    return str(folder / "model.h5")


def concrete_function(folder: Path) -> list:
    weights = tf.constant(np.random.default_rng(1).normal(size=(8, 2)).astype(np.float32))
    function = tf.function(lambda x: tf.nn.relu(tf.matmul(x, weights)),
                           input_signature=[tf.TensorSpec((1, 8), tf.float32, name="x")])
    return [function.get_concrete_function()]


def saved_model(folder: Path) -> str:
    model = keras.Sequential([keras.Input((8,), name="features"), keras.layers.Dense(2, name="head")])
    model.export(str(folder / "saved_model"), verbose=False)
    return str(folder / "saved_model")


def keras3_file(folder: Path) -> str:
    image_model().save(folder / "model.keras")
    return str(folder / "model.keras")


FORMS = {"keras3": (keras3_file, smooth_images(20)), "saved_model": (saved_model, vectors(20)),
         "tf_keras": (tf_keras_h5, vectors(20)), "concrete_function": (concrete_function, vectors(20))}


@pytest.mark.parametrize("form", FORMS)
def test_a_forked_worker_gives_the_cold_workers_report_and_model(form, tmp_path, monkeypatch, worker_log):
    build, data = FORMS[form]
    model = build(tmp_path)
    reports, models = [], []
    for switch in ("0", "1"):
        monkeypatch.setenv(prefork.SWITCH, switch)
        kept = tmp_path / f"kept-{switch}"
        reports.append(qd.diagnose(model, data, keep_workdir=kept).to_dict())
        models.append((kept / "model.tflite").read_bytes())
    assert worker_log() == ["spawn", "fork"]
    assert reports[0]["conversion"]["outcome"] == "ok" and models[0][4:8] == b"TFL3"
    assert without_seconds(reports[1]) == without_seconds(reports[0])
    assert models[1] == models[0]


def test_a_crash_in_a_forked_worker_ends_that_run_only(tmp_path, worker_log):
    """An Inf sample segfaults the quantizer (QD307): the run is a crash, the zygote and the next run live on."""
    images = smooth_images(20)
    images[3, 0, 0, 0] = np.inf
    model = keras3_file(tmp_path)
    crashed = qd.diagnose(model, images)
    assert crashed.conversion["outcome"] == "crash"
    assert "QD307" in [finding.code for finding in crashed.findings]
    [process] = [finding for finding in crashed.findings if "last_frames" in finding.evidence]
    assert process.evidence["signal"] == "SIGSEGV"
    assert process.evidence["last_frames"]  # the faulthandler of the forked worker wrote to the run's log
    zygotes = {key: zygote.process.pid for key, zygote in prefork._zygotes.items()}
    clean = qd.diagnose(model, smooth_images(20))
    assert clean.conversion["outcome"] == "ok"
    assert worker_log() == ["fork", "fork"]
    assert {key: zygote.process.pid for key, zygote in prefork._zygotes.items()} == zygotes
    assert all(zygote.ready["python_threads"] == 1 for zygote in prefork._zygotes.values())


def test_a_zygote_that_died_is_replaced(tmp_path, worker_log):
    model = keras3_file(tmp_path)
    assert qd.diagnose(model, smooth_images(20)).conversion["outcome"] == "ok"
    [zygote] = [zygote for zygote in prefork._zygotes.values() if zygote.alive()][-1:]
    os.kill(zygote.process.pid, signal.SIGKILL)
    zygote.process.wait()
    assert qd.diagnose(model, smooth_images(20)).conversion["outcome"] == "ok"
    assert worker_log() == ["fork", "fork"]
    assert all(other.process.pid != zygote.process.pid for other in prefork._zygotes.values())


def test_a_timeout_in_a_forked_worker_ends_that_run_only(tmp_path, worker_log):
    (tmp_path / "slow_layers.py").write_text("import time\ntime.sleep(600)\n")
    model = keras3_file(tmp_path)
    with handed_over([str(tmp_path / "slow_layers.py")]):
        hung = qd.diagnose(model, smooth_images(20), timeout=5)
    assert hung.conversion["outcome"] == "timeout"
    assert qd.diagnose(model, smooth_images(20)).conversion["outcome"] == "ok"
    assert worker_log() == ["fork", "fork"]


def forked_workers() -> list[int]:
    """The processes whose parent is one of this process's zygotes, read from /proc."""
    zygotes = {zygote.process.pid for zygote in prefork._zygotes.values()}
    found = []
    for entry in Path("/proc").iterdir():
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if parent in zygotes:
            found.append(int(entry.name))
    return found


def test_ctrl_c_during_a_forked_run_ends_its_worker_and_the_next_run_forks(tmp_path, worker_log,
                                                                           python_signal_handlers):
    (tmp_path / "slow_layers.py").write_text("import time\ntime.sleep(600)\n")
    model = keras3_file(tmp_path)
    workers: list[int] = []

    def interrupt_once_the_worker_runs() -> None:
        deadline = time.monotonic() + 240
        while not workers and time.monotonic() < deadline:
            workers.extend(forked_workers())
            time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_once_the_worker_runs, daemon=True).start()
    with handed_over([str(tmp_path / "slow_layers.py")]), pytest.raises(KeyboardInterrupt):
        qd.diagnose(model, smooth_images(20), timeout=3600)
    assert workers and not Path(f"/proc/{workers[0]}").exists()
    assert qd.diagnose(model, smooth_images(20)).conversion["outcome"] == "ok"
    assert worker_log() == ["fork"]  # the interrupted run logs nothing; the next one forks


CUSTOM_LAYER = """
import keras


@keras.saving.register_keras_serializable(package="forktest")
class Doubled(keras.layers.Layer):
    def call(self, x):
        return x * 2.0
"""


def test_a_runs_imports_and_registered_layers_do_not_reach_the_next_run(tmp_path, worker_log):
    """The user's module registered a custom layer in one forked worker: the next worker, forked from the
    same zygote, starts without it, as a cold one would."""
    layers = tmp_path / "fork_layers.py"
    layers.write_text(CUSTOM_LAYER)
    namespace: dict = {}
    exec(compile(CUSTOM_LAYER, str(layers), "exec"), namespace)
    inputs = keras.Input((8,), name="features")
    keras.Model(inputs, namespace["Doubled"]()(keras.layers.Dense(2, name="head")(inputs))).save(tmp_path / "c.keras")
    with handed_over([str(layers)]):
        assert qd.diagnose(tmp_path / "c.keras", vectors(20)).conversion["outcome"] == "ok"
    with pytest.raises(UsageError, match="Doubled"):
        qd.diagnose(tmp_path / "c.keras", vectors(20))
    assert worker_log() == ["fork", "fork"]


def test_a_memory_limit_runs_cold(tmp_path, worker_log):
    """A memory limit is defined on a process that maps TensorFlow under it: never forked."""
    report = qd.diagnose(keras3_file(tmp_path), smooth_images(20), memory_limit_mb=256)
    assert report.root_cause.code == "QD903"
    assert worker_log() == ["spawn"]


def test_a_worker_that_needs_no_tensorflow_starts_no_zygote_but_forks_from_a_running_one(tmp_path, worker_log):
    """AEQ's worker imports no TensorFlow: alone, it starts cold, sparing the zygote's import of TensorFlow."""
    prefork.shutdown()
    model = write(tmp_path / "model_float.tflite", float_tflite(with_layer(keras.layers.Dense(8, name="dense2"))))
    data = {"features": vectors(24)}
    alone = qd.diagnose(str(model), data, mode="int8")
    qd.diagnose(keras3_file(tmp_path), smooth_images(20))
    forked = qd.diagnose(str(model), data, mode="int8")
    assert worker_log() == ["spawn", "fork", "fork"]
    assert alone.conversion["outcome"] == forked.conversion["outcome"] == "ok"
    assert alone.tflite_model == forked.tflite_model


def test_the_zygote_is_keyed_by_what_acts_at_import():
    base = {"PATH": "/usr/bin", "TMPDIR": "/tmp/a", "PYTEST_CURRENT_TEST": "t1", "QUANTDOCTOR_NO_CACHE": "1"}
    same = {**base, "TMPDIR": "/tmp/b", "PYTEST_CURRENT_TEST": "t2", "QUANTDOCTOR_CACHE_DIR": "/c"}
    assert prefork.zygote_key(same) == prefork.zygote_key(base)
    for name in ("TF_USE_LEGACY_KERAS", "TF_CPP_MIN_LOG_LEVEL", "KERAS_BACKEND", "HOME"):
        assert prefork.zygote_key({**base, name: "1"}) != prefork.zygote_key(base), name


@pytest.mark.parametrize("value", ["0", "off", "false", "no"])
def test_prefork_off_starts_every_worker_cold(value, monkeypatch, tmp_path):
    monkeypatch.setenv(prefork.SWITCH, value)
    assert not prefork.enabled()
    assert prefork.fork_worker("quantdoctor.convert.worker", [], open(tmp_path / "log", "wb"), dict(os.environ),
                               lambda *args: ["false"]) is None
