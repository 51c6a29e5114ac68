"""Repeated findings, grouped: one code with one pattern at many layers is one problem.

A ConvNeXt's 23 float NEG ops or 29 residual merges read as a flood when printed one by one. Findings
of the same code and severity whose messages differ only in names and numbers form a group; the
terminal prints each group once, with its count and its layers. The JSON report keeps every finding
(every layer), and lists the groups beside them.

Two codes can also say one thing about one op from two sides: on an Ethos-U target, an op that stayed
float (QD105) is an op Vela leaves on the CPU (QD120). The first of the two in the report's order stands
for both; the other is its companion, printed under it as the same op, never as a problem of its own.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from quantdoctor.report.model import Finding

MIN_GROUP = 2  # findings of one pattern from this many on are printed as one group
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?", re.IGNORECASE)


def pattern(finding: Finding) -> tuple[str, str, str]:
    """What repeats: the code, the severity, and the message with its names and numbers blanked out."""
    text = _NUMBER.sub("#", _QUOTED.sub("'…'", finding.message))
    return finding.code, finding.severity, text


# Codes that name one problem of one op from two sides: a float op (QD105) that Vela, compiling for an
# Ethos-U target, also leaves on the CPU (QD120).
SAME_OP_CODES = frozenset({"QD105", "QD120"})


def _op_key(finding: Finding) -> tuple[str | None, str | None]:
    location = finding.location
    return (location.layer, location.op) if location.layer else (None, location.tensor)


def same_op_companions(findings: list[Finding]) -> dict[int, list[Finding]]:
    """id(finding) -> its companions: the findings of the other SAME_OP_CODES about the same op (the same layer and
    op, else the same tensor) that come after it in `findings`."""
    first: dict[tuple[str | None, str | None], Finding] = {}
    companions: dict[int, list[Finding]] = {}
    for finding in findings:
        key = _op_key(finding)
        if finding.code not in SAME_OP_CODES or key == (None, None):
            continue
        primary = first.setdefault(key, finding)
        if primary.code != finding.code:
            companions.setdefault(id(primary), []).append(finding)
    return companions


def group_findings(findings: list[Finding]) -> list[list[Finding]]:
    """The findings in their order, those of one pattern gathered at the place of the first of them; a
    companion (`same_op_companions`) is no group of its own."""
    followers = {id(c) for group in same_op_companions(findings).values() for c in group}
    groups: dict[tuple[str, str, str], list[Finding]] = {}
    for finding in findings:
        if id(finding) not in followers:
            groups.setdefault(pattern(finding), []).append(finding)
    return list(groups.values())


def where(finding: Finding) -> str:
    """The place a grouped finding stands for: its layer, else its tensor, op or input."""
    location = finding.location
    return location.layer or location.tensor or location.input or location.op or location.setting or "model"


def groups_json(findings: list[Finding]) -> list[dict[str, Any]]:
    """The JSON `finding_groups`: per group of MIN_GROUP findings or more, its code, severity, count, and
    every place (layer) in finding order; per group with companions, `same_op` with their codes and places
    too. The findings themselves stay in `findings`."""
    companions = same_op_companions(findings)
    groups = []
    for group in group_findings(findings):
        followers = [c for f in group for c in companions.get(id(f), [])]
        if len(group) < MIN_GROUP and not followers:
            continue
        entry = {"code": group[0].code, "severity": group[0].severity, "count": len(group),
                 "layers": [where(f) for f in group]}
        if followers:
            entry["same_op"] = [{"code": c.code, "severity": c.severity, "layer": where(c)} for c in followers]
        groups.append(entry)
    return groups
