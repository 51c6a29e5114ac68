"""The one place quantdoctor touches private TensorFlow, Keras and LiteRT names.

Every hook here is something TF does not promise to keep: a module path, a class, an attribute.
Each has a test in `tests/test_tf_private.py`, so a TensorFlow upgrade that moves one fails there,
loudly, and in one place. Nothing here imports TensorFlow: callers hand in the modules they have.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

# The module defining the TF2 converter classes (`tf.lite.TFLiteConverter` is its TFLiteConverterV2).
CONVERTER_MODULE = "tensorflow.lite.python.lite"
# TensorFlow's own interpreter (`tf.lite.Interpreter`): a class of its own, not LiteRT's.
TF_INTERPRETER_MODULE = "tensorflow.lite.python.interpreter"
# Where tfmot defines quantize_model, quantize_apply, ... and its public API module
# (`tfmot.quantization.keras`), which re-exports them by reference.
TFMOT_QUANTIZE_MODULES = ("tensorflow_model_optimization.python.core.quantization.keras.quantize",
                          "tensorflow_model_optimization.python.core.api.quantization.keras")
TFMOT_ENTRY_POINTS = ("quantize_model", "quantize_apply", "quantize_annotate_model", "quantize_annotate_layer")

_CONVERTER_CLASSES = ("TFLiteConverterV2", "TFLiteKerasModelConverterV2", "TFLiteSavedModelConverterV2")


def converter_classes(lite: ModuleType) -> list[type]:
    """The TF2 converter classes a user gets from `tf.lite.TFLiteConverter` and its `from_*` constructors.

    Each defines its own `convert`: `from_keras_model` returns a TFLiteKerasModelConverterV2,
    `from_saved_model` a TFLiteSavedModelConverterV2, `from_concrete_functions` (and the class
    itself) a TFLiteConverterV2.
    """
    return [getattr(lite, name) for name in _CONVERTER_CLASSES]


def converter_base(lite: ModuleType) -> type:
    """The base class whose `__init__` every TF2 converter runs when it is built."""
    return lite.TFLiteConverterBaseV2


def representative_dataset_function(dataset: Any) -> Any:
    """The generator function behind `converter.representative_dataset`.

    `convert()` replaces a plain function by a `tf.lite.RepresentativeDataset` wrapping it (and
    users may set one themselves): its `input_gen` is the function.
    """
    return getattr(dataset, "input_gen", dataset) if type(dataset).__name__ == "RepresentativeDataset" else dataset


def interpreter_classes(interpreter_module: ModuleType) -> tuple[type, type]:
    """The Interpreter and SignatureRunner classes of `ai_edge_litert.interpreter` or of TF's own module."""
    return interpreter_module.Interpreter, interpreter_module.SignatureRunner


def tfmot_quantize_functions(module: ModuleType) -> dict[str, Any]:
    """tfmot's entry points that annotate and quantize a Keras model, by name, as `module` holds them."""
    return {name: vars(module)[name] for name in TFMOT_ENTRY_POINTS if name in vars(module)}


def tfmot_supports(layer: Any) -> bool:
    """Whether tfmot's default 8-bit scheme has a QuantizeConfig for this (tf_keras) layer."""
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry)

    return default_8bit_quantize_registry.Default8BitQuantizeRegistry().supports(layer)
