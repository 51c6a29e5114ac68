"""QD211: a representative dataset that yields something other than arrays of numbers (a function
object left in a copied snippet, None from a loader that failed, a file name, a ragged list) is the
user's data mistake, named with the sample and the fix, through every way data comes in: never an
internal error."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_finding, root
from models import image_model, int8_converter, keras_source, smooth_images, two_input_model

import quantdoctor as qd
from quantdoctor.intake import data as data_intake
from quantdoctor.intake.data import CalibrationSet

QUANTDOCTOR = str(Path(sys.executable).with_name("quantdoctor"))


def placeholder():
    """What a copied documentation snippet leaves where the user's data loader belongs."""


def load_image(path):
    return np.zeros((16, 16, 3), np.float32)


@pytest.mark.parametrize("value, described", [
    (placeholder, "the function 'placeholder' (a function object, not its result)"),
    (None, "None"),
    ("cat.png", "the text 'cat.png'"),
    (b"\x89PNG", "the bytes b'\\x89PNG'"),
    ([[1.0], [1.0, 2.0]], "a list of 2 items that do not form an array of numbers"),
    (tf.constant(["a"]), "a EagerTensor of string values, not numbers"),
    ((x for x in []), "a generator object '<genexpr>' (the generator, not its items)"),
    (CalibrationSet, "the class 'CalibrationSet' (a class, not an instance)"),
])
def test_every_kind_of_non_array_is_kept_described_through_the_npz(tmp_path, value, described):
    items = [[np.ones((1, 4), np.float32)], [value], {"x": value}, value]
    calibration = data_intake.from_generator(lambda: iter(items))
    calibration.save(tmp_path / "samples.npz")
    loaded = CalibrationSet.load(tmp_path / "samples.npz")  # the worker's view: no DataLoadError
    first, in_list, in_dict, bare = loaded.samples
    assert not first.holds_non_arrays and first.arrays[0].shape == (1, 4)
    assert (in_list.kind, in_list.values, in_list.not_arrays) == ("list", {}, {"0": described})
    assert (in_dict.kind, in_dict.not_arrays) == ("dict", {"x": described})
    if not isinstance(value, list):  # a top-level list is a list sample of its items
        assert (bare.kind, bare.note) == ("other", described)
    with pytest.raises(AttributeError, match="where an array belongs: it has no attribute 'shape'"):
        in_list.replay()[0].shape  # the converter's first look at a sample


def test_a_tuple_keeps_the_order_of_its_arrays_around_a_non_array():
    sample = data_intake.from_generator(lambda: iter([(np.zeros(2), None, np.ones(3))])).samples[0]
    replayed = sample.replay()
    assert isinstance(replayed, tuple) and [getattr(item, "shape", None) for item in replayed[::2]] == [(2,), (3,)]
    assert repr(replayed[1]) == "None"


@pytest.mark.code("QD211")
@pytest.mark.matcher("sample-not-an-array")
def test_a_function_object_yielded_as_the_sample_of_a_copied_snippet_is_named():
    def representative_dataset():
        for _ in range(100):
            yield [placeholder]

    report = qd.diagnose(int8_converter(image_model(), representative_dataset))
    finding = root(report)
    assert_finding(finding, "QD211", "dtype_mismatch", "error", input="image")
    assert finding.message == ("Sample #0 holds the function 'placeholder' (a function object, not its result) at "
                               "item 0 (input 'image'), not an array. (100 samples affected)")
    assert finding.fix.summary.startswith("Call the function and yield what it returns")
    assert "it has no attribute 'shape'" in finding.evidence["converter_message"]
    assert report.conversion["outcome"] == "error"
    assert [f.code for f in report.findings if f.severity == "error"] == ["QD211"]


@pytest.mark.matcher("set-tensor-type")
def test_none_from_a_failed_load_in_dict_samples_given_as_data_is_named_with_its_sample():
    images = smooth_images(40)

    def representative_dataset():
        for index, image in enumerate(images):
            yield {"image": None if index == 5 else image[None]}

    report = qd.diagnose(keras_source(image_model()), representative_dataset)
    finding = root(report)
    assert_finding(finding, "QD211", "dtype_mismatch", "error", input="image")
    assert finding.message == "Sample #5 holds None at key 'image', not an array."
    assert finding.evidence["first_samples"] == [5]
    assert "Got value of type STRING" in finding.evidence["converter_message"]  # no QD204 about a string
    assert [f.code for f in report.findings if f.severity == "error"] == ["QD211"]


@pytest.mark.matcher("unsupported-sample-value")
def test_file_names_yielded_instead_of_images_are_not_called_bare_arrays():
    paths = [f"images/{index}.png" for index in range(30)]
    report = qd.diagnose(keras_source(image_model()), lambda: iter(paths))
    finding = root(report)
    assert_finding(finding, "QD211", "dtype_mismatch", "error")
    assert finding.message == "Sample #0 is the text 'images/0.png', not a list of arrays. (30 samples affected)"
    assert finding.fix.summary.startswith("Load what the text names")
    assert finding.evidence["converter_message"].startswith("You need to provide either a dictionary")
    assert "QD303" not in [f.code for f in report.findings]


def test_fix_stops_on_samples_that_are_not_arrays_beside_a_repairable_mistake():
    def representative_dataset():
        for index, (image, meta) in enumerate(zip(smooth_images(30, size=8), np.ones((30, 1, 4)))):
            yield {"image": image[None].astype(np.float64), "meta": load_image if index == 2 else meta}

    result = qd.fix(two_input_model(), representative_dataset)  # the float64 cast must pass the function by
    assert result.model is None and not result.verified
    assert [b.code for b in result.blocked] == ["QD211"]
    assert "the function 'load_image'" in result.blocked[0].reason
    assert [r.code for r in result.applied] == ["QD201"]
    assert result.after.root_cause.code == "QD211"


def test_quantdoctor_run_names_the_non_array_sample_at_its_yield(tmp_path):
    script = tmp_path / "convert.py"
    script.write_text(textwrap.dedent("""
        import keras
        import numpy as np
        import tensorflow as tf

        model = keras.Sequential([keras.Input((4,), name="features"), keras.layers.Dense(2)])


        def load(path):
            return np.zeros((1, 4), np.float32)


        def representative_dataset():
            for path in ["a.npy", "b.npy"]:
                yield [load]  # YIELD

        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative_dataset
        converter.convert()
    """).lstrip())
    result = subprocess.run([QUANTDOCTOR, "run", "--json", "run.json", sys.executable, "convert.py"],
                            capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert "internal error" not in result.stderr and "bug in quantdoctor" not in result.stderr, result.stderr
    assert result.returncode != 0
    line = next(n for n, text in enumerate(script.read_text().splitlines(), 1) if text.endswith("# YIELD"))
    [conversion] = json.loads((tmp_path / "run.json").read_text())["conversions"]
    finding = conversion["findings"][0]
    assert finding["code"] == "QD211" and finding["evidence"]["source"]["where"] == f"convert.py:{line}"
    assert "the function 'load'" in finding["message"]
    assert "QD211" in result.stderr


def test_a_non_array_item_changes_the_conversion_cache_key():
    from quantdoctor.convert.cache import data_digest

    arrays = [np.ones((1, 4), np.float32)]
    clean = data_intake.from_generator(lambda: iter([arrays]))
    with_none = data_intake.from_generator(lambda: iter([arrays + [None]]))
    assert clean.samples[0].values.keys() == with_none.samples[0].values.keys()  # the same arrays
    assert data_digest(clean) != data_digest(with_none)  # a clean set's cached model never answers for it
