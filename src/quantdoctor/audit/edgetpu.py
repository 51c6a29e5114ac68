"""`--target edgetpu`: where the Edge TPU compiler would cut the model, predicted from its published rules.

No Edge TPU compiler can be installed here, so nothing is compiled: the produced .tflite is checked
against the rules and the op list in `audit/edgetpu_rules.json`, each with its source (the page and
section of Coral's documentation, or the users' compiler logs it was read from). Every finding and the
header say "predicted (not compiled)"; a finding that rests on an entry no source confirmed says that
entry is unverified. Where the users' logs show it, a finding quotes the line the compiler writes for
the op (`compiler_status`), so it can be matched against a real `edgetpu_compiler -s` run.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from importlib import resources
from typing import Any

from quantdoctor import catalog
from quantdoctor.audit.checks import op_layer
from quantdoctor.audit.tflite_model import OpInfo, TensorInfo, TFLiteModel
from quantdoctor.report.model import Finding, Location

PREDICTED = "Predicted (not compiled)"
UNVERIFIED = "unverified"
_EIGHT_BIT = ("INT8", "UINT8")
_SOFTMAX_MAX_ELEMENTS = 16_000  # the op table: "a 1-dimensional input of at most 16,000 elements"


@lru_cache(maxsize=1)
def edgetpu_rules() -> dict[str, Any]:
    """The rule table (audit/edgetpu_rules.json): rules by id, the op list by op name, and their sources."""
    table = json.loads(resources.files("quantdoctor.audit").joinpath("edgetpu_rules.json").read_text())
    return {**table, "rules": {rule["id"]: rule for rule in table["rules"]}}


def _above_one(tensor: TensorInfo) -> list[int]:
    return [d for d in tensor.shape if d > 1]


def _op_limitation(op: OpInfo) -> str | None:
    """What about this op breaks a limit the op table gives for it, among those the .tflite shows."""
    if op.name == "SOFTMAX" and op.inputs:
        shape = list(op.inputs[0].shape)
        if len(_above_one(op.inputs[0])) > 1:
            return f"SOFTMAX's input has the shape {shape}: the Edge TPU's softmax takes a 1-dimensional input"
        if math.prod(shape) > _SOFTMAX_MAX_ELEMENTS:
            return f"SOFTMAX's input has {math.prod(shape)} elements, above the Edge TPU's {_SOFTMAX_MAX_ELEMENTS}"
    if op.name == "FULLY_CONNECTED" and op.outputs and len(_above_one(op.outputs[0])) > 1:
        return (f"FULLY_CONNECTED's output has the shape {list(op.outputs[0].shape)}: the Edge TPU's is "
                f"one-dimensional")
    return None


def broken_rule(op: OpInfo) -> tuple[str, str] | None:
    """(rule id, what about this op breaks it), or None when the op meets every per-op rule."""
    table = edgetpu_rules()
    tensors = [t for t in op.inputs if not t.is_constant] + list(op.outputs)
    wide = [t for t in tensors if t.dtype not in _EIGHT_BIT]
    # The compiler's logs name the data type, not the op list, for some ops outside the list (DEQUANTIZE)
    if wide and op.name in table["rules"]["int8_tensors"].get("before_the_op_list_for", []):
        return "int8_tensors", f"tensor '{wide[0].name}' is {wide[0].dtype.lower()}"
    if op.name not in table["ops"] or op.is_custom or op.is_flex:
        return "supported_op", f"{op.custom_name or op.name} is not in the Edge TPU's operation list"
    if wide:
        return "int8_tensors", f"tensor '{wide[0].name}' is {wide[0].dtype.lower()}"
    dynamic = [t for t in tensors if -1 in t.signature]
    if dynamic:
        return "static_shapes", f"tensor '{dynamic[0].name}' has the dynamic shape {list(dynamic[0].signature)}"
    deep = [t for t in tensors if len(t.shape) > 3 and any(d > 1 for d in t.shape[:-3])]
    if deep:
        return "three_innermost_dims", f"tensor '{deep[0].name}' has the shape {list(deep[0].shape)}"
    limitation = _op_limitation(op)
    return ("op_limitation", limitation) if limitation else None


def _float_input(op: OpInfo, model: TFLiteModel) -> TensorInfo | None:
    """The float model input a QUANTIZE converts, or None."""
    inputs = {t.index for t in model.inputs if t.dtype not in _EIGHT_BIT}
    return op.inputs[0] if op.name == "QUANTIZE" and op.inputs and op.inputs[0].index in inputs else None


def _float_output(op: OpInfo, model: TFLiteModel) -> TensorInfo | None:
    """The float model output a DEQUANTIZE makes, or None."""
    outputs = {t.index for t in model.outputs if t.dtype not in _EIGHT_BIT}
    return op.outputs[0] if op.name == "DEQUANTIZE" and op.outputs and op.outputs[0].index in outputs else None


def _status(rule: dict[str, Any], op_name: str) -> str | None:
    status = rule.get("compiler_status")
    return status.get(op_name) if isinstance(status, dict) else status


def _unverified_note(source: Any, what: str) -> str:
    return f" This {what} is unverified: no published source confirms it." if source == UNVERIFIED else ""


def edgetpu_prediction(model: TFLiteModel, layer_names: list[str]) -> tuple[dict[str, Any], list[Finding]]:
    """The report's `audit.edgetpu` and its findings.

    A model with a TFLite builtin operator newer than the compiler knows is not read at all. Otherwise the
    compiler maps one contiguous part of the model (`edgetpu_ops`): the ops it cannot map before the
    first it can (a float input's QUANTIZE, a preprocessing op near the input) run on the CPU ahead of that
    part, and the DEQUANTIZE of a float output after it, without cutting it; the first op it cannot map
    inside the part cuts it, and every op after that runs on the CPU too. Also: ops counted on the Edge TPU
    by unverified entries of the table, or that the table says may stay on the CPU for reasons the .tflite
    does not show (a size threshold it does not give), other subgraphs on the CPU."""
    table = edgetpu_rules()
    rules = table["rules"]
    ops = model.ops
    unreadable = _unknown_builtins(model)
    if unreadable:
        return _unreadable(model, unreadable, layer_names)
    trailing = [op for op in ops if _float_output(op, model) is not None]
    inner = [op for op in ops if op not in trailing]
    broken = [broken_rule(op) for op in inner]
    lead = next((position for position, rule in enumerate(broken) if rule is None), len(inner))
    cut = next((position for position in range(lead, len(inner)) if broken[position]), None) \
        if lead < len(inner) else (0 if inner else None)
    segment = inner[lead:cut] if lead < len(inner) else []
    leading = inner[:lead] if segment else []
    after = trailing if cut is None else []
    summary = {"status": "predicted (not compiled)", "ops": len(ops), "edgetpu_ops": len(segment),
               "cpu_ops": len(ops) - len(segment), "outside_cpu_ops": len(leading) + len(after),
               "other_subgraphs": model.subgraphs - 1, "first_cpu_op": None,
               "unverified_ops": sorted({op.name for op in segment if table["ops"][op.name]["source"] == UNVERIFIED}),
               "uncertain_ops": sorted({op.name for op in segment if table["ops"][op.name].get("may_stay_on_cpu")})}
    findings = []
    if leading or (after and segment):
        findings.append(_outside_finding(model, [(op, broken[inner.index(op)]) for op in leading], after,
                                         len(segment), layer_names))
    if cut is not None:
        rule_id, detail = broken[cut]
        findings.append(_cut_finding(summary, inner, cut, inner[cut], rule_id, detail, layer_names,
                                     nothing_mapped=not segment))
    for name in summary["unverified_ops"]:
        findings.append(_op_warning(
            name, segment, layer_names,
            "is counted on the Edge TPU by an unverified entry of the rule table: no published source confirms "
            f"that the Edge TPU maps {name}, so it and everything after it may run on the CPU instead.",
            {"rule": "supported_op", "rule_source": UNVERIFIED}))
    for name in summary["uncertain_ops"]:
        may_stay = table["ops"][name]["may_stay_on_cpu"]
        findings.append(_op_warning(
            name, segment, layer_names,
            f"is counted on the Edge TPU, but the compiler may leave it on the CPU {may_stay}; then it and "
            "everything after it would run on the CPU.",
            {"rule": "op_limitation", "rule_source": table["ops"][name]["source"], "may_stay_on_cpu": may_stay}))
    if model.subgraphs > 1:
        rule = rules["single_subgraph"]
        findings.append(catalog.get("QD122").finding(
            f"{PREDICTED}: the model has {model.subgraphs} subgraphs; the Edge TPU compiler maps one, so the "
            f"other {model.subgraphs - 1} would run on the CPU (rule: {rule['text']})."
            + _unverified_note(rule["source"], "rule"),
            evidence={"predicted": True, "compiled": False, "rule": "single_subgraph", "rule_source": rule["source"],
                      "subgraphs": model.subgraphs}, severity="warning"))
    return summary, findings


def _op_warning(name: str, segment: list[OpInfo], layer_names: list[str], sentence: str,
                evidence: dict[str, Any]) -> Finding:
    """A predicted QD122 warning on op type `name` (counted on the Edge TPU, with a doubt): `sentence` says
    why, after the op and its first layer in `segment`; `evidence` names the rule behind the doubt."""
    layers = [layer for op in segment if op.name == name and (layer := op_layer(op, layer_names))]
    return catalog.get("QD122").finding(
        f"{PREDICTED}: {name}{' in layer ' + repr(layers[0]) if layers else ''} {sentence}",
        location=Location(layer=layers[0] if layers else None, op=name),
        evidence={"predicted": True, "compiled": False, **evidence}, severity="warning")


def _unknown_builtins(model: TFLiteModel) -> list[tuple[OpInfo, int]]:
    """The ops (with their builtin code) newer than the TFLite release the compiler was built on."""
    from quantdoctor.litert import schema_module

    first_unknown = edgetpu_rules()["rules"]["known_builtin_codes"]["first_unknown_code"]
    codes = vars(schema_module().BuiltinOperator)
    return [(op, codes[op.name]) for graph in model.graphs for op in graph.ops
            if isinstance(codes.get(op.name), int) and codes[op.name] >= first_unknown]


def _unreadable(model: TFLiteModel, unknown: list[tuple[OpInfo, int]],
                layer_names: list[str]) -> tuple[dict[str, Any], list[Finding]]:
    """The prediction for a model the compiler cannot read: nothing compiled, one QD122 naming the op."""
    rule = edgetpu_rules()["rules"]["known_builtin_codes"]
    op, code = unknown[0]
    layer = op_layer(op, layer_names)
    where = f"layer '{layer}'" if layer else f"op #{op.index}"
    status = rule["compiler_status"].format(code=code)
    summary = {"status": "predicted (not compiled)", "ops": len(model.ops), "edgetpu_ops": 0, "cpu_ops": len(model.ops),
               "outside_cpu_ops": 0, "other_subgraphs": model.subgraphs - 1, "unverified_ops": [], "uncertain_ops": [],
               "first_cpu_op": {"op": op.name, "index": op.index, "layer": layer, "rule": "known_builtin_codes",
                                "detail": f"builtin code {code}", "compiler_status": status}}
    others = sorted({other.name for other, _ in unknown[1:]} - {op.name})
    finding = catalog.get("QD122").finding(
        f"{PREDICTED}: the Edge TPU compiler could not read the model: {op.name} in {where} is TFLite builtin "
        f"operator {code}, newer than the TFLite release the compiler was built on (rule: {rule['text']})"
        + (f"; so are {', '.join(others)}" if others else "") + f". The compiler would stop with \"{status}\" and "
        f"compile nothing. Replace the layer by ops of the Edge TPU's list.",
        location=Location(layer=layer, op=op.name, tensor=op.outputs[0].name if op.outputs else None),
        evidence={"predicted": True, "compiled": False, "rule": "known_builtin_codes", "rule_source": rule["source"],
                  "builtin_code": code, "compiler_status": status})
    return summary, [finding]


def _cut_finding(summary: dict[str, Any], inner: list[OpInfo], position: int, op: OpInfo, rule_id: str,
                 detail: str, layer_names: list[str], nothing_mapped: bool) -> Finding:
    """QD122 for the first op inside the Edge TPU's part that the compiler would not map, and the ops after it
    that follow it onto the CPU; with `nothing_mapped`, for the first op of a model none of whose ops it maps."""
    rules = edgetpu_rules()["rules"]
    op, rule_id, detail = _float_op_behind(op, inner, rule_id, detail)
    layer = op_layer(op, layer_names)
    where = f"layer '{layer}'" if layer else f"op #{op.index}"
    rule, after_rule = rules[rule_id], rules["first_unsupported"]
    after = sorted({later.name for later in inner[position + 1:]})
    status = _status(rule, op.name)
    after_status = _status(after_rule, "") if after and not nothing_mapped else None
    entry_source = edgetpu_rules()["ops"].get(op.name, {}).get("source")
    summary["first_cpu_op"] = {"op": op.name, "index": op.index, "layer": layer, "rule": rule_id, "detail": detail,
                               "compiler_status": status}
    if nothing_mapped:
        then = (f"No op of the model meets every rule, so all {summary['ops']} op(s) would run on the CPU: 0 on the "
                f"Edge TPU.")
    else:
        then = (f"The compiler partitions once, so the {len(inner) - position - 1} op(s) after it "
                f"({', '.join(after) or 'none'}) would run on the CPU too: {summary['edgetpu_ops']} of "
                f"{summary['ops']} op(s) on the Edge TPU.")
    logged = f" The compiler's log would say \"{status}\"" if status else ""
    logged += f", and \"{after_status}\" for the ops after it." if status and after_status else ("." if status else "")
    message = (f"{PREDICTED}: {op.name} in {where} would run on the CPU, not on the Edge TPU: {detail} (rule: "
               f"{rule['text']}). {then}{logged}"
               + _unverified_note(rule["source"], "rule")
               + (_unverified_note(entry_source, "op's entry") if rule_id == "op_limitation" else ""))
    return catalog.get("QD122").finding(
        message, location=Location(layer=layer, op=op.name, tensor=op.outputs[0].name if op.outputs else None),
        evidence={"predicted": True, "compiled": False, "rule": rule_id, "rule_source": rule["source"],
                  "detail": detail, "edgetpu_ops": summary["edgetpu_ops"], "cpu_ops": summary["cpu_ops"],
                  "compiler_status": status, "compiler_status_after": after_status,
                  "then_on_cpu": after_rule["source"]})


def _outside_finding(model: TFLiteModel, leading: list[tuple[OpInfo, tuple[str, str]]], trailing: list[OpInfo],
                     on_tpu: int, layer_names: list[str]) -> Finding:
    """QD122 (a warning) for the ops the CPU runs before and after the Edge TPU's part, without cutting it."""
    rules = edgetpu_rules()["rules"]
    outside = rules["outside_segment"]
    rows, conversions = [], False
    for op, (rule_id, detail) in leading:
        tensor = _float_input(op, model)
        conversions |= tensor is not None
        rows.append(_outside_row(op, "before", f"converts the model's float input '{tensor.name}'" if tensor else detail,
                                 _status(outside, op.name) if tensor else _status(rules[rule_id], op.name),
                                 "outside_segment" if tensor else rule_id, layer_names))
    for op in trailing:
        conversions = True
        rows.append(_outside_row(op, "after", f"converts to the model's float output '{op.outputs[0].name}'",
                                 _status(outside, op.name), "outside_segment", layer_names))
    parts = []
    for side in ("before", "after"):
        items = [f"{row['op']}{' in layer ' + repr(row['layer']) if row['layer'] else ''} ({row['detail']}"
                 + (f"; the compiler's log would say \"{row['compiler_status']}\")" if row["compiler_status"] else ")")
                 for row in rows if row["side"] == side]
        if items:
            parts.append(f"{side} it, {', '.join(items)}")
    advice = (" Give the model int8 or uint8 inputs and outputs (--io int8, or --io uint8) to keep the conversions off "
              "the CPU." if conversions else "")
    if len(rows) > sum(row["rule"] == "outside_segment" for row in rows):
        advice += " Other ops before the first one the Edge TPU maps can move into your own preprocessing."
    first = leading[0][0] if leading else trailing[0]
    return catalog.get("QD122").finding(
        f"{PREDICTED}: {len(rows)} op(s) would run on the CPU outside the Edge TPU's part, without cutting it: "
        f"{'; '.join(parts)}. The {on_tpu} op(s) between can run on the Edge TPU (rule: {outside['text']}).{advice}",
        location=Location(layer=rows[0]["layer"], op=first.name, tensor=first.outputs[0].name if first.outputs else None),
        evidence={"predicted": True, "compiled": False, "rule": "outside_segment", "rule_source": outside["source"],
                  "ops": rows}, severity="warning")


def _outside_row(op: OpInfo, side: str, detail: str, status: str | None, rule: str,
                 layer_names: list[str]) -> dict[str, Any]:
    return {"op": op.name, "index": op.index, "layer": op_layer(op, layer_names), "side": side, "rule": rule,
            "detail": detail, "compiler_status": status}


def _float_op_behind(op: OpInfo, ops: list[OpInfo], rule_id: str, detail: str) -> tuple[OpInfo, str, str]:
    """A DEQUANTIZE is cut only because a float op takes its output: name that op and its broken rule."""
    if op.name != "DEQUANTIZE" or not op.outputs:
        return op, rule_id, detail
    consumer = next((other for other in ops if op.outputs[0].index in {t.index for t in other.inputs}), None)
    broken = broken_rule(consumer) if consumer else None
    return (consumer, *broken) if broken else (op, rule_id, detail)


def edgetpu_audit(target: str | None, model: TFLiteModel,
                  layer_names: list[str]) -> tuple[dict[str, Any] | None, list[Finding]]:
    """For `--target edgetpu`, the prediction and its findings; (None, []) for other targets."""
    if target != "edgetpu":
        return None, []
    return edgetpu_prediction(model, layer_names)
