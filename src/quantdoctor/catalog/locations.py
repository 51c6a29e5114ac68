"""Map the converter's names back to the user's Keras layers.

The converter names ops by their TF graph path, inside MLIR locations such as
`loc(callsite(fused["DenseBincount:", "functional_2_1/my_bincount_1/bincount/DenseBincount@__inference_function_3722"] at ...))`.
Tracing adds `_1` suffixes to name scopes, so `my_bincount_1` is the layer `my_bincount`.
"""

from __future__ import annotations

import re

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


def layer_for_path(path: str, layer_names: list[str]) -> str | None:
    """The deepest Keras layer named in a TF op path (`functional_1/lstm_1/while/...` -> `lstm`)."""
    known = set(layer_names)
    found = None
    for scope in path.split("/")[:-1]:
        for candidate in (scope, _SCOPE_SUFFIX.sub("", scope)):
            if candidate in known:
                found = candidate
                break
    return found


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
    """A readable scope for an op path when the layer names are unknown (SavedModel input)."""
    inner_scopes = path.split("/")[1:-1]  # drop the model's own scope and the op name
    if not inner_scopes:
        return None
    return "/".join(_SCOPE_SUFFIX.sub("", scope) for scope in inner_scopes)
