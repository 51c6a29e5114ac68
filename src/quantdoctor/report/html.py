"""The self-contained HTML report: root cause and findings, per-layer error chart, activation
histograms with the calibrated range marked, end-to-end metrics. No scripts, no network: inline
SVG and CSS only, so it opens anywhere and can be attached to a bug report."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any
from urllib.parse import quote

from quantdoctor.intake.output_file import write_output
from quantdoctor.report.model import Report

# Worst-channel SQNR bands, worst first: (upper bound in dB, colour). At or under 10 dB the noise is
# within 3x of the signal (crushed); at or under 20 dB a layer is poor; above it, fine. The per-layer
# chart colours its bars by them, and the Model Explorer overlay uses the same bands as its thresholds.
SQNR_BANDS = ((10.0, "#c92a2a"), (20.0, "#e67700"), (float("inf"), "#40c057"))
HIST_COLOR = "#1c7ed6"
RANGE_COLOR = "#2b8a3e"
CANDIDATE_COLOR = "#868e96"
PARETO_COLOR = "#7048e8"
CHOSEN_COLOR = "#0ca678"
BUDGET_COLOR = "#c92a2a"
_CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1000px; color: #212529; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 28px; border-bottom: 1px solid #dee2e6; }
.finding { border-left: 4px solid #adb5bd; padding: 6px 12px; margin: 10px 0; background: #f8f9fa; }
.error { border-color: #c92a2a; } .warning { border-color: #e67700; } .info { border-color: #1971c2; }
.code { font-family: ui-monospace, monospace; font-weight: 600; }
pre { background: #f1f3f5; padding: 8px; overflow-x: auto; }
table { border-collapse: collapse; } td, th { padding: 3px 10px; border-bottom: 1px solid #e9ecef; text-align: left; }
figure { display: inline-block; margin: 8px 16px 8px 0; } figcaption { font-size: 12px; }
"""


def sqnr_color(sqnr_db: float) -> str:
    """The colour of the SQNR band `sqnr_db` falls in (`SQNR_BANDS`)."""
    return next(color for bound, color in SQNR_BANDS if sqnr_db <= bound)


def render_html(report: Report, overlay: str | None = None) -> str:
    """The whole report as one HTML document; `overlay` links the Model Explorer overlay written beside it."""
    parts = [f"<h1>quantdoctor: {_e(report.model['source'])}</h1>",
             f"<p>Verdict: <b>{_e(report.verdict.replace('_', ' '))}</b> · mode {_e(str(report.settings.get('mode')))}</p>",
             "<h2>Root cause and findings</h2>", _findings(report)]
    if overlay:
        parts.append(f"<p>Model Explorer overlay: <a class=overlay href='{_e(overlay)}'>{_e(overlay)}</a> "
                     "(open it with <code>quantdoctor view MODEL --overlay OVERLAY</code>)</p>")
    if report.comparison:
        parts += ["<h2>End-to-end</h2>", _end_to_end(report.comparison["end_to_end"]),
                  "<h2>Per-layer error: layers ranked by the error they add themselves; bar = worst-channel "
                  "SQNR in dB (shorter is worse)</h2>",
                  _layer_chart(report.comparison["layers"]),
                  "<h2>Activations of the worst layers (calibrated range in green)</h2>",
                  "".join(_histogram(h) for h in report.comparison.get("histograms", []))]
    if report.budget:
        parts += _budget(report.budget)
    body = "\n".join(parts)
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>quantdoctor report</title>"
            f"<style>{_CSS}</style></head><body>{body}</body></html>")


def write_html(report: Report, path: Path, overlay: Path | None = None) -> None:
    """Write the report to `path` (whole or not at all: see `write_output`), linking the Model Explorer
    `overlay` when one was written (by a path relative to the report's folder where it lies inside it)."""
    link = None
    if overlay is not None:
        overlay, folder = Path(overlay).resolve(), Path(path).resolve().parent
        link = ("./" + quote(overlay.relative_to(folder).as_posix()) if overlay.is_relative_to(folder)
                else overlay.as_uri())  # "./" first: a file named "javascript:..." stays a file
    write_output(path, render_html(report, link), "--html")


def _findings(report: Report) -> str:
    if not report.findings:
        return "<p>No problems found.</p>"
    items = []
    for finding in report.findings:
        where = finding.location.describe()
        code = f"<pre>{_e(finding.fix.code)}</pre>" if finding.fix.code else ""
        items.append(f"<div class='finding {finding.severity}'><span class=code>{finding.code}</span> "
                     f"{finding.severity} · <b>{_e(finding.title)}</b><br>{_e(finding.message)}"
                     f"{' [' + _e(where) + ']' if where else ''}<br><i>fix:</i> {_e(finding.fix.summary)}{code}</div>")
    return "\n".join(items)


def _end_to_end(metrics: dict[str, Any]) -> str:
    rows = "".join(f"<tr><th>{_e(k.replace('_', ' '))}</th><td>{_e(_fmt(v))}</td></tr>" for k, v in metrics.items())
    return f"<table>{rows}</table>"


def _layer_chart(layers: list[dict[str, Any]], limit: int = 30) -> str:
    shown = layers[:limit]
    if not shown:
        return "<p>No layer could be compared.</p>"
    top = max(60.0, max(row["worst_channel_sqnr_db"] for row in shown))
    width, row_height, label_width = 900, 20, 330
    bars = []
    for i, row in enumerate(shown):
        value = max(row["worst_channel_sqnr_db"], 0.0)
        length = (width - label_width - 60) * value / top
        label = f"{row['layer'] or row['tensor']} ({row['op']})"
        y = i * row_height
        bars.append(f"<text x='{label_width - 6}' y='{y + 14}' text-anchor='end' font-size='12'>{_e(label[:52])}</text>"
                    f"<rect class='bar' x='{label_width}' y='{y + 3}' width='{max(length, 1):.1f}' height='{row_height - 6}' "
                    f"fill='{sqnr_color(row['worst_channel_sqnr_db'])}'/><text x='{label_width + length + 4:.1f}' y='{y + 14}' font-size='11'>"
                    f"{row['worst_channel_sqnr_db']:.1f}</text>")
    height = row_height * len(shown)
    return f"<svg role='img' width='{width}' height='{height}' xmlns='http://www.w3.org/2000/svg'>{''.join(bars)}</svg>"


def _histogram(hist: dict[str, Any]) -> str:
    width, height = 420, 160
    counts, edges = hist["counts"], hist["edges"]
    low, high = edges[0], edges[-1]
    calibrated = hist.get("calibrated_range")
    if calibrated:
        low, high = min(low, calibrated[0]), max(high, calibrated[1])
    span = (high - low) or 1.0
    peak = max(counts) or 1

    def x(value: float) -> float:
        return 10 + (width - 20) * (value - low) / span

    bars = "".join(f"<rect x='{x(edges[i]):.1f}' y='{height - 20 - (height - 30) * c / peak:.1f}' "
                   f"width='{max(x(edges[i + 1]) - x(edges[i]) - 0.5, 0.5):.1f}' "
                   f"height='{(height - 30) * c / peak:.1f}' fill='{HIST_COLOR}'/>" for i, c in enumerate(counts))
    marks = ""
    if calibrated:
        marks = "".join(f"<line x1='{x(v):.1f}' x2='{x(v):.1f}' y1='5' y2='{height - 20}' stroke='{RANGE_COLOR}' "
                        f"stroke-width='2'/>" for v in calibrated)
    caption = _e(hist["layer"] or hist["tensor"])
    return (f"<figure><svg width='{width}' height='{height}' xmlns='http://www.w3.org/2000/svg'>{bars}{marks}"
            f"<text x='10' y='{height - 4}' font-size='11'>{low:.3g}</text><text x='{width - 10}' y='{height - 4}' "
            f"font-size='11' text-anchor='end'>{high:.3g}</text></svg><figcaption>{caption}</figcaption></figure>")


def _budget(budget: dict[str, Any]) -> list[str]:
    """The accuracy budget: verdict, the ops kept float with their gains, and the Pareto plot."""
    chosen = budget["chosen"]
    verdict = "met" if budget["met_budget"] else "<b>missed</b>: the best effort is returned"
    summary = {"budget": budget["objective"]["description"], "float model": budget["objective"]["float_value"],
               "full INT8": budget["int8_value"], "chosen": chosen["metric"], "float ops": chosen["float_ops"],
               "integer partitions": chosen["integer_partitions"], "model bytes": chosen["model_bytes"],
               "variants tried": budget["evaluations"]}
    rows = "".join(f"<tr><td>{_e(row['layer'] or row['node'])}</td><td>{_e(row['op'])}</td>"
                   f"<td>{_gain(row['gain'])}</td></tr>" for row in budget["kept_float"])
    kept = (f"<table><tr><th>kept in float</th><th>op</th><th>gain</th></tr>{rows}</table>" if rows
            else "<p>Nothing needs to stay float.</p>")
    return [f"<h2>Accuracy budget: {verdict}</h2>", _end_to_end(summary), kept,
            "<h2>Variants tried: metric against float ops (Pareto front in violet, the chosen model in green, "
            "the budget dashed red)</h2>", _pareto_plot(budget)]


def _gain(gain: float | None) -> str:
    return "" if gain is None else f"{gain:+.4f}"


def _pareto_plot(budget: dict[str, Any]) -> str:
    candidates = [c for c in budget["candidates"] if c["metric"] is not None]
    objective = budget["objective"]
    floor = (objective["min_sqnr_db"] if objective["min_sqnr_db"] is not None
             else objective["float_value"] - objective["max_drop"])
    values = [c["metric"] for c in candidates] + [floor, objective["float_value"] or floor]
    low, high = min(values), max(values)
    margin = (high - low) * 0.08 or 0.01
    low, high = low - margin, high + margin
    most = max([c["float_ops"] for c in candidates] + [1])
    width, height, left, bottom = 760, 340, 60, 40

    def x(ops: float) -> float:
        return left + (width - left - 20) * ops / most

    def y(value: float) -> float:
        return 10 + (height - bottom - 10) * (high - value) / (high - low)

    points = "".join(
        f"<circle cx='{x(c['float_ops']):.1f}' cy='{y(c['metric']):.1f}' r='5' fill='{CANDIDATE_COLOR}'>"
        f"<title>{_e(c['step'])}: {c['metric']:.4g} with {c['float_ops']} float op(s): "
        f"{_e(', '.join(c['layers']))}</title></circle>" for c in candidates)
    front = budget["pareto"]
    line = " ".join(f"{x(c['float_ops']):.1f},{y(c['metric']):.1f}" for c in front)
    front_marks = "".join(f"<circle cx='{x(c['float_ops']):.1f}' cy='{y(c['metric']):.1f}' r='6' "
                          f"fill='{PARETO_COLOR}'/>" for c in front)
    chosen = budget["chosen"]
    chosen_mark = (f"<circle cx='{x(chosen['float_ops']):.1f}' cy='{y(chosen['metric']):.1f}' r='10' "
                   f"fill='{CHOSEN_COLOR}'/>" if chosen["metric"] is not None else "")
    axes = (f"<line x1='{left}' y1='{height - bottom}' x2='{width - 10}' y2='{height - bottom}' stroke='#495057'/>"
            f"<line x1='{left}' y1='10' x2='{left}' y2='{height - bottom}' stroke='#495057'/>"
            f"<line x1='{left}' y1='{y(floor):.1f}' x2='{width - 10}' y2='{y(floor):.1f}' stroke='{BUDGET_COLOR}' "
            f"stroke-dasharray='6 4' stroke-width='2'/>"
            + "".join(f"<text x='{left - 6}' y='{y(value) + 4:.1f}' text-anchor='end' font-size='11'>{value:.4g}</text>"
                      for value in (high - margin, low + margin))
            + f"<text x='{left}' y='{height - bottom + 16}' font-size='11'>0</text>"
            f"<text x='{x(most):.1f}' y='{height - bottom + 16}' font-size='11' text-anchor='end'>{most}</text>"
            f"<text x='{(width + left) / 2:.0f}' y='{height - 6}' font-size='12' text-anchor='middle'>"
            "ops in float</text>"
            f"<text x='14' y='{(height - bottom) / 2:.0f}' font-size='12' text-anchor='middle' "
            f"transform='rotate(-90 14 {(height - bottom) / 2:.0f})'>{_e(objective['metric'].replace('_', ' '))}"
            "</text>")
    return (f"<svg role='img' width='{width}' height='{height}' xmlns='http://www.w3.org/2000/svg'>{axes}"
            f"<polyline points='{line}' fill='none' stroke='{PARETO_COLOR}' stroke-width='2'/>{points}{front_marks}"
            f"{chosen_mark}</svg>")


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _e(text: str) -> str:
    return html.escape(text, quote=True)
