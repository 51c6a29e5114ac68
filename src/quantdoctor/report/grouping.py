"""Repeated findings, grouped: one code with one pattern at many layers is one problem.

A ConvNeXt's 23 float NEG ops or 29 residual merges read as a flood when printed one by one. Findings
of the same code and severity whose messages differ only in names and numbers form a group; the
terminal prints each group once, with its count and its layers. The JSON report keeps every finding
(every layer), and lists the groups beside them.
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


def group_findings(findings: list[Finding]) -> list[list[Finding]]:
    """The findings in their order, those of one pattern gathered at the place of the first of them."""
    groups: dict[tuple[str, str, str], list[Finding]] = {}
    for finding in findings:
        groups.setdefault(pattern(finding), []).append(finding)
    return list(groups.values())


def where(finding: Finding) -> str:
    """The place a grouped finding stands for: its layer, else its tensor, op or input."""
    location = finding.location
    return location.layer or location.tensor or location.input or location.op or location.setting or "model"


def groups_json(findings: list[Finding]) -> list[dict[str, Any]]:
    """The JSON `finding_groups`: per group of MIN_GROUP findings or more, its code, severity, count, and
    every place (layer) in finding order; the findings themselves stay in `findings`."""
    return [{"code": group[0].code, "severity": group[0].severity, "count": len(group),
             "layers": [where(f) for f in group]}
            for group in group_findings(findings) if len(group) >= MIN_GROUP]
