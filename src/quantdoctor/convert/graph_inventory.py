"""The op inventory of a model's serving graph (runs in the worker, where TensorFlow is loaded).

Every node counts, including those inside nested function bodies (while/if bodies,
partitioned calls), since recurrent layers and control flow live there. Structural nodes
(placeholders, constants, variable reads, calls) are left out: they become no TFLite op.
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
    bodies = [list(graph_def.node)] + [list(fn.node_def) for fn in graph_def.library.function]
    described = []
    for body in bodies:
        described += _described(body, tf)
    return {"nodes": described, "qat": is_quantization_aware_graph(graph_def)}


def _described(body: list[Any], tf: Any) -> list[dict[str, Any]]:
    """The non-structural nodes of one graph or function body, each with the op types of its inputs
    ("input_ops": whether an operand is a weight, ReadVariableOp or Const, or an activation)."""
    op_of = {node.name: node.op for node in body}
    described = []
    for node in body:
        if node.op in STRUCTURAL_OPS:
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
