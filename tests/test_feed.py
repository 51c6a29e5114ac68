"""Feeding samples to LiteRT: free sizes resized per sample, batches split into rows, extra inputs refused."""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest
from models import dataset_from, smooth_images, two_input_model, vectors

import quantdoctor as qd
from quantdoctor.errors import UsageError
from quantdoctor.report.terminal import render_plain


def any_size_images() -> keras.Model:
    """A fully convolutional classifier: height and width are free (Input((None, None, 3)))."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, None, 3))
    hidden = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(hidden)))


def any_length_sequences() -> keras.Model:
    """Variable-length sequences of 8 features: the time axis is free (Input((None, 8)))."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, 8))
    hidden = keras.layers.Dense(8, activation="relu")(inputs)  # Dense on rank 3: RESHAPE/FULLY_CONNECTED/RESHAPE
    return keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling1D()(hidden)))


def sizes(shapes: list[tuple[int, ...]], seed: int):
    """A representative_dataset of batch-of-1 samples of the given shapes."""
    rng = np.random.default_rng(seed)

    def dataset():
        for shape in shapes:
            yield [rng.uniform(0, 1, (1, *shape)).astype(np.float32)]
    return dataset


def test_images_of_any_size_compare_end_to_end():
    model = any_size_images()
    eval_sizes = [(16, 16, 3), (24, 20, 3)] * 5  # the interpreters resize and reallocate between samples
    report = qd.compare(model, smooth_images(40), eval_data=sizes(eval_sizes, seed=1))
    assert report.comparison["samples"] == 10
    assert report.comparison["end_to_end"]["cosine"] > 0.98
    assert {row["op"] for row in report.comparison["layers"]} >= {"CONV_2D", "FULLY_CONNECTED"}
    assert re.search(r"input '[\w:]+': float32 \[\?, \?, \?, 3\]", render_plain(report))  # free sizes shown free


def test_variable_length_sequences_compare_end_to_end():
    model = any_length_sequences()
    report = qd.compare(model, sizes([(length, 8) for length in (5, 9, 12, 7)] * 10, seed=0),
                        eval_data=sizes([(length, 8) for length in (3, 10, 6)] * 4, seed=2))
    assert report.conversion["outcome"] == "ok" and report.comparison["samples"] == 12
    assert report.comparison["end_to_end"]["cosine"] > 0.98
    # the per-position tensors change length with each sample: compared as they come
    assert any(row["op"] == "FULLY_CONNECTED" for row in report.comparison["layers"])


def test_batches_of_several_samples_are_split_into_rows_with_one_label_each():
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    data = vectors(24, seed=5)

    def batches_of_four():
        for start in range(0, 24, 4):
            yield [data[start:start + 4]]

    labels = np.arange(24) % 4
    report = qd.compare(model, vectors(50), eval_data=batches_of_four, labels=labels)
    assert report.comparison["samples"] == 24
    assert 0 <= report.comparison["end_to_end"]["accuracy_float"] <= 1


def test_a_sample_missing_an_input_or_naming_others_is_refused_not_filled_in():
    images, meta = smooth_images(30, size=8), vectors(30, features=4)

    def calibration():
        for image, row in zip(images, meta):
            yield {"image": image[None], "meta": row[None]}

    model = two_input_model()
    quantized = qd.diagnose(model, calibration).tflite_model

    def image_only():
        for image in images[:5]:
            yield [image[None]]

    def misnamed():
        for image, row in zip(images[:5], meta):
            yield {"picture": image[None], "meta": row[None]}

    with pytest.raises(UsageError, match=r"^eval sample #0 holds 1 array\(s\) for a model with 2 input\(s\)"):
        qd.compare(model, eval_data=image_only, tflite=quantized)
    with pytest.raises(UsageError, match=r"^eval sample #0 names its arrays \['meta', 'picture'\]; the model's "
                                         r"inputs are named \['image', 'meta'\]$"):
        qd.compare(model, eval_data=misnamed, tflite=quantized)


def test_a_sample_of_another_shape_one_rank_short_is_not_told_to_add_a_batch_axis():
    """[1, 5, 4] for [None, 8, 8, 3] has its batch axis: array[None] would not fit either."""
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(), keras.layers.Dense(4)])

    def sequences():
        yield [np.zeros((1, 5, 4), np.float32)]

    with pytest.raises(UsageError, match=r"eval sample #0 gives input .* \[None, 8, 8, 3\] an array shaped "
                                         r"\[1, 5, 4\]: the model takes rank 4, the array has rank 3$"):
        qd.compare(model, dataset_from(smooth_images(20, size=8)), eval_data=sequences)


def test_a_sample_without_its_batch_axis_is_refused_with_the_fix():
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])

    def unbatched():
        yield [vectors(1)[0]]

    with pytest.raises(UsageError, match=r"eval sample #0 gives input .* \[None, 8\] an array shaped \[8\]: "
                                         r"it lacks the batch axis"):
        qd.compare(model, dataset_from(vectors(20)), eval_data=unbatched)
