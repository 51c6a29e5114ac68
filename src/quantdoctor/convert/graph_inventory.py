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


def inventory(function: Any) -> dict[str, Any]:
    """`{"nodes": [{"op", "name", "dtypes"}], "qat": bool}` for every non-structural node of the
    function's graph; `qat` is the converter's own verdict on whether the graph is quantization-aware
    trained (it then takes its ranges from the FakeQuant ops, not from calibration)."""
    import tensorflow as tf

    from quantdoctor.tf_private import is_quantization_aware_graph

    graph_def = function.graph.as_graph_def()
    nodes = list(graph_def.node) + [node for fn in graph_def.library.function for node in fn.node_def]
    described = []
    for node in nodes:
        if node.op in STRUCTURAL_OPS:
            continue
        dtypes = sorted({tf.dtypes.as_dtype(node.attr[key].type).name for key in _TYPE_ATTRS
                         if key in node.attr and node.attr[key].type})
        described.append({"op": node.op, "name": node.name, "dtypes": dtypes})
    return {"nodes": described, "qat": is_quantization_aware_graph(graph_def)}
