"""Read a .tflite flatbuffer (with LiteRT's schema module, no TensorFlow, nothing executed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quantdoctor.errors import UsageError

FLOAT_TYPES = ("FLOAT32", "FLOAT16", "FLOAT64", "BFLOAT16")


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of a subgraph: index, name, type, shape, quantization parameters when it has them."""

    index: int
    name: str
    dtype: str
    shape: tuple[int, ...]
    scale: float | None = None
    zero_point: int | None = None
    is_constant: bool = False
    shape_signature: tuple[int, ...] | None = None  # -1 where the size is free; None: as `shape`

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype.lower(), "shape": list(self.shape),
                "shape_signature": list(self.signature), "scale": self.scale, "zero_point": self.zero_point}

    @property
    def signature(self) -> tuple[int, ...]:
        """The shape with -1 where the model leaves the size free."""
        return self.shape if self.shape_signature is None else self.shape_signature


@dataclass(frozen=True)
class OpInfo:
    """One operator with its tensors."""

    index: int
    name: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    custom_name: str | None = None
    subgraph: int = 0

    @property
    def is_flex(self) -> bool:
        return bool(self.custom_name and self.custom_name.startswith("Flex"))

    @property
    def is_custom(self) -> bool:
        """A custom op that is not a Flex op: it needs a kernel registered by the user."""
        return bool(self.custom_name) and not self.is_flex

    @property
    def computes_in_float(self) -> bool:
        """True when a non-constant input or an output of the op is a float tensor."""
        tensors = [t for t in self.inputs if not t.is_constant] + list(self.outputs)
        return any(t.dtype in FLOAT_TYPES for t in tensors)


@dataclass(frozen=True)
class Subgraph:
    """One subgraph: the main one (0), another signature's, or a while/if body."""

    index: int
    ops: list[OpInfo]
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]


@dataclass(frozen=True)
class Signature:
    """An entry point of the model: its key, its subgraph, its inputs and outputs by name."""

    key: str
    subgraph: int
    inputs: dict[str, TensorInfo]
    outputs: dict[str, TensorInfo]


@dataclass
class TFLiteModel:
    """Every subgraph of a .tflite model (the first is the main one) and its signatures."""

    graphs: list[Subgraph]
    signatures: list[Signature] = field(default_factory=list)

    @property
    def ops(self) -> list[OpInfo]:
        """Ops of the main subgraph."""
        return self.graphs[0].ops

    @property
    def inputs(self) -> list[TensorInfo]:
        """Inputs of the main subgraph."""
        return self.graphs[0].inputs

    @property
    def outputs(self) -> list[TensorInfo]:
        """Outputs of the main subgraph."""
        return self.graphs[0].outputs

    @property
    def subgraphs(self) -> int:
        return len(self.graphs)

    @property
    def all_ops(self) -> list[OpInfo]:
        """Ops of every subgraph (signatures, while/if bodies)."""
        return [op for graph in self.graphs for op in graph.ops]

    def signature_of(self, subgraph: int) -> Signature | None:
        """The signature whose entry point is `subgraph`, if any."""
        return next((s for s in self.signatures if s.subgraph == subgraph), None)


def read_tflite_file(path: str | Path) -> TFLiteModel:
    """Read a .tflite file; missing, unreadable or non-TFLite files raise a UsageError."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"model not found: {path}")
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        return read_tflite(content)
    except UsageError as exc:
        raise UsageError(f"{path.name}: {exc}") from exc


def read_tflite(content: bytes) -> TFLiteModel:
    """Parse a .tflite flatbuffer; a UsageError says so when `content` is not one."""
    from ai_edge_litert import schema_py_generated as schema

    if len(content) < 8 or content[4:8] != b"TFL3":
        raise UsageError("not a .tflite model (the file lacks the TFL3 flatbuffer identifier)")
    try:
        model = schema.ModelT.InitFromPackedBuf(content, 0)
    except Exception as exc:
        raise UsageError(f"corrupt .tflite model: {type(exc).__name__}: {exc}") from exc
    op_names = {value: name for name, value in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    type_names = {value: name for name, value in vars(schema.TensorType).items() if not name.startswith("_")}
    graphs, tensors_of = [], []
    for number, subgraph in enumerate(model.subgraphs):
        tensors = [_tensor(i, t, model.buffers, type_names) for i, t in enumerate(subgraph.tensors or [])]
        ops = []
        for index, op in enumerate(subgraph.operators or []):
            code = model.operatorCodes[op.opcodeIndex]
            builtin = op_names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "UNKNOWN")
            custom = code.customCode.decode() if code.customCode else None
            ops.append(OpInfo(index, custom if builtin == "CUSTOM" and custom else builtin,
                              tuple(tensors[i] for i in _indices(op.inputs)),
                              tuple(tensors[i] for i in _indices(op.outputs)), custom_name=custom, subgraph=number))
        graphs.append(Subgraph(number, ops, [tensors[i] for i in _indices(subgraph.inputs)],
                               [tensors[i] for i in _indices(subgraph.outputs)]))
        tensors_of.append(tensors)
    signatures = [Signature(_text(sig.signatureKey), int(sig.subgraphIndex),
                            {_text(m.name): tensors_of[sig.subgraphIndex][m.tensorIndex] for m in sig.inputs or []},
                            {_text(m.name): tensors_of[sig.subgraphIndex][m.tensorIndex] for m in sig.outputs or []})
                  for sig in model.signatureDefs or []]
    return TFLiteModel(graphs, signatures)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _indices(values: Any) -> list[int]:
    return [int(i) for i in (values if values is not None else []) if i >= 0]


def _tensor(index: int, tensor: Any, buffers: list[Any], type_names: dict[int, str]) -> TensorInfo:
    quant = tensor.quantization
    scale = zero_point = None
    if quant is not None and quant.scale is not None and len(quant.scale):
        scale = float(quant.scale[0])
        zero_point = int(quant.zeroPoint[0]) if quant.zeroPoint is not None and len(quant.zeroPoint) else 0
    buffer = buffers[tensor.buffer] if tensor.buffer < len(buffers) else None
    constant = buffer is not None and (buffer.data is not None and len(buffer.data) > 0 or bool(buffer.size))
    name = _text(tensor.name)
    shape = tuple(int(d) for d in (tensor.shape if tensor.shape is not None else []))
    signature = None
    if tensor.shapeSignature is not None and len(tensor.shapeSignature):
        signature = tuple(int(d) for d in tensor.shapeSignature)
    return TensorInfo(index, name, type_names.get(tensor.type, str(tensor.type)), shape, scale, zero_point, constant,
                      signature)
