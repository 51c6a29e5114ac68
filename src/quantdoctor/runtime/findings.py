"""Findings from the run check: the model does not run (QD112), its outputs are useless (QD504,
QD507), or some of their channels are lost (QD518)."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from quantdoctor import catalog
from quantdoctor.audit.checks import op_layer, output_layer_names
from quantdoctor.audit.tflite_model import TFLiteModel
from quantdoctor.catalog.accuracy import (
    collapse_fix,
    drift_text,
    keep_float_code,
    lost_channels_severity,
    lost_channels_text,
    outputs_degrade,
    probability_grid_note,
    unreachable,
    unshown_fix,
)
from quantdoctor.errors import InternalError
from quantdoctor.intake.data import CalibrationSet
from quantdoctor.intake.recipe import Recipe
from quantdoctor.isolation.crash import native_errors
from quantdoctor.report.model import Finding, Location
from quantdoctor.runtime import locate
from quantdoctor.runtime.check import check_rows
from quantdoctor.runtime.feed import tflite_inputs
from quantdoctor.runtime.measures import (
    FOLLOWS_TOP1,
    SUGGESTED_ROWS,
    TOP1_CONFIDENCE,
    agreeing_rows_to_show,
    holds_probabilities,
    output_state,
    outputs_constant,
    top1_counts,
)

_NODE = re.compile(r"Node number (\d+) \((\w+)\) failed to (prepare|invoke)")
_STAGE_WORDS = {"loading": "loading the model", "allocating": "allocating its tensors (preparing every op)",
                "invoking": "running it"}
INT8_INSTEAD = ("# or quantize to int8 instead of 16x8:\n"
                "converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]")


def run_check_findings(check: dict[str, Any] | None, signal_name: str | None, stderr: str, tflite: bytes,
                       produced: TFLiteModel, layer_names: list[str], output_layers: list[str | None],
                       recipe: Recipe, calibration: CalibrationSet | None) -> list[Finding]:
    """What the run check found; nothing when it did not run (or was skipped) and found nothing.
    `output_layers` are the Keras layers producing the model's outputs, in order."""
    if not check or check.get("outcome") in ("ok", "skipped"):
        return _output_findings((check or {}).get("outputs", []), (check or {}).get("rows", 0), produced,
                                output_layers)
    if any(op.is_flex or op.is_custom for op in produced.all_ops):
        return []  # the interpreter has no Flex delegate and none of the user's kernels: QD106/QD107 say so
    stage = check.get("stage", "loading")
    if stage == "comparing":  # the quantized model ran; quantdoctor's float reference died after it
        return []
    if check.get("outcome") == "error":
        node = _NODE.search(check.get("error", ""))
        index = int(node.group(1)) if node else None
        how = f"fails to {node.group(3)}" if node else f"fails while {_STAGE_WORDS.get(stage, stage)}"
        detail = check["error"].split("Node number")[0].strip().removeprefix("RuntimeError: ").rstrip(".")
        return [_not_running(produced, index, how, detail, check, signal_name, layer_names, recipe)]
    if signal_name is None:  # the worker exited instead of LiteRT killing it: quantdoctor's own bug
        last = [line for line in stderr.splitlines() if line.strip()][-1:] or ["no output"]
        raise InternalError(f"the run check stopped while {stage} without a signal: {last[0]}")
    # The process died during `stage`: find the op with probes on the row it died on. A SIGKILL is
    # the memory or time limit: probes would only meet it again.
    rows, _ = check_rows(tflite_inputs(produced), calibration.samples if calibration else [])
    row = rows[min(check.get("row", 0), len(rows) - 1)] if rows else None
    index = None
    if row is not None and stage != "loading" and signal_name != "SIGKILL":
        index = locate.failing_op(tflite, row, invoke=stage == "invoking")
    killed = f"was killed by {signal_name}"
    detail = "; ".join(native_errors(stderr))
    return [_not_running(produced, index, f"{killed} while {_STAGE_WORDS.get(stage, stage)}", detail, check,
                         signal_name, layer_names, recipe)]


def _not_running(produced: TFLiteModel, index: int | None, how: str, detail: str, check: dict[str, Any],
                 signal_name: str | None, layer_names: list[str], recipe: Recipe) -> Finding:
    """QD112 for the op at `index` of the main subgraph (None: not pinned to one op)."""
    op = produced.ops[index] if index is not None and index < len(produced.ops) else None
    layer = op_layer(op, layer_names) if op else None
    tensor = op.outputs[0].name if op and op.outputs else None
    types = sorted({t.dtype.lower() for t in op.inputs + op.outputs}) if op else []
    sample = "zeros" if check.get("sample") == "zeros" else "a calibration sample"
    what = ""
    if op:
        what = f" on op #{index} {op.name}" + (f" in layer '{layer}'" if layer else "") + f" ({', '.join(types)})"
    int16 = recipe.mode == "int16x8"
    if op:
        fix = f"Keep {op.name} in float (selective quantization, code below)"
        fix += ", or quantize to int8 instead of 16x8." if int16 else "."
        fix_code = keep_float_code([tensor]) + ("\n" + INT8_INSTEAD if int16 else "")
    else:
        fix = "Quantize to int8 instead of 16x8." if int16 else None
        fix_code = INT8_INSTEAD if int16 else None
    return catalog.get("QD112").finding(
        f"The converted model does not run in LiteRT: the interpreter {how}{what} on {sample}"
        + (f": {detail}." if detail else "."),
        location=Location(layer=layer, op=op.name if op else None, tensor=tensor),
        evidence={"stage": check.get("stage"), "op_index": index, "tensor_types": types, "signal": signal_name,
                  "error": check.get("error"), "sample": check.get("sample")},
        fix=fix, fix_code=fix_code)


def _output_findings(outputs: list[dict[str, Any]], rows: int, produced: TFLiteModel,
                     output_layers: list[str | None]) -> list[Finding]:
    """QD504 for an output that collapses on the calibration rows, QD507 for one that no longer
    follows the float model (noise at least half as strong as the signal), QD519 for one that drifts or
    whose top-1 agreement the rows do not show, by the rule compare applies too (`measures.output_state`).
    An output the float model holds (nearly) constant over the rows is left alone: there was nothing to lose."""
    findings = []
    layers = output_layer_names(produced, output_layers)
    for position, output in enumerate(outputs):
        state = output_state(output["float_range"], output["sqnr_db"], output["collapsed"],
                             output.get("top1_agreement"), rows)
        if state == "constant":
            continue
        layer = layers.get(output["name"])
        name = f"output '{output['name']}'" + (f" (layer '{layer}')" if layer else "")
        scale = _integer_scale(produced, position) or output["scale"]
        evidence = {key: output[key] for key in ("sqnr_db", "levels", "float_range", "quantized_range")}
        evidence.update(calibration_rows=rows, scale=scale)
        where = Location(layer=layer, tensor=output["name"])
        if state == "collapsed":
            findings.append(catalog.get("QD504").finding(
                f"On {rows} calibration sample(s), quantized {name} takes {output['levels']} value(s)"
                + (f" (scale {scale:.4g})" if scale else "") + " while the float output spans "
                f"[{output['float_range'][0]:.4g}, {output['float_range'][1]:.4g}]."
                + probability_grid_note(*output["float_range"]),
                location=where, evidence=evidence, fix=collapse_fix(in_compare=False)))
        elif state == "destroyed":
            findings.append(catalog.get("QD507").finding(
                f"On {rows} calibration sample(s), quantized {name} keeps an SQNR of {output['sqnr_db']:.1f} dB "
                f"against the float model: its error is about as large as its values "
                f"(float [{output['float_range'][0]:.4g}, {output['float_range'][1]:.4g}], "
                f"{output['levels']} distinct quantized value(s))." + probability_grid_note(*output["float_range"]),
                location=where, evidence=evidence))
        elif state in ("drifts", "unshown", "top1_collapsed"):
            evidence.update({key: output.get(key) for key in ("top1_agreement", "worst_channel_sqnr_db")})
            evidence.update(top1_counts(output.get("top1_agreement"), rows))
            fix = None
            if state == "unshown":
                fix = unshown_fix(in_compare=False, shown_by=(agreeing_rows_to_show(SUGGESTED_ROWS), SUGGESTED_ROWS),
                                  follows_top1=FOLLOWS_TOP1, otherwise="Keep the output head in float (code below), "
                                  "or recalibrate on more representative samples.")
            findings.append(catalog.get("QD519").finding(
                drift_text(name, state, evidence, f"On {rows} calibration sample(s)",
                           follows_top1=FOLLOWS_TOP1, confidence=TOP1_CONFIDENCE)
                + probability_grid_note(*output["float_range"]), location=where,
                evidence=evidence, severity="error" if state == "top1_collapsed" else None,
                fix=fix, fix_code=keep_float_code([output["name"]])))
        lost = lost_channels_finding(state, name, output["name"], output, f"On {rows} calibration sample(s)",
                                     where, evidence)
        findings.extend([lost] if lost is not None else [])
    return findings


def lost_channels_finding(state: str, label: str, tensor: str, output: dict[str, Any], where_text: str,
                          location: Location, evidence: dict[str, Any]) -> Finding | None:
    """QD518 for an output in `state` that still follows the float one (or drifts) while some of its channels are
    lost (`output`'s "lost_channels" of its "channels"), unless it holds probabilities; else None. The run check
    and compare both measure outputs this way; `evidence` is what the caller measured besides."""
    lost = output.get("lost_channels")
    if state not in ("drifts", "unshown", "follows") or not lost or holds_probabilities(*output["float_range"]):
        return None
    return catalog.get("QD518").finding(
        lost_channels_text(label, lost, output["sqnr_db"], where_text), location=location,
        evidence={**evidence, "lost_channels": lost, "channels": output.get("channels")},
        fix_code=keep_float_code([tensor]), severity=lost_channels_severity(lost, output.get("channels")))


def settle_crushed_merges(findings: list[Finding], check: dict[str, Any] | None) -> list[Finding]:
    """A merge crushing an input (QD506 from the quantization parameters) stays an error only when the run
    check saw an output degrade; outputs measured and following the float model (or drifting short of an error,
    QD519 says so) make it a warning, outputs the float model holds constant information only."""
    if not (check or {}).get("outputs") or outputs_degrade(findings):
        return findings
    if outputs_constant([output["float_range"] for output in check["outputs"]]):
        return [unreachable(f, "calibration") if f.code == "QD506" else f for f in findings]
    outputs = ("The model's outputs drift from the float model on the calibration samples checked (QD519), short "
               "of breaking." if any(f.code == "QD519" for f in findings) else
               "The model's outputs still follow the float model on the calibration samples checked.")
    return [replace(f, severity="warning", message=f"{f.message} {outputs}")
            if f.code == "QD506" and f.severity == "error" else f for f in findings]


def _integer_scale(produced: TFLiteModel, position: int) -> float | None:
    """The scale of model output `position` as the model computes it: its own, or that of the integer
    tensor its final DEQUANTIZE reads (float I/O)."""
    if position >= len(produced.outputs):
        return None
    output = produced.outputs[position]
    if output.scale:
        return output.scale
    dequantize = next((op for op in produced.ops if op.name == "DEQUANTIZE" and op.outputs[0].index == output.index),
                      None)
    return dequantize.inputs[0].scale if dequantize else None
