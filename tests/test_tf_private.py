"""One test per private TensorFlow/LiteRT hook in `quantdoctor.tf_private`: a TF upgrade that moves one fails here."""

from __future__ import annotations

import importlib

import ai_edge_litert.interpreter as litert
import pytest
import tensorflow as tf

from models import dataset_from, image_model, int8_converter, smooth_images
from quantdoctor import tf_private


def test_converter_classes_are_what_the_public_constructors_return_and_define_convert():
    lite = importlib.import_module(tf_private.CONVERTER_MODULE)
    classes = tf_private.converter_classes(lite)
    model = image_model()
    built = [tf.lite.TFLiteConverter.from_keras_model(model),
             tf.lite.TFLiteConverter.from_concrete_functions([tf.function(lambda x: x + 1.0).get_concrete_function(
                 tf.TensorSpec((1, 2), tf.float32))])]
    assert tf.lite.TFLiteConverter in classes
    assert all(type(converter) in classes for converter in built)
    assert all("convert" in vars(cls) for cls in classes)
    assert all(isinstance(converter, tf_private.converter_base(lite)) for converter in built)
    assert lite.TFLiteSavedModelConverterV2 in classes  # what from_saved_model returns in TF 2.21


def test_representative_dataset_function_unwraps_what_convert_leaves_behind():
    dataset = dataset_from(smooth_images(3))
    converter = int8_converter(image_model(), dataset)
    converter.convert()
    assert type(converter.representative_dataset).__name__ == "RepresentativeDataset"  # convert() wrapped it
    assert tf_private.representative_dataset_function(converter.representative_dataset) is dataset
    assert tf_private.representative_dataset_function(dataset) is dataset


def test_interpreter_classes_of_litert_and_of_tensorflow():
    assert tf_private.interpreter_classes(litert) == (litert.Interpreter, litert.SignatureRunner)
    tf_module = importlib.import_module(tf_private.TF_INTERPRETER_MODULE)
    interpreter, runner = tf_private.interpreter_classes(tf_module)
    assert interpreter is tf.lite.Interpreter
    for cls in (interpreter, litert.Interpreter):
        assert {"set_tensor", "get_tensor", "invoke", "resize_tensor_input", "allocate_tensors"} <= set(vars(cls))
    assert "__call__" in vars(runner) and "get_input_details" in vars(runner)


def test_tfmot_entry_points_live_in_both_modules_and_its_registry_answers():
    pytest.importorskip("tensorflow_model_optimization")
    tf_keras = pytest.importorskip("tf_keras")
    modules = [importlib.import_module(name) for name in tf_private.TFMOT_QUANTIZE_MODULES]
    functions = [tf_private.tfmot_quantize_functions(module) for module in modules]
    assert set(functions[0]) == set(functions[1]) == set(tf_private.TFMOT_ENTRY_POINTS)
    assert functions[0] == functions[1]  # the public API re-exports the very functions
    import tensorflow_model_optimization as tfmot

    assert tfmot.quantization.keras.quantize_model is functions[1]["quantize_model"]
    assert tf_private.tfmot_supports(tf_keras.layers.Dense(2)) is True
    assert tf_private.tfmot_supports(tf_keras.layers.LayerNormalization()) is False
