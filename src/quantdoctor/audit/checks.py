"""Compare what was asked (the recipe) with what was produced (the .tflite)."""

from __future__ import annotations

from typing import Any

from quantdoctor import catalog
from quantdoctor.audit.tflite_model import OpInfo, TFLiteModel
from quantdoctor.catalog.locations import layer_for_path
from quantdoctor.intake.recipe import Recipe
from quantdoctor.report.model import Finding, Location

_BOUNDARY_OPS = ("QUANTIZE", "DEQUANTIZE")


def float_ops(model: TFLiteModel) -> list[OpInfo]:
    """Ops that compute in float, leaving out the QUANTIZE/DEQUANTIZE that convert at the edges."""
    return [op for op in model.ops + model.extra_ops if op.name not in _BOUNDARY_OPS and op.computes_in_float]


def summarize(model: TFLiteModel, layer_names: list[str]) -> dict[str, Any]:
    """The report's `audit` object."""
    floats = float_ops(model)
    return {
        "fully_integer": not floats,
        "float_ops": [{"op": op.name, "index": op.index, "layer": op_layer(op, layer_names)} for op in floats],
        "flex_ops": sorted({op.name for op in model.ops + model.extra_ops if op.is_flex}),
        "custom_ops": sorted({op.name for op in model.ops + model.extra_ops if op.custom_name and not op.is_flex}),
        "input_types": [t.to_dict() for t in model.inputs],
        "output_types": [t.to_dict() for t in model.outputs],
        "op_count": len(model.ops) + len(model.extra_ops),
    }


def audit_findings(model: TFLiteModel, recipe: Recipe, layer_names: list[str]) -> list[Finding]:
    """Findings where the produced model is not what the settings asked for."""
    findings = _io_type_findings(model, recipe)
    if recipe.wants_full_integer:
        findings += _float_op_findings(model, recipe, layer_names)
    flex = sorted({op.name for op in model.ops + model.extra_ops if op.is_flex})
    if flex:
        findings.append(catalog.get("QD106").finding(
            f"{len(flex)} op type(s) run through Select TF ops: {', '.join(flex)}.", evidence={"flex_ops": flex}))
    custom = sorted({op.name for op in model.ops + model.extra_ops if op.custom_name and not op.is_flex})
    if custom:
        findings.append(catalog.get("QD107").finding(
            f"Custom op(s) without a builtin kernel: {', '.join(custom)}.", evidence={"custom_ops": custom}))
    return findings


def op_layer(op: OpInfo, layer_names: list[str]) -> str | None:
    """The Keras layer an op came from, read from its output tensor names."""
    for tensor in op.outputs:
        for path in tensor.name.split(";"):
            layer = layer_for_path(path, layer_names)
            if layer:
                return layer
    return None


def _float_op_findings(model: TFLiteModel, recipe: Recipe, layer_names: list[str]) -> list[Finding]:
    findings = []
    severity = "error" if recipe.int8_only_ops else "warning"
    for op in float_ops(model):
        if op.is_flex:
            continue  # reported once by QD106
        layer = op_layer(op, layer_names)
        where = f"layer '{layer}'" if layer else f"op #{op.index}"
        findings.append(catalog.get("QD105").finding(
            f"{op.name} in {where} computes in float between DEQUANTIZE/QUANTIZE although "
            f"{'integer-only ops were' if recipe.int8_only_ops else 'full integer quantization was'} requested.",
            location=Location(layer=layer, op=op.name, tensor=op.outputs[0].name if op.outputs else None),
            evidence={"op_index": op.index, "tensor_types": sorted({t.dtype for t in op.inputs + op.outputs})},
            severity=severity))
    return findings


def _io_type_findings(model: TFLiteModel, recipe: Recipe) -> list[Finding]:
    findings = []
    for role, tensors, asked in (("input", model.inputs, recipe.inference_input_type),
                                 ("output", model.outputs, recipe.inference_output_type)):
        for tensor in tensors:
            got = tensor.dtype.lower()
            if got != asked and got in ("float32", "int8", "uint8", "int16"):
                findings.append(catalog.get("QD206").finding(
                    f"Model {role} '{tensor.name}' is {got}; {asked} was requested.",
                    location=Location(tensor=tensor.name), evidence={"requested": asked, "produced": got}))
    return findings
