"""The `quantdoctor` console script (`quantdoctor.launch`): the zygote a command will fork its worker from starts
before the command line's imports, of the kind its model needs (AEQ's for a float .tflite, TensorFlow's for a
Keras model), and nothing of it outlives the command, whether it ends in a usage error or on Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import keras
import numpy as np
import pytest
from float_tflite import float_tflite, write
from helpers import QUANTDOCTOR, run
from models import image_model, smooth_images, vectors, with_layer

from quantdoctor.isolation import prefork
from quantdoctor.isolation.runner import isolated_command, worker_variables
from quantdoctor.launch import zygote_kind


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """A float .tflite with its calibration and eval data, and a .keras model with its calibration data."""
    folder = tmp_path_factory.mktemp("inputs")
    model = with_layer(keras.layers.Dense(8, activation="relu", name="dense2"))
    np.savez(folder / "calib.npz", features=vectors(24))
    np.savez(folder / "eval.npz", features=vectors(12, seed=1))
    image_model().save(folder / "model.keras")
    np.save(folder / "images.npy", smooth_images(20))
    return {"tflite": write(folder / "model_float.tflite", float_tflite(model)), "calib": folder / "calib.npz",
            "eval": folder / "eval.npz", "keras": folder / "model.keras", "images": folder / "images.npy"}


def worker_runs(log: Path) -> list[tuple[str, str | None]]:
    """How each worker run of QUANTDOCTOR_WORKER_LOG started: ("fork", the zygote's kind) or ("spawn", None)."""
    return [(run["started_by"], run.get("zygote")) for run in map(json.loads, log.read_text().splitlines())]


def processes_holding(text: str) -> list[int]:
    """This user's processes with `text` in their environment (a zygote's TMPDIR lies under its parent's)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and text.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or another user's
            pass
    return found


@pytest.mark.parametrize("switch, started", [("1", [("fork", prefork.AEQ)]), ("0", [("spawn", None)])])
def test_compare_on_a_float_tflite_forks_its_worker_from_the_aeq_zygote_the_script_started(inputs, tmp_path, switch,
                                                                                             started):
    """The runner never starts a zygote for AEQ's worker: a fork is the console script's zygote. Off, cold."""
    log = tmp_path / "workers.jsonl"
    done = run("compare", str(inputs["tflite"]), "--data", str(inputs["calib"]), "--eval-data", str(inputs["eval"]),
               "--json", str(tmp_path / "report.json"),
               env={**os.environ, "QUANTDOCTOR_WORKER_LOG": str(log), prefork.SWITCH: switch})
    assert done.returncode in (0, 1), done.stderr
    assert worker_runs(log) == started
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["comparison"]["samples"] == 12
    assert {layer["op"] for layer in report["comparison"]["layers"]} >= {"FULLY_CONNECTED"}


def test_diagnose_on_a_keras_model_forks_from_the_tensorflow_zygote(inputs, tmp_path):
    log = tmp_path / "workers.jsonl"
    done = run("diagnose", str(inputs["keras"]), "--data", str(inputs["images"]), "--json", str(tmp_path / "r.json"),
               env={**os.environ, "QUANTDOCTOR_WORKER_LOG": str(log)})
    assert done.returncode in (0, 1), done.stderr
    assert worker_runs(log) == [("fork", prefork.TENSORFLOW)]
    assert json.loads((tmp_path / "r.json").read_text())["conversion"]["outcome"] == "ok"


@pytest.mark.parametrize("kind, holds_tensorflow", [(prefork.AEQ, False), (prefork.TENSORFLOW, True)])
def test_a_zygote_preloads_what_its_kind_of_worker_needs(kind, holds_tensorflow):
    """AEQ's worker needs no TensorFlow, and its zygote does not import it (nor does AEQ)."""
    prefork.shutdown()
    prefork.start_early(kind, worker_variables(), isolated_command)
    [zygote] = prefork._zygotes.values()
    zygote.await_ready()
    assert zygote.kind == kind and zygote.ready["serving"]
    assert zygote.ready["tensorflow"] is holds_tensorflow
    prefork.shutdown()


def test_the_zygote_key_holds_its_kind():
    environment = {"PATH": "/usr/bin"}
    assert prefork.zygote_key(environment, prefork.AEQ) != prefork.zygote_key(environment, prefork.TENSORFLOW)


def test_the_kind_follows_the_command_and_its_model(inputs):
    tflite, keras_file = str(inputs["tflite"]), str(inputs["keras"])
    assert zygote_kind(["compare", tflite, "--eval-data", "e.npz"]) == prefork.AEQ
    assert zygote_kind(["fix", keras_file]) == zygote_kind(["reduce", keras_file]) == prefork.TENSORFLOW
    for arguments in (["audit", tflite], ["diagnose", "--help"], ["diagnose", tflite, "--help"], ["compare"],
                      ["diagnose", keras_file, "--memory-limit", "512"], ["diagnose", keras_file, "--memory-limit=512"],
                      ["diagnose", str(inputs["tflite"].with_name("missing.tflite"))]):
        assert zygote_kind(arguments) is None, arguments


@pytest.mark.parametrize("mistake", [["--data", "missing.npz"], ["--no-such-option"]])
def test_a_usage_error_is_one_line_exit_2_and_leaves_no_process(inputs, tmp_path, mistake):
    private = tmp_path / "tmp"
    private.mkdir()
    done = run("compare", str(inputs["tflite"]), "--eval-data", str(inputs["eval"]), *mistake, cwd=tmp_path,
               env={**os.environ, "TMPDIR": str(private)})
    assert done.returncode == 2
    assert done.stderr.startswith("quantdoctor: error:") and done.stderr.count("\n") == 1, done.stderr
    assert list(private.iterdir()) == []  # the zygote's directory went with it
    assert processes_holding(str(private)) == []


@pytest.mark.parametrize("signals", [[signal.SIGINT], [signal.SIGTERM], [signal.SIGINT, signal.SIGTERM]])
def test_a_signal_at_once_after_start_is_one_line_and_ends_the_zygote_the_script_started(inputs, tmp_path, signals):
    """Sent as soon as the zygote runs (the command line is still importing): Ctrl-C, SIGTERM or both at once say
    so in one line and exit 128 + the first signal, leaving neither the zygote nor its directory."""
    private = tmp_path / "tmp"
    private.mkdir()
    command = subprocess.Popen([QUANTDOCTOR, "diagnose", str(inputs["keras"]), "--data", str(inputs["images"])],
                               env={**os.environ, "TMPDIR": str(private)}, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    zygote_directory = f"{private}{os.sep}quantdoctor-zygote-"  # the zygote's TMPDIR
    deadline = time.monotonic() + 60
    while not processes_holding(zygote_directory) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert processes_holding(zygote_directory)  # the zygote runs
    for signum in signals:
        command.send_signal(signum)
    _, stderr = command.communicate(timeout=120)
    assert (command.returncode, stderr) == (128 + signals[0], "quantdoctor: interrupted\n")
    assert list(private.glob("quantdoctor-zygote-*")) == []
    assert processes_holding(str(private)) == []
