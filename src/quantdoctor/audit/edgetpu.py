"""`--target edgetpu`: where the Edge TPU compiler would cut the model, predicted from its published rules.

No Edge TPU compiler can be installed here, so nothing is compiled: the produced .tflite is checked
against the rules in `audit/edgetpu_rules.json` (each with the sentence of Coral's documentation it
encodes), and every finding and the header say "predicted (not compiled)".
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

from quantdoctor import catalog
from quantdoctor.audit.checks import op_layer
from quantdoctor.audit.tflite_model import OpInfo, TFLiteModel
from quantdoctor.report.model import Finding, Location

PREDICTED = "Predicted (not compiled)"
_EIGHT_BIT = ("INT8", "UINT8")


@lru_cache(maxsize=1)
def edgetpu_rules() -> dict[str, Any]:
    """The rule table (audit/edgetpu_rules.json): rules by id, the op list, and their sources."""
    table = json.loads(resources.files("quantdoctor.audit").joinpath("edgetpu_rules.json").read_text())
    return {**table, "rules": {rule["id"]: rule for rule in table["rules"]}}


def broken_rule(op: OpInfo) -> tuple[str, str] | None:
    """(rule id, what about this op breaks it), or None when the op meets every per-op rule."""
    table = edgetpu_rules()
    if op.name not in table["ops"] or op.is_custom or op.is_flex:
        return "supported_op", f"{op.custom_name or op.name} is not in the Edge TPU's operation list"
    tensors = [t for t in op.inputs if not t.is_constant] + list(op.outputs)
    wide = [t for t in tensors if t.dtype not in _EIGHT_BIT]
    if wide:
        return "int8_tensors", f"tensor '{wide[0].name}' is {wide[0].dtype.lower()}"
    dynamic = [t for t in tensors if -1 in t.signature]
    if dynamic:
        return "static_shapes", f"tensor '{dynamic[0].name}' has the dynamic shape {list(dynamic[0].signature)}"
    deep = [t for t in tensors if len(t.shape) > 3 and any(d > 1 for d in t.shape[:-3])]
    if deep:
        return "three_innermost_dims", f"tensor '{deep[0].name}' has the shape {list(deep[0].shape)}"
    return None


def edgetpu_prediction(model: TFLiteModel, layer_names: list[str]) -> tuple[dict[str, Any], list[Finding]]:
    """The report's `audit.edgetpu` and its findings: the first op the Edge TPU would not run, and what
    follows it onto the CPU; other subgraphs on the CPU."""
    rules = edgetpu_rules()["rules"]
    ops = model.ops
    first = next(((index, op, broken) for index, op in enumerate(ops) if (broken := broken_rule(op))), None)
    on_tpu = first[0] if first else len(ops)
    summary = {"status": "predicted (not compiled)", "ops": len(ops), "edgetpu_ops": on_tpu,
               "cpu_ops": len(ops) - on_tpu, "other_subgraphs": model.subgraphs - 1, "first_cpu_op": None}
    findings = []
    if first:
        index, op, (rule_id, detail) = first
        op, rule_id, detail = _float_op_behind(op, ops, rule_id, detail)
        layer = op_layer(op, layer_names)
        where = f"layer '{layer}'" if layer else f"op #{op.index}"
        rule = rules[rule_id]
        after = sorted({later.name for later in ops[index + 1:]})
        summary["first_cpu_op"] = {"op": op.name, "index": op.index, "layer": layer, "rule": rule_id,
                                   "detail": detail}
        findings.append(catalog.get("QD122").finding(
            f"{PREDICTED}: {op.name} in {where} would run on the CPU, not on the Edge TPU: {detail} (rule: "
            f"{rule['text']}). The compiler partitions once, so the {len(ops) - index - 1} op(s) after it "
            f"({', '.join(after) or 'none'}) would run on the CPU too: {on_tpu} of {len(ops)} op(s) on the Edge TPU.",
            location=Location(layer=layer, op=op.name, tensor=op.outputs[0].name if op.outputs else None),
            evidence={"predicted": True, "compiled": False, "rule": rule_id, "rule_source": rule["source"],
                      "detail": detail, "edgetpu_ops": on_tpu, "cpu_ops": len(ops) - on_tpu,
                      "then_on_cpu": rules["first_unsupported"]["source"]}))
    if model.subgraphs > 1:
        rule = rules["single_subgraph"]
        findings.append(catalog.get("QD122").finding(
            f"{PREDICTED}: the model has {model.subgraphs} subgraphs; the Edge TPU compiler maps one, so the "
            f"other {model.subgraphs - 1} would run on the CPU (rule: {rule['text']}).",
            evidence={"predicted": True, "compiled": False, "rule": "single_subgraph", "rule_source": rule["source"],
                      "subgraphs": model.subgraphs}, severity="warning"))
    return summary, findings


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
