"""Cut a loaded Keras model to some of its layer calls, calibrated on real activations (worker side).

The conversion worker runs this when its request carries a `cut` (see `reduce/reduce_model.py`):

    {"describe": "graph.json", "keep": [3, 4] or None, "data_output": "cut.npz"}

`describe` receives the model's call graph (names, classes, shapes, dtypes, configs). With `keep`,
the model is replaced by the sub-model of those calls, and the user's calibration samples are run
through the float layers before the cut: the sub-model calibrates on what its layers really see.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from quantdoctor.edits.call_graph import CallGraph, boundary, call_graph, replay
from quantdoctor.intake.data import CalibrationSet, Sample


def cut_model(model: Any, cut: dict[str, Any], data: str | None) -> tuple[Any, str | None]:
    """The model the worker converts and the calibration file it calibrates with, for the request's `cut`."""
    graph = call_graph(model)
    if cut.get("describe"):
        Path(cut["describe"]).write_text(json.dumps(describe(graph, model), default=str))
    keep = cut.get("keep")
    if keep is None:
        return model, data
    keep = sorted(keep)
    sub_inputs, sub_outputs = boundary(graph, keep)
    library = keras_library(model)
    names = input_names(graph, sub_inputs)
    symbolic = {tid: library.Input(shape=tuple(graph.specs[tid][0][1:]), batch_size=graph.specs[tid][0][0],
                                   dtype=graph.specs[tid][1], name=names[tid]) for tid in sub_inputs}
    values = replay(graph, keep, symbolic)
    sub_model = library.Model([symbolic[tid] for tid in sub_inputs], [values[tid] for tid in sub_outputs],
                              name="reduced")
    if cut.get("weights_output"):
        np.savez(cut["weights_output"], **{f"{index}/{position}": np.asarray(weight) for index in keep
                                           for position, weight in enumerate(graph.calls[index].layer.get_weights())})
    if not data:
        return sub_model, None
    activations = cut_activations(graph, CalibrationSet.load(Path(data)), sub_inputs)
    samples = [Sample(kind="dict", values={names[tid]: row[tid] for tid in sub_inputs}) for row in activations]
    CalibrationSet(samples, source="activations at the cut").save(Path(cut["data_output"]))
    return sub_model, cut["data_output"]


def keras_library(model: Any) -> Any:
    """The Keras that built `model`: tf_keras (Keras 2) or Keras 3."""
    if type(model).__module__.startswith("tf_keras"):
        import tf_keras

        return tf_keras
    import keras

    return keras


def input_names(graph: CallGraph, tids: list[str]) -> dict[str, str]:
    """Names for a sub-model's inputs: a model input keeps its own, a tensor inside is `cut_N`."""
    own = dict(zip(graph.inputs, graph.input_names))
    return {tid: own.get(tid, f"cut_{position}") for position, tid in enumerate(tids)}


def cut_activations(graph: CallGraph, calibration: CalibrationSet, wanted: list[str]) -> list[dict[str, np.ndarray]]:
    """For each calibration sample, the float values of the `wanted` tensors: the sample run through
    the model's own layers in float. All samples run as one batch when the layers allow it."""
    feeds = [_model_feeds(graph, sample) for sample in calibration.samples]
    needed = _calls_needed(graph, wanted)
    if not feeds:
        return []
    try:
        batched = {tid: np.concatenate([feed[tid] for feed in feeds]) for tid in graph.inputs}
        values = replay(graph, needed, batched)
        sizes = np.cumsum([feed[graph.inputs[0]].shape[0] for feed in feeds])[:-1]
        split = {tid: np.split(np.asarray(values[tid]), sizes) for tid in wanted}
        return [{tid: split[tid][i] for tid in wanted} for i in range(len(feeds))]
    except Exception:  # a layer fixed to the batch of one: sample by sample
        return [{tid: np.asarray(replay(graph, needed, feed)[tid]) for tid in wanted} for feed in feeds]


def _model_feeds(graph: CallGraph, sample: Sample) -> dict[str, np.ndarray]:
    """A sample's arrays by model input: by name when its keys are the input names, else in order."""
    values = sample.values
    if set(values) >= set(graph.input_names):
        arrays = [values[name] for name in graph.input_names]
    else:
        arrays = sample.arrays
    return {tid: np.asarray(array, dtype=graph.specs[tid][1]) for tid, array in zip(graph.inputs, arrays)}


def _calls_needed(graph: CallGraph, wanted: list[str]) -> list[int]:
    """The calls that compute the `wanted` tensors, in graph order."""
    producers = graph.producers()
    needed: set[int] = set()
    pending = [tid for tid in wanted if tid in producers]
    while pending:
        index = producers[pending.pop()]
        if index not in needed:
            needed.add(index)
            pending += [tid for tid in graph.calls[index].inputs if tid in producers]
    return sorted(needed)


def describe(graph: CallGraph, model: Any) -> dict[str, Any]:
    """The call graph as JSON data: each call's layer, class, config, shapes and dtypes, and the
    library versions (for a repro's header)."""
    library = keras_library(model)
    calls = []
    for call in graph.calls:
        layer = call.layer
        calls.append({"name": call.name, "layer": layer.name, "class": type(layer).__name__,
                      "module": type(layer).__module__, "inputs": call.inputs, "outputs": call.outputs,
                      "input_shapes": [graph.specs[tid][0] for tid in call.inputs],
                      "input_dtypes": [graph.specs[tid][1] for tid in call.inputs],
                      "output_shapes": [graph.specs[tid][0] for tid in call.outputs],
                      "dtype_policy": _policy_name(layer),
                      "serialized": _serialized(library, layer),
                      "arguments": _arguments_template(call.args, call.kwargs)})
    return {"library": library.__name__, "versions": _versions(library), "sources": _user_sources(graph),
            "inputs": graph.inputs,
            "input_names": graph.input_names, "outputs": graph.outputs, "calls": calls,
            "specs": {tid: {"shape": shape, "dtype": dtype} for tid, (shape, dtype) in graph.specs.items()}}


def _user_sources(graph: CallGraph) -> dict[str, str]:
    """The source files of the modules that define the model's own layer classes (not Keras's), by
    module name: what a repro inlines with --with-source."""
    import inspect

    sources: dict[str, str] = {}
    for call in graph.calls:
        cls = type(call.layer)
        if cls.__module__.startswith(("keras", "tf_keras")) or cls.__module__ in sources:
            continue
        try:
            sources[cls.__module__] = Path(inspect.getsourcefile(cls) or "").read_text()
        except (OSError, TypeError):  # defined interactively: no file to inline
            continue
    return sources


def _policy_name(layer: Any) -> str:
    policy = getattr(layer, "dtype_policy", None)
    return str(getattr(policy, "name", policy))


def _serialized(library: Any, layer: Any) -> Any:
    """The layer's serialized config (what a repro rebuilds it from), None when it cannot be serialized."""
    try:
        serialize = (library.saving.serialize_keras_object if hasattr(library, "saving")
                     and hasattr(library.saving, "serialize_keras_object") else library.layers.serialize)
        return json.loads(json.dumps(serialize(layer), default=_jsonable))
    except Exception:  # a custom layer without get_config: the repro says so
        return None


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def _arguments_template(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The call's arguments as JSON: tensors as {"tensor": tid}, plain values as they are."""
    from quantdoctor.edits.call_graph import TensorRef

    def convert(value: Any) -> Any:
        if isinstance(value, TensorRef):
            return {"tensor": value.tid}
        if isinstance(value, (list, tuple)):
            return [convert(v) for v in value]
        if isinstance(value, dict):
            return {"dict": {str(k): convert(v) for k, v in value.items()}}
        if value is None or isinstance(value, (bool, int, float, str)):
            return {"value": value}
        return {"value": None, "dropped": type(value).__name__}

    return {"args": [convert(a) for a in args], "kwargs": {str(k): convert(v) for k, v in kwargs.items()}}


def _versions(library: Any) -> dict[str, str]:
    import importlib.metadata

    import tensorflow as tf

    versions = {"tensorflow": tf.__version__, library.__name__: getattr(library, "__version__", "?"),
                "python": sys.version.split()[0]}
    try:
        versions["ai-edge-litert"] = importlib.metadata.version("ai-edge-litert")
    except importlib.metadata.PackageNotFoundError:
        pass
    return versions
