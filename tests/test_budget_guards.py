"""An accuracy budget is measured against the float model on the user's labels: labels that name
classes the model lacks are refused as compare refuses them, and a float model already wrong on
the eval data (QD510) stops the search instead of being "answered" by keeping ops float."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from helpers import run_in_process

import quantdoctor as qd


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A three-class Keras model and its data as a command-line user has them; `labels_big.npy`
    names class 5, `labels_random.npy` has nothing to do with the inputs."""
    folder = tmp_path_factory.mktemp("guards")
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,), name="features")
    hidden = keras.layers.Dense(16, activation="relu", name="hidden")(inputs)
    keras.Model(inputs, keras.layers.Dense(3, name="scores")(hidden), name="three").save(folder / "model.keras")
    rng = np.random.default_rng(0)
    np.save(folder / "calib.npy", rng.normal(size=(40, 8)).astype(np.float32))
    np.save(folder / "eval.npy", rng.normal(size=(60, 8)).astype(np.float32))
    np.save(folder / "labels_big.npy", np.arange(60) % 6)
    np.save(folder / "labels_random.npy", rng.integers(0, 3, 60))
    return folder


def test_fix_with_a_budget_refuses_labels_naming_missing_classes_in_compare_s_words(files):
    common = [str(files / "model.keras"), "--data", str(files / "calib.npy"), "--eval-data", str(files / "eval.npy"),
              "--labels", str(files / "labels_big.npy")]
    fixed = run_in_process("fix", *common, "--max-drop", "0.01")
    compared = run_in_process("compare", *common)
    expected = ("quantdoctor: error: label 5 names a class the model does not have: its first output has 3 classes "
                "(0 to 2)\n")
    assert (fixed.returncode, fixed.stderr, fixed.stdout) == (2, expected, "")
    assert (compared.returncode, compared.stderr, compared.stdout) == (2, expected, "")


def test_a_float_model_at_chance_stops_the_budget_instead_of_verifying(files):
    result = qd.fix(files / "model.keras", files / "calib.npy", eval_data=files / "eval.npy",
                    labels=files / "labels_random.npy", max_drop=0.05)
    assert not result.verified and result.model is None and result.budget is None  # nothing searched
    failure = next(f for f in result.after.findings if f.code == "QD510")
    assert failure.severity == "error" and failure.evidence["float_accuracy"] <= failure.evidence["chance"] + 0.2
    assert "QD510" in [b.code for b in result.blocked]
    assert any(detail.startswith("no float fallback searched: the float model is already wrong on the eval data "
                                 "(QD510") and detail.endswith("an accuracy budget measured against it means nothing")
               for detail in result.verification.details)
    text = str(result)
    assert text.startswith("NOT FIXED") and "VERIFIED" not in text and "answered by keeping ops float" not in text
