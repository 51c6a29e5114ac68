"""Intake: converter settings read back faithfully, data kept exactly as given, models found."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from helpers import root
from models import dataset_from, image_model, int8_converter, smooth_images

import quantdoctor as qd
from quantdoctor.errors import DataLoadError, ModelLoadError, UsageError
from quantdoctor.intake import data as data_intake
from quantdoctor.intake import model as model_intake
from quantdoctor.intake.data import CalibrationSet
from quantdoctor.intake.recipe import Recipe


def test_recipe_reads_back_every_setting_of_a_converter():
    converter = int8_converter(image_model(), dataset_from(smooth_images(4)), strict=True, int8_io=True)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.SELECT_TF_OPS]
    converter.experimental_new_quantizer = False
    converter._experimental_lower_tensor_list_ops = False
    recipe = Recipe.from_converter(converter)
    assert recipe.optimizations == ["DEFAULT"]
    assert sorted(recipe.supported_ops) == ["SELECT_TF_OPS", "TFLITE_BUILTINS_INT8"]
    assert (recipe.inference_input_type, recipe.inference_output_type) == ("int8", "int8")
    assert recipe.calibrate is True
    assert recipe.flags["experimental_new_quantizer"] is False
    assert recipe.flags["_experimental_lower_tensor_list_ops"] is False
    assert recipe.mode == "int8-strict"
    assert Recipe.from_dict(recipe.to_dict()) == recipe


@pytest.mark.parametrize("mode", ["int8", "int8-strict", "int16x8", "dynamic", "float16"])
def test_cli_modes_round_trip_through_the_converter(mode):
    recipe = Recipe.for_mode(mode)
    converter = tf.lite.TFLiteConverter.from_keras_model(image_model())
    recipe.apply(converter)
    converter.representative_dataset = dataset_from(smooth_images(2)) if recipe.calibrate else None
    assert Recipe.from_converter(converter).mode == mode


def test_integer_io_needs_an_integer_mode():
    with pytest.raises(UsageError, match="needs full integer quantization"):
        Recipe.for_mode("dynamic", io="int8")


def test_samples_keep_their_packaging_and_dtype_through_the_npz(tmp_path):
    image = np.ones((1, 4, 4, 3), np.float64)
    items = [[image], {"image": image.astype(np.float32)}, ("serving_default", {"image": image}), image,
             (image, image), None]
    calibration = data_intake.from_generator(lambda: iter(items))
    calibration.save(tmp_path / "samples.npz")
    loaded = CalibrationSet.load(tmp_path / "samples.npz")
    assert [s.kind for s in loaded.samples] == ["list", "dict", "signature", "array", "tuple", "other"]
    assert loaded.samples[0].arrays[0].dtype == np.float64
    assert loaded.samples[2].replay()[0] == "serving_default"
    assert repr(loaded.samples[5].replay()) == "None"  # a stand-in for the None yielded


def test_generator_is_bounded_by_max_samples():
    calibration = data_intake.from_generator(dataset_from(smooth_images(30)), max_samples=12)
    assert len(calibration) == 12 and calibration.truncated


def test_generator_object_instead_of_function_is_recorded_for_the_report():
    calibration = data_intake.from_generator(dataset_from(smooth_images(3))())
    assert calibration.samples == [] and "pass the generator function itself" in calibration.generator_error


def test_stacked_files_become_batch_of_one_samples(tmp_path):
    np.savez(tmp_path / "named.npz", image=np.zeros((5, 4, 4, 3), np.float32), meta=np.zeros((5, 2), np.float32))
    named = data_intake.from_file(tmp_path / "named.npz")
    assert len(named) == 5 and named.samples[0].kind == "dict"
    assert named.samples[0].values["image"].shape == (1, 4, 4, 3)
    np.savez(tmp_path / "positional.npz", np.zeros((5, 3), np.float32))
    assert data_intake.from_file(tmp_path / "positional.npz").samples[0].kind == "list"
    np.savez(tmp_path / "single.npz", pixels=np.zeros((5, 3), np.float32))
    assert data_intake.from_file(tmp_path / "single.npz").samples[0].kind == "list"
    np.savez(tmp_path / "uneven.npz", a=np.zeros((5, 3)), b=np.zeros((4, 3)))
    with pytest.raises(DataLoadError, match="different sample counts"):
        data_intake.from_file(tmp_path / "uneven.npz")
    (tmp_path / "data.csv").write_text("1,2")
    with pytest.raises(DataLoadError, match="unsupported data file"):
        data_intake.from_file(tmp_path / "data.csv")


def test_model_paths_are_checked_before_anything_runs(tmp_path):
    with pytest.raises(ModelLoadError, match="not found"):
        model_intake.from_path(tmp_path / "missing.keras")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(ModelLoadError, match="without saved_model.pb"):
        model_intake.from_path(tmp_path / "empty_dir")
    (tmp_path / "model.tflite").write_bytes(b"x")  # a float .tflite is quantized with AEQ: this one is none
    with pytest.raises(ModelLoadError, match=r"model.tflite is not a .tflite model \(no TFL3 flatbuffer identifier\)"):
        model_intake.from_path(tmp_path / "model.tflite")


def test_concrete_functions_converter_is_diagnosed():
    module = tf.Module()
    module.weights = tf.Variable(tf.random.normal((4, 2), seed=4))
    function = tf.function(lambda x: tf.matmul(x, module.weights),
                           input_signature=[tf.TensorSpec((1, 4), tf.float32)]).get_concrete_function()
    rows = np.random.default_rng(0).normal(size=(120, 4))

    def converter_with(samples):
        converter = tf.lite.TFLiteConverter.from_concrete_functions([function], module)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([row[None]] for row in samples)
        return converter

    clean = qd.diagnose(converter_with(rows.astype(np.float32)))
    assert clean.model["format"] == "converter" and clean.model["signatures"] == ["serving_default"]
    assert clean.conversion["outcome"] == "ok" and clean.verdict == "ok" and clean.audit["fully_integer"]
    float64 = qd.diagnose(converter_with(rows))
    assert root(float64).code == "QD201" and float64.conversion["outcome"] == "error"


@pytest.mark.parametrize("optimization", ["OPTIMIZE_FOR_SIZE", "OPTIMIZE_FOR_LATENCY"])
def test_deprecated_optimizations_quantize_like_default(optimization):
    """TF treats OPTIMIZE_FOR_SIZE/LATENCY as DEFAULT: with a dataset the model comes out integer."""
    converter = int8_converter(image_model(), dataset_from(smooth_images(120)))
    converter.optimizations = [getattr(tf.lite.Optimize, optimization)]
    recipe = Recipe.from_converter(converter)
    assert recipe.mode == "int8" and recipe.wants_full_integer
    assert Recipe(optimizations=[optimization]).mode == "dynamic"
    report = qd.diagnose(converter)
    assert report.settings["mode"] == "int8" and report.verdict == "ok" and report.audit["fully_integer"]
    assert Recipe(supported_types=["float16"]).mode == "float"  # no optimization: TF ignores the types


def test_convert_returns_bytes_or_raises_with_the_report():
    clean = qd.convert(int8_converter(image_model(), dataset_from(smooth_images(120))))
    assert clean[4:8] == b"TFL3"
    with pytest.raises(qd.QuantizationError, match="QD201") as raised:
        qd.convert(int8_converter(image_model(), lambda: ([np.random.rand(1, 16, 16, 3)] for _ in range(3))))
    assert raised.value.report.root_cause.code == "QD201"
    assert "Fix: Cast every sample" in str(raised.value)
