"""The catalog of known failure signatures: every check quantdoctor can report, by stable code."""

from __future__ import annotations

from quantdoctor.catalog import (accuracy, accuracy_budget, calibration, dtype_mismatch, environment, metadata, npu,
                                 scripts, unsupported_op)
from quantdoctor.catalog.check import Check
from quantdoctor.errors import UsageError

CHECKS: dict[str, Check] = dict(sorted(
    (check.code, check)
    for module in (unsupported_op, dtype_mismatch, calibration, metadata, accuracy, accuracy_budget, environment,
                   scripts, npu)
    for check in module.CHECKS
))


def get(code: str) -> Check:
    """The check with this code (case-insensitive); a UsageError names the valid codes otherwise."""
    check = CHECKS.get(code.upper())
    if check is None:
        raise UsageError(f"unknown code '{code}': run `quantdoctor codes` for the list")
    return check
