"""A `.keras` file's declared inputs, read from its `config.json` without TensorFlow or Keras.

The data checks need only each input's name, shape and dtype. Reading them from the archive takes
milliseconds, so a sample that cannot fit the model is known before TensorFlow has even started.
Only what the config states plainly is read: a functional or Sequential model whose inputs are
`InputLayer`s with a batch shape and a dtype. For anything else (a subclassed model, inputs given as
a dict, a Keras 2 file) the answer is None, and the worker describes the loaded model as before.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

_CONFIG = "config.json"
_MAX_CONFIG_BYTES = 64 * 2**20  # a config past this is read by Keras in the worker, not here
# Input dtypes as TensorFlow names them; a policy name (mixed_float16) is not one of them.
_DTYPES = frozenset({"float16", "float32", "float64", "bfloat16", "int8", "int16", "int32", "int64", "uint8",
                     "uint16", "uint32", "uint64", "bool", "string"})


def declared_inputs(path: str | Path) -> list[dict[str, Any]] | None:
    """The inputs a `.keras` archive's model config declares, as the worker describes a loaded model's
    (`{"name", "shape", "dtype"}` each, in `model.inputs` order); None when the config does not say plainly."""
    try:
        with zipfile.ZipFile(path) as archive:
            if archive.getinfo(_CONFIG).file_size > _MAX_CONFIG_BYTES:
                return None
            config = json.loads(archive.read(_CONFIG))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError):
        return None
    return _model_inputs(config) if isinstance(config, dict) else None


def _model_inputs(model: dict[str, Any]) -> list[dict[str, Any]] | None:
    config = model.get("config")
    if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
        return None
    input_layers = {layer["config"].get("name"): layer for layer in config["layers"]
                    if isinstance(layer, dict) and layer.get("class_name") == "InputLayer"
                    and isinstance(layer.get("config"), dict)}
    if model.get("class_name") == "Sequential":
        first = config["layers"][0] if config["layers"] else None
        names = [first["config"].get("name")] if isinstance(first, dict) and first.get("class_name") == "InputLayer" \
            else None
    elif model.get("class_name") == "Functional":
        names = _input_names(config.get("input_layers"))
    else:
        return None
    if not names or any(name not in input_layers for name in names):
        return None
    specs = [_spec(name, input_layers[name]["config"]) for name in names]
    return None if any(spec is None for spec in specs) else specs


def _input_names(input_layers: Any) -> list[str] | None:
    """The input layer names of a functional config's `input_layers`: `[name, 0, 0]` for one input,
    a list of those for several; None for any other structure (a dict of inputs)."""
    if _is_node_reference(input_layers):
        return [input_layers[0]]
    if isinstance(input_layers, list) and input_layers and all(_is_node_reference(item) for item in input_layers):
        return [item[0] for item in input_layers]
    return None


def _is_node_reference(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 3 and isinstance(value[0], str) \
        and all(isinstance(index, int) for index in value[1:])


def _spec(name: str, layer: dict[str, Any]) -> dict[str, Any] | None:
    shape = layer.get("batch_shape", layer.get("batch_input_shape"))
    dtype = layer.get("dtype")
    if isinstance(dtype, dict):  # a dtype policy: {"class_name": "DTypePolicy", "config": {"name": "float32"}}
        dtype = (dtype.get("config") or {}).get("name")
    if layer.get("sparse") or layer.get("ragged") or dtype not in _DTYPES or not isinstance(shape, list) \
            or not all(dim is None or (isinstance(dim, int) and dim >= 0) for dim in shape):
        return None
    return {"name": name, "shape": shape, "dtype": dtype}
