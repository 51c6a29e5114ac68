"""The terminal view of a reduction: the failure kept, the culprit layers, what it cost."""

from __future__ import annotations

from rich.console import Console

from quantdoctor.reduce.reduce_model import ReduceResult
from quantdoctor.report.literal import printable


def render_reduce(result: ReduceResult, console: Console) -> None:
    """Print the culprits in the user's names, with their op types and shapes (literal text, no markup)."""
    def say(text: str) -> None:
        console.print(printable(text), markup=False, soft_wrap=True, highlight=False)

    say(f"REDUCED  {result.finding.code} {result.finding.title}")
    say(f"  signature: {result.signature.describe()}")
    names = ", ".join(culprit["name"] for culprit in result.culprits)
    say(f"  fails the same way with {len(result.culprits)} of {result.layer_count} layer call(s): {names}")
    for culprit in result.culprits:
        shapes = ", ".join(str(tuple(shape)) for shape in culprit["input_shapes"])
        say(f"  - {culprit['name']} ({culprit['class']}): input {shapes} {', '.join(culprit['input_dtypes'])}, "
            f"output {', '.join(str(tuple(s)) for s in culprit['output_shapes'])}")
        say(f"    op types: {', '.join(culprit['op_types']) or 'none traced'}")
    say(f"  {result.conversions} conversions (bound for one culprit: {result.bound:.1f}), {result.seconds:.0f} s")
