"""The environment as terminal lines: `quantdoctor env`, and the notes under a report's headline."""

from __future__ import annotations

from rich.text import Text

from quantdoctor.environment import (
    PYTHON_RANGE,
    SUPPORTED_TENSORFLOW,
    VERIFIED_TENSORFLOW,
    Environment,
    releases_text,
    within,
)


def environment_lines(environment: Environment) -> list[Text]:
    """One line per package: version (distribution), verified range, and whether it is in it; then
    the interpreter that runs models and the notes a report header carries."""
    lines = [_row("Python", environment.python, None, f"verified range {PYTHON_RANGE[0]} to {PYTHON_RANGE[1]}",
                  within(environment.python, *PYTHON_RANGE))]
    for package in environment.packages:
        span = package.verified_range
        verified = (f"verified on {releases_text(package.verified_releases)}" if package.verified_releases
                    else "verified range " + (span[0] if span[0] == span[1] else f"{span[0]} to {span[1]}"))
        lines.append(_row(package.name, package.version, package.distribution, verified, package.in_verified_range))
    if len(environment.tensorflow_distributions) > 1:
        lines.append(Text(f"  several TensorFlow distributions installed: "
                          f"{', '.join(environment.tensorflow_distributions)} (they overwrite each other's files)",
                          "bold red"))
    lines.append(Text(f"Models run in: {environment.interpreter}"))
    lines.append(Text(f"Supported: TensorFlow {SUPPORTED_TENSORFLOW[0]} to {SUPPORTED_TENSORFLOW[1]}; catalog "
                      f"verified on {releases_text(VERIFIED_TENSORFLOW)}", "dim"))
    lines += [Text(note, "yellow") for note in environment.notes()]
    return lines


def _row(name: str, version: str | None, distribution: str | None, verified: str, inside: bool | None) -> Text:
    shown = "not installed" if version is None else version + (f" ({distribution})" if distribution else "")
    status = ("", "dim") if inside is None else ("verified", "green") if inside else ("NOT VERIFIED", "bold yellow")
    return Text.assemble((f"{name:<11}", "bold"), f"{shown:<46} ", (f"{status[0]:<13}", status[1]), (verified, "dim"))
