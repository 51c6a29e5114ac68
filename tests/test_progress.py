"""Progress of long runs (compare, fix, fix --max-drop): stage, count and elapsed time on stderr, on a
terminal only; the JSON report never holds it."""

from __future__ import annotations

import io
import json
import os
import pty
import re
import subprocess
from pathlib import Path

import keras
import numpy as np
import pytest
from helpers import QUANTDOCTOR
from models import image_model, smooth_images

from quantdoctor.report.progress import ProgressLine

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def test_the_line_shows_stage_count_and_elapsed_seconds_and_is_erased_at_the_end():
    now = [100.0]
    stream = io.StringIO()
    with ProgressLine(stream, interactive=True, clock=lambda: now[0], tick=None) as line:
        line.stage("Running both models on the eval data", 3, 10)
        now[0] = 112.4
        line.stage("Running both models on the eval data", 10, 10)
        line.stage("Accuracy budget: variants tried", 7)
    assert stream.getvalue() == ("\r\x1b[2KRunning both models on the eval data  3/10  0 s"
                                 "\r\x1b[2KRunning both models on the eval data  10/10  12 s"
                                 "\r\x1b[2KAccuracy budget: variants tried  7  12 s"
                                 "\r\x1b[2K")


def test_nothing_is_written_off_a_terminal():
    stream = io.StringIO()  # not a TTY: the stream's own answer decides
    with ProgressLine(stream) as line:
        line.stage("Fixing: round (convert, verify)", 1, 4)
    assert not line.enabled and stream.getvalue() == ""


def run_on_terminal(*args: str) -> tuple[int, str, str]:
    """The command with its stderr on a pseudo-terminal (as in an interactive shell), its stdout piped."""
    master, slave = pty.openpty()
    child = subprocess.Popen([QUANTDOCTOR, *args], stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL,
                             env={**os.environ, "TERM": "xterm", "COLUMNS": "200"})
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child has closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    stdout = child.stdout.read().decode()
    child.wait(timeout=600)
    return child.returncode, stdout, b"".join(chunks).decode(errors="replace")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("progress")
    image_model(name="user_model").save(folder / "model.keras")
    np.savez(folder / "calib.npz", image=smooth_images(40))
    np.savez(folder / "eval.npz", image=smooth_images(12, seed=1))
    return {"model": folder / "model.keras", "calib": folder / "calib.npz", "eval": folder / "eval.npz"}


def test_compare_on_a_terminal_shows_its_stages_counted_and_timed(files, tmp_path):
    code, stdout, stderr = run_on_terminal("compare", str(files["model"]), "--data", str(files["calib"]),
                                           "--eval-data", str(files["eval"]), "--json", str(tmp_path / "r.json"))
    assert code in (0, 1), stderr
    shown = [_ANSI.sub("", part) for part in stderr.split("\r")]
    assert any(re.fullmatch(r"Converting \(float and quantized\) in an isolated process  \d+ s", s) for s in shown)
    assert any(re.fullmatch(r"Running both models on the eval data  12/12  \d+ s", s) for s in shown), shown
    assert "\x1b" not in stdout and stdout.startswith(("OK", "CONVERTED"))
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["comparison"]["samples"] == 12 and "Running both models" not in json.dumps(report)
    assert set(report) == {"schema_version", "tool", "environment", "model", "settings", "verdict", "findings",
                           "finding_groups", "conversion", "audit", "preflight", "comparison"}


def test_fix_with_an_accuracy_budget_on_a_terminal_shows_rounds_and_variants(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (200, 16)).astype(np.float32)
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16,), name="pixels")
    features = keras.layers.Dense(8, activation="relu", name="features")(inputs)
    side = keras.layers.Dense(2, kernel_initializer="zeros", trainable=False, name="side",
                              bias_initializer=keras.initializers.Constant([0.0, 500.0]))(inputs)
    merged = keras.layers.Concatenate(name="merge")([features, side])
    keras.Model(inputs, keras.layers.Dense(4, name="head")(merged)).save(tmp_path / "crushed.keras")
    np.save(tmp_path / "calib.npy", x[:100])
    np.save(tmp_path / "eval.npy", x[100:140])
    code, stdout, stderr = run_on_terminal("fix", str(tmp_path / "crushed.keras"), "--data", str(tmp_path / "calib.npy"),
                                           "--eval-data", str(tmp_path / "eval.npy"), "--max-drop", "0.01")
    shown = [_ANSI.sub("", part) for part in stderr.split("\r")]
    assert any(re.fullmatch(r"Fixing: round \(convert, verify\)  1/4  \d+ s", s) for s in shown), shown
    assert any(re.fullmatch(r"Accuracy budget: variants tried  \d+  \d+ s", s) for s in shown), shown
    assert "\x1b" not in stdout
