"""Models: files on disk, Keras objects, concrete functions and configured converters.

Every source becomes a `ModelSource`: a file or directory the isolated worker can load without
the user's Python objects (`.keras`/`.h5` files are loaded by Keras in the worker; objects are
exported to a SavedModel here, the way `TFLiteConverter.from_keras_model` itself does). The
user's files are only ever read.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quantdoctor.errors import ModelLoadError, UsageError

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
# TensorFlow's node-name pattern (tensorflow/python/framework/ops.py): SavedModel signature
# arguments, hence the inputs of a Keras model the converter exports, must match it.
_VALID_TF_NAME = re.compile(r"^[A-Za-z0-9.][A-Za-z0-9_.\\/>-]*$")


def is_valid_tf_name(name: str) -> bool:
    """Whether `name` can name a SavedModel signature argument (see QD405)."""
    return bool(_VALID_TF_NAME.match(name))


@dataclass
class ModelSource:
    """A model the worker can load: `loader` is "keras_file" or "saved_model"."""

    format: str
    source: str
    path: str
    loader: str
    signature_keys: list[str] | None = None
    layers: list[dict[str, str]] = field(default_factory=list)
    output_layers: list[str | None] = field(default_factory=list)
    edits: list[dict[str, Any]] = field(default_factory=list)  # fix's model steps, run on a loaded Keras file

    def request(self) -> dict[str, Any]:
        """The part of the worker request that says how to load the model."""
        return {"loader": self.loader, "path": self.path, "signature_keys": self.signature_keys, "edits": self.edits}


def from_path(path: str | Path) -> ModelSource:
    """A `.keras`/`.h5` file or a SavedModel directory."""
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"model not found: {path}")
    if path.is_dir():
        if not (path / "saved_model.pb").exists():
            raise ModelLoadError(f"{path} is a directory without saved_model.pb: not a SavedModel")
        return ModelSource("savedmodel", str(path), str(path.resolve()), "saved_model")
    if path.suffix.lower() in KERAS_SUFFIXES:
        return ModelSource("keras", str(path), str(path.resolve()), "keras_file")
    if path.suffix.lower() == ".tflite":
        raise ModelLoadError(f"{path.name} is already a .tflite model: use `quantdoctor audit {path}`")
    raise ModelLoadError(f"unsupported model file '{path.name}': use .keras, .h5 or a SavedModel directory")


def from_keras_model(model: Any, workdir: Path) -> ModelSource:
    """Export a Keras model object to a SavedModel, exactly as the converter's Keras path does."""
    export_dir = workdir / "keras_export"
    invalid = [x.name for x in getattr(model, "inputs", None) or [] if not is_valid_tf_name(x.name)]
    if invalid:
        raise ModelLoadError(f"input '{invalid[0]}' of Keras model '{model.name}' is not a valid TensorFlow name: "
                             "TFLiteConverter.from_keras_model fails on it with \"TypeError: 'NoneType' object is not "
                             "callable\". Rename it (quantdoctor explain QD405).")
    try:
        export_keras(model, export_dir)
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"cannot export Keras model '{model.name}' for conversion: {exc}") from exc
    return ModelSource("keras", f"Keras model '{model.name}'", str(export_dir), "saved_model",
                       signature_keys=["serving_default"], layers=keras_layers(model),
                       output_layers=keras_output_layers(model))


def export_keras(model: Any, export_dir: Path | None) -> Any:
    """Trace `model` for inference (training=False) and write it to a SavedModel at `export_dir`.

    This is what `TFLiteConverter.from_keras_model` does internally for Keras 3 models, so a
    converter built on the export sees the same graph and the same op names. Returns the traced
    serving function; with `export_dir=None` nothing is written.
    """
    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(model)
    serve = archive.add_endpoint("serve", functools.partial(model.__call__, training=False), _input_signature(model, tf))
    if export_dir is not None:
        archive.write_out(str(export_dir), verbose=False)
    return serve.get_concrete_function()


def from_concrete_functions(functions: list[Any], trackable: Any, workdir: Path) -> ModelSource:
    """Save concrete functions as signatures of a SavedModel (their variables travel along)."""
    import tensorflow as tf

    export_dir = workdir / "functions_export"
    signatures = {_signature_name(f, i): f for i, f in enumerate(functions)}
    try:
        tf.saved_model.save(trackable if trackable is not None else tf.Module(), str(export_dir), signatures=signatures)
    except Exception as exc:
        raise ModelLoadError(f"cannot save the concrete functions for conversion: {exc}; "
                             "pass the object that owns their variables as trackable_obj") from exc
    return ModelSource("concrete_function", ", ".join(signatures), str(export_dir), "saved_model",
                       signature_keys=list(signatures))


def is_converter(model: Any) -> bool:
    """True for a `tf.lite.TFLiteConverter` (whose settings then come from the converter itself)."""
    return hasattr(model, "target_spec") and hasattr(model, "convert")


def from_converter(converter: Any, workdir: Path) -> ModelSource:
    """The model a configured `tf.lite.TFLiteConverter` was built from."""
    if getattr(converter, "_funcs", None):
        source = from_concrete_functions(converter._funcs, getattr(converter, "_trackable_obj", None), workdir)
    else:
        model = converted_model(converter)
        if isinstance(model, str):
            source = from_path(model)
            source.signature_keys = list(converter._saved_model_exported_names or []) or None
        else:
            source = from_keras_model(model, workdir)
    source.format = "converter"
    return source


def converted_model(converter: Any) -> Any:
    """The model a Keras or SavedModel converter was built from: the Keras model, or the SavedModel path.

    Concrete functions are not a model on their own (their variables live in the trackable the
    converter holds), so a from_concrete_functions converter is refused here.
    """
    if getattr(converter, "_keras_model", None) is not None:
        return converter._keras_model
    if getattr(converter, "saved_model_dir", None):
        return converter.saved_model_dir
    if getattr(converter, "_funcs", None):
        raise UsageError("this needs the model behind the converter: save the concrete functions as a SavedModel "
                         "and pass its path")
    raise ModelLoadError(f"cannot tell which model {type(converter).__name__} converts; "
                         "build it with TFLiteConverter.from_keras_model, from_saved_model or from_concrete_functions")


def keras_output_layers(model: Any) -> list[str | None]:
    """The name of the layer producing each model output, in output order."""
    names = []
    for output in getattr(model, "outputs", None) or []:
        history = getattr(output, "_keras_history", None)
        names.append(getattr(history[0], "name", None) if history else None)
    return names


def keras_layers(model: Any) -> list[dict[str, str]]:
    """Every layer of a Keras model, nested models included, as {"name", "class"}."""
    layers = []
    for layer in getattr(model, "layers", []):
        layers.append({"name": layer.name, "class": type(layer).__name__})
        layers.extend(keras_layers(layer))
    return layers


def _input_signature(model: Any, tf: Any) -> list[Any]:
    inputs = getattr(model, "inputs", None)
    if inputs:
        specs = [tf.TensorSpec(x.shape, dtype=x.dtype, name=x.name) for x in inputs]
        return [specs] if len(specs) > 1 else specs
    raise ModelLoadError(f"Keras model '{model.name}' has no defined inputs: call it once on real data, "
                         "or build it with keras.Input, before diagnosing it")


def _signature_name(function: Any, index: int) -> str:
    name = getattr(function, "name", "") or ""
    name = name.decode() if isinstance(name, bytes) else name
    return "".join(c if c.isalnum() or c == "_" else "_" for c in name) or f"function_{index}"
