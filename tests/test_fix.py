"""quantdoctor fix: each repair on a tiny model that fails without it, verified with the real converter and LiteRT."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import quantdoctor as qd
from models import (Float64Scale, Projection, dataset_from, image_model, int8_converter, lambda_layer, lstm_model,
                    smooth_images, two_input_model, vectors, with_layer)


def generator(samples):
    """A representative_dataset yielding `samples` exactly as given."""
    def representative_dataset():
        yield from samples
    return representative_dataset


def codes(result) -> list[str]:
    return [repair.code for repair in result.applied]


def test_seed_example_3_random_float64_samples_are_cast_and_the_noise_still_warned():
    def representative_dataset_gen():
        for _ in range(10):
            yield [np.random.rand(1, 16, 16, 3)]

    result = qd.fix(int8_converter(image_model(), representative_dataset_gen))
    assert result.before.root_cause.code == "QD201" and result.before.root_cause.fix.automatic
    assert result.verified and result.model[4:8] == b"TFL3"
    assert codes(result) == ["QD201"] and result.conversions == 2
    assert result.verification.runs and result.after.audit["fully_integer"]
    assert [f.code for f in result.after.findings] == ["QD309", "QD308"]  # random data is still no calibration
    assert "cast_to(sample, {0: 'float32'})" in result.script


def test_several_data_mistakes_are_repaired_in_one_round():
    """Bare float64 arrays without a batch axis, one holding a NaN: four repairs, one conversion after the first."""
    images = smooth_images(120).astype(np.float64)
    images[7, 3, 3, 0] = np.nan
    result = qd.fix(int8_converter(image_model(), generator(list(images))))
    assert result.before.root_cause.code == "QD303"
    assert codes(result) == ["QD303", "QD201", "QD306", "QD307"]
    assert result.applied[3].change == "1 of 120 samples dropped for holding NaN or Inf"
    assert result.conversions == 2 and result.verified
    assert len(result.calibration) == 119 and result.calibration.samples[0].arrays[0].shape == (1, 16, 16, 3)
