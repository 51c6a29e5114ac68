"""A Keras model as a flat list of layer calls (worker side): what `reduce` cuts.

Functional and Sequential models, Keras 3 and tf_keras, are read from their call nodes. A nested
functional or Sequential model is opened up: its own layer calls take its place, named
`outer/inner`. A shared layer gives one call per use (`shared`, `shared#2`). Tensors are named
`t0`, `t1`, ... in the order they are first seen. Replaying a subset of the calls on new inputs
builds a sub-model that reuses the very layer objects (same config, same weights); replaying them
eagerly on samples gives the real activations at any cut.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from quantdoctor import tf_private


class NotCuttable(Exception):
    """The model has no layer graph reduce can cut (a subclassed model, say)."""


@dataclass(frozen=True)
class TensorRef:
    """A place in a call's arguments that holds the tensor `tid`."""

    tid: str


@dataclass
class Call:
    """One call of one layer: its arguments (tensors as TensorRef), input and output tensor ids."""

    index: int
    name: str
    layer: Any
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    inputs: list[str]
    outputs: list[str]


@dataclass
class CallGraph:
    """The layer calls of a model in an order where every call comes after what it reads."""

    inputs: list[str]
    input_names: list[str]
    outputs: list[str]
    calls: list[Call] = field(default_factory=list)
    specs: dict[str, tuple[list[int | None], str]] = field(default_factory=dict)  # tid -> (shape, dtype)

    def producers(self) -> dict[str, int]:
        """Which call produced each tensor (model inputs are produced by none)."""
        return {tid: call.index for call in self.calls for tid in call.outputs}


def call_graph(model: Any) -> CallGraph:
    """The flat call graph of a functional or Sequential Keras model (nested models opened up)."""
    parts = functional_parts(model)
    if parts is None:
        raise NotCuttable(f"reduce cuts functional, Sequential and nested Keras models at their layers; "
                          f"{type(model).__name__} '{model.name}' has no layer graph to cut (a subclassed model)")
    inputs, outputs = parts
    builder = _Builder()
    graph_inputs = []
    for tensor in inputs:
        tid = builder.new_tensor(tensor)
        builder.bindings[("", id(tensor))] = tid
        graph_inputs.append(tid)
    graph_outputs = [builder.resolve(tensor, "") for tensor in outputs]
    return CallGraph(inputs=graph_inputs, input_names=[_tensor_name(t) for t in inputs], outputs=graph_outputs,
                     calls=builder.calls, specs=builder.specs)


def functional_parts(model: Any) -> tuple[list[Any], list[Any]] | None:
    """A functional or Sequential model's symbolic inputs and outputs (flattened), None for other layers."""
    import tensorflow as tf

    if not (getattr(model, "_is_graph_network", False) or type(model).__name__ in ("Functional", "Sequential")):
        return None
    try:
        inputs, outputs = model.inputs, model.outputs
    except (AttributeError, ValueError):  # a Sequential never built on an input
        return None
    if not inputs or not outputs:
        return None
    return tf.nest.flatten(inputs), tf.nest.flatten(outputs)


def replay(graph: CallGraph, keep: list[int], feeds: dict[str, Any]) -> dict[str, Any]:
    """Run the calls `keep` (indices, in graph order) on `feeds` (tid -> tensor, symbolic or eager):
    every tensor computed, by tid, feeds included."""
    values = dict(feeds)
    for index in keep:
        call = graph.calls[index]
        args, kwargs = _filled((call.args, call.kwargs), values)
        produced = call.layer(*args, **kwargs)
        for tid, value in zip(call.outputs, _flatten(produced)):
            values[tid] = value
    return values


def boundary(graph: CallGraph, keep: list[int]) -> tuple[list[str], list[str]]:
    """The tensors a sub-model of the calls `keep` reads from outside it, and those it hands on
    (read by a call left out, or a model output)."""
    kept = set(keep)
    produced = {tid for index in keep for tid in graph.calls[index].outputs}
    inputs: list[str] = []
    for index in keep:
        for tid in graph.calls[index].inputs:
            if tid not in produced and tid not in inputs:
                inputs.append(tid)
    read_outside = {tid for call in graph.calls if call.index not in kept for tid in call.inputs}
    outputs = [tid for index in keep for tid in graph.calls[index].outputs
               if tid in read_outside or tid in graph.outputs]
    return inputs, outputs


class _Builder:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.specs: dict[str, tuple[list[int | None], str]] = {}
        self.bindings: dict[tuple[str, int], str] = {}  # (scope, id of symbolic tensor) -> tid
        self.names: dict[str, int] = {}

    def new_tensor(self, tensor: Any) -> str:
        tid = f"t{len(self.specs)}"
        self.specs[tid] = (_shape(tensor), _dtype(tensor))
        return tid

    def resolve(self, tensor: Any, scope: str) -> str:
        """The tid of a symbolic tensor of the model at `scope`, adding the calls that produce it."""
        key = (scope, id(tensor))
        if key in self.bindings:
            return self.bindings[key]
        produced = tf_private.keras_producing_call(tensor)
        if produced is None:
            raise NotCuttable(f"tensor '{_tensor_name(tensor)}' has no producing layer call")
        layer, node = produced
        args, kwargs = tf_private.keras_call_arguments(node)
        arg_tids = [self.resolve(t, scope) for t in _flatten((args, kwargs)) if _is_symbolic(t)]
        node_outputs = tf_private.keras_call_outputs(node)
        parts = functional_parts(layer)
        if parts is not None:  # a nested model: its own calls take its place
            inner_scope = f"{scope}{layer.name}/"
            for inner, tid in zip(parts[0], arg_tids):
                self.bindings[(inner_scope, id(inner))] = tid
            out_tids = [self.resolve(t, inner_scope) for t in parts[1]]
        else:
            out_tids = [self.new_tensor(t) for t in node_outputs]
            templated = _templated((args, kwargs), iter(arg_tids))
            self.calls.append(Call(index=len(self.calls), name=self._call_name(scope + layer.name), layer=layer,
                                   args=templated[0], kwargs=templated[1], inputs=arg_tids, outputs=out_tids))
        for tensor_out, tid in zip(node_outputs, out_tids):
            self.bindings[(scope, id(tensor_out))] = tid
        return self.bindings[key]

    def _call_name(self, name: str) -> str:
        self.names[name] = self.names.get(name, 0) + 1
        return name if self.names[name] == 1 else f"{name}#{self.names[name]}"


def _is_symbolic(value: Any) -> bool:
    return hasattr(value, "_keras_history")


def _flatten(structure: Any) -> list[Any]:
    import tensorflow as tf

    return tf.nest.flatten(structure)


def _templated(structure: Any, tids: Any) -> Any:
    """`structure` with each symbolic tensor replaced by a TensorRef (in flatten order)."""
    import tensorflow as tf

    return tf.nest.map_structure(lambda leaf: TensorRef(next(tids)) if _is_symbolic(leaf) else leaf, structure)


def _filled(structure: Any, values: dict[str, Any]) -> Any:
    import tensorflow as tf

    fill: Callable[[Any], Any] = lambda leaf: values[leaf.tid] if isinstance(leaf, TensorRef) else leaf
    return tf.nest.map_structure(fill, structure)


def _shape(tensor: Any) -> list[int | None]:
    shape = tensor.shape
    return list(shape.as_list() if hasattr(shape, "as_list") else shape)


def _dtype(tensor: Any) -> str:
    dtype = tensor.dtype
    return getattr(dtype, "name", str(dtype))


def _tensor_name(tensor: Any) -> str:
    produced = tf_private.keras_producing_call(tensor)
    return produced[0].name if produced is not None else str(getattr(tensor, "name", "?"))
