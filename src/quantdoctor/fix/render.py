"""Terminal rendering of a fix: one line per repair, the verification, what is left."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.text import Text

if TYPE_CHECKING:
    from quantdoctor.fix.run import FixResult

_MARK = {True: ("ok  ", "green"), False: ("FAIL", "bold red"), None: ("--  ", "dim")}


def render_fix(result: FixResult, console: Console) -> None:
    """Print the outcome, the repairs (what changed, for which finding), the checks, and what is left."""
    label, style = ("VERIFIED", "bold green") if result.verified else ("NOT FIXED", "bold red")
    after = result.after
    console.print(Text.assemble((label, style), "  ", (after.model["source"], "bold"),
                                f"  mode={after.settings['mode']}  target={after.settings.get('target') or 'cpu'}",
                                (f"  {result.conversions} conversion(s) in {result.seconds:.1f} s", "dim")))
    if result.applied:
        console.print(Text("Repairs", "bold"))
        for repair in result.applied:
            console.print(Text.assemble("  ", (repair.code, "cyan"), f"  {repair.change}"))
            console.print(Text(f"         cost: {repair.cost}", "dim"))
    elif not result.blocked:
        console.print(Text("No repair was needed.", "green"))
    console.print(Text("Verification", "bold"))
    verification = result.verification
    target = after.settings.get("target") or "cpu"
    for value, text in ((verification.converted, "converted by the real converter, in the isolated worker"),
                        (verification.audit, f"no error finding; the audit passes for target {target}"),
                        (verification.runs, "LiteRT runs it on calibration samples, isolated"),
                        (verification.compared, "compare against the float model finds no accuracy error")):
        mark, mark_style = _MARK[value]
        console.print(Text.assemble("  ", (mark, mark_style), f"  {text}"))
    for detail in verification.details:
        console.print(Text(f"        {detail}", "dim"))
    if result.blocked:
        console.print(Text("What you must change", "bold red"))
        for blocked in result.blocked:
            console.print(Text.assemble("  ", (blocked.code, "bold red"), f"  {blocked.reason}"))
            console.print(Text.assemble("         ", ("do: ", "bold"), blocked.instruction))
    left = [f for f in after.findings if f.severity != "info" or not result.verified]
    if left:
        console.print(Text("Still reported" if result.verified else "The last diagnosis", "bold"))
        for finding in left:
            console.print(Text.assemble("  ", (finding.code, "yellow" if finding.severity != "error" else "red"),
                                        f"  {finding.severity}  {finding.title}: {finding.message}"))


def render_fix_plain(result: FixResult) -> str:
    """The terminal rendering as plain text (what `str(result)` returns)."""
    from quantdoctor.report.terminal import render_plain_with

    return render_plain_with(lambda console: render_fix(result, console))
