"""Turn the compare worker's statistics into the `comparison` object and QD5xx findings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from quantdoctor import catalog
from quantdoctor.catalog.accuracy import (
    NEGLIGIBLE_ADDEND,
    TINY_ACTIVATION,
    collapse_fix,
    drift_text,
    keep_float_code,
    merge_fix,
    outputs_degrade,
    probability_grid_note,
    unreachable,
    unshown_fix,
)
from quantdoctor.catalog.locations import layers_in_tensor_name
from quantdoctor.compare.labels import Labels, metric_number
from quantdoctor.compare.worker import CompareResponse
from quantdoctor.report.model import Finding, Location
from quantdoctor.runtime.findings import lost_channels_finding
from quantdoctor.runtime.measures import (
    FOLLOWS_TOP1,
    MAX_SQNR_DB,
    SUGGESTED_ROWS,
    TOP1_CONFIDENCE,
    agreeing_rows_to_show,
    output_state,
    outputs_constant,
    reads_as_class_scores,
    top1_agreement,
    top1_counts,
)

# Ops whose int8 output scale LiteRT fixes, not calibration: SOFTMAX and LOGISTIC hold [0, 255/256],
# TANH [-1, 127/128]. A probability of 1.0 "outside" 0.996 is their grid, not a range to recalibrate.
FIXED_RANGE_OPS = ("SOFTMAX", "LOGISTIC", "TANH")
OWN_DROP_DB = 15.0           # a layer losing this much on its own (30x the noise power) beyond its inputs' error
OUTLIER_DB = 15.0            # ... and this much more than the median layer
LOW_SQNR_DB = 10.0           # ... whose worst channel is crushed (noise within 3x of the signal) stands out
TENSOR_SQNR_DB = 20.0        # ... and whose whole tensor is poor too (a crushed slice alone: see the ranking, QD503)
MAX_OUTLIERS = 3             # the worst few: the ranked table has the rest
CLIPPED_FRACTION = 0.01
MERGE_RANGE_RATIO = 50.0
_MERGE_OPS = ("CONCATENATION", "ADD", "PACK")


def layer_rows(response: CompareResponse, layer_names: list[str],
               output_layers: dict[str, str | None]) -> list[dict[str, Any]]:
    """Per compared tensor, its metrics plus the Keras layer, ranked by the error it adds on its own.

    `own_sqnr_drop_db` is how much worst-channel SQNR the op loses against the worst of the
    compared tensors feeding it: a layer that is bad on its own drops a lot, one that only
    inherits its inputs' error hardly at all. Rows are ranked by that drop, largest first, so the
    first row is the layer to act on; absolute SQNR stays in each row. Model outputs carry no
    scope in their names (`StatefulPartitionedCall_1:0`): they are named by the layer producing
    each output (`output_layers`: output tensor name -> layer).
    """
    by_output = output_layers
    worst = {t["tensor"]: t["worst_channel_sqnr_db"] for t in response.tensors}
    inputs_of = {link["tensor"]: link["inputs"] for link in response.ops}
    rows = []
    for tensor in response.tensors:
        if tensor["op"] == "INPUT":
            continue
        feeding = [worst[name] for name in inputs_of.get(tensor["tensor"], []) if name in worst]
        inherited = min(feeding) if feeding else MAX_SQNR_DB
        rows.append({**{k: v for k, v in tensor.items() if k != "histogram"},
                     "layer": _layer(tensor["tensor"], layer_names) or by_output.get(tensor["tensor"]),
                     "own_sqnr_drop_db": round(inherited - tensor["worst_channel_sqnr_db"], 3)})
    return sorted(rows, key=lambda row: -row["own_sqnr_drop_db"])


def end_to_end(outputs: dict[str, np.ndarray], output_stats: list[dict[str, Any]], labels: Labels | None,
               metric: Callable[[Any, Any], float] | None) -> dict[str, Any]:
    """Float vs quantized model outputs: the first output's agreement, accuracy (class labels) and
    numbers; the metric of the labels as given and the output (the list of outputs, for several)."""
    reference, quantized = outputs["float_0"], outputs["quant_0"]
    first = output_stats[0]
    result: dict[str, Any] = {"sqnr_db": first["sqnr_db"], "worst_channel_sqnr_db": first["worst_channel_sqnr_db"],
                              "cosine": first["cosine"], "max_abs_error": first["max_abs_error"]}
    if reference.ndim >= 2 and reference.shape[-1] > 1:
        top_float, top_quant = reference.argmax(-1), quantized.argmax(-1)
        result["top1_agreement"] = round(float(np.mean(top_float == top_quant)), 4)
        if labels is not None and labels.classes is not None:
            truth = labels.classes.reshape(top_float.shape)
            result["accuracy_float"] = round(float(np.mean(top_float == truth)), 4)
            result["accuracy_quant"] = round(float(np.mean(top_quant == truth)), 4)
    if metric is not None:
        given = labels.values if labels is not None else None
        for model in ("float", "quant"):
            found = [outputs[f"{model}_{i}"] for i in range(len(output_stats))]
            result[f"metric_{model}"] = metric_number(metric(given, found[0] if len(found) == 1 else found))
    return result


def output_agreements(outputs: dict[str, np.ndarray], output_stats: list[dict[str, Any]]) -> list[float | None]:
    """Per model output, the share of eval rows whose top-1 class is the float model's; None for an output
    that does not read as class scores (`measures.reads_as_class_scores`) or holds more than one vector per
    row (a feature map's channels are no classes)."""
    found = []
    for i, stats in enumerate(output_stats):
        reference, quantized = outputs[f"float_{i}"], outputs[f"quant_{i}"]
        classes = reference.shape[-1] if reference.ndim == 2 else 1
        agreement = top1_agreement(reference, quantized) if reads_as_class_scores(*stats["float_range"], classes) \
            else None
        found.append(None if agreement is None else round(agreement, 4))
    return found


def comparison_findings(rows: list[dict[str, Any]], output_stats: list[dict[str, Any]],
                        tensors: list[dict[str, Any]], links: list[dict[str, Any]],
                        agreements: list[float | None] | None = None, samples: int = 0) -> list[Finding]:
    """QD5xx: outlier layers, saturated activations, merges of mismatched ranges, and the outputs by the
    rule the run check applies too (`measures.output_state`; `agreements` per output, over `samples` rows).
    A merge that crushes channels (QD503) is an error only when an output degrades."""
    layer_findings = _merge_findings(rows, {t["tensor"]: t for t in tensors}, links)
    explained = {f.location.tensor for f in layer_findings} | _negligible_addends(rows, tensors, links)
    if rows:
        median = float(np.median([row["own_sqnr_drop_db"] for row in rows]))
        outliers = 0
        for row in rows:
            worst, own = row["worst_channel_sqnr_db"], row["own_sqnr_drop_db"]
            outlier = (worst < LOW_SQNR_DB and row["sqnr_db"] < TENSOR_SQNR_DB and own >= OWN_DROP_DB
                       and own >= median + OUTLIER_DB)
            if outlier and row["tensor"] not in explained and outliers < MAX_OUTLIERS:
                outliers += 1
                layer_findings.append(catalog.get("QD501").finding(
                    f"{_name(row)} loses {own:.1f} dB of SQNR on its own (the median layer: {median:.1f} dB); "
                    f"its worst channel keeps {worst:.1f} dB.",
                    location=Location(layer=row["layer"], op=row["op"], tensor=row["tensor"]),
                    evidence={"worst_channel_sqnr_db": worst, "sqnr_db": row["sqnr_db"], "own_sqnr_drop_db": own,
                              "median_own_sqnr_drop_db": median},
                    fix=_outlier_fix(row), fix_code=keep_float_code([row["tensor"]])))
            if row["clipped_fraction"] > CLIPPED_FRACTION and row["op"] not in FIXED_RANGE_OPS and \
                    row["tensor"] not in explained:
                layer_findings.append(catalog.get("QD502").finding(
                    f"{row['clipped_fraction']:.1%} of the values of {_name(row)} on the eval data fall outside its "
                    f"calibrated range {_range(row['quantized_range'])} (eval range {_range(row['float_range'])}).",
                    location=Location(layer=row["layer"], op=row["op"], tensor=row["tensor"]),
                    evidence={"clipped_fraction": row["clipped_fraction"], "calibrated_range": row["quantized_range"],
                              "eval_range": row["float_range"]}))
    outputs = _output_findings(output_stats, agreements or [None] * len(output_stats), samples,
                               sorted({f.code for f in layer_findings}))
    if outputs_degrade(outputs):
        layer_findings = [replace(f, severity="error") if f.code == "QD503" and f.evidence["lost_channels"] else f
                          for f in layer_findings]
    if outputs_constant([output["float_range"] for output in output_stats]):
        layer_findings = [unreachable(f, "eval") for f in layer_findings]
    return layer_findings + outputs


def _output_findings(output_stats: list[dict[str, Any]], agreements: list[float | None], samples: int,
                     layer_codes: list[str]) -> list[Finding]:
    findings = []
    for output, agreement in zip(output_stats, agreements):
        state = output_state(output["float_range"], output["sqnr_db"], output["collapsed"], agreement, samples)
        where = Location(tensor=output["tensor"])
        note = probability_grid_note(*output["float_range"])
        if state == "collapsed":
            findings.append(catalog.get("QD504").finding(
                f"Quantized output '{output['tensor']}' barely moves over the eval samples (under 1% of the float "
                f"output's spread) while the float output spans {_range(output['float_range'])}." + note,
                location=where, evidence={"float_range": output["float_range"]},
                fix=collapse_fix(in_compare=True, layer_codes=layer_codes)))
        elif state == "destroyed":
            findings.append(catalog.get("QD507").finding(
                f"Quantized output '{output['tensor']}' keeps an SQNR of {output['sqnr_db']:.1f} dB against the float "
                f"model over the eval samples: its error is about as large as its values." + note,
                location=where, evidence={"sqnr_db": output["sqnr_db"], "float_range": output["float_range"]},
                fix=_lost_signal_fix(layer_codes)))
        elif state in ("drifts", "unshown", "top1_collapsed"):
            evidence = {"sqnr_db": output["sqnr_db"], "top1_agreement": agreement,
                        "worst_channel_sqnr_db": output["worst_channel_sqnr_db"],
                        "float_range": output["float_range"], **top1_counts(agreement, samples)}
            fix = _lost_signal_fix(layer_codes)
            if state == "unshown":
                more = max(SUGGESTED_ROWS, 2 * samples)
                fix = unshown_fix(in_compare=True, shown_by=(agreeing_rows_to_show(more), more),
                                  follows_top1=FOLLOWS_TOP1, otherwise=fix)
            findings.append(catalog.get("QD519").finding(
                drift_text(f"output '{output['tensor']}'", state, evidence, "Over the eval samples",
                           follows_top1=FOLLOWS_TOP1, confidence=TOP1_CONFIDENCE) + note,
                location=where, severity="error" if state == "top1_collapsed" else None,
                evidence=evidence, fix=fix, fix_code=keep_float_code([output["tensor"]])))
        lost = lost_channels_finding(state, f"output '{output['tensor']}'", output["tensor"], output,
                                     "Over the eval samples", where,
                                     {"sqnr_db": output["sqnr_db"], "float_range": output["float_range"]})
        findings.extend([lost] if lost is not None else [])
    return findings


def _lost_signal_fix(layer_codes: list[str]) -> str:
    """The fix of an output that compare measured degraded: its layer findings (named by code: the ranking may
    print them after this one), or the whole network."""
    if layer_codes:
        return f"Act on the layer findings first ({', '.join(layer_codes)} in this report; the layers table ranks " \
               "the rest); recalibrate on representative data, or keep those layers in float (code below)."
    return "No single layer stands out in the layers table: the error builds up over the network. Keep the " \
           "output head in float or quantize it with int16 activations (int16x8), and recalibrate on " \
           "representative data."


def _outlier_fix(row: dict[str, Any]) -> str | None:
    """QD501's fix: bounding the activations helps only on an op whose range calibration sets, and only when they
    span more than the smallest range the converter calibrates; otherwise the op is kept float."""
    low, high = row["float_range"]
    if row["op"] in FIXED_RANGE_OPS:
        return (f"{row['op']}'s int8 output has a range and step that LiteRT fixes (1/256 for SOFTMAX and LOGISTIC, "
                "1/128 for TANH), whatever the calibration: keep this op in float (code below), or quantize it with "
                "int16 activations (int16x8).")
    if max(abs(low), abs(high)) < TINY_ACTIVATION:
        return (f"Its activations stay within {max(abs(low), abs(high)):.2g}: keep this layer in float (code "
                "below); bounding the range cannot help below the smallest range the converter calibrates.")
    return None


def _merge_findings(rows: list[dict[str, Any]], tensors: dict[str, dict[str, Any]],
                    links: list[dict[str, Any]]) -> list[Finding]:
    """Concatenations and adds that force one scale on inputs of very different ranges."""
    by_tensor = {row["tensor"]: row for row in rows}
    findings = []
    for link in links:
        row = by_tensor.get(link["tensor"])
        spans = [(name, _span(tensors[name]["float_range"])) for name in link["inputs"] if name in tensors]
        spans = [(name, span) for name, span in spans if span > 0]
        if row is None or row["op"] not in _MERGE_OPS or len(spans) < 2:
            continue
        small_span, large_span = min(span for _, span in spans), max(span for _, span in spans)
        if row["op"] == "ADD" and small_span < NEGLIGIBLE_ADDEND * large_span:
            continue  # a residual branch this small (LayerScale at 1e-6) cannot move the sum
        if large_span / small_span >= MERGE_RANGE_RATIO:
            lost = row.get("lost_channels", [])
            crushed = f"the small one is crushed (worst channel {row['worst_channel_sqnr_db']:.1f} dB)"
            if lost:
                per_sample = round(len(lost) * row["values_per_sample"] / row["channels"])
                crushed = (f"{len(lost)} of its {row['channels']} channels ({per_sample} values per sample) quantize "
                           f"to a constant and carry nothing")
            findings.append(catalog.get("QD503").finding(
                f"{_name(row)} ({row['op']}) merges inputs spanning {large_span:.4g} and {small_span:.4g} "
                f"({large_span / small_span:.0f}x) under one scale: {crushed}.",
                location=Location(layer=row["layer"], op=row["op"], tensor=row["tensor"]),
                evidence={"input_spans": {name: span for name, span in spans},
                          "worst_channel_sqnr_db": row["worst_channel_sqnr_db"], "lost_channels": lost},
                fix=merge_fix(row["op"], small_span, large_span), fix_code=keep_float_code([row["tensor"]])))
    return findings


def _negligible_addends(rows: list[dict[str, Any]], tensors: list[dict[str, Any]],
                        links: list[dict[str, Any]]) -> set[str]:
    """The tensors whose every use is as the negligible input of an ADD (spanning under NEGLIGIBLE_ADDEND of the
    other): whatever quantization does to them cannot reach the sum, so no layer finding is made on them."""
    spans = {t["tensor"]: _span(t["float_range"]) for t in tensors}
    ops = {row["tensor"]: row["op"] for row in rows}
    negligible: set[str] = set()
    used_otherwise: set[str] = set()
    for link in links:
        inputs = [name for name in link["inputs"] if name in spans]
        largest = max((spans[name] for name in inputs), default=0.0)
        for name in inputs:
            if ops.get(link["tensor"]) == "ADD" and spans[name] < NEGLIGIBLE_ADDEND * largest:
                negligible.add(name)
            else:
                used_otherwise.add(name)
    return negligible - used_otherwise


def _layer(tensor: str, layer_names: list[str]) -> str | None:
    """The Keras layer(s) behind a tensor; ops the converter fused name each layer, in order."""
    return " + ".join(layers_in_tensor_name(tensor, layer_names)) or None


def _name(row: dict[str, Any]) -> str:
    return f"layer '{row['layer']}'" if row["layer"] else f"tensor '{row['tensor']}'"


def _span(bounds: list[float]) -> float:
    return float(bounds[1] - bounds[0])


def _range(bounds: list[float] | None) -> str:
    return "n/a" if bounds is None else f"[{bounds[0]:.4g}, {bounds[1]:.4g}]"
