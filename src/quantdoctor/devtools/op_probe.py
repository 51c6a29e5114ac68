"""Probe the pinned TFLite converter op by op: how does it handle each TF op under full INT8?

Every entry of `PROBES` is a one-line function applying one TensorFlow op type (the graph
node's `op`, e.g. "Conv2D" or "Cumsum") to a float32 input whose shape `INPUT_SHAPES` gives.
`probe` converts that one-op graph with `Optimize.DEFAULT`, the default TFLITE_BUILTINS op
set and a representative dataset, then reads the result:

- `{"kernel": "builtin", "int8": bool, "tflite_ops": [...]}` when it converts; `int8` is
  False when any operator other than QUANTIZE/DEQUANTIZE still reads or writes float32;
- `{"kernel": "flex"}` when the converter wants the op from TF Select (ERROR_NEEDS_FLEX_OPS);
- `{"kernel": "custom"}` when it wants a custom op (ERROR_NEEDS_CUSTOM_OPS);
- `{"kernel": "error", "message": ...}` when the conversion fails for another reason.

Binary ops take both operands from `x` (its two halves), so a division stays a DIV instead of
folding into a MUL by a constant reciprocal. Multi-output ops return all their outputs: with
one left unused, the quantizer leaves Split, SplitV and Unpack in float, and not reliably so.

`scripts/probe_op_support.py` runs `probe_all` to write `op_support.json`, the table the
preflight check reads without converting anything.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import tensorflow as tf

IMAGE = (1, 8, 8, 4)
VOLUME = (1, 4, 4, 4, 2)
MATRIX = (1, 4, 4)
VECTOR = (1, 16)
DYNAMIC_VECTOR = (None, 16)
"""For ops the converter folds to a constant when the input shape is fully static."""

CALIBRATION_SAMPLES = 8
_CALIBRATION_RANGE = (0.05, 1.0)
"""Positive and below 1: inside the domain of Sqrt, Log, Asin, Atanh, Betainc, Lgamma..."""
_QUANTIZE_OPS = frozenset({"QUANTIZE", "DEQUANTIZE"})


def _const(*shape: int) -> tf.Tensor:
    """A fixed float32 constant with values in [0.5, 1.5): nonzero and positive, fit for any operand."""
    return tf.constant(np.random.default_rng(1).uniform(0.5, 1.5, shape), tf.float32)


_IMAGE_PROBES: dict[str, Callable] = {
    "AvgPool": lambda x: tf.nn.avg_pool2d(x, 2, 2, "VALID"),
    "BatchToSpaceND": lambda x: tf.batch_to_space(tf.reshape(x, (4, 4, 4, 4)), [2, 2], [[0, 0], [0, 0]]),
    "BiasAdd": lambda x: tf.nn.bias_add(x, _const(4)),
    "Conv2D": lambda x: tf.nn.conv2d(x, _const(3, 3, 4, 4), 1, "SAME"),
    "Conv2DBackpropInput": lambda x: tf.nn.conv2d_transpose(x, _const(3, 3, 4, 4), (1, 16, 16, 4), 2),
    "CropAndResize": lambda x: tf.image.crop_and_resize(x, [[0.0, 0.0, 1.0, 1.0]], [0], (4, 4)),
    "DepthToSpace": lambda x: tf.nn.depth_to_space(x, 2),
    "DepthwiseConv2dNative": lambda x: tf.nn.depthwise_conv2d(x, _const(3, 3, 4, 1), [1, 1, 1, 1], "SAME"),
    "Dilation2D": lambda x: tf.nn.dilation2d(x, _const(2, 2, 4), [1, 1, 1, 1], "SAME", "NHWC", [1, 1, 1, 1]),
    "ExtractImagePatches": lambda x: tf.image.extract_patches(x, [1, 2, 2, 1], [1, 2, 2, 1], [1, 1, 1, 1], "VALID"),
    "FusedBatchNormV3": lambda x: tf.raw_ops.FusedBatchNormV3(
        x=x, scale=_const(4), offset=_const(4), mean=_const(4), variance=_const(4), is_training=False)[0],
    "LRN": lambda x: tf.nn.local_response_normalization(x),
    "MaxPool": lambda x: tf.nn.max_pool2d(x, 2, 2, "VALID"),
    "MaxPoolWithArgmax": lambda x: tuple(tf.nn.max_pool_with_argmax(x, 2, 2, "VALID")),
    "MirrorPad": lambda x: tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], "REFLECT"),
    "ResizeArea": lambda x: tf.image.resize(x, (4, 4), "area"),
    "ResizeBicubic": lambda x: tf.image.resize(x, (16, 16), "bicubic"),
    "ResizeBilinear": lambda x: tf.image.resize(x, (16, 16), "bilinear"),
    "ResizeNearestNeighbor": lambda x: tf.image.resize(x, (16, 16), "nearest"),
    "ScaleAndTranslate": lambda x: tf.image.resize(x, (16, 16), "lanczos3"),
    "SpaceToBatchND": lambda x: tf.space_to_batch(x, [2, 2], [[0, 0], [0, 0]]),
    "SpaceToDepth": lambda x: tf.nn.space_to_depth(x, 2),
    "Transpose": lambda x: tf.transpose(x, (0, 3, 1, 2)),
}

_VOLUME_PROBES: dict[str, Callable] = {
    "AvgPool3D": lambda x: tf.nn.avg_pool3d(x, 2, 2, "VALID"),
    "Conv3D": lambda x: tf.nn.conv3d(x, _const(2, 2, 2, 2, 2), [1, 1, 1, 1, 1], "SAME"),
    "Conv3DBackpropInputV2": lambda x: tf.nn.conv3d_transpose(
        x, _const(2, 2, 2, 2, 2), (1, 8, 8, 8, 2), [1, 2, 2, 2, 1]),
    "MaxPool3D": lambda x: tf.nn.max_pool3d(x, 2, 2, "VALID"),
}

_MATRIX_PROBES: dict[str, Callable] = {
    "BatchMatMulV2": lambda x: tf.matmul(x, _const(1, 4, 4)),
    "Cholesky": lambda x: tf.linalg.cholesky(tf.matmul(x, x, transpose_b=True) + tf.eye(4)),
    "Einsum": lambda x: tf.einsum("bij,jk->bik", x, _const(4, 4)),
    "MatrixBandPart": lambda x: tf.linalg.band_part(x, 1, 1),
    "MatrixDeterminant": lambda x: tf.linalg.det(x),
    "MatrixDiagPartV3": lambda x: tf.linalg.diag_part(x),
    "MatrixInverse": lambda x: tf.linalg.inv(x),
    "MatrixSetDiagV3": lambda x: tf.linalg.set_diag(x, x[:, 0]),
    "MatrixSolve": lambda x: tf.linalg.solve(x, _const(1, 4, 1)),
    "MatrixTriangularSolve": lambda x: tf.linalg.triangular_solve(x, _const(1, 4, 1)),
    "Qr": lambda x: tuple(tf.linalg.qr(x)),
    "SelfAdjointEigV2": lambda x: tf.linalg.eigvalsh(x),
    "Svd": lambda x: tf.linalg.svd(x, compute_uv=False),
    "Unpack": lambda x: tf.unstack(x, axis=1),
}

_UNARY_OPS = (
    "Abs", "Acos", "Asin", "Asinh", "Atan", "Atanh", "Ceil", "Cos", "Cosh", "Digamma", "Erf", "Erfc",
    "Erfinv", "Exp", "Expm1", "Floor", "IsFinite", "IsNan", "Lgamma", "Log", "Log1p", "Ndtri", "Neg", "Reciprocal",
    "Rint", "Round", "Rsqrt", "Sigmoid", "Sign", "Sin", "Sinh", "Sqrt", "Square", "Tan", "Tanh",
)
_ACTIVATION_OPS = ("Elu", "LeakyRelu", "Relu", "Relu6", "Selu", "Softplus", "Softsign")
_BINARY_OPS = (
    "Add", "AddV2", "DivNoNan", "Equal", "FloorDiv", "FloorMod", "Greater", "GreaterEqual", "Less",
    "LessEqual", "Maximum", "Minimum", "Mod", "Mul", "NotEqual", "Pow", "RealDiv", "SquaredDifference", "Sub",
    "TruncateDiv", "Xdivy", "Xlogy",
)
_REDUCTION_OPS = ("EuclideanNorm", "Max", "Mean", "Min", "Prod", "Sum")

_VECTOR_PROBES: dict[str, Callable] = {
    **{op: lambda x, op=op: getattr(tf.raw_ops, op)(x=x) for op in _UNARY_OPS},
    **{op: lambda x, op=op: getattr(tf.raw_ops, op)(features=x) for op in _ACTIVATION_OPS},
    **{op: lambda x, op=op: getattr(tf.raw_ops, op)(x=x[:, :8], y=x[:, 8:]) for op in _BINARY_OPS},
    **{op: lambda x, op=op: getattr(tf.raw_ops, op)(input=x, axis=[1]) for op in _REDUCTION_OPS},
    "Acosh": lambda x: tf.raw_ops.Acosh(x=x + 1.0),
    "AddN": lambda x: tf.add_n([x, x, _const(1, 16)]),
    "All": lambda x: tf.reduce_all(x > 0.5, axis=1),
    "Any": lambda x: tf.reduce_any(x > 0.5, axis=1),
    "ArgMax": lambda x: tf.math.argmax(x, axis=1),
    "ArgMin": lambda x: tf.math.argmin(x, axis=1),
    "Atan2": lambda x: tf.math.atan2(x[:, :8], x[:, 8:]),
    "Betainc": lambda x: tf.math.betainc(_const(1, 16), _const(1, 16), x),
    "BroadcastTo": lambda x: tf.broadcast_to(x, (3, 16)),
    "Bucketize": lambda x: tf.raw_ops.Bucketize(input=x, boundaries=[0.25, 0.5, 0.75]),
    "Cast": lambda x: tf.cast(x, tf.int32),
    "CheckNumerics": lambda x: tf.debugging.check_numerics(x, "probe"),
    "ClipByValue": lambda x: tf.raw_ops.ClipByValue(t=x, clip_value_min=0.25, clip_value_max=0.75),
    "ComplexAbs": lambda x: tf.abs(tf.signal.rfft(x)),
    "ConcatV2": lambda x: tf.concat([x, _const(1, 4)], 1),
    "Cumprod": lambda x: tf.math.cumprod(x, axis=1),
    "Cumsum": lambda x: tf.math.cumsum(x, axis=1),
    "DenseBincount": lambda x: tf.raw_ops.DenseBincount(input=tf.cast(x * 8, tf.int32), size=8, weights=x),
    "ExpandDims": lambda x: tf.expand_dims(x, 1),
    "Fill": lambda x: tf.fill([2, 16], x[0, 0]),
    "GatherNd": lambda x: tf.gather_nd(x, [[0, 1], [0, 5]]),
    "GatherV2": lambda x: tf.gather(x, [0, 3, 5], axis=1),
    "Identity": lambda x: tf.raw_ops.Identity(input=x),
    "IdentityN": lambda x: tf.identity_n([x, x])[0],
    "Igamma": lambda x: tf.math.igamma(_const(1, 16), x),
    "Igammac": lambda x: tf.math.igammac(_const(1, 16), x),
    "L2Loss": lambda x: tf.nn.l2_loss(x),
    "LinSpace": lambda x: tf.raw_ops.LinSpace(start=x[0, 0], stop=1.0, num=5),
    "LogSoftmax": lambda x: tf.raw_ops.LogSoftmax(logits=x),
    "LogicalAnd": lambda x: tf.logical_and(x > 0.25, x < 0.75),
    "LogicalNot": lambda x: tf.logical_not(x > 0.5),
    "LogicalOr": lambda x: tf.logical_or(x < 0.25, x > 0.75),
    "MatMul": lambda x: tf.matmul(x, _const(16, 4)),
    "MatrixDiagV3": lambda x: tf.linalg.diag(x),
    "NonMaxSuppressionV3": lambda x: tf.image.non_max_suppression(tf.reshape(x, (4, 4)), x[0, :4], 2),
    "NonMaxSuppressionV5": lambda x: tuple(
        tf.image.non_max_suppression_with_scores(tf.reshape(x, (4, 4)), x[0, :4], 2)),
    "OneHot": lambda x: tf.one_hot(tf.math.argmax(x, axis=1), 16),
    "Pack": lambda x: tf.stack([x, x]),
    "Pad": lambda x: tf.pad(x, [[0, 0], [1, 1]]),
    "PadV2": lambda x: tf.pad(x, [[0, 0], [1, 1]], constant_values=1.0),
    "Polygamma": lambda x: tf.math.polygamma(tf.ones((1, 16)), x),
    "RFFT": lambda x: tf.signal.rfft(x),
    "Rank": lambda x: tf.raw_ops.Rank(input=x),
    "Range": lambda x: tf.range(x[0, 0], 10.0),
    "Reshape": lambda x: tf.reshape(x, (1, 4, 4)),
    "ReverseSequence": lambda x: tf.reverse_sequence(x, [3], seq_axis=1, batch_axis=0),
    "ReverseV2": lambda x: tf.reverse(x, [1]),
    "Roll": lambda x: tf.roll(x, 2, 1),
    "ScatterNd": lambda x: tf.scatter_nd([[1], [3]], x[0, :2], [8]),
    "SegmentSum": lambda x: tf.math.segment_sum(x[0], [0] * 8 + [1] * 8),
    "Select": lambda x: tf.raw_ops.Select(condition=x > 0.5, x=x, y=_const(1, 16)),
    "SelectV2": lambda x: tf.where(x > 0.5, x, _const(1, 16)),
    "Slice": lambda x: tf.slice(x, [0, 2], [1, 8]),
    "Softmax": lambda x: tf.raw_ops.Softmax(logits=x),
    "Split": lambda x: tf.split(x, 2, axis=1),
    "SplitV": lambda x: tf.split(x, [4, 12], axis=1),
    "Squeeze": lambda x: tf.squeeze(x, 0),
    "StopGradient": lambda x: tf.stop_gradient(x),
    "StridedSlice": lambda x: x[:, 1:9:2],
    "TensorScatterUpdate": lambda x: tf.tensor_scatter_nd_update(x, [[0, 1]], x[0, :1]),
    "Tile": lambda x: tf.tile(x, [2, 1]),
    "TopKV2": lambda x: tuple(tf.math.top_k(x, 4)),
    "Unique": lambda x: tuple(tf.unique(x[0])),
    "UnsortedSegmentMax": lambda x: tf.math.unsorted_segment_max(x[0], [0, 1] * 8, 2),
    "UnsortedSegmentMin": lambda x: tf.math.unsorted_segment_min(x[0], [0, 1] * 8, 2),
    "UnsortedSegmentProd": lambda x: tf.math.unsorted_segment_prod(x[0], [0, 1] * 8, 2),
    "UnsortedSegmentSum": lambda x: tf.math.unsorted_segment_sum(x[0], [0, 1] * 8, 2),
    "Where": lambda x: tf.where(x > 0.5),
    "Zeta": lambda x: tf.math.zeta(x + 1.5, _const(1, 16)),
}

_DYNAMIC_VECTOR_PROBES: dict[str, Callable] = {
    "OnesLike": lambda x: tf.raw_ops.OnesLike(x=x),
    "Shape": lambda x: tf.shape(x),
    "Size": lambda x: tf.size(x),
    "ZerosLike": lambda x: tf.raw_ops.ZerosLike(x=x),
}

_GROUPS = (
    (IMAGE, _IMAGE_PROBES),
    (VOLUME, _VOLUME_PROBES),
    (MATRIX, _MATRIX_PROBES),
    (VECTOR, _VECTOR_PROBES),
    (DYNAMIC_VECTOR, _DYNAMIC_VECTOR_PROBES),
)
PROBES: dict[str, Callable] = {op: fn for _, group in _GROUPS for op, fn in group.items()}
"""TF op type -> a function applying that op to a float32 input `x`."""
INPUT_SHAPES: dict[str, tuple[int | None, ...]] = {op: shape for shape, group in _GROUPS for op in group}
"""TF op type -> the shape of its probe's input (`None`: a dynamic dimension, 1 in calibration)."""


def probe(op_type: str) -> dict[str, Any]:
    """Convert the probe of `op_type` to full INT8 with the live converter and classify the outcome."""
    module, concrete = _trace(op_type)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], module)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    samples = _calibration_samples(INPUT_SHAPES[op_type])
    converter.representative_dataset = lambda: iter(samples)
    try:
        flatbuffer = converter.convert()
    except Exception as exc:
        return _failure(op_type, exc)
    operators = _operators(flatbuffer)
    float_ops = {name for name, computes_in_float in operators if computes_in_float} - _QUANTIZE_OPS
    return {"kernel": "builtin", "int8": not float_ops, "tflite_ops": sorted({name for name, _ in operators})}


def probe_all() -> dict[str, dict[str, Any]]:
    """`probe` every op type of `PROBES`, by name; a probe that raises is recorded as an error."""
    results = {}
    for op_type in sorted(PROBES):
        try:
            results[op_type] = probe(op_type)
        except Exception as exc:
            results[op_type] = {"kernel": "error", "message": _first_line(f"{type(exc).__name__}: {exc}")}
    return results


def _trace(op_type: str) -> tuple[tf.Module, Any]:
    """The probe as a concrete function on a module; raises when the op is missing from its graph."""
    module = tf.Module()
    module.probe = tf.function(PROBES[op_type], input_signature=[tf.TensorSpec(INPUT_SHAPES[op_type], tf.float32)])
    concrete = module.probe.get_concrete_function()
    traced = {op.type for op in concrete.graph.get_operations()}
    if op_type not in traced:
        raise ValueError(f"the probe of {op_type} traces to {sorted(traced)}, without {op_type}")
    return module, concrete


def _calibration_samples(shape: tuple[int | None, ...]) -> list[list[np.ndarray]]:
    """A fixed representative dataset in list form: one input per sample, free dimensions of 1."""
    rng = np.random.default_rng(0)
    concrete_shape = tuple(1 if size is None else size for size in shape)
    return [[rng.uniform(*_CALIBRATION_RANGE, concrete_shape).astype(np.float32)] for _ in range(CALIBRATION_SAMPLES)]


def _failure(op_type: str, exc: Exception) -> dict[str, Any]:
    """Classify a failed conversion by the error code the converter gives the op under test."""
    errors = getattr(exc, "errors", None) or []
    codes = {error.ErrorCode.Name(error.error_code) for error in errors if error.operator.name == f"tf.{op_type}"}
    if "ERROR_NEEDS_FLEX_OPS" in codes:
        return {"kernel": "flex"}
    if "ERROR_NEEDS_CUSTOM_OPS" in codes:
        return {"kernel": "custom"}
    message = errors[0].error_message if errors else f"{type(exc).__name__}: {exc}"
    return {"kernel": "error", "message": _first_line(message)}


def _operators(flatbuffer: bytes) -> list[tuple[str, bool]]:
    """(name, computes in float32) for every operator of every subgraph of a .tflite model."""
    from quantdoctor.litert import schema_module

    schema = schema_module()

    model = schema.ModelT.InitFromPackedBuf(flatbuffer, 0)
    op_names = {value: name for name, value in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    operators = []
    for subgraph in model.subgraphs:
        for op in subgraph.operators or []:
            code = model.operatorCodes[op.opcodeIndex]
            builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
            name = code.customCode.decode() if code.customCode else op_names[builtin]
            variable_inputs = [i for i in _indices(op.inputs) if not _is_constant(model, subgraph.tensors[i])]
            tensors = [subgraph.tensors[i] for i in variable_inputs + _indices(op.outputs)]
            operators.append((name, any(t.type == schema.TensorType.FLOAT32 for t in tensors)))
    return operators


def _indices(values: Any) -> list[int]:
    """Tensor indices of an operator's inputs or outputs, without the -1 of an omitted optional one."""
    return [int(i) for i in (values if values is not None else []) if i >= 0]


def _is_constant(model: Any, tensor: Any) -> bool:
    """True when the tensor's buffer holds data (a weight or other constant)."""
    data = model.buffers[tensor.buffer].data
    return data is not None and len(data) > 0


def _first_line(text: str) -> str:
    """The first non-empty line of `text`, stripped."""
    return next((line.strip() for line in text.splitlines() if line.strip()), "")
