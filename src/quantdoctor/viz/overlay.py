"""The Model Explorer overlay: per-layer error and its cause, as node data on the produced model.

Model Explorer (Google's graph viewer for LiteRT models, `ai-edge-model-explorer`) colours a graph
from a "node data" JSON file. What quantdoctor relies on, read from Model Explorer 0.1.34's sources:

- The file is either one graph's data, `{"results": ..., "thresholds": ...}` (applied to the graph
  on screen), or a model's, `{graph_id: <one graph's data>, ...}`. quantdoctor writes the model
  form, so a model with several subgraphs keeps each value on its own graph.
- A `.tflite` graph's id is its subgraph's name in the flatbuffer; without one, the name of the
  signature whose entry point it is; without that, "main" for subgraph 0 and "subgraph_N" after.
- `results` maps a key to `{"value": ..., "bgColor": ..., "textColor": ...}` (colours optional,
  any CSS colour). The key is an op's output tensor name (matched against the `tensor_name` the
  viewer shows for each output), or a node id (the op's index in its subgraph, as a string).
  quantdoctor keys by output tensor name: that is what survives a re-export that reorders ops.
- `value` may be a number, a string or a boolean. Numbers are coloured by the graph's `thresholds`
  (a list of `{"value": bound, "bgColor": colour}` in ascending order: the first bound the value is
  at or under wins; above the last, no colour) or by a `gradient` (stops 0..1 between the smallest
  and largest value, which takes precedence over `thresholds`). Strings are shown as they are and
  counted per label; they take only the colour their own `bgColor` gives.
- `name` is what the viewer calls the data set.

quantdoctor's values are strings, because each carries both numbers and words: the worst-channel
SQNR in dB that `compare` measured ("4.1 dB"), followed by the causes found at that op ("clipped
range", "crushed merge", "float fallback", "NPU refusal", and "kept float by fix" for the ops
`fix --max-drop` kept float). Each value's `bgColor` is the colour of its SQNR band, the bands of the
HTML report (`report.html.SQNR_BANDS`), which the file also lists as `thresholds`. An op with a
cause but no measured SQNR (nothing compared it) takes `NO_SQNR_COLOR`. Names from the model are
JSON keys and values only, never markup.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from quantdoctor import catalog
from quantdoctor.audit.checks import float_ops
from quantdoctor.audit.tflite_model import TFLiteModel, read_tflite
from quantdoctor.intake.output_file import write_output
from quantdoctor.report.html import SQNR_BANDS, sqnr_color
from quantdoctor.report.model import Report

NAME = "quantdoctor: worst-channel SQNR (dB) and cause"
NO_SQNR_COLOR = "#adb5bd"  # a cause at an op that nothing measured
FLOAT_FALLBACK = "float fallback"
KEPT_BY_FIX = "kept float by fix"


def graph_id(model: TFLiteModel, subgraph: int) -> str:
    """The id Model Explorer gives a subgraph of a .tflite model (see the module docstring)."""
    if model.graphs[subgraph].name:
        return model.graphs[subgraph].name
    signature = model.signature_of(subgraph)
    if signature is not None and signature.key:
        return signature.key
    return "main" if subgraph == 0 else f"subgraph_{subgraph}"


def build_overlay(report: Report, model: bytes | None = None,
                  kept_float: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The node data (model form) for `model`, the produced .tflite (default: the report's).

    Carries the report's per-layer worst-channel SQNR (its `comparison`, when compare ran), the cause
    labels of its findings that name a tensor (`Check.overlay_cause`), every op that computes in float
    in `model`, and, marked apart, the ops in `kept_float` (an accuracy budget's `kept_float` rows: their
    `node` is the op's output tensor name). Only tensors `model` has are keys.
    """
    produced = read_tflite(model if model is not None else report.tflite_model)
    computed = _computed_by(produced)
    sqnr = {computed.get(row["tensor"], row["tensor"]): row["worst_channel_sqnr_db"]
            for row in (report.comparison or {}).get("layers", [])}
    causes: dict[str, list[str]] = {}

    def add(tensor: str, label: str) -> None:
        labels = causes.setdefault(computed.get(tensor, tensor), [])
        if label not in labels:
            labels.append(label)

    for finding in report.findings:
        label = catalog.get(finding.code).overlay_cause
        if label and finding.location.tensor:
            add(finding.location.tensor, label)
    for op in float_ops(produced):
        label = KEPT_BY_FIX if _kept(op, kept_float or []) else FLOAT_FALLBACK
        for tensor in op.outputs:
            add(tensor.name, label)
    overlay: dict[str, Any] = {}
    for graph in produced.graphs:
        names = {tensor.name for op in graph.ops for tensor in op.outputs}
        results = {name: _result(sqnr.get(name), causes.get(name, []))
                   for name in sorted(names & (set(sqnr) | set(causes)))}
        if results or graph.index == 0:  # the main graph always: an overlay with nothing to show is still one
            overlay[graph_id(produced, graph.index)] = {
                "name": NAME, "results": results,
                "thresholds": [{"value": bound if bound != float("inf") else _TOP, "bgColor": color}
                               for bound, color in SQNR_BANDS]}
    return overlay


def write_overlay(path: str | Path, report: Report, model: bytes | None = None,
                  kept_float: list[dict[str, Any]] | None = None) -> None:
    """Write `build_overlay(report, model, kept_float)` to `path` (whole or not at all)."""
    write_output(Path(path), json.dumps(build_overlay(report, model, kept_float), indent=1), "--model-explorer")


def sqnr_text(sqnr_db: float) -> str:
    """How an SQNR reads in an overlay value: "4.1 dB"."""
    return f"{sqnr_db:.1f} dB"


_TOP = 1e9  # JSON has no infinity: the last band's bound, above any SQNR


def _result(sqnr_db: float | None, labels: list[str]) -> dict[str, Any]:
    parts = ([sqnr_text(sqnr_db)] if sqnr_db is not None else []) + labels
    return {"value": " · ".join(parts), "bgColor": sqnr_color(sqnr_db) if sqnr_db is not None else NO_SQNR_COLOR}


def _computed_by(model: TFLiteModel) -> dict[str, str]:
    """A float model output that a final DEQUANTIZE makes -> the integer tensor it dequantizes: compare
    and the findings name such an output by its float name, while the op that computed it is the one
    before the DEQUANTIZE."""
    outputs = {tensor.index for graph in model.graphs for tensor in graph.outputs}
    return {op.outputs[0].name: op.inputs[0].name for op in model.all_ops
            if op.name == "DEQUANTIZE" and op.outputs and op.inputs and op.outputs[0].index in outputs}


def _kept(op: Any, kept_float: list[dict[str, Any]]) -> bool:
    """Whether `op` is one the accuracy budget kept float: a row's node is an output tensor's name, or one of
    the names fused into it (`a;b`)."""
    names = {name for tensor in op.outputs for name in (tensor.name, *tensor.name.split(";"))}
    return any(row["node"] in names for row in kept_float)
