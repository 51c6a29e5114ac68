"""Eval data that does not fit the model: `diagnose`, `fix` (with and without a budget) and
`compare` refuse it with the same one line, exit 2, before converting."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import keras
import numpy as np
import pytest
from helpers import run_in_process

import quantdoctor as qd
from quantdoctor.errors import UsageError

MISFIT = ("quantdoctor: error: eval sample #0 gives input 'features' [None, 8] an array shaped [1, 5]: "
          "the sizes the model fixes differ\n")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("eval_fit")
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,), name="features")
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="scores")(inputs), name="fit")
    model.save(folder / "model.keras")
    rng = np.random.default_rng(0)
    np.save(folder / "calib.npy", rng.normal(size=(20, 8)).astype(np.float32))
    np.save(folder / "eval_ok.npy", rng.normal(size=(12, 8)).astype(np.float32))
    np.save(folder / "eval_wrong.npy", rng.normal(size=(12, 5)).astype(np.float32))
    np.save(folder / "labels.npy", rng.integers(0, 3, 12))
    return folder


def quantdoctor(*args: str, cache: Path) -> subprocess.CompletedProcess:
    """The command with the conversion cache on in `cache`: a conversion that completed leaves an entry."""
    env = {key: value for key, value in os.environ.items() if key != "QUANTDOCTOR_NO_CACHE"}
    env["QUANTDOCTOR_CACHE_DIR"] = str(cache)
    return run_in_process(*args, env=env)


def test_every_command_refuses_misfit_eval_data_with_one_line_before_converting(files, tmp_path):
    cache = tmp_path / "cache"
    model, calib, wrong = (str(files / name) for name in ("model.keras", "calib.npy", "eval_wrong.npy"))
    keep = tmp_path / "workdir"
    commands = {
        "diagnose": ["diagnose", model, "--data", calib, "--eval-data", wrong, "--keep-workdir", str(keep)],
        "fix": ["fix", model, "--data", calib, "--eval-data", wrong],
        "fix --max-drop": ["fix", model, "--data", calib, "--eval-data", wrong, "--labels",
                           str(files / "labels.npy"), "--max-drop", "0.05"],
        "compare": ["compare", model, "--data", calib, "--eval-data", wrong],
    }
    for name, args in commands.items():
        completed = quantdoctor(*args, cache=cache)
        assert (completed.returncode, completed.stderr, completed.stdout) == (2, MISFIT, ""), name
    response = json.loads((keep / "response.json").read_text())
    assert response["outcome"] == "eval_data_refused" and response["stage"] == "done"
    assert not (keep / "model.tflite").exists()  # the worker stopped after loading the model
    assert not list(cache.rglob("*.tflite"))  # no conversion ran to its end: the cache holds no model

    # A conversion taken from the cache is checked all the same.
    assert quantdoctor("diagnose", model, "--data", calib, "--eval-data", str(files / "eval_ok.npy"),
                       cache=cache).returncode == 0
    assert list(cache.rglob("*.tflite"))  # that conversion is in the cache
    refused = quantdoctor("diagnose", model, "--data", calib, "--eval-data", wrong, cache=cache)
    assert (refused.returncode, refused.stderr) == (2, MISFIT)


def two_input_model() -> keras.Model:
    """Two inputs of different sizes, declared in the order (b, a)."""
    first, second = keras.Input((3,), name="b"), keras.Input((6,), name="a")
    merged = keras.layers.Concatenate(name="merge")([keras.layers.Dense(4, name="db")(first),
                                                      keras.layers.Dense(4, name="da")(second)])
    return keras.Model([first, second], keras.layers.Dense(2, name="out")(merged), name="two")


def test_named_samples_are_refused_before_converting_and_samples_in_order_on_the_converted_model(tmp_path):
    model = two_input_model()
    calibration = {"a": np.zeros((4, 6), np.float32), "b": np.zeros((4, 3), np.float32)}
    named = {"a": np.zeros((4, 6), np.float32), "b": np.zeros((4, 4), np.float32)}
    with pytest.raises(UsageError, match=r"^eval sample #0 gives input 'b' \[None, 3\] an array shaped \[1, 4\]"):
        qd.diagnose(model, calibration, eval_data=named, convert=False)  # no conversion asked, none needed

    sequential = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2)])  # a default input name
    with pytest.raises(UsageError, match=r"^eval sample #0 gives input '\w+' \[None, 8\] an array shaped \[1, 2, 8\]: "
                                         r"the model takes rank 2, the array has rank 3"):
        qd.diagnose(sequential, np.zeros((4, 8), np.float32), eval_data=np.zeros((4, 2, 8), np.float32),
                    convert=False)

    def in_order():  # list samples: paired with the inputs in the converted model's order
        for _ in range(3):
            yield [np.zeros((1, 6), np.float32), np.zeros((1, 6), np.float32)]

    with pytest.raises(UsageError, match=r"^eval sample #0 gives input '[ab]' \[None, [36]\] an array shaped \[1, 6\]"):
        qd.diagnose(model, calibration, eval_data=in_order)


def test_compare_prints_its_usage_error_alone_without_a_blank_line_before_it(files, tmp_path):
    np.save(tmp_path / "labels.npy", np.zeros(5, np.int64))
    completed = run_in_process("compare", str(files / "model.keras"), "--data", str(files / "calib.npy"),
                               "--eval-data", str(files / "eval_ok.npy"), "--labels", str(tmp_path / "labels.npy"))
    assert (completed.returncode, completed.stdout) == (2, "")
    assert completed.stderr == ("quantdoctor: error: 5 labels for 12 eval samples: give exactly one label per "
                                "sample\n")
