"""Findings only an ai-edge-quantizer run has: its errors by code, its silent float fallback, and
recipe entries that match nothing. Each is read from AEQ's own message or checked against the
model AEQ produced (and the float model it started from)."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from quantdoctor import catalog
from quantdoctor.audit.tflite_model import OpInfo, TFLiteModel, read_tflite, read_tflite_file
from quantdoctor.catalog.accuracy import kept_float_tensors
from quantdoctor.catalog.aeq import no_quantize_entries, op_scope, scope_regex
from quantdoctor.catalog.locations import scope_for_path
from quantdoctor.convert.aeq_worker import AeqResponse
from quantdoctor.intake.model import ModelSource
from quantdoctor.intake.recipe import Recipe
from quantdoctor.isolation.runner import WorkerRun
from quantdoctor.report.model import Finding, Location, Report, rank_findings

QUANTIZER = "ai-edge-quantizer"
WEIGHT_ONLY_RECIPE = "weight_only_wi8_afp32"
_MISSING_QSVS = re.compile(r"Missing QSVs \(min/max\) for tensor (.+?) in Signature '(.+?)'")
# The same, when the calibration result holds no entry at all for a tensor of an uncalibrated signature.
_NO_QSV = re.compile(r"Failed to get quantization parameters for tensor: (.+?)\. Error: .* not found in "
                     r"tensor_name_to_qsv")
_NOT_UNIQUE = re.compile(r"Tensor name (.+?) is not unique in the model")
_QSVS_REQUIRED = "Model quantization statistics values (QSVs) are required"
# LiteRT's signature runner, asked for AEQ's default signature (None) of a model that has none.
_NO_SIGNATURES = "SignatureDef signature_key is None and model has 0 Signatures"
# The codes an AEQ error or fallback replaces: the converter's unrecognised error, the converter's form of a
# signature without samples or of a model without signatures (its calibrator stays float there, or wants list
# samples; AEQ refuses instead) and of a missing dataset (its fix is the converter's), and the generic float-op
# finding.
_SUPERSEDED_ON_ERROR = {"QD330": ("QD904", "QD315"), "QD331": ("QD904", "QD301"), "QD332": ("QD904", "QD315")}
_SUPERSEDED_BY_FALLBACK = ("QD105",)
# AEQ's static_wi8_ai8 op config (ai_edge_quantizer.recipe.static_wi8_ai8), as its recipe JSON spells it.
INT8_STATIC_CONFIG = {
    "activation_tensor_config": {"num_bits": 8, "symmetric": False, "granularity": "TENSORWISE", "dtype": "INT"},
    "weight_tensor_config": {"num_bits": 8, "symmetric": True, "granularity": "CHANNELWISE", "dtype": "INT"},
    "compute_precision": "INTEGER", "explicit_dequantize": False, "skip_checks": False, "min_weight_elements": 0,
}


def with_aeq_findings(report: Report, source: ModelSource, recipe: Recipe, run: WorkerRun) -> Report:
    """`report` with what the AEQ run says: the quantizer and its recipe in the settings, AEQ's error by
    code, the ops it left float against the recipe, and recipe entries that match no tensor. `run`'s response
    is the AEQ worker's (`AeqResponse`)."""
    response: AeqResponse = run.response
    entries = response.aeq_recipe or []
    settings = {**report.settings, "quantizer": {"name": QUANTIZER, "recipe": source.quantizer_recipe
                                                 if isinstance(source.quantizer_recipe, str) else "custom",
                                                 "entries": entries}}
    if source.quantizer_recipe == WEIGHT_ONLY_RECIPE:
        settings["mode"] = "weight-only"
    conversion = {**report.conversion, "quantizer_messages": response.quantizer_messages}  # AEQ's own
    # AEQ sets the input and output types itself (--io is refused for it): no requested type to miss (QD206).
    findings = [f for f in report.findings if f.code != "QD206"]
    float_model = read_tflite_file(Path(source.path))
    added = unmatched_entries(entries, float_model)
    if run.outcome == "error":
        error = error_finding(response.error_message or "", recipe, float_model)
        if error is not None:
            findings = [f for f in findings if f.code not in _SUPERSEDED_ON_ERROR.get(error.code, ("QD904",))]
            added.append(error)
    elif report.tflite_model is not None:
        fallback = fallback_findings(response.aeq_skipped or [], read_tflite(report.tflite_model))
        if fallback:
            findings = [f for f in findings if f.code not in _SUPERSEDED_BY_FALLBACK]
            added += fallback
    return replace(report, settings=settings, conversion=conversion,
                   findings=rank_findings(in_aeq_terms(findings + added, float_model)))


def in_aeq_terms(findings: list[Finding], float_model: TFLiteModel) -> list[Finding]:
    """`findings` with each fix that keeps ops float through the converter's QuantizationDebugger (the code a
    Keras model gets) given as the AEQ recipe entries that do it for `float_model`, the float .tflite AEQ
    quantizes (no code where none of the tensors is an op's output there: no entry would keep anything float)."""
    scopes = aeq_scopes(float_model)
    translated = []
    for finding in findings:
        tensors = kept_float_tensors(finding.fix.code)
        if tensors is not None:
            kept = [scopes[tensor] for tensor in tensors if tensor in scopes]
            finding = replace(finding, fix=replace(finding.fix, code=no_quantize_entries(kept) if kept else None))
        translated.append(finding)
    return translated


def aeq_scopes(model: TFLiteModel) -> dict[str, str]:
    """Each op output tensor's name -> its op's scope as AEQ's recipes see it (`catalog.aeq.op_scope`)."""
    return {tensor.name: scope for op, scope in _op_scopes(model) for tensor in op.outputs}


def _op_scopes(model: TFLiteModel) -> list[tuple[OpInfo, str]]:
    return [(op, op_scope([t.name for t in op.outputs], [t.name for t in op.inputs])) for op in model.all_ops]


def error_finding(message: str, recipe: Recipe, float_model: TFLiteModel) -> Finding | None:
    """The catalog finding for an error AEQ raised; None for one the catalog does not know (QD904 stays)."""
    evidence = {"quantizer_message": message}
    missing, no_qsv = _MISSING_QSVS.search(message), _NO_QSV.search(message)
    if missing or no_qsv:
        tensor, signature = missing.groups() if missing else (no_qsv.group(1), _signature_of(no_qsv.group(1),
                                                                                              float_model))
        return catalog.get("QD330").finding(
            f"Signature '{signature}' was never calibrated: AEQ has no range for its tensor '{tensor}'.",
            location=Location(tensor=tensor, layer=scope_for_path(tensor.split(";")[0])), evidence={**evidence, "signature": signature})
    duplicate = _NOT_UNIQUE.search(message)
    if duplicate:
        tensor = duplicate.group(1)
        return catalog.get("QD430").finding(f"Two or more tensors of the model are named '{tensor}'.",
                                            location=Location(tensor=tensor), evidence=evidence)
    if _NO_SIGNATURES in message:
        return catalog.get("QD332").finding(
            "The model has no signature (SignatureDef), and AEQ runs its calibration samples through signatures "
            f"only: the {recipe.mode} recipe cannot get the activations' ranges.", evidence=evidence)
    if _QSVS_REQUIRED in message:
        return catalog.get("QD331").finding(
            f"The {recipe.mode} recipe needs calibrated ranges, and no calibration sample reached AEQ's "
            "calibrator.", evidence=evidence)
    return None


def _signature_of(tensor: str, model: TFLiteModel) -> str:
    """The key of the signature whose subgraph holds a tensor of this name ("?" when none does)."""
    for graph in model.graphs:
        names = {t.name for op in graph.ops for t in op.inputs + op.outputs} | {t.name for t in graph.inputs}
        signature = model.signature_of(graph.index)
        if tensor in names and signature is not None:
            return signature.key
    return "?"


def fallback_findings(skipped: list[dict[str, Any]], produced: TFLiteModel) -> list[Finding]:
    """The ops AEQ's recipe manager skipped (the worker's list) that really compute in float in the
    produced model, found there by their output tensor names: QD131 when 16-bit activations were asked
    and AEQ quantizes the op with 8-bit ones, QD130 otherwise."""
    float_by_output = {tensor.name: op for op in produced.all_ops if op.computes_in_float
                       and op.name not in ("QUANTIZE", "DEQUANTIZE") for tensor in op.outputs}
    findings = []
    for entry in skipped:
        names = [name for name in entry["scope"].split(";") if name]
        op = next((float_by_output[name] for name in names if name in float_by_output), None)
        if op is None:
            continue  # not float in the produced model: no finding
        tensor = op.outputs[0].name
        layer = scope_for_path(tensor.split(";")[0])
        where = f"layer '{layer}'" if layer else f"tensor '{tensor}'"
        evidence = {"op": op.name, "op_index": op.index, "subgraph": op.subgraph, "tensor": tensor,
                    "activation_bits_asked": entry.get("activation_bits")}
        regex = scope_regex(entry["scope"])
        if entry.get("activation_bits") == 16 and entry.get("int8_supported"):
            findings.append(catalog.get("QD131").finding(
                f"{op.name} at {where} stays float under the 16-bit recipe: AEQ quantizes it only with 8-bit "
                "activations.", location=Location(layer=layer, op=op.name, tensor=tensor), evidence=evidence,
                fix_code=json.dumps([{"regex": regex, "operation": op.name, "algorithm_key": "min_max_uniform_quantize",
                                      "op_config": INT8_STATIC_CONFIG}], indent=1)))
        else:
            findings.append(catalog.get("QD130").finding(
                f"{op.name} at {where} stays float between DEQUANTIZE and QUANTIZE although the recipe asks to "
                "quantize it: AEQ has no quantized form of this op and skipped it without a word.",
                location=Location(layer=layer, op=op.name, tensor=tensor), evidence=evidence,
                fix_code=json.dumps({"regex": regex, "operation": "*", "algorithm_key": "no_quantize"})))
    return findings


def unmatched_entries(entries: list[dict[str, Any]], float_model: TFLiteModel) -> list[Finding]:
    """QD431 for each recipe entry whose regex matches no op output tensor name of the float model."""
    scopes = [scope for _, scope in _op_scopes(float_model)]
    names = [tensor.name for op in float_model.all_ops for tensor in op.outputs]
    findings = []
    for number, entry in enumerate(entries):
        regex = entry.get("regex", "")
        try:  # AEQ matches with re.search against an op's scope: its output tensor names, each followed by ';'
            matched = any(re.search(regex, scope) for scope in scopes)
        except re.error:
            continue  # AEQ itself refuses the recipe
        if not matched:
            findings.append(catalog.get("QD431").finding(
                f"Recipe entry #{number} (regex {regex!r}, {entry.get('algorithm_key')}) matches no tensor of the "
                "model: it changes nothing.", evidence={"entry": entry, "tensor_names": names[:20]}))
    return findings
