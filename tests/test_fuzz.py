"""Fuzzing the readers of untrusted files: byte mutations of a valid .tflite through the audit, and of
valid .npz/.npy files through the data reader. Whatever the bytes, the only exceptions allowed are
quantdoctor's own (one line for the user); anything else is a crash to fix. Fixed seeds: the same
mutations every run, a few seconds in all."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from models import dataset_from, image_model, int8_converter, smooth_images

import quantdoctor as qd
from quantdoctor.errors import QuantdoctorError
from quantdoctor.intake import data as data_intake

TARGETS = (None, "int8-accelerator", "microcontroller")


def mutations(content: bytes, count: int, seed: int, keep: int = 0):
    """`count` copies of `content`, each with 1-4 bytes replaced, bit-flipped or a 32-bit word
    overwritten after the first `keep` bytes, and one in ten cut short."""
    rng = random.Random(seed)
    for _ in range(count):
        mutated = bytearray(content)
        for _ in range(rng.randint(1, 4)):
            position = rng.randrange(keep, len(mutated))
            kind = rng.random()
            if kind < 0.5:
                mutated[position] = rng.randrange(256)
            elif kind < 0.8:
                mutated[position] ^= 1 << rng.randrange(8)
            else:
                mutated[position:position + 4] = rng.randrange(2 ** 32).to_bytes(4, "little")
        if rng.random() < 0.1:
            mutated = mutated[:rng.randrange(keep, len(mutated))]
        yield bytes(mutated)


def test_mutated_tflite_models_are_audited_or_refused_in_one_line():
    integer = int8_converter(image_model(size=8), dataset_from(smooth_images(20, size=8)), strict=True).convert()
    floating = tf.lite.TFLiteConverter.from_keras_model(image_model(size=8)).convert()
    refused = 0
    for number, content in enumerate([*mutations(integer, 250, seed=1, keep=8), *mutations(floating, 100, seed=2)]):
        try:
            qd.audit(content, target=TARGETS[number % 3])
        except QuantdoctorError as exc:
            assert "\n" not in str(exc), str(exc)
            refused += 1
    assert 0 < refused < 350  # the mutations reach both outcomes: refused, and audited anyway


@pytest.fixture(scope="module")
def data_files(tmp_path_factory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("fuzz_data")
    rng = np.random.default_rng(0)
    np.savez(folder / "stored.npz", image=rng.random((6, 4, 4, 3), np.float32), meta=np.arange(12).reshape(6, 2))
    np.savez_compressed(folder / "compressed.npz", rng.random((6, 5)).astype(np.float32))
    np.save(folder / "plain.npy", rng.random((6, 5)).astype(np.float32))
    samples = data_intake.from_generator(lambda: iter([[np.ones((1, 3), np.float32)], {"x": np.zeros((1, 2))}]))
    samples.save(folder / "quantdoctor.npz")
    return {path.name: path.read_bytes() for path in folder.iterdir()}


@pytest.mark.parametrize("name", ["stored.npz", "compressed.npz", "plain.npy", "quantdoctor.npz"])
def test_mutated_data_files_are_read_or_refused_in_one_line(data_files, tmp_path, name):
    path = tmp_path / name
    refused = 0
    for content in mutations(data_files[name], 120, seed=sum(map(ord, name))):
        path.write_bytes(content)
        try:
            data_intake.from_file(path, max_samples=4)
        except QuantdoctorError as exc:
            assert "\n" not in str(exc), str(exc)
            refused += 1
    assert refused > 0


def test_the_unmutated_files_are_read(data_files, tmp_path):
    for name, content in data_files.items():
        (tmp_path / name).write_bytes(content)
        assert len(data_intake.from_file(Path(tmp_path / name), max_samples=4)) >= 2
