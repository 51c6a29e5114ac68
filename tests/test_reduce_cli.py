"""reduce from the command line: --import of the user's module, the reduce command, its user errors;
and fix reducing a converter crash on its own (real conversions, a few minutes: its own file, so
pytest-xdist runs it beside test_reduce.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
from helpers import run, run_in_process

import quantdoctor as qd
from quantdoctor.diagnosis.classify_failure import MATCHERS


def calibration_vectors():
    return np.random.default_rng(0).normal(size=(20, 8)).astype("float32")


CUSTOM_LAYERS = '''
import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="user")
class Float64Scale(keras.layers.Layer):
    """Does its math in float64, as code ported from NumPy often does."""

    def call(self, x):
        return tf.cast(tf.cast(x, tf.float64) * 2.0 + 1.0, tf.float32)
'''


def custom_layer_model(tmp_path):
    """A .keras file with a layer registered in the user's own module `layers.py` (not importable here)."""
    import importlib.util

    (tmp_path / "layers.py").write_text(CUSTOM_LAYERS)
    spec = importlib.util.spec_from_file_location("user_layers_for_test", tmp_path / "layers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    inputs = keras.Input((8,), name="features")
    hidden = keras.layers.Dense(8, name="dense")(inputs)
    outputs = keras.layers.Dense(2, name="head")(module.Float64Scale(name="to_f64")(hidden))
    keras.Model(inputs, outputs).save(tmp_path / "custom.keras")
    np.save(tmp_path / "calib.npy", np.random.default_rng(0).normal(size=(20, 8)).astype("float32"))


@pytest.mark.cold_spawn
def test_import_hands_the_users_module_to_the_worker(tmp_path):
    custom_layer_model(tmp_path)
    shutil.rmtree(tmp_path / "__pycache__", ignore_errors=True)  # this test's own import of layers.py
    refused = run("diagnose", "custom.keras", "--no-convert", cwd=tmp_path)
    assert refused.returncode == 2 and "--import layers.py" in refused.stderr
    by_file = run("diagnose", "custom.keras", "--no-convert", "--import", "layers.py", cwd=tmp_path)
    assert by_file.returncode in (0, 1) and "cannot load" not in by_file.stderr, by_file.stderr[-2000:]
    assert "to_f64" in by_file.stdout  # the preflight read the custom layer's float64 math
    by_module = run("diagnose", "custom.keras", "--no-convert", "--import", "layers", cwd=tmp_path)
    assert by_module.returncode in (0, 1) and "cannot load" not in by_module.stderr
    assert not (tmp_path / "__pycache__").exists()  # nothing written beside the user's module
    missing = run("diagnose", "custom.keras", "--import", "nowhere.py", cwd=tmp_path)
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
    assert "nowhere.py" in missing.stderr
    broken = run("diagnose", "custom.keras", "--no-convert", "--import", "no_such_module", cwd=tmp_path)
    assert broken.returncode == 2 and "--import no_such_module failed: ModuleNotFoundError" in broken.stderr


def test_reduce_command_on_a_custom_layer_from_the_users_module(tmp_path):
    custom_layer_model(tmp_path)
    result = run("reduce", "custom.keras", "--data", "calib.npy", "--import", "layers.py", "--repro", "repro.py",
                 "--with-source", "--json", "r.json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    reduced = json.loads((tmp_path / "r.json").read_text())
    assert [c["name"] for c in reduced["culprits"]] == ["to_f64"]
    assert reduced["signature"]["code"] == "QD202" and reduced["conversions"] <= reduced["conversion_bound"]
    assert "to_f64 (Float64Scale)" in result.stdout
    script = (tmp_path / "repro.py").read_text()
    assert "USER_SOURCES = {'layers': " in script and "QD202" in script.splitlines()[1]
    elsewhere = tmp_path / "elsewhere"  # the repro carries the custom layer: no layers.py next to it
    elsewhere.mkdir()
    (elsewhere / "repro.py").write_text(script)
    ran = subprocess.run([sys.executable, "-I", "repro.py"], cwd=elsewhere, capture_output=True, text=True,
                         timeout=600)
    assert ran.returncode != 0
    matcher = next(m for m in MATCHERS if m.name == reduced["signature"]["message_class"])
    assert matcher.search(ran.stderr) and reduced["signature"]["op"] in ran.stderr, ran.stderr[-2000:]


@pytest.mark.code("QD901")
def test_fix_reduces_a_converter_crash_on_its_own_and_verifies_no_wrong_model():
    model = keras.Sequential([keras.Input((None, None, 3), name="image"), keras.layers.Conv2D(4, 3, name="conv"),
                              keras.layers.GlobalAveragePooling2D(name="pool"), keras.layers.Dense(2, name="head")])
    tiny = np.random.default_rng(0).uniform(size=(12, 2, 2, 3)).astype("float32")  # smaller than the kernel
    result = qd.fix(model, tiny)
    assert result.before.root_cause.code == "QD901" and result.before.root_cause.evidence["signal"] == "SIGFPE"
    reduced = result.to_dict()["reduce"]
    assert reduced["reduced"] and [c["name"] for c in reduced["culprits"]] == ["conv"]
    assert reduced["signature"] == "QD901 (signal SIGFPE)"
    tried = [t["change"].split(":")[0] for t in reduced["tried"]]
    # the layer's ops as the converter keeps them (the reshapes of its bias are folded into constants)
    assert tried == ["dynamic range quantization", "Select TF ops enabled for 'conv' (ops BiasAdd, Conv2D); "
                                                   "representative dataset dropped, since the calibrator cannot run "
                                                   "Flex ops"]
    assert not result.verified and result.model is None  # the samples crash the float conv too: nothing to verify
    assert "Reduced to conv: QD901 (signal SIGFPE)" in str(result)


def test_reduce_user_errors_are_one_line(tmp_path):
    model = keras.Sequential([keras.Input((8,), name="features"), keras.layers.Dense(2, name="head")])
    model.save(tmp_path / "clean.keras")
    np.save(tmp_path / "calib.npy", calibration_vectors())
    for args, message in [(["--code", "QD1"], "code must be a finding code such as QD108, not 'QD1'"),
                          (["--repro", "clean.keras"], "clean.keras"),
                          ([], "reduce needs a failure: this model converts with no error finding")]:
        result = run_in_process("reduce", "clean.keras", "--data", "calib.npy", *args, cwd=tmp_path)
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr[-1500:]
        assert message in result.stderr
