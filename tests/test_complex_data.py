"""Complex-valued samples for a real input: no NumPy ComplexWarning reaches the user, and fix casts
them only when no imaginary part is lost."""

from __future__ import annotations

import subprocess
import warnings

import keras
import numpy as np
import pytest
from helpers import QUANTDOCTOR

import quantdoctor as qd


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("complex")
    inputs = keras.Input((8,), name="signal")
    keras.Model(inputs, keras.layers.Dense(3, name="scores")(inputs), name="spectrum").save(folder / "model.keras")
    return folder / "model.keras"


def samples(imaginary: float) -> np.ndarray:
    real = np.random.default_rng(0).normal(size=(24, 8))
    return (real + 1j * imaginary * np.ones_like(real)).astype(np.complex64)


def test_diagnose_reports_complex_samples_without_numpy_warnings(model_file, tmp_path):
    np.save(tmp_path / "calib.npy", samples(1.0))
    np.save(tmp_path / "eval.npy", samples(0.5))
    completed = subprocess.run([QUANTDOCTOR, "diagnose", str(model_file), "--data", str(tmp_path / "calib.npy"),
                                "--eval-data", str(tmp_path / "eval.npy")], capture_output=True, text=True, timeout=600)
    assert completed.returncode == 1 and "QD204 error" in completed.stdout
    assert "is complex64; the input expects float32" in completed.stdout
    assert "ComplexWarning" not in completed.stderr and "imaginary part" not in completed.stderr, completed.stderr


def test_fix_blocks_a_cast_that_would_drop_imaginary_parts(model_file):
    with warnings.catch_warnings():
        warnings.simplefilter("error", np.exceptions.ComplexWarning)
        result = qd.fix(model_file, samples(1.0))
    assert not result.verified and result.applied == []
    blocked, = [b for b in result.blocked if b.code == "QD204"]
    assert blocked.reason.endswith("Their imaginary parts are not 0: no cast keeps them.")
    assert blocked.instruction.startswith("decide what the model sees: the real part (x.real), the magnitude")


def test_fix_casts_complex_samples_whose_imaginary_parts_are_all_zero(model_file):
    with warnings.catch_warnings():
        warnings.simplefilter("error", np.exceptions.ComplexWarning)
        result = qd.fix(model_file, samples(0.0))
    assert result.verified, str(result)
    repair, = result.applied
    assert (repair.code, repair.change) == ("QD204", "samples for input 'signal' cast from complex64 to float32")
    assert repair.cost == "none: every imaginary part is 0, and the real parts are unchanged"
