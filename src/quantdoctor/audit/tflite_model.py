"""Read a .tflite flatbuffer (with LiteRT's schema module, no TensorFlow, nothing executed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from quantdoctor.errors import UsageError

FLOAT_TYPES = ("FLOAT32", "FLOAT16", "FLOAT64", "BFLOAT16")
SMALL_CONSTANT = 64


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
    # The values of a small float32 constant (at most SMALL_CONSTANT elements): scales, offsets, means.
    values: tuple[float, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype.lower(), "shape": list(self.shape),
                "scale": self.scale, "zero_point": self.zero_point}


@dataclass(frozen=True)
class OpInfo:
    """One operator with its tensors."""

    index: int
    name: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    custom_name: str | None = None

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


@dataclass
class TFLiteModel:
    """The main subgraph of a .tflite model, plus the ops of any other subgraphs."""

    ops: list[OpInfo]
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    subgraphs: int = 1
    extra_ops: list[OpInfo] = field(default_factory=list)
    # The signature's name for each input of `inputs` (the tensor's name where no signature names it).
    input_names: list[str] = field(default_factory=list)

    @property
    def all_ops(self) -> list[OpInfo]:
        """Ops of every subgraph (signatures, while/if bodies)."""
        return self.ops + self.extra_ops


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
    subgraphs = []
    for subgraph in model.subgraphs:
        tensors = [_tensor(i, t, model.buffers, type_names) for i, t in enumerate(subgraph.tensors)]
        ops = []
        for index, op in enumerate(subgraph.operators or []):
            code = model.operatorCodes[op.opcodeIndex]
            builtin = op_names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "UNKNOWN")
            custom = code.customCode.decode() if code.customCode else None
            ops.append(OpInfo(index, custom if builtin == "CUSTOM" and custom else builtin,
                              tuple(tensors[i] for i in _indices(op.inputs)),
                              tuple(tensors[i] for i in _indices(op.outputs)), custom_name=custom))
        subgraphs.append((ops, [tensors[i] for i in _indices(subgraph.inputs)],
                          [tensors[i] for i in _indices(subgraph.outputs)]))
    main_ops, inputs, outputs = subgraphs[0]
    extra = [op for ops, _, _ in subgraphs[1:] for op in ops]
    signature_names = {entry.tensorIndex: _text(entry.name) for signature in model.signatureDefs or []
                       if signature.subgraphIndex == 0 for entry in signature.inputs or []}
    return TFLiteModel(main_ops, inputs, outputs, subgraphs=len(subgraphs), extra_ops=extra,
                       input_names=[signature_names.get(t.index, t.name) for t in inputs])


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
    dtype = type_names.get(tensor.type, str(tensor.type))
    values = None
    if constant and dtype == "FLOAT32" and buffer.data is not None and 0 < len(buffer.data) <= 4 * SMALL_CONSTANT:
        values = tuple(float(v) for v in np.frombuffer(bytes(buffer.data), dtype="<f4"))
    return TensorInfo(index, name, dtype, shape, scale, zero_point, constant, values)
