"""Map the converter's names back to the user's Keras layers.

The converter names ops by their TF graph path, inside MLIR locations such as
`loc(callsite(fused["DenseBincount:", "functional_2_1/my_bincount_1/bincount/DenseBincount@__inference_function_3722"] at ...))`.
Tracing renames name scopes: Keras 3 traces the layer `dense` under `dense_1` and the layer
`dense_1` under `dense_1_2`. With Keras' default names a scope can be another layer's name, so
a model's `LayerNames` carry the record of which scope each layer was traced under, taken while
the converter's own trace ran; only without that record are names guessed from the scope text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

_QUOTED = re.compile(r'"([^"]+)"')
_SCOPE_SUFFIX = re.compile(r"_\d+$")


def op_paths(location_text: str) -> list[str]:
    """The TF op paths (`a/b/Op`) quoted in an MLIR location, innermost first, without `@function` tails."""
    paths = []
    for quoted in _QUOTED.findall(location_text):
        path = quoted.split("@", 1)[0]
        if "/" in path and path not in paths:
            paths.append(path)
    return paths


class LayerNames(list):
    """A model's Keras layer names (a list of str), and `scopes`: the name scope path each layer was
    traced under (`{"functional_1/dense_1": "dense"}`), empty when no trace was recorded."""

    def __init__(self, names: Iterable[str] = (), scopes: Mapping[str, str] | None = None):
        super().__init__(names)
        self.scopes = dict(scopes or {})

    @classmethod
    def from_model(cls, model: Mapping[str, Any]) -> LayerNames:
        """The layer names of a report's `model` object (its "layers" and "layer_scopes")."""
        return cls(model.get("layers") or [], model.get("layer_scopes"))


def layer_for_path(path: str, layer_names: list[str]) -> str | None:
    """The deepest Keras layer a TF op path lies in (`functional_1/lstm_1/while/...` -> `lstm`).

    With recorded scopes (`LayerNames.scopes`), the deepest recorded scope within the path decides;
    otherwise the deepest scope equal to a layer name, or to one with the tracing suffix removed.
    """
    scopes = getattr(layer_names, "scopes", None)
    if scopes:
        layer = _recorded_layer(path.split("/")[:-1], scopes)
        if layer is not None:
            return layer
    known = set(layer_names)
    found = None
    for scope in path.split("/")[:-1]:
        for candidate in (scope, _SCOPE_SUFFIX.sub("", scope)):
            if candidate in known:
                found = candidate
                break
    return found


def _recorded_layer(segments: list[str], scopes: Mapping[str, str]) -> str | None:
    """The layer of the deepest recorded scope that is a run of `segments`; failing that (paths
    inside function bodies are relative), of the deepest segment that ends exactly one recorded scope."""
    for end in range(len(segments), 0, -1):
        for start in range(end):
            layer = scopes.get("/".join(segments[start:end]))
            if layer is not None:
                return layer
    tails: dict[str, set[str]] = {}
    for scope, layer in scopes.items():
        tails.setdefault(scope.rsplit("/", 1)[-1], set()).add(layer)
    for segment in reversed(segments):
        if len(tails.get(segment, ())) == 1:
            return next(iter(tails[segment]))
    return None


def layer_for_location(location_text: str, layer_names: list[str]) -> str | None:
    """The Keras layer an MLIR location points into, if any."""
    for path in op_paths(location_text):
        layer = layer_for_path(path, layer_names)
        if layer:
            return layer
    return None


def name_for_path(path: str, layer_names: list[str]) -> str | None:
    """The Keras layer of a TF op path; without layer names (a SavedModel), its TF scope."""
    return layer_for_path(path, layer_names) if layer_names else scope_for_path(path)


def layers_in_tensor_name(name: str, layer_names: list[str]) -> list[str]:
    """The layers behind a TFLite tensor name, in order: fused ops join their sources' paths with ';'."""
    found: list[str] = []
    for path in name.split(";"):
        layer = name_for_path(path, layer_names)
        if layer and layer not in found:
            found.append(layer)
    return found


def scope_for_path(path: str) -> str | None:
    """A readable scope for an op path when the layer names are unknown (a SavedModel, a float .tflite).

    A litert-torch scope names a PyTorch module by its qualified class and attribute name
    (`torch.nn.modules.linear.Linear_fc1`): the module's own name (`fc1`) is what its user wrote.
    """
    inner_scopes = path.split("/")[1:-1]  # drop the model's own scope and the op name
    if not inner_scopes:
        return None
    return "/".join(_torch_module_name(_SCOPE_SUFFIX.sub("", scope)) for scope in inner_scopes)


# litert-torch's module scope: the module's qualified class name, '_', its attribute name.
_TORCH_MODULE = re.compile(r"^(?:[A-Za-z_]\w*\.)+[A-Za-z][A-Za-z0-9]*_(\w+)$")


def _torch_module_name(scope: str) -> str:
    module = _TORCH_MODULE.match(scope)
    return module.group(1) if module else scope
