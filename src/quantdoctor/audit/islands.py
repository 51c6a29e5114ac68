"""Float islands and partitions: how the ops an integer-only target cannot run split the graph.

An island is a maximal group of connected ops that an integer-only target cannot run (float
compute, Flex or custom ops), with the DEQUANTIZE ops that feed it and the QUANTIZE ops that
take its results back to integer. A delegate for such a target runs the integer parts; every
island hands control back to the CPU, so the integer ops fall into several partitions.
"""

from __future__ import annotations

from dataclasses import dataclass

from quantdoctor.audit.tflite_model import OpInfo, TFLiteModel

BOUNDARY_OPS = ("QUANTIZE", "DEQUANTIZE")
SHAPE_ONLY_OPS = ("RESHAPE", "SQUEEZE", "EXPAND_DIMS", "TRANSPOSE")  # move values, keep their scale


@dataclass(frozen=True)
class Island:
    """Connected ops an integer-only target cannot run, and the converters around them."""

    ops: tuple[OpInfo, ...]
    dequantize_in: tuple[OpInfo, ...]
    quantize_out: tuple[OpInfo, ...]

    @property
    def subgraph(self) -> int:
        return self.ops[0].subgraph


def needs_cpu(op: OpInfo) -> bool:
    """True when an integer-only target cannot run the op."""
    return op.is_flex or op.is_custom or (op.name not in BOUNDARY_OPS and op.computes_in_float)


def float_islands(model: TFLiteModel) -> list[Island]:
    """The islands of every subgraph (each signature's, each loop body's), subgraph by subgraph, in
    graph order."""
    islands = []
    for graph in model.graphs:
        producers, consumers = _tensor_links(graph.ops)
        for group in _components([op for op in graph.ops if needs_cpu(op)]):
            inputs = {t.index for op in group for t in op.inputs}
            outputs = {t.index for op in group for t in op.outputs}
            dequantize = {p.index: p for i in inputs for p in producers.get(i, []) if p.name == "DEQUANTIZE"}
            quantize = {c.index: c for o in outputs for c in consumers.get(o, []) if c.name == "QUANTIZE"}
            islands.append(Island(tuple(group), tuple(dequantize.values()), tuple(quantize.values())))
    return islands


def integer_partitions(model: TFLiteModel) -> int:
    """How many partitions a delegate for an integer-only target cuts each subgraph into, summed.

    A delegate partitions in execution order, as LiteRT's graph partitioning does: it takes every op of
    one kind (its own, or the CPU's) whose inputs are ready, as long as there are some, then switches kind.
    An integer op that waits on a float island's result starts a new partition, even when the ops around the
    island are connected through another path (a residual branch around each float NEG)."""
    return sum(_delegate_partitions(graph.ops) for graph in model.graphs)


def _delegate_partitions(ops: list[OpInfo]) -> int:
    producer = {tensor.index: op.index for op in ops for tensor in op.outputs}
    waits_on = {op.index: {producer[t.index] for t in op.inputs if t.index in producer} - {op.index} for op in ops}
    integer = {op.index: not needs_cpu(op) for op in ops}
    done: set[int] = set()
    pending = [op.index for op in ops]
    delegated = integer[pending[0]] if pending else True
    partitions = 0
    while pending:
        taken = True
        took_any = False
        while taken:  # everything of this kind that becomes ready, in execution order
            taken = False
            for index in pending:
                if index not in done and integer[index] == delegated and waits_on[index] <= done:
                    done.add(index)
                    taken = took_any = True
        pending = [index for index in pending if index not in done]
        partitions += took_any and delegated
        delegated = not delegated
    return partitions


def _components(ops: list[OpInfo]) -> list[list[OpInfo]]:
    """Connected components of `ops`, two ops being connected when one feeds the other."""
    parent = {op.index: op.index for op in ops}

    def root(index: int) -> int:
        while parent[index] != index:
            parent[index] = parent[parent[index]]
            index = parent[index]
        return index

    producers, _ = _tensor_links(ops)
    for op in ops:
        for tensor in op.inputs:
            for producer in producers.get(tensor.index, []):
                parent[root(op.index)] = root(producer.index)
    groups: dict[int, list[OpInfo]] = {}
    for op in ops:
        groups.setdefault(root(op.index), []).append(op)
    return sorted(groups.values(), key=lambda group: group[0].index)


def _tensor_links(ops: list[OpInfo]) -> tuple[dict[int, list[OpInfo]], dict[int, list[OpInfo]]]:
    producers: dict[int, list[OpInfo]] = {}
    consumers: dict[int, list[OpInfo]] = {}
    for op in ops:
        for tensor in op.outputs:
            producers.setdefault(tensor.index, []).append(op)
        for tensor in op.inputs:
            consumers.setdefault(tensor.index, []).append(op)
    return producers, consumers
