"""fix-accuracy: the fewest float ops that meet an accuracy budget, on tiny models trained on real digits."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from helpers import assert_finding, only, run_in_process

import quantdoctor as qd
from quantdoctor.budget.worker import model_outputs
from quantdoctor.errors import UsageError
from quantdoctor.intake.user_input import calibration_set

QUANTDOCTOR = str(Path(sys.executable).with_name("quantdoctor"))


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """The conversion cache on, in a private temporary directory, for this module's tests."""
    directory = tmp_path_factory.mktemp("cache") / "quantdoctor"
    saved = {key: os.environ.get(key) for key in ("QUANTDOCTOR_NO_CACHE", "QUANTDOCTOR_CACHE_DIR")}
    os.environ.pop("QUANTDOCTOR_NO_CACHE", None)
    os.environ["QUANTDOCTOR_CACHE_DIR"] = str(directory)
    yield directory
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    data = load_digits()
    return (data.images / 16.0).astype(np.float32).reshape(-1, 64), data.target


@pytest.fixture(scope="module")
def crushing_concat(digits):
    """32 learned features concatenated with a constant 0..500 side branch, then the classifier: in
    INT8 the merge's one scale crushes the features."""
    x, y = digits
    keras.utils.set_random_seed(0)
    inputs = keras.Input((64,), name="pixels")
    features = keras.layers.Dense(32, activation="relu", name="features")(inputs)
    side = keras.layers.Dense(4, kernel_initializer="zeros", trainable=False, name="side",
                              bias_initializer=keras.initializers.Constant(np.linspace(0, 500, 4)))(inputs)
    merged = keras.layers.Concatenate(name="merge")([features, side])
    model = keras.Model(inputs, keras.layers.Dense(10, name="classifier")(merged), name="crushed")
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x[:1300], y[:1300], epochs=20, batch_size=64, verbose=0)
    return model


@pytest.fixture(scope="module")
def saved(digits, crushing_concat, tmp_path_factory):
    """The crushing model and its data as the files a command-line user has."""
    x, y = digits
    folder = tmp_path_factory.mktemp("files")
    crushing_concat.save(folder / "crushed.keras")
    for name, array in (("calib", x[:300]), ("eval", x[1397:]), ("labels", y[1397:])):
        np.save(folder / f"{name}.npy", array)
    return folder


@pytest.mark.code("QD514")
def test_crushing_concatenation_is_restored_with_its_producer_and_consumer(cache_dir, digits, saved, tmp_path):
    x, _ = digits
    result = qd.fix(saved / "crushed.keras", saved / "calib.npy", eval_data=saved / "eval.npy",
                    labels=saved / "labels.npy", max_drop=0.01)
    budget = result.budget
    float_accuracy = budget["objective"]["float_value"]
    assert budget["int8_value"] <= float_accuracy - 0.05  # plain INT8 really loses
    assert result.verified and result.met_budget and budget["chosen_value"] >= float_accuracy - 0.01
    assert {(row["layer"], row["op"]) for row in result.kept_float} == {
        ("features", "FULLY_CONNECTED"), ("merge", "CONCATENATION"), ("classifier", "FULLY_CONNECTED")}
    assert all(row["gain"] > 0 for row in result.kept_float)  # each one is needed: quantized again, the budget fails
    assert budget["chosen"]["float_ops"] == 3 < budget["candidate_ops"]
    assert {c["float_ops"] for c in result.pareto} >= {0, 3}
    assert_finding(only(result.after, "QD514"), "QD514", "accuracy", "info", layer="merge", op="CONCATENATION")
    assert not any(f.code == "QD506" for f in result.after.findings)  # the plain model's crushed merge: answered

    script = tmp_path / "convert_fixed.py"
    script.write_text(result.script)
    completed = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-2000:]
    samples = calibration_set(x[1397:]).samples
    remade = model_outputs((tmp_path / "model_int8.tflite").read_bytes(), samples)[0]
    chosen = model_outputs(result.model, samples)[0]
    assert np.array_equal(remade, chosen)
    assert "import quantdoctor" not in result.script and "denylisted_nodes=KEEP_FLOAT" in result.script


def test_user_metric_and_an_integer_accelerator_target(cache_dir, digits, crushing_concat):
    x, y = digits

    def accuracy(labels, outputs):  # compare's order
        return float(np.mean(outputs.argmax(-1) == labels))

    result = qd.fix(crushing_concat, x[:300], eval_data=x[1397:], labels=y[1397:], metric=accuracy, max_drop=0.01,
                    target="int8-accelerator")
    assert result.budget["objective"]["metric"] == "metric" and result.met_budget and result.verified
    meeting = [c for c in result.budget["candidates"] if c["meets_budget"]]
    assert result.budget["chosen"]["integer_partitions"] == min(c["integer_partitions"] for c in meeting)
    assert all(isinstance(c["integer_partitions"], int) for c in result.budget["candidates"])


@pytest.mark.code("QD513")
def test_budget_out_of_reach_returns_the_best_effort(cache_dir, digits, tmp_path):
    """int8 input and output bound a regression output's SQNR whatever stays float; the script makes
    the same int8-I/O model."""
    x, y = digits
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,), name="pixels"),
                              keras.layers.Dense(16, activation="relu", name="dense"),
                              keras.layers.Dense(1, name="value")], name="regression")
    model.compile("adam", "mse")
    model.fit(x[:1000], y[:1000].astype(np.float32), epochs=3, verbose=0)
    model.save(tmp_path / "regression.keras")
    np.save(tmp_path / "calib.npy", x[:200])
    result = qd.fix(tmp_path / "regression.keras", tmp_path / "calib.npy", eval_data=x[1397:1597], min_sqnr=60,
                    io="int8")
    assert result.met_budget is False and not result.verified and result.model is not None  # the best effort
    finding = only(result.after, "QD513")
    assert_finding(finding, "QD513", "accuracy", "error")
    assert finding.evidence["all_float_value"] < 60 and result.budget["chosen"]["metric"] < 60
    assert result.budget["audit"]["input_types"][0]["dtype"] == "int8"
    assert [b.code for b in result.blocked] == ["QD513"]
    script = tmp_path / "remake.py"
    script.write_text(result.script)
    completed = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-2000:]
    samples = calibration_set(x[1397:1497]).samples
    remade = model_outputs((tmp_path / "model_int8.tflite").read_bytes(), samples)[0]
    chosen = model_outputs(result.model, samples)[0]
    assert np.array_equal(remade, chosen)


@pytest.mark.slow
def test_diagnose_compare_and_fix_calibrate_once_in_a_private_bounded_cache(cache_dir, digits, saved, tmp_path,
                                                                              monkeypatch):
    x, y = digits
    model_path, calibration = saved / "crushed.keras", tmp_path / "calib.npy"
    np.save(calibration, x[:280])
    before = set(cache_dir.iterdir()) if cache_dir.exists() else set()  # the cache creates its directory
    assert not qd.diagnose(model_path, calibration).conversion.get("cached")
    entry, = set(cache_dir.iterdir()) - before
    compared = qd.compare(model_path, calibration, eval_data=x[1397:1497])
    fixed = qd.fix(model_path, calibration, eval_data=x[1397:], labels=y[1397:], max_drop=0.01)
    assert compared.conversion["cached"] and fixed.before.conversion["cached"] and fixed.budget["conversion_cached"]
    assert set(cache_dir.iterdir()) - before == {entry}
    assert stat.S_IMODE(cache_dir.stat().st_mode) == 0o700 and stat.S_IMODE(entry.stat().st_mode) == 0o700
    assert {stat.S_IMODE(f.stat().st_mode) for f in entry.iterdir()} == {0o600}

    entry_mb = sum(f.stat().st_size for f in entry.iterdir()) / 2**20
    monkeypatch.setenv("QUANTDOCTOR_CACHE_MAX_MB", str(entry_mb * 1.5))  # room for one entry
    qd.diagnose(model_path, x[:250])  # other calibration data: a new entry, the least recently used goes
    assert entry not in set(cache_dir.iterdir()) and len([e for e in cache_dir.iterdir() if e.is_dir()]) == 1


@pytest.mark.slow
def test_cli_fix_with_a_budget_writes_model_script_json_and_an_html_pareto_plot_a_browser_renders(
        cache_dir, saved, tmp_path):
    from PIL import Image

    from quantdoctor.report.html import CHOSEN_COLOR, PARETO_COLOR

    paths = {name: tmp_path / name for name in ("fixed.tflite", "convert_fixed.py", "fix.html", "fix.json", "ov.json")}
    completed = run_in_process(
        "fix", str(saved / "crushed.keras"), "--data", str(saved / "calib.npy"),
        "--eval-data", str(saved / "eval.npy"), "--labels", str(saved / "labels.npy"), "--max-drop", "0.01",
        "--output", str(paths["fixed.tflite"]), "--script", str(paths["convert_fixed.py"]),
        "--html", str(paths["fix.html"]), "--json", str(paths["fix.json"]), "--model-explorer", str(paths["ov.json"]))
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
    assert "Accuracy budget:" in completed.stdout and "MET" in completed.stdout
    report = json.loads(paths["fix.json"].read_text())
    assert report["verified"] and report["budget"]["met_budget"] and report["budget"]["chosen"]["float_ops"] == 3
    assert report["after"]["budget"] == report["budget"]
    assert len(qd.audit(paths["fixed.tflite"]).audit["float_ops"]) == 3
    assert f"Model Explorer overlay written to {paths['ov.json']}" in completed.stdout
    overlay = json.loads(paths["ov.json"].read_text())["main"]["results"]
    assert sum(value["value"].endswith("kept float by fix") for value in overlay.values()) == 3
    assert "denylisted_nodes=KEEP_FLOAT" in paths["convert_fixed.py"].read_text()
    page = paths["fix.html"].read_text()
    assert "http" not in page.replace("http://www.w3.org/2000/svg", "")
    shot = tmp_path / "shot.png"
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1100,4000",
                    paths["fix.html"].as_uri()], capture_output=True, timeout=120, check=True)
    pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3).astype(int)
    for color in (PARETO_COLOR, CHOSEN_COLOR):
        rgb = np.array([int(color[i:i + 2], 16) for i in (1, 3, 5)])
        assert np.sum(np.all(np.abs(pixels - rgb) < 8, axis=1)) > 100, color  # the front and the chosen point


@pytest.mark.parametrize("options, message", [
    ({"max_drop": 0.01, "mode": "int8-strict"}, "mode int8-strict does not allow"),
    ({"max_drop": 0.01, "min_sqnr": 30.0}, "give one accuracy budget"),
    ({"metric": np.mean}, "a metric judges an accuracy budget"),
    ({"max_drop": 0.01, "labels": np.zeros(3)}, "3 labels for 10 eval samples"),
    ({"max_drop": -0.5}, "max_drop must be a non-negative drop"),
    ({"max_drop": "0.1"}, r"max_drop must be a non-negative drop of the metric, a number from 0 to 1e\+06, not '0.1'"),
    ({"max_drop": True}, "max_drop must be a non-negative drop .* not True"),
    ({"max_drop": float("nan")}, "max_drop must be .* not nan"),
    ({"min_sqnr": "30"}, r"min_sqnr must be an SQNR floor in dB \(an exact output scores 120\), a number from "
                         "-120 to 120, not '30'"),
    ({"min_sqnr": float("nan")}, "min_sqnr must be an SQNR floor in dB .* not nan"),
    ({"min_sqnr": float("inf")}, "min_sqnr must be .* not inf"),
])
def test_usage_errors_come_before_any_conversion(options, message, digits, tmp_path):
    x, _ = digits
    never_read = tmp_path / "never-read.keras"
    with pytest.raises(UsageError, match=message):
        qd.fix(never_read, x[:10], eval_data=x[:10], **options)
    with pytest.raises(UsageError, match="measured on eval data"):
        qd.fix(never_read, x[:10], max_drop=0.01)


@pytest.mark.parametrize("option", [["--min-sqnr", "nan"], ["--max-drop", "inf"], ["--max-drop", "-1"]])
def test_cli_refuses_a_budget_that_is_no_number_in_one_line_before_reading_anything(option, tmp_path):
    (tmp_path / "never-read.keras").write_bytes(b"not read: the budget is refused first")
    completed = subprocess.run([QUANTDOCTOR, "fix", str(tmp_path / "never-read.keras"), *option],
                               capture_output=True, text=True, timeout=120)
    name = option[0][2:].replace("-", "_")
    assert completed.returncode == 2, completed.stderr
    assert completed.stderr.startswith(f"quantdoctor: error: {name} must be ") and completed.stderr.count("\n") == 1
    assert completed.stderr.rstrip().endswith(f"not {float(option[1])!r}") and completed.stdout == ""


def test_grid_sqnr_measures_a_tensor_on_its_own_int8_grid_against_its_variation():
    """What the ranking reads: rounding and clipping the float values to the tensor's own scale and
    range, against their variation around each channel's mean (plain NumPy on the same values)."""
    from quantdoctor.compare.metrics import ErrorStats

    rng = np.random.default_rng(0)
    real = np.stack([rng.normal(0, 1, 400), 300 + rng.normal(0, 1, 400)], axis=-1).astype(np.float32)
    scale, zero_point = 305 / 255, -128  # one int8 scale spanning 0..305: the offset channel's detail is lost
    stored = np.clip(np.round(real / scale) + zero_point, -128, 127).astype(np.int8)
    stats = ErrorStats(scale=scale, zero_point=zero_point)
    stats.add(real[:150], stored[:150])
    stats.add(real[150:], stored[150:])
    grid = np.clip(np.round(real.astype(np.float64) / scale) * scale, scale * (-128 - zero_point),
                   scale * (127 - zero_point))
    noise = np.sum((grid - real) ** 2, axis=0)
    variation = np.sum((real - real.mean(axis=0)) ** 2, axis=0)
    expected = 10 * np.log10(variation / noise)
    assert stats.worst_channel_grid_sqnr_db == pytest.approx(min(expected), abs=0.05)
    assert min(expected) < 5 < stats.sqnr_db  # energy-based SQNR hides it: the offset counts as signal

    as_floats = ErrorStats()
    as_floats.add(real, real)
    assert as_floats.worst_channel_grid_sqnr_db == 120.0
