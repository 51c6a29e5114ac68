"""Terminal rendering: the root cause first, then the rest, concise, in colour when possible."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.syntax import Syntax
from rich.text import Text

from quantdoctor.environment import current
from quantdoctor.report.grouping import MIN_GROUP, group_findings, same_op_companions, where
from quantdoctor.report.literal import literal_assemble, literal_text, printable
from quantdoctor.report.npu_summary import edgetpu_line, npu_line

if TYPE_CHECKING:
    from quantdoctor.report.model import Finding, Report

SHOWN_PLACES = 8  # places of a group of repeated findings printed; the JSON report has all
_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}
_VERDICT = {"ok": ("OK", "bold green"), "converted_with_problems": ("CONVERTED WITH PROBLEMS", "bold yellow"),
            "failed": ("FAILED", "bold red"), "not_converted": ("PREFLIGHT ONLY", "bold cyan")}


def render(report: Report, console: Console) -> None:
    """Print the report: verdict line, root cause with its fix, other findings, produced model.

    Every line is printed whole (soft wrap): nothing is cropped at the console's width, so code
    and table rows survive a pipe or a narrow terminal intact and can be copied as they are.
    """
    for line in report_lines(report):
        console.print(line, soft_wrap=True)


def report_lines(report: Report) -> list[Text]:
    """The report's lines, styled, in print order: the environment's notes (an unverified TensorFlow,
    no LiteRT) right under the headline."""
    lines = [_headline(report), *(literal_text(note, "yellow") for note in current().notes())] + _preflight_note(report)
    npu, predicted = (report.audit or {}).get("npu"), (report.preflight or {}).get("npu")
    if npu or predicted:
        lines.append(literal_text(npu_line(npu, predicted, report.settings.get("target")), "bold"))
    if report.audit and report.audit.get("edgetpu"):
        lines.append(literal_text(edgetpu_line(report.audit["edgetpu"]), "bold"))
    root = report.root_cause
    groups = group_findings(report.findings)
    companions = same_op_companions(report.findings)
    if root:
        lines.append(literal_text("Root cause", "bold"))
        root_group = next(group for group in groups if group[0] is root)
        lines += _finding(root, with_fix_code=True) + _more_like_it(root_group) + _same_op(root_group, companions)
    lines += _early_answer_note(report)  # whether the converter confirmed what was predicted, under the cause
    others = [group for group in groups if group[0] is not root]
    if others:
        lines.append(literal_text("Also found" if root else "Findings", "bold"))
        for group in others:
            lines += (_finding(group[0], with_fix_code=root is None and group is others[0]) + _more_like_it(group)
                      + _same_op(group, companions))
    if report.audit:
        lines += _audit_section(report.audit)
    if report.comparison:
        lines += _comparison_section(report.comparison)
    if report.budget:
        lines += budget_lines(report.budget)
    if not report.findings:
        lines.append(literal_text("No problems found.", "green"))
    return lines


def render_finding(finding: Finding, console: Console, with_fix_code: bool = True) -> None:
    """Print one finding on its own: code, title, message, fix (and the fix's code), each line whole."""
    for line in _finding(finding, with_fix_code):
        console.print(line, soft_wrap=True)


def render_plain(report: Report) -> str:
    """The terminal report as plain text (what `str(report)` returns)."""
    return "\n".join(line.plain.rstrip() for line in report_lines(report)).rstrip()


def _headline(report: Report) -> Text:
    label, style = _VERDICT[report.verdict]
    settings = report.settings
    head = literal_assemble((f"{label}", style), "  ", (report.model["source"], "bold"))
    if settings.get("mode") is not None:
        head.append(f"  mode={settings['mode']}")
    elif report.audit:  # a .tflite audited on its own: what it is, not what was asked
        head.append(f"  model: {report.audit['model_kind']}")
    conversion = report.conversion
    if conversion.get("attempted"):
        head.append(f"  conversion: {conversion['outcome']} in {conversion['seconds']:.1f} s", "dim")
    if report.preflight:
        predicted = report.preflight["verdict"].replace("_", " ")
        if report.verdict == "not_converted":
            head.append(f"  predicted: {predicted}", "bold")
        else:
            head.append(f"  preflight: {predicted}", "dim")
    return head


def _preflight_note(report: Report) -> list[Text]:
    """A word on a preflight prediction the conversion contradicted: which of the two counts, and why."""
    preflight = report.preflight or {}
    if preflight.get("verdict") != "will_fail" or report.conversion.get("outcome") != "ok":
        return []
    return [Text("  The preflight judged the ops one by one from its table and predicted a failure; the converter "
                 "got through (it fuses or lowers some ops the table cannot judge alone). The findings below come "
                 "from the model it produced.", "dim")]


def _early_answer_note(report: Report) -> list[Text]:
    """What became of the root cause predicted before converting: confirmed, contradicted, or not converted."""
    early = report.early_answer
    if not early:
        return []
    head = f"Predicted before converting ({early['seconds']:.1f} s in): {early['code']}"
    if early.get("withdrawn"):
        return [literal_text(f"{head}; withdrawn: {early['withdrawn_because']}", "yellow")]
    if early["confirmed"]:
        return [literal_text(f"{head}, confirmed by the converter", "dim")]
    if early["confirmed"] is None:
        return [literal_text(f"{head}; conversion not attempted (fail fast)", "bold")]
    return [literal_text(f"{head}; the converter did not confirm it: the findings below are what it did", "yellow")]


def _more_like_it(group: list[Finding]) -> list[Text]:
    """For a group of repeated findings: how many, and where (the first few places; the JSON has all)."""
    if len(group) < MIN_GROUP:
        return []
    places = list(dict.fromkeys(where(f) for f in group))  # several ops of one layer: the layer once
    shown = ", ".join(places[:SHOWN_PLACES]) + (f" and {len(places) - SHOWN_PLACES} more" if len(places) > SHOWN_PLACES
                                               else "")
    count = f"{len(group)} in {len(places)} places" if len(places) < len(group) else f"{len(group)}"
    return [_indented(literal_text(f"×{count}: the same at {shown} (every one in the JSON report)", "dim"))]


def _same_op(group: list[Finding], companions: dict[int, list[Finding]]) -> list[Text]:
    """The companions of a group's findings: the same op's problem seen by another code, one line per code."""
    followers: dict[str, list[Finding]] = {}
    for finding in group:
        for companion in companions.get(id(finding), []):
            followers.setdefault(companion.code, []).append(companion)
    return [_indented(literal_assemble((f"also {code} {same[0].severity}", _STYLE[same[0].severity]),
                                       f"  {same[0].title}: the same op"
                                       + (f" ({len(same)} of them)" if len(same) > 1 else "")))
            for code, same in followers.items()]


def _indented(text: Text, spaces: int = 2) -> Text:
    return Text(" " * spaces) + text


def _finding(finding: Finding, with_fix_code: bool) -> list[Text]:
    style = _STYLE[finding.severity]
    title = literal_assemble((f"{finding.code} ", style), (finding.severity, style), "  ", (finding.title, "bold"))
    where = finding.location.describe()
    parts = [title, literal_text(finding.message + (f"  [{where}]" if where else ""))]
    converter_message = finding.evidence.get("converter_message")
    if converter_message:
        parts.append(literal_text(f"converter said: {converter_message[:200]}", "dim"))
    unverified = finding.unverified_note(current())
    if unverified:
        parts.append(literal_text(unverified, "yellow"))
    parts.append(literal_assemble(("fix: ", "bold green"), finding.fix.summary))
    lines = [_indented(part) for part in parts]
    if with_fix_code and finding.fix.code:
        source = "\n".join(printable(line) for line in finding.fix.code.split("\n"))
        code = Syntax(source, "python", theme="ansi_dark", background_color="default")
        lines += [_indented(line, 4) for line in code.highlight(source).split("\n")]
    return lines


def _audit_section(audit: dict) -> list[Text]:
    verdict = "fully integer" if audit["fully_integer"] else f"{len(audit['float_ops'])} float op(s)"
    lines = [literal_text(f"Model: {audit['op_count']} ops, {verdict}, {audit['integer_partitions']} integer "
                          f"partition(s)", "bold")]
    for number, island in enumerate(audit["float_islands"], 1):
        layers = f" in {', '.join(island['layers'])}" if island["layers"] else ""
        lines.append(literal_text(f"  float island {number}: {', '.join(island['ops'])}{layers} "
                                  f"({island['dequantize_in']} DEQUANTIZE in, {island['quantize_out']} QUANTIZE out)"))
    signatures = audit.get("signatures") or []
    entries = [(f"signature '{s['key']}' ", s["inputs"], s["outputs"]) for s in signatures] if len(signatures) > 1 \
        else [("", audit["input_types"], audit["output_types"])]
    for prefix, inputs, outputs in entries:
        for role, tensors in (("input", inputs), ("output", outputs)):
            for tensor in tensors:
                quant = f", scale {tensor['scale']:.6g}, zero point {tensor['zero_point']}" if tensor["scale"] else ""
                lines.append(literal_text(f"  {prefix}{role} '{tensor['name']}': {tensor['dtype']} "
                                          f"{_shape(tensor)}{quant}", "dim"))
    return lines


def _shape(tensor: dict) -> str:
    """A tensor's shape with `?` where the model leaves the size free (resized when it runs)."""
    sizes = tensor.get("shape_signature") or tensor["shape"]
    return "[" + ", ".join("?" if size == -1 else str(size) for size in sizes) + "]"


def budget_lines(budget: dict) -> list[Text]:
    """An accuracy budget's outcome: met or missed, the metrics, the ops kept float with their gains."""
    chosen = budget["chosen"]
    verdict = ("MET", "bold green") if budget["met_budget"] else ("MISSED: best effort returned", "bold red")
    lines = [literal_assemble(("Accuracy budget: ", "bold"), budget["objective"]["description"], "  ", verdict),
             literal_text(f"  float {_number(budget['objective']['float_value'])} · "
                          f"full INT8 {_number(budget['int8_value'])} · "
                          f"chosen {_number(chosen['metric'])} with {chosen['float_ops']} float op(s), "
                          f"{chosen['integer_partitions']} integer partition(s), "
                          f"{chosen['model_bytes'] / 1024:.1f} kB")]
    if budget["kept_float"]:
        lines.append(literal_text("  kept in float (gain: the metric lost when it alone is quantized again):", "dim"))
        for row in budget["kept_float"]:
            gain = "" if row["gain"] is None else f"{row['gain']:+.4f}"
            name = printable(row["layer"] or row["node"])
            lines.append(literal_text(f"    {name:<32.32} {row['op']:<18.18} {gain}"))
    lines.append(literal_text(f"  {budget['evaluations']} variant(s) of {budget['candidate_ops']} candidate op(s) "
                              f"tried; search {budget['seconds']['search']:.1f} s; Pareto front: "
                              f"{len(budget['pareto'])} variant(s)", "dim"))
    return lines


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _comparison_section(comparison: dict, rows: int = 8) -> list[Text]:
    e2e = comparison["end_to_end"]
    headline = ", ".join(f"{key.replace('_', ' ')} {value:.4g}" if isinstance(value, float) else f"{key} {value}"
                         for key, value in e2e.items())
    lines = [literal_text(f"Compared on {comparison['samples']} samples: {headline}", "bold"),
             literal_text("  worst layers (worst-channel SQNR dB / whole tensor / own drop / clipped):", "dim")]
    for row in comparison["layers"][:rows]:
        name = printable(row["layer"] or row["tensor"])
        lines.append(literal_text(f"  {name:<32.32} {row['op']:<18.18} {row['worst_channel_sqnr_db']:7.1f} "
                                  f"{row['sqnr_db']:7.1f} {row['own_sqnr_drop_db']:7.1f} "
                                  f"{row['clipped_fraction']:7.2%}"))
    return lines
