"""The op inventory of a model's serving graph (runs in the worker, where TensorFlow is loaded).

Every node counts, including those inside nested function bodies (while/if bodies,
partitioned calls), since recurrent layers and control flow live there. Structural nodes
(placeholders, constants, variable reads, calls) are left out: they become no TFLite op. So are
nodes computed from constants and weights alone (a normalisation's `Sqrt` of its variance): the
converter freezes the weights and folds such nodes into constants.
"""

from __future__ import annotations

from typing import Any

STRUCTURAL_OPS = frozenset({
    "Placeholder", "PlaceholderWithDefault", "Const", "Identity", "IdentityN", "NoOp", "ReadVariableOp",
    "VarHandleOp", "AssignVariableOp", "StatefulPartitionedCall", "PartitionedCall", "StopGradient",
    "Assert", "_Arg", "_Retval", "VarIsInitializedOp", "DestroyResourceOp",
})
_TYPE_ATTRS = ("T", "dtype", "DstT", "SrcT")
_SHAPE_ATTRS = ("strides", "ksize", "dilations")  # what an NPU compiler's limits are about


def inventory(function: Any) -> dict[str, Any]:
    """`{"nodes": [{"op", "name", "dtypes"}], "qat": bool}` for every non-structural node of the
    function's graph (with "input_ops", and "strides", "ksize", "dilations" and "padding" where the node
    has them);
    `qat` is the converter's own verdict on whether the graph is quantization-aware
    trained (it then takes its ranges from the FakeQuant ops, not from calibration)."""
    import tensorflow as tf

    from quantdoctor.tf_private import is_quantization_aware_graph

    graph_def = function.graph.as_graph_def()
    called = _called(graph_def)
    bodies = [list(graph_def.node)] + [list(fn.node_def) if fn.signature.name in called else []
                                       for fn in graph_def.library.function]
    captures = [tensor.op.name for tensor in function.inputs[len(function.inputs) - len(function.captured_inputs):]]
    folded = _folded(graph_def, bodies, captures)
    described = []
    for index, body in enumerate(bodies):
        described += _described(body, tf, folded[index])
    return {"nodes": described, "qat": is_quantization_aware_graph(graph_def)}


def _called(graph_def: Any) -> set[str]:
    """The library functions the graph runs: those its nodes call (a call, a loop's body, a branch), and
    theirs in turn. A gradient function of a custom gradient (Keras' swish) is in the library but never runs,
    so the converter never sees its ops."""
    functions = {fn.signature.name: fn for fn in graph_def.library.function}
    called: set[str] = set()
    waiting = list(graph_def.node)
    while waiting:
        node = waiting.pop()
        for value in node.attr.values():
            for name in [value.func.name, *(f.name for f in value.list.func)]:
                if name in functions and name not in called:
                    called.add(name)
                    waiting += list(functions[name].node_def)
    return called


def _described(body: list[Any], tf: Any, folded: set[str]) -> list[dict[str, Any]]:
    """The non-structural nodes of one graph or function body that the converter does not fold (`folded`), each
    with the op types of its inputs ("input_ops": whether an operand is a weight, ReadVariableOp or Const, or an
    activation)."""
    op_of = {node.name: node.op for node in body}
    described = []
    for node in body:
        if node.op in STRUCTURAL_OPS or node.name in folded:
            continue
        dtypes = sorted({tf.dtypes.as_dtype(node.attr[key].type).name for key in _TYPE_ATTRS
                         if key in node.attr and node.attr[key].type})
        entry = {"op": node.op, "name": node.name, "dtypes": dtypes,
                 "input_ops": [op_of.get(name.lstrip("^").split(":")[0], "") for name in node.input]}
        entry.update({key: list(node.attr[key].list.i) for key in _SHAPE_ATTRS if key in node.attr})
        if "padding" in node.attr:
            entry["padding"] = node.attr["padding"].s.decode()
        described.append(entry)
    return described


_CONSTANT_SOURCES = frozenset({"Const", "ReadVariableOp"})  # a weight, once the converter freezes the variables
_PASS_THROUGH = frozenset({"Identity", "IdentityN", "StopGradient"})
_CALLS = frozenset({"StatefulPartitionedCall", "PartitionedCall"})


def _folded(graph_def: Any, bodies: list[list[Any]], captures: list[str]) -> list[set[str]]:
    """Per body (the graph, then each library function), the nodes whose every operand is a constant, a weight
    or another such node: the converter folds them into constants. Tensors the function captured (its weights,
    a layer's constant statistics) are constants; a function's argument is one when every call passes one."""
    names = [fn.signature.name for fn in graph_def.library.function]
    arguments = [[arg.name for arg in fn.signature.input_arg] for fn in graph_def.library.function]
    constant = [set(captures)] + [set() for _ in names]
    folded: list[set[str]] = [set() for _ in bodies]
    changed = True
    while changed:
        changed = False
        passed: dict[int, list[bool]] = {}  # per function: for each argument, whether every call passes a constant
        for index, body in enumerate(bodies):
            for node in body:
                if node.op in _CALLS and node.attr["f"].func.name in names:
                    callee = 1 + names.index(node.attr["f"].func.name)
                    now = [name in constant[index] for name in _operands(node)]
                    passed[callee] = [a and b for a, b in zip(passed.get(callee, now), now)]
        for callee, flags in passed.items():
            newly = {arg for arg, flag in zip(arguments[callee - 1], flags) if flag} - constant[callee]
            constant[callee] |= newly
            changed |= bool(newly)
        for index, body in enumerate(bodies):
            for node in body:
                if node.name in constant[index] or node.op in _CALLS:
                    continue
                operands = _operands(node)
                if node.op in _CONSTANT_SOURCES or (operands and node.op not in STRUCTURAL_OPS - _PASS_THROUGH
                                                    and all(name in constant[index] for name in operands)):
                    constant[index].add(node.name)
                    if node.op not in _PASS_THROUGH | _CONSTANT_SOURCES:
                        folded[index].add(node.name)
                    changed = True
    return folded


def _operands(node: Any) -> list[str]:
    """The nodes or arguments a node's data inputs name (`node`, `node:1`, a function body's `node:output:0`)."""
    return [name.split(":")[0] for name in node.input if not name.startswith("^")]
