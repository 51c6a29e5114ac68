"""Models: files on disk, Keras objects, concrete functions and configured converters.

Every source becomes a `ModelSource`: something the isolated worker can load without the user's
Python objects. `.keras`/`.h5` files are loaded by Keras in the worker. Objects are prepared here
by the converter's own steps, run on a fresh converter built like the user's: a Keras model is
exported the way `from_keras_model` exports it, concrete functions are saved as the signatures
`from_concrete_functions` saves them, and where the converter would freeze instead (no trackable
object, a `tf.function` as trackable, a save that fails) the worker gets the very frozen graph the
converter converts. The user's files and objects are only ever read.
"""

from __future__ import annotations

import functools
import json
import re
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quantdoctor import tf_private
from quantdoctor.errors import InputShapesUnknown, ModelLoadError, UnsafeModelError, UsageError
from quantdoctor.intake import float_tflite
from quantdoctor.intake.imports import current as handed_over_imports
from quantdoctor.intake.paths import input_kind

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
# TensorFlow's node-name pattern (tensorflow/python/framework/ops.py): SavedModel signature
# arguments, hence the inputs of a Keras model the converter exports, must match it.
_VALID_TF_NAME = re.compile(r"^[A-Za-z0-9.][A-Za-z0-9_.\\/>-]*$")
# The converter's words for a Keras model without Input layers whose input shapes Keras did not record
# (tensorflow/lite/python/tflite_keras_util.py): QD408.
INPUT_SHAPES_UNSET = "cannot be saved because the input shapes have not been set"
# Converter settings that decide between the SavedModel and the frozen-graph path.
_PATH_FLAGS = ("experimental_new_converter", "experimental_lower_to_saved_model")


def is_valid_tf_name(name: str) -> bool:
    """Whether `name` can name a SavedModel signature argument (see QD405)."""
    return bool(_VALID_TF_NAME.match(name))


def invalid_layer_names(layers: list[dict[str, str]]) -> list[str]:
    """The names of `layers` ({"name", "class"} each, as `keras_layers` lists them) that the converter's export
    of a Keras model fails on: it opens a root name scope per layer (QD407). Input layers are left to QD405."""
    return [layer["name"] for layer in layers
            if layer.get("class") != "InputLayer" and not is_valid_tf_name(layer["name"])]


@dataclass
class ModelSource:
    """A model the worker can load: `loader` is "keras_file", "saved_model" or "frozen_graph".

    `signature_keys` are the SavedModel signatures to convert (None: the converter's default
    choice); `graph_inputs`/`graph_outputs` the tensor names of a frozen graph; `layer_scopes`
    maps the name scopes the Keras layers were traced under to the layers (see
    `tf_private.recorded_layer_scopes`); `input_order` is the Keras model's own input order.
    """

    format: str
    source: str
    path: str
    loader: str
    signature_keys: list[str] | None = None
    layers: list[dict[str, str]] = field(default_factory=list)
    output_layers: list[str | None] = field(default_factory=list)
    layer_scopes: dict[str, str] = field(default_factory=dict)
    input_order: list[str] | None = None
    graph_inputs: list[str] = field(default_factory=list)
    graph_outputs: list[str] = field(default_factory=list)
    edits: list[dict[str, Any]] = field(default_factory=list)  # fix's model steps, run on a loaded Keras file
    cut: dict[str, Any] | None = None  # reduce's candidate: the layer calls kept (see edits/cut.py)
    # A float .tflite (loader "aeq"): the AEQ recipe it is quantized with, a name in
    # `ai_edge_quantizer.recipe` or recipe entries (intake/float_tflite.py).
    quantizer_recipe: str | list[dict[str, Any]] | None = None

    def request(self) -> dict[str, Any]:
        """The part of the worker request that says how to load the model."""
        return {"loader": self.loader, "path": self.path, "signature_keys": self.signature_keys,
                "graph_inputs": self.graph_inputs, "graph_outputs": self.graph_outputs, "edits": self.edits,
                **({"cut": self.cut} if self.cut else {}),
                **({"imports": handed_over_imports()} if handed_over_imports() else {})}


def from_path(path: str | Path) -> ModelSource:
    """A `.keras`/`.h5` file or a SavedModel directory, checked to be one before anything loads it."""
    path = Path(path)
    if input_kind(path, "model", ModelLoadError) == "directory":
        if not (path / "saved_model.pb").is_file():
            raise ModelLoadError(f"{path} is a directory without saved_model.pb: not a SavedModel")
        return ModelSource("savedmodel", str(path), str(path.resolve()), "saved_model")
    suffix = path.suffix.lower()
    if suffix == ".keras":
        _check_keras_archive(path)
        return ModelSource("keras", str(path), str(path.resolve()), "keras_file")
    if suffix in KERAS_SUFFIXES:
        _check_hdf5(path)
        return ModelSource("keras", str(path), str(path.resolve()), "keras_file")
    if suffix == ".tflite":  # a float model, quantized with ai-edge-quantizer
        float_tflite.check_tflite_file(path)
        float_tflite.require_aeq(path)
        return ModelSource("tflite", str(path), str(path.resolve()), "aeq")
    raise ModelLoadError(f"unsupported model file '{path.name}': use .keras, .h5 or a SavedModel directory")


def load_error(source: str, error_message: str) -> ModelLoadError:
    """The one-line error for a model Keras or TensorFlow could not load (`error_message` is theirs)."""
    custom = _UNREGISTERED.search(error_message)
    if custom:
        return ModelLoadError(
            f"cannot load {source}: it uses the custom {custom.group(1)} '{custom.group(2)}', which is not "
            "registered here. Register it with @keras.saving.register_keras_serializable() where you define it, "
            "and hand that module over with --import layers.py (imports= in Python), or pass a converter built in "
            "your own code: qd.diagnose(tf.lite.TFLiteConverter.from_keras_model(model))")
    first = next((line.strip() for line in error_message.splitlines() if line.strip()), "unknown error")
    return ModelLoadError(f"cannot load {source}: {first[:300]}")


_UNREGISTERED = re.compile(r"Could not locate (class|function) '([^']+)'")
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _check_keras_archive(path: Path) -> None:
    """A .keras file is the zip archive `model.save` writes, with the model's config.json inside."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise ModelLoadError(f"{path} is not a valid .keras file (not a zip archive); a .keras file is what "
                             "model.save('model.keras') writes") from exc
    if "config.json" not in names:
        raise ModelLoadError(f"{path} is not a valid .keras file: the archive has no config.json; a .keras file "
                             "is what model.save('model.keras') writes")


def _check_hdf5(path: Path) -> None:
    """HDF5 files start with the HDF5 signature (at 0, or after a user block of 512, 1024, 2048... bytes)."""
    try:
        with open(path, "rb") as stream:
            for offset in (0, 512, 1024, 2048, 4096):
                stream.seek(offset)
                if stream.read(8) == _HDF5_SIGNATURE:
                    return
    except OSError as exc:
        raise ModelLoadError(f"cannot read {path}: {exc.strerror}") from exc
    raise ModelLoadError(f"{path} is not a valid .h5 file (no HDF5 signature); an .h5 model is what "
                         "model.save('model.h5') writes")


def keras_call_arguments(model: Any) -> list[str]:
    """The names of the tensor arguments a Keras model's `call` requires, in order (`training`, `mask` and
    arguments with defaults left out); empty when `call` takes `*args`."""
    import inspect

    try:
        parameters = inspect.signature(model.call).parameters.values()
    except (TypeError, ValueError):
        return []
    if any(p.kind is p.VAR_POSITIONAL for p in parameters):
        return []
    return [p.name for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            and p.default is p.empty and p.name not in ("training", "mask")]


def is_keras_model(model: Any) -> bool:
    """True for a Keras 3 or tf_keras (Keras 2) model object, subclassed ones included."""
    for module in ("keras", "tf_keras"):
        library = sys.modules.get(module)
        model_class = getattr(library, "Model", None)
        if isinstance(model_class, type) and isinstance(model, model_class):
            return True
    return False


def unsafe_model_error(source: ModelSource, keras_message: str) -> UnsafeModelError:
    """The one-line refusal of a Keras file that Keras's safe mode would not load, naming its Lambda layers."""
    names = lambda_layer_names(Path(source.path))
    if names:
        what = (f"contains Lambda layers ({', '.join(map(repr, names))}): loading them runs Python code stored "
                "in the file")
    else:
        what = f"cannot be loaded safely ({keras_message.split('. ')[0].removeprefix('ValueError: ')})"
    return UnsafeModelError(f"{source.source} {what}. If you trust this file, pass --trust-model "
                            "(trust_model=True in Python)")


def written_by_tf_keras(path: Path) -> bool:
    """True for an .h5 file that tf_keras (Keras 2) wrote: its `keras_version` attribute says 2.x. Keras 3
    cannot load the TFOpLambda layers such files hold (a TensorFlow op called on a Keras 2 tensor)."""
    if zipfile.is_zipfile(path):
        return False
    try:
        import h5py

        with h5py.File(path, "r") as file:
            version = file.attrs.get("keras_version", "")
    except (OSError, ValueError):
        return False
    version = version.decode() if isinstance(version, bytes) else str(version)
    return version.startswith("2.")


def lambda_layer_names(path: Path) -> list[str]:
    """The Lambda layers a `.keras`/`.h5` file's model config names, read without deserializing anything."""
    try:
        if zipfile.is_zipfile(path):
            config = json.loads(zipfile.ZipFile(path).read("config.json"))
        else:
            import h5py

            with h5py.File(path, "r") as file:
                config = json.loads(file.attrs["model_config"])
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return []
    return [item["config"].get("name", "?") for item in _config_objects(config) if item.get("class_name") == "Lambda"]


def holds_stored_code(path: Path) -> bool:
    """True for a `.keras` archive whose config holds Python bytecode (a `__lambda__` object: a Lambda layer's
    lambda), which Keras's safe mode refuses to load. Read without deserializing anything, so the refusal
    comes before a worker starts; other files are left to the worker's safe-mode load."""
    try:
        config = json.loads(zipfile.ZipFile(path).read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return False
    return any(item.get("class_name") == "__lambda__" for item in _config_objects(config))


def _config_objects(node: Any) -> list[dict[str, Any]]:
    """Every serialized object (a dict with "class_name") in a Keras config, nested ones included."""
    found = []
    if isinstance(node, dict):
        if "class_name" in node and isinstance(node.get("config"), dict):
            found.append(node)
        for value in node.values():
            found += _config_objects(value)
    elif isinstance(node, list):
        for value in node:
            found += _config_objects(value)
    return found


def from_keras_model(model: Any, workdir: Path, like: Any = None) -> ModelSource:
    """Prepare a Keras model object exactly as `TFLiteConverter.from_keras_model(model)` does.

    `like` is the user's converter, whose path-deciding settings the fresh converter copies.
    """
    import tensorflow as tf

    inputs = getattr(model, "inputs", None) or []
    invalid = [x.name for x in inputs if not is_valid_tf_name(x.name)]
    if invalid:
        raise ModelLoadError(f"input '{invalid[0]}' of Keras model '{model.name}' is not a valid TensorFlow name: "
                             "TFLiteConverter.from_keras_model fails on it with \"TypeError: 'NoneType' object is not "
                             "callable\". Rename it (quantdoctor explain QD405).")
    layers = invalid_layer_names([{"name": model.name, "class": "Model"}, *keras_layers(model)])
    if layers:
        raise ModelLoadError(f"layer '{layers[0]}' of Keras model '{model.name}' is not a valid TensorFlow name: "
                             "TFLiteConverter.from_keras_model fails on it with \"TypeError: 'NoneType' object is not "
                             "callable\". Rename it (quantdoctor explain QD407).")
    converter = _copy_path_flags(tf.lite.TFLiteConverter.from_keras_model(model), like)
    export_dir = workdir / "keras_export"
    with tf_private.recorded_layer_scopes(model) as scopes:
        try:
            exported = tf_private.lower_keras_to_saved_model(converter, export_dir)
            frozen = None if exported else tf_private.freeze_keras_model(converter)
        except tf_private.TensorFlowChanged:
            raise
        except Exception as exc:  # the converter itself would fail here, before converting anything
            if INPUT_SHAPES_UNSET in str(exc):
                raise InputShapesUnknown(
                    f"TFLiteConverter.from_keras_model cannot tell the input shapes of Keras model '{model.name}' "
                    f"({type(exc).__name__}: {exc}): `quantdoctor fix` puts an Input per call argument in front of "
                    "it (quantdoctor explain QD408).") from exc
            raise ModelLoadError(f"TFLiteConverter.from_keras_model cannot prepare Keras model '{model.name}': "
                                 f"{type(exc).__name__}: {exc}") from exc
    label = f"Keras model '{model.name}'"
    if frozen is not None:
        source = _frozen_source(frozen, "keras", label, workdir)
    else:
        source = ModelSource("keras", label, str(export_dir), "saved_model",
                             signature_keys=tf_private.converter_signature_keys(converter))
    source.layers, source.output_layers = keras_layers(model), keras_output_layers(model)
    source.layer_scopes = dict(scopes)
    source.input_order = [x.name for x in inputs] or None
    return source


def from_concrete_functions(functions: list[Any], trackable: Any, workdir: Path, like: Any = None) -> ModelSource:
    """Prepare concrete functions exactly as `TFLiteConverter.from_concrete_functions(functions, trackable)` does.

    With a trackable object that saves, the functions become SavedModel signatures (one function
    is 'serving_default'); otherwise the converter freezes the single function and converts the
    frozen graph, which holds the values of the variables the function reads.
    """
    import tensorflow as tf

    converter = _copy_path_flags(tf.lite.TFLiteConverter(list(functions), trackable), like)
    export_dir = workdir / "functions_export"
    label = ", ".join(_function_name(f, i) for i, f in enumerate(functions))
    try:
        if tf_private.lower_functions_to_saved_model(converter, export_dir):
            return ModelSource("concrete_function", label, str(export_dir), "saved_model",
                               signature_keys=tf_private.converter_signature_keys(converter))
        frozen = tf_private.freeze_concrete_function(converter)
    except tf_private.TensorFlowChanged:
        raise
    except Exception as exc:  # what the user's converter.convert() raises on these functions
        raise ModelLoadError(f"TFLiteConverter.from_concrete_functions cannot convert {label}: "
                             f"{type(exc).__name__}: {exc}") from exc
    return _frozen_source(frozen, "concrete_function", label, workdir)


def _frozen_source(frozen: tf_private.FrozenGraph, format: str, label: str, workdir: Path) -> ModelSource:
    path = workdir / "frozen_graph.pb"
    path.write_bytes(frozen.graph_def)
    return ModelSource(format, label, str(path), "frozen_graph", graph_inputs=frozen.inputs,
                       graph_outputs=frozen.outputs)


def _copy_path_flags(converter: Any, like: Any) -> Any:
    """`converter`, with the settings of the user's converter `like` that choose its conversion path."""
    if like is not None:
        for name in _PATH_FLAGS:
            if hasattr(like, name):
                tf_private.set_converter_flag(converter, name, getattr(like, name))
    return converter


def is_converter(model: Any) -> bool:
    """True for a `tf.lite.TFLiteConverter` (whose settings then come from the converter itself)."""
    return hasattr(model, "target_spec") and hasattr(model, "convert")


def from_converter(converter: Any, workdir: Path) -> ModelSource:
    """The model a configured `tf.lite.TFLiteConverter` converts, prepared the way it prepares it."""
    keras_model = tf_private.converter_keras_model(converter)
    functions = tf_private.converter_functions(converter)
    if keras_model is not None:
        source = from_keras_model(keras_model, workdir, like=converter)
    elif functions and getattr(converter, "saved_model_dir", None):
        raise UsageError("this converter has already run convert(): TensorFlow then swapped its trackable object for "
                         "a reloaded copy, which does not convert the same way. Pass a converter that has not "
                         "converted yet: build it again with TFLiteConverter.from_concrete_functions")
    elif functions:
        source = from_concrete_functions(functions, tf_private.converter_trackable(converter), workdir, like=converter)
    elif getattr(converter, "saved_model_dir", None):
        source = from_path(converter.saved_model_dir)
        source.signature_keys = tf_private.converter_signature_keys(converter) or None
    else:
        raise ModelLoadError(f"cannot tell which model {type(converter).__name__} converts; "
                             "build it with TFLiteConverter.from_keras_model, from_saved_model or "
                             "from_concrete_functions")
    source.format = "converter"
    return source


def converted_model(converter: Any) -> Any:
    """The model a Keras or SavedModel converter was built from: the Keras model, or the SavedModel path.

    Concrete functions are not a model on their own (their variables live in the trackable the
    converter holds), so a from_concrete_functions converter is refused here.
    """
    if tf_private.converter_keras_model(converter) is not None:
        return tf_private.converter_keras_model(converter)
    if tf_private.converter_functions(converter):
        raise UsageError("this needs the model behind the converter: save the concrete functions as a SavedModel "
                         "and pass its path")
    if getattr(converter, "saved_model_dir", None):
        return converter.saved_model_dir
    raise ModelLoadError(f"cannot tell which model {type(converter).__name__} converts; "
                         "build it with TFLiteConverter.from_keras_model, from_saved_model or from_concrete_functions")


def keras_output_layers(model: Any) -> list[str | None]:
    """The name of the layer producing each model output, in output order (None where unknown)."""
    outputs = getattr(model, "outputs", None) or []
    return [getattr(tf_private.keras_history_layer(output), "name", None) for output in outputs]


def keras_layers(model: Any) -> list[dict[str, str]]:
    """Every layer of a Keras model, nested models included, as {"name", "class"}."""
    layers = []
    for layer in getattr(model, "layers", None) or []:
        layers.append({"name": layer.name, "class": type(layer).__name__})
        layers.extend(keras_layers(layer))
    return layers


def trace_keras(model: Any) -> Any:
    """The serving function `from_keras_model` exports a Keras 3 model with (training=False),
    traced but not written: the worker's preflight reads its graph."""
    import keras

    archive = keras.export.ExportArchive()
    archive.track(model)
    serve = archive.add_endpoint("serve", functools.partial(model.__call__, training=False),
                                 tf_private.keras_input_signature(model))
    return serve.get_concrete_function()


def _function_name(function: Any, index: int) -> str:
    name = getattr(function, "name", "") or ""
    name = name.decode() if isinstance(name, bytes) else name
    return name or f"function_{index}"
