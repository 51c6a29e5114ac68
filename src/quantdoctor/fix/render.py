"""Terminal rendering of a fix: one line per repair, the verification, what is left."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.text import Text

from quantdoctor.report.literal import literal_assemble, literal_text
from quantdoctor.report.terminal import budget_lines

if TYPE_CHECKING:
    from quantdoctor.fix.fix_model import FixResult

_MARK = {True: ("ok  ", "green"), False: ("FAIL", "bold red"), None: ("--  ", "dim")}


def render_fix(result: FixResult, console: Console) -> None:
    """Print the outcome, the repairs (what changed, for which finding), the checks, and what is left.
    Every line is printed whole (soft wrap), as the diagnose report's are."""
    for line in fix_lines(result):
        console.print(line, soft_wrap=True)


def render_fix_plain(result: FixResult) -> str:
    """The terminal rendering as plain text (what `str(result)` returns)."""
    return "\n".join(line.plain.rstrip() for line in fix_lines(result)).rstrip()


def fix_lines(result: FixResult) -> list[Text]:
    """The fix's lines, styled, in print order."""
    label, style = ("VERIFIED", "bold green") if result.verified else ("NOT FIXED", "bold red")
    after = result.after
    target = after.settings.get("target") or "cpu"
    lines = [literal_assemble((label, style), "  ", (after.model["source"], "bold"),
                              f"  mode={after.settings['mode']}  target={target}",
                              (f"  {result.conversions} conversion(s) in {result.seconds:.1f} s", "dim"))]
    if result.applied:
        lines.append(literal_text("Repairs", "bold"))
        for repair in result.applied:
            lines.append(literal_assemble("  ", (repair.code, "cyan"), f"  {repair.change}"))
            lines.append(literal_text(f"         cost: {repair.cost}", "dim"))
    elif not result.blocked:
        lines.append(literal_text("No repair was needed.", "green"))
    if result.reduced and result.reduced.get("reduced"):
        names = ", ".join(culprit["name"] for culprit in result.reduced["culprits"])
        lines.append(literal_text(f"Reduced to {names}: {result.reduced['signature']}; generic repairs tried:", "bold"))
        for tried in result.reduced["tried"]:
            mark, mark_style = _MARK[tried["verified"]]
            lines.append(literal_assemble("  ", (mark, mark_style), f"  {tried.get('change') or tried.get('reason')}"))
    lines.append(literal_text("Verification", "bold"))
    verification = result.verification
    for value, text in ((verification.converted, "converted by the real converter, in the isolated worker"),
                        (verification.audit, f"no error finding; the audit passes for target {target}"),
                        (verification.runs, "LiteRT runs it on calibration samples, isolated"),
                        (verification.compared, "compare against the float model finds no accuracy error")):
        mark, mark_style = _MARK[value]
        lines.append(literal_assemble("  ", (mark, mark_style), f"  {text}"))
    lines += [literal_text(f"        {detail}", "dim") for detail in verification.details]
    if result.budget:
        lines += budget_lines(result.budget)
    if result.blocked:
        lines.append(literal_text("What you must change", "bold red"))
        for blocked in result.blocked:
            lines.append(literal_assemble("  ", (blocked.code, "bold red"), f"  {blocked.reason}"))
            lines.append(literal_assemble("         ", ("do: ", "bold"), blocked.instruction))
    left = [f for f in after.findings if f.severity != "info" or not result.verified]
    if left:
        lines.append(literal_text("Still reported" if result.verified else "The last diagnosis", "bold"))
        for finding in left:
            lines.append(literal_assemble("  ", (finding.code, "red" if finding.severity == "error" else "yellow"),
                                          f"  {finding.severity}  {finding.title}: {finding.message}"))
    return lines
