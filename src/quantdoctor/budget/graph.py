"""Which ops a float fallback can keep, and which must go together.

An op is named by its output tensor in the calibrated model: that is the name the quantizer's
`denylisted_nodes` takes. Candidates are the ops the full quantization makes integer. Keeping an op float helps when its
own int8 kernel loses precision; when its output tensor is what int8 cannot hold, the ops reading
that tensor must stay float too, or they quantize it all the same.

Scale sharing: an int8 CONCATENATION (or PACK) gives its inputs the output's scale, so the
quantizer crushes a small-range producer's own output, and the consumer requantizes from the merged
range. Keeping the concatenation alone in float restores nothing; its producers, the concatenation
and its consumers form one unit (through ops that pass one scale on unchanged, such as RESHAPE).
"""

from __future__ import annotations

from dataclasses import dataclass

from quantdoctor.audit.islands import BOUNDARY_OPS
from quantdoctor.audit.tflite_model import OpInfo, TFLiteModel
from quantdoctor.catalog.locations import layers_in_tensor_name

SCALE_SHARING_OPS = ("CONCATENATION", "PACK")
SCALE_PASSING_OPS = ("RESHAPE", "SQUEEZE", "EXPAND_DIMS")
QUANTIZED_TYPES = ("INT8", "UINT8", "INT16")


@dataclass(frozen=True)
class CandidateOp:
    """An op that can be kept in float: its node name (output tensor), op type and Keras layer."""

    node: str
    op: str
    layer: str | None


@dataclass(frozen=True)
class Unit:
    """Ops kept in float together, ranked by `score` (the sensitivity of its worst op)."""

    nodes: frozenset[str]
    score: float


class OpGraph:
    """The calibrated model's ops, with what the full quantization made integer."""

    def __init__(self, calibrated: TFLiteModel, quantized: TFLiteModel, layer_names: list[str],
                 output_layers: dict[str, str | None]) -> None:
        """`layer_names` name the Keras layers; model outputs carry no layer scope in their names, so
        `output_layers` maps each output tensor to the layer making it (`audit.checks.output_layer_names`)."""
        self.ops = [op for op in calibrated.ops if op.outputs]
        by_output = output_layers
        self._by_node = {op.outputs[0].name: op for op in self.ops}
        self._producer = {t.name: op for op in self.ops for t in op.outputs}
        self._consumers: dict[str, list[OpInfo]] = {}
        for op in self.ops:
            for tensor in op.inputs:
                self._consumers.setdefault(tensor.name, []).append(op)
        integer = _integer_node_names(quantized)
        self.candidates = [CandidateOp(node, op.name, " + ".join(layers_in_tensor_name(node, layer_names))
                                       or by_output.get(node))
                           for op in self.ops if (node := op.outputs[0].name) in integer]
        self._candidate_nodes = {c.node for c in self.candidates}

    def candidate(self, node: str) -> CandidateOp:
        """The candidate op named `node`."""
        return next(c for c in self.candidates if c.node == node)

    def units(self, scores: dict[str, float]) -> list[Unit]:
        """What can stay float, most sensitive first: for each candidate op, it and the ops reading its
        output (an int8 consumer would quantize that output all the same), and each scale-sharing group.

        `scores` rates each op's sensitivity (higher is worse); a group scores its worst op and, on a
        tie, larger units come first.
        """
        units = {}
        for node in self._candidate_nodes:
            op = self._by_node[node]
            readers = set().union(*(self._downstream(t.name) for t in op.outputs))
            members = frozenset({node} | (readers & self._candidate_nodes))
            units[members] = Unit(members, scores.get(node, 0.0))
        for group in self.scale_groups():
            units[group] = Unit(group, max(scores.get(node, 0.0) for node in group))
        return sorted(units.values(), key=lambda u: (-u.score, -len(u.nodes), sorted(u.nodes)))

    def scale_groups(self) -> list[frozenset[str]]:
        """For each scale-sharing op: it, its producers and its consumers (candidates only)."""
        groups = []
        for op in self.ops:
            if op.name not in SCALE_SHARING_OPS:
                continue
            members = {op.outputs[0].name}
            for tensor in op.inputs:
                members |= self._upstream(tensor.name)
            for tensor in op.outputs:
                members |= self._downstream(tensor.name)
            group = frozenset(members & self._candidate_nodes)
            if len(group) > 1:
                groups.append(group)
        return groups

    def between(self, nodes: frozenset[str]) -> frozenset[str]:
        """Candidates outside `nodes` that lie on a path from one op of `nodes` to another: keeping them
        float too joins float islands into one region (one round trip off an integer accelerator)."""
        after = self._reachable(nodes, forward=True)
        before = self._reachable(nodes, forward=False)
        return frozenset((after & before & self._candidate_nodes) - nodes)

    def _upstream(self, tensor: str) -> set[str]:
        """The producer of `tensor`, followed back through scale-passing ops."""
        op = self._producer.get(tensor)
        if op is None:
            return set()
        found = {op.outputs[0].name}
        if op.name in SCALE_PASSING_OPS:
            for source in op.inputs:
                found |= self._upstream(source.name)
        return found

    def _downstream(self, tensor: str) -> set[str]:
        """The consumers of `tensor`, followed on through scale-passing ops."""
        found = set()
        for op in self._consumers.get(tensor, []):
            found.add(op.outputs[0].name)
            if op.name in SCALE_PASSING_OPS:
                for output in op.outputs:
                    found |= self._downstream(output.name)
        return found

    def _reachable(self, nodes: frozenset[str], forward: bool) -> set[str]:
        """Nodes reachable from `nodes` (not counting them unless reached again), along or against the edges."""
        seen: set[str] = set()
        stack = [self._by_node[node] for node in nodes if node in self._by_node]
        while stack:
            op = stack.pop()
            if forward:
                nexts = [c for t in op.outputs for c in self._consumers.get(t.name, [])]
            else:
                nexts = [p for t in op.inputs if (p := self._producer.get(t.name)) is not None]
            for following in nexts:
                name = following.outputs[0].name
                if name not in seen:
                    seen.add(name)
                    stack.append(following)
        return seen


def _integer_node_names(quantized: TFLiteModel) -> set[str]:
    """Output names of the ops the quantized model computes on quantized tensors (shape arithmetic on
    int32 is not quantization); an op feeding the final DEQUANTIZE is named, as in the calibrated
    model, by that DEQUANTIZE's output."""
    integer = {op.index: op for op in quantized.ops if op.name not in BOUNDARY_OPS and not op.computes_in_float
               and any(t.dtype in QUANTIZED_TYPES and t.scale for t in op.outputs)}
    names = {t.name for op in integer.values() for t in op.outputs}
    producer = {t.index: op for op in quantized.ops for t in op.outputs}
    for op in quantized.ops:
        source = producer.get(op.inputs[0].index) if op.name == "DEQUANTIZE" and op.inputs else None
        if source is not None and source.index in integer:
            names.add(op.outputs[0].name)
    return names
