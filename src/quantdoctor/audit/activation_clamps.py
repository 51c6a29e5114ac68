"""Fused activation clamps that LiteRT's builtin kernels cannot quantize (QD112, predicted from the model).

An op with a fused RELU6 or RELU_N1_TO_1 clamps its integer output at the clamp's bounds quantized with the
output's own scale. LiteRT's builtin kernels compute those bounds when they prepare the op
(`CalculateActivationRangeQuantized` in tflite/kernels/kernel_util.cc): each bound `f` becomes
`round(f / scale)` in float, checked against the int32 range (`no_integer_overflow_from_quantization`), and the
op fails to prepare when it is out of it. An output calibrated to an almost empty range (a layer whose weights
or inputs are near zero) has a scale small enough for 6 / scale to pass 2**31. XNNPACK, LiteRT's default CPU
delegate, takes such ops without that check, so the model runs where XNNPACK runs them and fails to prepare
where the builtin kernel does (XNNPACK off or absent, LiteRT for Microcontrollers). Measured here: TensorFlow's
converter gives such a layer a scale the kernel takes; ai-edge-quantizer keeps the calibrated range as it is.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from quantdoctor import catalog
from quantdoctor.audit.tflite_model import OpInfo, TFLiteModel
from quantdoctor.report.model import Finding, Location

# The bounds each fused activation's clamp quantizes (RELU's only bound, 0, always fits).
CLAMP_BOUNDS = {"RELU6": (0.0, 6.0), "RELU_N1_TO_1": (-1.0, 1.0)}
_INTEGER_OUTPUTS = ("INT8", "UINT8", "INT16")
_INT32 = np.iinfo(np.int32)


def quantized_bound(bound: float, scale: float) -> float:
    """`bound` on the output's integer grid, computed as the kernel does (float32, before the zero point)."""
    return float(np.round(np.float32(bound) / np.float32(scale)))


def fits_int32(value: float) -> bool:
    """The kernel's test: the rounded value within int32, compared as float32 numbers."""
    return float(np.float32(_INT32.min)) <= value <= float(np.float32(_INT32.max))


def clamp_findings(model: TFLiteModel, layer_of: Callable[[OpInfo], str | None]) -> list[Finding]:
    """QD112 (predicted) for every integer op whose fused clamp overflows int32 on its output's scale;
    `layer_of` names an op's Keras layer (None where unknown)."""
    findings = []
    for op in model.all_ops:
        bounds = CLAMP_BOUNDS.get(op.fused_activation or "")
        output = op.outputs[0] if op.outputs else None
        if not bounds or output is None or output.dtype not in _INTEGER_OUTPUTS or not output.scale:
            continue
        over = [(bound, quantized_bound(bound, output.scale)) for bound in bounds
                if not fits_int32(quantized_bound(bound, output.scale))]
        if not over:
            continue
        bound, value = over[0]
        layer = layer_of(op)
        where = f"{op.name} #{op.index}" + (f" in layer '{layer}'" if layer else "")
        findings.append(catalog.get("QD112").finding(
            f"{where} fuses {op.fused_activation}, and its output scale {output.scale:.3g} puts the clamp's bound "
            f"{bound:g} at {value:.3g} on the integer grid, beyond int32: LiteRT's builtin kernel refuses the op "
            "when it prepares it (no_integer_overflow_from_quantization). The run with XNNPACK, which takes the "
            "op without that check, passes; without XNNPACK (turned off, a delegate's fallback, LiteRT for "
            "Microcontrollers) the model does not run. The output was calibrated to an almost empty range.",
            location=Location(layer=layer, op=op.name, tensor=output.name),
            evidence={"predicted": True, "kernel": "builtin", "op_index": op.index,
                      "fused_activation": op.fused_activation, "output_scale": output.scale,
                      "bound": bound, "quantized_bound": value},
            fix="Calibrate on samples that drive this layer (its output range is almost empty), or keep the op "
                "in float; a model whose weights there are near zero (untrained, pruned) gets this from "
                "ai-edge-quantizer, which keeps the calibrated range as it is.", fix_code=""))
    return findings
