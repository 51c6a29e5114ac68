"""Audit findings: what the produced .tflite really is, against what was asked and the target."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

from quantdoctor import catalog
from quantdoctor.audit.islands import BOUNDARY_OPS, float_islands, integer_partitions, needs_cpu
from quantdoctor.audit.tflite_model import OpInfo, TFLiteModel
from quantdoctor.catalog.locations import layers_in_tensor_name
from quantdoctor.errors import UsageError
from quantdoctor.intake.recipe import Recipe
from quantdoctor.report.model import Finding, Location

TARGETS = ("int8-accelerator", "microcontroller")
_INTEGER_TYPES = ("INT8", "UINT8", "INT16")


def check_target(target: str | None) -> None:
    """Raise a UsageError for an unknown target name."""
    if target is not None and target not in TARGETS:
        raise UsageError(f"unknown target '{target}': choose one of {', '.join(TARGETS)}")


def summarize(model: TFLiteModel, layer_names: list[str]) -> dict[str, Any]:
    """The report's `audit` object."""
    floats = float_ops(model)
    return {
        "fully_integer": not floats,
        "model_kind": model_kind(model),
        "float_ops": [{"op": op.name, "index": op.index, "layer": op_layer(op, layer_names)} for op in floats],
        "float_islands": [_island_dict(island, layer_names) for island in float_islands(model)],
        "integer_partitions": integer_partitions(model),
        "flex_ops": sorted({op.name for op in model.all_ops if op.is_flex}),
        "custom_ops": sorted({op.name for op in model.all_ops if op.is_custom}),
        "unquantized_integer_tensors": [t.name for t in _unquantized_tensors(model)],
        "input_types": [t.to_dict() for t in model.inputs],
        "output_types": [t.to_dict() for t in model.outputs],
        "op_count": len(model.all_ops),
    }


def model_kind(model: TFLiteModel) -> str:
    """What the model computes in, in a few words: "fully integer", "integer with 2 float op(s)",
    "float with int8 weights (dynamic range)", "float with float16 weights" or "float"."""
    floats = float_ops(model)
    if not floats:
        return "fully integer"
    if _partly_quantized(model):
        return f"integer with {len(floats)} float op(s)"
    constants = {t.dtype for op in model.all_ops for t in op.inputs if t.is_constant}
    if "INT8" in constants:
        return "float with int8 weights (dynamic range)"
    if "FLOAT16" in constants:
        return "float with float16 weights"
    return "float"


_FULL_INTEGER_CODE = """converter.optimizations = [tf.lite.Optimize.DEFAULT]
converter.representative_dataset = representative_dataset   # 100-500 real samples
converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
converter.inference_input_type = tf.int8
converter.inference_output_type = tf.int8"""


def float_ops(model: TFLiteModel) -> list[OpInfo]:
    """Ops that compute in float, leaving out the QUANTIZE/DEQUANTIZE that convert at the edges."""
    return [op for op in model.all_ops if op.name not in BOUNDARY_OPS and op.computes_in_float]


def audit_findings(model: TFLiteModel, layer_names: list[str], recipe: Recipe | None = None,
                   target: str | None = None) -> list[Finding]:
    """Findings where the model is not what the settings asked for, or not what the target runs.

    Without a recipe (a .tflite audited on its own) float ops are reported when the model is
    partly quantized, since then they are what kept it from being integer.
    """
    findings = _io_type_findings(model, recipe) if recipe else []
    findings += _variable_findings(model)
    meant_integer = recipe.wants_full_integer if recipe else _partly_quantized(model)
    if meant_integer or target == "int8-accelerator":
        strict = target == "int8-accelerator" or bool(recipe and recipe.int8_only_ops)
        findings += _float_op_findings(model, layer_names, "error" if strict else "warning")
    flex = sorted({op.name for op in model.all_ops if op.is_flex})
    if flex:
        findings.append(catalog.get("QD106").finding(
            f"{len(flex)} op type(s) run through Select TF ops: {', '.join(flex)}.", evidence={"flex_ops": flex}))
    custom = sorted({op.name for op in model.all_ops if op.is_custom})
    if custom:
        findings.append(catalog.get("QD107").finding(
            f"Custom op(s) without a builtin kernel: {', '.join(custom)}.", evidence={"custom_ops": custom}))
    unquantized = _unquantized_tensors(model)
    if unquantized:
        findings.append(catalog.get("QD403").finding(
            f"{len(unquantized)} integer tensor(s) carry no scale/zero point, e.g. '{unquantized[0].name}'.",
            location=Location(tensor=unquantized[0].name), evidence={"tensors": [t.name for t in unquantized][:20]}))
    if target == "int8-accelerator":
        findings += _accelerator_findings(model, layer_names)
    if target == "microcontroller":
        findings += _microcontroller_findings(model)
    return findings


def op_layer(op: OpInfo, layer_names: list[str]) -> str | None:
    """The Keras layer an op came from, read from its output tensor names (the TF scope without layer names)."""
    return next((layers[0] for tensor in op.outputs if (layers := layers_in_tensor_name(tensor.name, layer_names))),
                None)


def microcontroller_runs(op: OpInfo) -> bool:
    """True when LiteRT for Microcontrollers has a kernel for the op at the op's tensor types.

    Ops registered without an INT8 path (LOGICAL_AND, BROADCAST_ARGS, SIN, ...) still run when
    none of their tensors is int8 or float: a boolean mask or a shape computation, say.
    """
    int8_ops, other_ops = _tflm_table()
    if needs_cpu(op):
        return False
    if op.name in int8_ops:
        return True
    tensor_types = {t.dtype for t in op.inputs + op.outputs}
    return op.name in other_ops and not tensor_types & {"INT8", "FLOAT32", "FLOAT16"}


@lru_cache(maxsize=1)
def _tflm_table() -> tuple[frozenset[str], frozenset[str]]:
    """LiteRT for Microcontrollers' builtin kernels (data in audit/tflm_int8_ops.json)."""
    table = json.loads(resources.files("quantdoctor.audit").joinpath("tflm_int8_ops.json").read_text())
    return frozenset(table["int8_ops"]), frozenset(table["registered_without_int8"])


def _partly_quantized(model: TFLiteModel) -> bool:
    return any(t.scale is not None and t.dtype in _INTEGER_TYPES
               for op in model.all_ops for t in op.inputs + op.outputs if not t.is_constant)


def _float_op_findings(model: TFLiteModel, layer_names: list[str], severity: str) -> list[Finding]:
    findings = []
    for op in float_ops(model):
        if op.is_flex:
            continue  # reported once by QD106
        layer = op_layer(op, layer_names)
        where = f"layer '{layer}'" if layer else f"op #{op.index}"
        findings.append(catalog.get("QD105").finding(
            f"{op.name} in {where} computes in float between DEQUANTIZE/QUANTIZE in a model meant to be integer.",
            location=Location(layer=layer, op=op.name, tensor=op.outputs[0].name if op.outputs else None),
            evidence={"op_index": op.index, "tensor_types": sorted({t.dtype.lower() for t in op.inputs + op.outputs})},
            severity=severity))
    return findings


def _accelerator_findings(model: TFLiteModel, layer_names: list[str]) -> list[Finding]:
    islands = float_islands(model)
    if not islands:
        return []
    partitions = integer_partitions(model)
    names = sorted({op.name for island in islands for op in island.ops})
    return [catalog.get("QD110").finding(
        f"{sum(len(i.ops) for i in islands)} op(s) ({', '.join(names)}) cannot run on an integer-only "
        f"accelerator: {len(islands)} island(s) on the CPU split the integer ops into {partitions} partition(s).",
        evidence={"islands": [_island_dict(island, layer_names) for island in islands],
                  "integer_partitions": partitions})]


def _microcontroller_findings(model: TFLiteModel) -> list[Finding]:
    if float_ops(model) and not _partly_quantized(model):  # the ops are fine: the model is not integer at all
        kind = model_kind(model)
        return [catalog.get("QD111").finding(
            f"The model is {kind}: LiteRT for Microcontrollers runs integer models, and this one computes in "
            "float.", evidence={"ops": [], "model_kind": kind},
            fix="Convert with full integer quantization (int8 ops and int8 input/output).",
            fix_code=_FULL_INTEGER_CODE)]
    missing = sorted({op.name for op in model.all_ops if not microcontroller_runs(op)})
    if not missing:
        return []
    return [catalog.get("QD111").finding(
        f"LiteRT for Microcontrollers has no INT8 kernel for: {', '.join(missing)}.",
        evidence={"ops": missing})]


def _island_dict(island: Any, layer_names: list[str]) -> dict[str, Any]:
    return {"ops": [op.name for op in island.ops],
            "layers": sorted({layer for op in island.ops if (layer := op_layer(op, layer_names))}),
            "dequantize_in": len(island.dequantize_in), "quantize_out": len(island.quantize_out)}


def _variable_findings(model: TFLiteModel) -> list[Finding]:
    """Variables the model reads and never assigns (QD406): LiteRT hands it uninitialised memory."""
    ops = [op.name for op in model.all_ops]
    reads = ops.count("READ_VARIABLE")
    if not reads or "ASSIGN_VARIABLE" in ops:
        return []
    return [catalog.get("QD406").finding(
        f"The model reads {ops.count('VAR_HANDLE')} variable(s) ({reads} READ_VARIABLE ops) that no op assigns: "
        "its weights were not folded into constants, and it computes with uninitialised memory.",
        location=Location(op="READ_VARIABLE"),
        evidence={"var_handle_ops": ops.count("VAR_HANDLE"), "read_variable_ops": reads})]


def _unquantized_tensors(model: TFLiteModel) -> list[Any]:
    seen = {}
    for op in model.all_ops:
        for tensor in op.inputs + op.outputs:
            if tensor.dtype in _INTEGER_TYPES and tensor.scale is None and not tensor.is_constant:
                seen.setdefault(tensor.name, tensor)
    return list(seen.values())


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
