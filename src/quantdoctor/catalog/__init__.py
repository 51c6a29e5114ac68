"""The catalog of known failure signatures: every check quantdoctor can report, by stable code."""

from __future__ import annotations

from dataclasses import replace

from quantdoctor.catalog import (
    accuracy,
    accuracy_budget,
    aeq,
    calibration,
    dtype_mismatch,
    environment,
    metadata,
    npu,
    scripts,
    unsupported_op,
)
from quantdoctor.catalog.check import Check
from quantdoctor.errors import UsageError
from quantdoctor.report.model import Finding, Fix

CHECKS: dict[str, Check] = dict(sorted(
    (check.code, check)
    for module in (unsupported_op, dtype_mismatch, calibration, metadata, accuracy, accuracy_budget, environment,
                   scripts, aeq, npu)
    for check in module.CHECKS
))


# Codes that moved to another range, and where they went: an old report's code still explains.
RENUMBERED = {"QD325": "QD113"}  # an op without a 16x8 kernel is about kernels, not calibration data


def get(code: str) -> Check:
    """The check with this code (case-insensitive, renumbered codes followed); a UsageError names the
    valid codes otherwise."""
    check = CHECKS.get(RENUMBERED.get(code.upper(), code.upper()))
    if check is None:
        raise UsageError(f"unknown code {code!r}: run `quantdoctor codes` for the list")
    return check


def mark_automatic(findings: list[Finding]) -> list[Finding]:
    """The findings, with `fix.automatic` set where `fix` has a repair for their code."""
    return [replace(f, fix=Fix(f.fix.summary, f.fix.code, True)) if get(f.code).automatic_fix else f for f in findings]
