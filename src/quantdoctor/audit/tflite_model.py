"""Read a .tflite flatbuffer (with LiteRT's schema module, no TensorFlow, nothing executed)."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from quantdoctor.errors import UsageError
from quantdoctor.intake.paths import input_kind

FLOAT_TYPES = ("FLOAT32", "FLOAT16", "FLOAT64", "BFLOAT16")
SMALL_CONSTANT = 64
VARIABLE_OPS = ("VAR_HANDLE", "READ_VARIABLE")  # resource variables: their values come from an ASSIGN_VARIABLE


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
    # The values of a small float32 constant (at most SMALL_CONSTANT elements): scales, offsets, means.
    values: tuple[float, ...] | None = None
    # How many scales its quantization parameters hold: 1 per tensor, one per channel when quantized
    # per axis (along `quantized_dimension`); 0 without parameters.
    scale_count: int = 0
    quantized_dimension: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype.lower(), "shape": list(self.shape),
                "shape_signature": list(self.signature), "scale": self.scale, "zero_point": self.zero_point}

    @property
    def per_channel(self) -> bool:
        """True when the tensor is quantized per channel (per axis), with a scale for each."""
        return self.scale_count > 1

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
    fused_activation: str | None = None  # the activation fused into the op (RELU, RELU6, ...), None without

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
    name: str = ""  # the subgraph's own name in the flatbuffer ("" when the exporter gave none)


@dataclass(frozen=True)
class SignatureInfo:
    """One signature of the model: its key, its subgraph, its inputs and outputs by name."""

    key: str
    subgraph: int
    inputs: dict[str, TensorInfo] = field(default_factory=dict)
    outputs: dict[str, TensorInfo] = field(default_factory=dict)


@dataclass
class TFLiteModel:
    """Every subgraph of a .tflite model (the first is the main one) and its signatures."""

    graphs: list[Subgraph]
    signatures: list[SignatureInfo] = field(default_factory=list)

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

    @property
    def input_names(self) -> list[str]:
        """The main subgraph's inputs in the order the model (and its calibrator) takes them: by the
        name its signature gives each one, else by tensor name."""
        signature = self.signature_of(0)
        by_index = {tensor.index: name for name, tensor in signature.inputs.items()} if signature else {}
        return [by_index.get(tensor.index, tensor.name) for tensor in self.inputs]

    def signature_of(self, subgraph: int) -> SignatureInfo | None:
        """The signature whose entry point is `subgraph`, if any."""
        return next((s for s in self.signatures if s.subgraph == subgraph), None)



def read_tflite_file(path: str | Path) -> TFLiteModel:
    """Read a .tflite file; missing, unreadable or non-TFLite files raise a UsageError."""
    path = Path(path)
    if input_kind(path, "model") == "directory":
        raise UsageError(f"{path} is a directory: audit reads a .tflite file (for a SavedModel, run "
                         f"`quantdoctor diagnose {path}`)")
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        return read_tflite(content)
    except UsageError as exc:
        raise UsageError(f"{path.name}: {exc}") from exc


# What the flatbuffers runtime raises on bytes that are not a well-formed buffer: offsets past the
# end (struct.error, ValueError), out-of-range numbers (TypeError), deep or huge nonsense.
_FLATBUFFER_ERRORS = (ValueError, TypeError, struct.error, IndexError, RecursionError, MemoryError)


def read_tflite(content: bytes) -> TFLiteModel:
    """Parse a .tflite flatbuffer; a UsageError of one line says so when `content` is not a valid one."""
    from quantdoctor.litert import schema_module

    schema = schema_module()

    if len(content) < 8 or content[4:8] != b"TFL3":
        raise UsageError("not a .tflite model (the file lacks the TFL3 flatbuffer identifier)")
    try:
        model = schema.ModelT.InitFromPackedBuf(content, 0)
    except _FLATBUFFER_ERRORS as exc:
        raise UsageError(f"corrupt .tflite model: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}") from exc
    if not model.subgraphs:
        raise UsageError("corrupt .tflite model: it has no subgraph")
    op_names = {value: name for name, value in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    type_names = {value: name for name, value in vars(schema.TensorType).items() if not name.startswith("_")}
    activations = {value: name for name, value in vars(schema.ActivationFunctionType).items()
                   if not name.startswith("_")}
    codes = model.operatorCodes or []
    buffers = model.buffers or []
    graphs, tensors_of = [], []
    for number, subgraph in enumerate(model.subgraphs):
        tensors = [_tensor(i, t, buffers, type_names) for i, t in enumerate(subgraph.tensors or [])]
        where = f"subgraph {number}"
        ops = []
        for index, op in enumerate(subgraph.operators or []):
            if not 0 <= op.opcodeIndex < len(codes):
                raise UsageError(f"corrupt .tflite model: op {index} of {where} names operator code "
                                 f"{op.opcodeIndex}, but the model has {len(codes)}")
            code = codes[op.opcodeIndex]
            builtin = op_names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "UNKNOWN")
            custom = _text(code.customCode) if code.customCode else None
            ops.append(OpInfo(index, custom if builtin == "CUSTOM" and custom else builtin,
                              _pick(tensors, op.inputs, f"op {index} of {where}"),
                              _pick(tensors, op.outputs, f"op {index} of {where}"), custom_name=custom,
                              subgraph=number, fused_activation=_fused_activation(op, activations)))
        graphs.append(Subgraph(number, ops, list(_pick(tensors, subgraph.inputs, f"the inputs of {where}")),
                               list(_pick(tensors, subgraph.outputs, f"the outputs of {where}")),
                               _text(subgraph.name) if subgraph.name else ""))
        tensors_of.append(tensors)
    return TFLiteModel(graphs, [_signature(s, tensors_of) for s in model.signatureDefs or []])


def _fused_activation(op: Any, names: dict[int, str]) -> str | None:
    """The activation an op's options fuse into it (`fusedActivationFunction`), None for NONE or no such option."""
    code = getattr(op.builtinOptions, "fusedActivationFunction", None)
    name = names.get(code) if isinstance(code, int) else None
    return None if name in (None, "NONE") else name


def _signature(signature: Any, tensors_of: list[list[TensorInfo]]) -> SignatureInfo:
    number = int(signature.subgraphIndex)
    if not 0 <= number < len(tensors_of):
        raise UsageError(f"corrupt .tflite model: a signature names subgraph {number}, but the model has "
                         f"{len(tensors_of)}")
    where = f"signature '{_text(signature.signatureKey)}'"
    inputs = _pick(tensors_of[number], [item.tensorIndex for item in signature.inputs or []], where)
    outputs = _pick(tensors_of[number], [item.tensorIndex for item in signature.outputs or []], where)
    return SignatureInfo(_text(signature.signatureKey), number,
                         {_text(item.name): t for item, t in zip(signature.inputs or [], inputs)},
                         {_text(item.name): t for item, t in zip(signature.outputs or [], outputs)})


def _pick(tensors: list[TensorInfo], indices: Any, owner: str) -> tuple[TensorInfo, ...]:
    """The tensors at `indices` (-1 marks an optional input left out); out-of-range indices are corrupt."""
    picked = []
    for i in (indices if indices is not None else []):
        if i < 0:
            continue
        if i >= len(tensors):
            raise UsageError(f"corrupt .tflite model: {owner} uses tensor {i}, but the subgraph has {len(tensors)}")
        picked.append(tensors[int(i)])
    return tuple(picked)


def _text(value: Any) -> str:
    """A flatbuffer string; bytes that are not UTF-8 (a damaged name) are kept escaped, not fatal."""
    return value.decode("utf-8", errors="backslashreplace") if isinstance(value, bytes) else str(value)


def _tensor(index: int, tensor: Any, buffers: list[Any], type_names: dict[int, str]) -> TensorInfo:
    quant = tensor.quantization
    scale = zero_point = None
    scale_count = dimension = 0
    if quant is not None and quant.scale is not None and len(quant.scale):
        scale = float(quant.scale[0])
        zero_point = int(quant.zeroPoint[0]) if quant.zeroPoint is not None and len(quant.zeroPoint) else 0
        scale_count, dimension = len(quant.scale), int(quant.quantizedDimension)
    buffer = buffers[tensor.buffer] if tensor.buffer < len(buffers) else None
    constant = buffer is not None and (buffer.data is not None and len(buffer.data) > 0 or bool(buffer.size))
    shape = tuple(int(d) for d in (tensor.shape if tensor.shape is not None else []))
    signature = None
    if tensor.shapeSignature is not None and len(tensor.shapeSignature):
        signature = tuple(int(d) for d in tensor.shapeSignature)
    dtype = type_names.get(tensor.type, str(tensor.type))
    values = None
    if constant and dtype == "FLOAT32" and buffer.data is not None and 0 < len(buffer.data) <= 4 * SMALL_CONSTANT \
            and len(buffer.data) % 4 == 0:
        values = tuple(float(v) for v in np.frombuffer(bytes(buffer.data), dtype="<f4"))
    return TensorInfo(index, _text(tensor.name), dtype, shape, scale, zero_point, constant,
                      shape_signature=signature, values=values, scale_count=scale_count,
                      quantized_dimension=dimension)
