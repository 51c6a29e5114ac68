"""Audit findings: what the produced .tflite really is, against what was asked and the target."""

from __future__ import annotations

import json
import re
from functools import lru_cache
from importlib import resources
from typing import Any

from quantdoctor import catalog
from quantdoctor.audit.activation_clamps import clamp_findings
from quantdoctor.audit.islands import (
    BOUNDARY_OPS,
    float_islands,
    integer_partitions,
    needs_cpu,
)
from quantdoctor.audit.merges import CrushedInput, crushed_merge_inputs
from quantdoctor.audit.quantizers import fake_quant_round_trips
from quantdoctor.audit.tflite_model import OpInfo, TFLiteModel
from quantdoctor.catalog.accuracy import keep_float_code, merge_fix
from quantdoctor.catalog.locations import layers_in_tensor_name
from quantdoctor.intake.recipe import Recipe
from quantdoctor.report.model import Finding, Location

SIGNATURE_FIX = ("Give every signature calibration samples: yield (signature_key, {input name: array}) tuples "
                 "that cover each signature.")
_INTEGER_TYPES = ("INT8", "UINT8", "INT16")


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
        "signatures": [{"key": s.key, "subgraph": s.subgraph,
                        "inputs": [{**t.to_dict(), "signature_name": name} for name, t in s.inputs.items()],
                        "outputs": [{**t.to_dict(), "signature_name": name} for name, t in s.outputs.items()],
                        "float_ops": len([op for op in floats if op.subgraph == s.subgraph])}
                       for s in model.signatures],
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
                   target: str | None = None, output_layers: list[str | None] | None = None) -> list[Finding]:
    """Findings where the model is not what the settings asked for, or not what the target runs,
    or where its quantization parameters alone show an input crushed by a merge.

    Without a recipe (a .tflite audited on its own) float ops are reported when the model is
    partly quantized, since then they are what kept it from being integer. `output_layers` are
    the Keras layers producing the model's outputs, in order (output tensors carry no scope).
    """
    findings = _io_type_findings(model, recipe) if recipe else []
    findings += _variable_findings(model)
    meant_integer = recipe.wants_full_integer if recipe else _partly_quantized(model)
    strict = target == "int8-accelerator" or bool(recipe and recipe.int8_only_ops)
    if meant_integer or target == "int8-accelerator":
        findings += _float_op_findings(model, layer_names, "error" if strict else "warning")
    if not (recipe and recipe.qat_model and not recipe.optimizing):  # then QD411 names the cause
        findings += _fake_quant_findings(model, layer_names, "error" if strict else "warning")
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
    findings += [_crushed_merge_finding(crushed, model, layer_names, output_layers or [])
                 for crushed in crushed_merge_inputs(model)]
    findings += clamp_findings(model, lambda op: op_layer(op, layer_names))
    if target == "int8-accelerator":
        findings += _accelerator_findings(model, layer_names)
    if target == "microcontroller":
        findings += _microcontroller_findings(model)
        findings += _per_channel_dense_findings(model, layer_names)
    return findings


def _fake_quant_findings(model: TFLiteModel, layer_names: list[str], severity: str) -> list[Finding]:
    findings = []
    for quantize, dequantize in fake_quant_round_trips(model):
        layer = op_layer(quantize, layer_names)
        where = f"layer '{layer}'" if layer else f"op #{quantize.index}"
        findings.append(catalog.get("QD410").finding(
            f"At {where}, QUANTIZE (op #{quantize.index}) and DEQUANTIZE (op #{dequantize.index}) quantize a float "
            "tensor and turn it straight back into float: a FakeQuant of the training was kept instead of being "
            "folded into an integer op.",
            location=Location(layer=layer, op="QUANTIZE", tensor=quantize.outputs[0].name),
            evidence={"quantize_op": quantize.index, "dequantize_op": dequantize.index,
                      "scale": quantize.outputs[0].scale, "zero_point": quantize.outputs[0].zero_point},
            severity=severity))
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
    """QD105 per float op; a signature that stays float as a whole (its ops never saw calibration data,
    while another signature's are integer) is one finding."""
    findings = []
    floats = [op for op in float_ops(model) if not op.is_flex]  # Flex ops: reported once by QD106
    integer_signatures = [s.key for s in model.signatures if _integer_ops(model, s.subgraph)]
    for signature in model.signatures:
        ops = [op for op in floats if op.subgraph == signature.subgraph]
        if not ops or _integer_ops(model, signature.subgraph) or not integer_signatures:
            continue
        floats = [op for op in floats if op.subgraph != signature.subgraph]
        names = sorted({op.name for op in ops})
        findings.append(catalog.get("QD105").finding(
            f"Signature '{signature.key}' stays float: its {len(ops)} op(s) ({', '.join(names)}) compute in float "
            f"while signature(s) {', '.join(repr(k) for k in integer_signatures)} are integer: no calibration "
            f"sample reached it.",
            location=Location(op=names[0], tensor=ops[0].outputs[0].name if ops[0].outputs else None),
            evidence={"signature": signature.key, "subgraph": signature.subgraph, "ops": names},
            severity=severity, fix=SIGNATURE_FIX, fix_code=_every_signature_dataset(model)))
    several = len(model.signatures) > 1
    # In a model with no quantized tensor at all there is no DEQUANTIZE/QUANTIZE around the op to name.
    how = ("between DEQUANTIZE/QUANTIZE in a model meant to be integer" if _partly_quantized(model) else
           "in a model meant to be integer, as every op does: the model holds no quantized tensor")
    for op in floats:
        layer = op_layer(op, layer_names)
        where = f"layer '{layer}'" if layer else f"op #{op.index}"
        signature = model.signature_of(op.subgraph)
        if several or op.subgraph:
            where += f" of signature '{signature.key}'" if signature else f" of subgraph {op.subgraph}"
        findings.append(catalog.get("QD105").finding(
            f"{op.name} in {where} computes in float {how}.",
            location=Location(layer=layer, op=op.name, tensor=op.outputs[0].name if op.outputs else None),
            evidence={"op_index": op.index, "subgraph": op.subgraph,
                      "tensor_types": sorted({t.dtype.lower() for t in op.inputs + op.outputs})},
            severity=severity))
    return findings


def _every_signature_dataset(model: TFLiteModel) -> str:
    """A representative_dataset that feeds every signature of the model, by its input names."""
    lines = ["def representative_dataset():", "    for sample in samples:   # real inputs by name, batch axis kept"]
    for signature in model.signatures:
        values = ", ".join(f"{name!r}: sample[{name!r}]" for name in signature.inputs)
        lines.append(f"        yield {signature.key!r}, {{{values}}}")
    return "\n".join(lines)


def _integer_ops(model: TFLiteModel, subgraph: int) -> bool:
    """True when an op of the subgraph computes on quantized integer tensors."""
    return any(op.name not in BOUNDARY_OPS and not op.computes_in_float and
               any(t.scale is not None for t in op.inputs + op.outputs if t.dtype in _INTEGER_TYPES)
               for op in model.graphs[subgraph].ops)


def _crushed_merge_finding(crushed: CrushedInput, model: TFLiteModel, layer_names: list[str],
                           output_layers: list[str | None]) -> Finding:
    """QD506: the merge, the input it crushes, by how much, and what is lost."""
    merge, output = crushed.merge, crushed.merge.outputs[0]
    layer = op_layer(merge, layer_names) or _output_layer(model, merge, output_layers)
    source_layer = op_layer(crushed.source_op, layer_names) if crushed.source_op else None
    where = f"layer '{layer}'" if layer else f"op #{merge.index}"
    source = f"layer '{source_layer}'" if source_layer else f"tensor '{crushed.source.name}'"
    channels = crushed.input.shape[-1] if crushed.input.shape else 1
    output_span = crushed.span / crushed.output_steps * (crushed.levels - 1)
    return catalog.get("QD506").finding(
        f"{merge.name} in {where} puts its inputs on one output scale ({output.scale:.4g} per step): the input "
        f"from {source} (calibrated range {crushed.span:.4g}) spans {crushed.output_steps:.2g} output step(s), so its "
        f"{channels} channel(s) ({crushed.values_per_sample} values per sample) keep at most "
        f"{int(crushed.output_steps) + 1} level(s).",
        location=Location(layer=layer, op=merge.name, tensor=output.name),
        evidence={"input_tensor": crushed.input.name, "input_range": crushed.span, "output_scale": output.scale,
                  "output_steps": round(crushed.output_steps, 4), "channels": channels,
                  "values_per_sample": crushed.values_per_sample, "subgraph": merge.subgraph},
        severity="warning" if merge.name == "ADD" else None, fix=merge_fix(merge.name, crushed.span, output_span),
        fix_code=keep_float_code([output.name]))


def _output_layer(model: TFLiteModel, op: OpInfo, output_layers: list[str | None]) -> str | None:
    """The Keras layer of a model output that `op` writes, directly or through its DEQUANTIZE."""
    if op.subgraph != 0:
        return None
    written = {t.index for t in op.outputs}
    written |= {t.index for other in model.ops if other.name == "DEQUANTIZE" and other.inputs[0].index in written
                for t in other.outputs}
    layers = output_layer_names(model, output_layers)
    return next((layers[t.name] for t in model.outputs if t.index in written and layers.get(t.name)), None)


def output_layer_names(model: TFLiteModel, output_layers: list[str | None]) -> dict[str, str | None]:
    """Output tensor name -> the Keras layer producing it (`output_layers` in the Keras model's order).

    The main subgraph may list its outputs in another order than the Keras model: the signature says
    which is which, naming them `output_N` (N in the Keras order) or after their layers.
    """
    signature = model.signature_of(0)
    names = {tensor.index: name for name, tensor in signature.outputs.items()} if signature else {}
    found = {}
    for position, tensor in enumerate(model.outputs):
        name = names.get(tensor.index, "")
        number = re.fullmatch(r"output_(\d+)", name)
        if number and int(number.group(1)) < len(output_layers):
            found[tensor.name] = output_layers[int(number.group(1))]
        elif name in output_layers:
            found[tensor.name] = name
        elif len(model.outputs) == len(output_layers) == 1 or not names:
            found[tensor.name] = output_layers[position] if position < len(output_layers) else None
    return found


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
    findings = _uint8_io_findings(model)
    integer = _partly_quantized(model)
    if float_ops(model) and not integer:  # the ops are fine: the model is not integer at all
        findings.append(_not_integer_finding(model))
    int8_ops, _ = _tflm_table()
    # In a float model, ops that have an INT8 kernel are not the problem: the missing integer activations are.
    missing = sorted({op.name for op in model.all_ops if not microcontroller_runs(op)
                      and (integer or op.name not in int8_ops or op.is_flex or op.is_custom)})
    if missing:
        findings.append(catalog.get("QD111").finding(
            f"LiteRT for Microcontrollers has no INT8 kernel for: {', '.join(missing)}.", evidence={"ops": missing}))
    return findings


def _per_channel_dense_findings(model: TFLiteModel, layer_names: list[str]) -> list[Finding]:
    """QD114: FULLY_CONNECTED ops of the produced model whose int8 weights carry a scale per output
    channel, which LiteRT for Microcontrollers' and vendors' kernels long took for one scale."""
    dense = [op for op in model.all_ops if op.name == "FULLY_CONNECTED" and len(op.inputs) > 1
             and op.inputs[0].dtype in _INTEGER_TYPES  # in a float model QD209 says what matters
             and op.inputs[1].is_constant and op.inputs[1].dtype == "INT8" and op.inputs[1].per_channel]
    if not dense:
        return []
    names = [next(iter(layers_in_tensor_name(op.inputs[1].name, layer_names)), None)  # the weights' layer scope
             or op_layer(op, layer_names) or op.inputs[1].name for op in dense]
    unique = list(dict.fromkeys(names))
    return [catalog.get("QD114").finding(
        f"The FULLY_CONNECTED weights of {', '.join(repr(name) for name in unique)} are quantized per channel "
        f"({', '.join(str(op.inputs[1].scale_count) for op in dense)} scales, one per output unit), not per tensor.",
        location=Location(layer=unique[0] if unique[0] in layer_names else None, op="FULLY_CONNECTED",
                          tensor=dense[0].inputs[1].name),
        evidence={"layers": unique, "weights": [op.inputs[1].name for op in dense],
                  "channels": [op.inputs[1].scale_count for op in dense]})]


def _not_integer_finding(model: TFLiteModel) -> Finding:
    """QD209, in terms of what the model is: float16 weights, dynamic range, or plain float."""
    kind = model_kind(model)
    compute = sorted({op.name for op in float_ops(model)})
    float16 = [op for op in model.all_ops if op.name == "DEQUANTIZE" and op.inputs and op.inputs[0].dtype == "FLOAT16"]
    if float16:
        detail = (f"Its float16 weights are dequantized to float32 ({len(float16)} DEQUANTIZE op(s)) in front of "
                  f"{len(compute)} float op type(s), and LiteRT for Microcontrollers cannot dequantize float16: its "
                  "DEQUANTIZE takes int8 and int16 only")
    elif "dynamic range" in kind:
        detail = "Its int8 weights feed float activations (hybrid kernels), which LiteRT for Microcontrollers lacks"
    else:
        detail = "It was not quantized: every op computes in float32"
    return catalog.get("QD209").finding(
        f"The model is not integer at all ({kind}): LiteRT for Microcontrollers runs integer models. {detail}. "
        "The ops are not missing INT8 kernels: the settings never asked for integer activations.",
        evidence={"model_kind": kind, "float_ops": compute, "float16_dequantize_ops": len(float16)},
        fix_code=_FULL_INTEGER_CODE)


def _uint8_io_findings(model: TFLiteModel) -> list[Finding]:
    """QD210 for each uint8 input or output; an error when an op other than QUANTIZE touches it."""
    findings = []
    for role, tensors in (("input", model.inputs), ("output", model.outputs)):
        for tensor in tensors:
            if tensor.dtype != "UINT8":
                continue
            touching = sorted({op.name for op in model.all_ops if tensor.index in
                               {t.index for t in (op.inputs if role == "input" else op.outputs)}})
            others = [name for name in touching if name != "QUANTIZE"]
            edge = (f"{', '.join(others)} take(s) it directly, and no LiteRT for Microcontrollers kernel but "
                    "QUANTIZE accepts uint8" if others else
                    "only a QUANTIZE requantizes it, which LiteRT for Microcontrollers releases before mid-2022 "
                    "refuse for uint8")
            findings.append(catalog.get("QD210").finding(
                f"Model {role} '{tensor.name}' is uint8: {edge}.",
                location=Location(tensor=tensor.name), severity="error" if others else None,
                evidence={"role": role, "boundary_ops": touching}))
    return findings


def _island_dict(island: Any, layer_names: list[str]) -> dict[str, Any]:
    return {"ops": [op.name for op in island.ops], "subgraph": island.subgraph,
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
    """QD206 for every input and output, of every signature, whose type is not the one asked for."""
    findings = []
    entries = [(s.key, list(s.inputs.values()), list(s.outputs.values())) for s in model.signatures]
    several = len(entries) > 1
    for key, inputs, outputs in entries or [(None, model.inputs, model.outputs)]:
        for role, tensors, asked in (("input", inputs, recipe.inference_input_type),
                                     ("output", outputs, recipe.inference_output_type)):
            for tensor in tensors:
                got = tensor.dtype.lower()
                if got != asked and got in ("float32", "int8", "uint8", "int16"):
                    of = f" of signature '{key}'" if several else ""
                    findings.append(catalog.get("QD206").finding(
                        f"Model {role} '{tensor.name}'{of} is {got}; {asked} was requested.",
                        location=Location(tensor=tensor.name),
                        evidence={"requested": asked, "produced": got, "signature": key}))
    return findings
