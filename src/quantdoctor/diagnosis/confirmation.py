"""Converter outcomes that confirm data findings: the data finding the converter's own error is about
becomes the root cause and carries the converter's message."""

from __future__ import annotations

from dataclasses import replace

from quantdoctor import catalog
from quantdoctor.report.model import Finding

CONFIRMED_PRECEDENCE = 0  # the data finding the converter's own error confirms is the root cause


def merge_confirmed(data_findings: list[Finding], outcome_findings: list[Finding]) -> list[Finding]:
    """Data findings the converter's error confirms absorb it, and come first.

    A data finding with the converter's own error (same code, or one it `confirms` (a catalog fact) about the sample the
    converter failed on) takes the converter's message and ranks before every other finding; data
    errors the converter never reached (it stopped at the first) rank after it. A confirming finding
    of another code stays, right after the one it confirms. A converter error no matcher recognises
    stays as QD904 next to the data findings, even when they already explain the failure: a reworded
    converter message shows up instead of hiding behind them. A converter process that crashed, hung
    or ran out of memory comes in ranked before the data errors it does not confirm (`_build_report`).
    """
    merged = list(data_findings)
    for finding in outcome_findings:
        same = next((i for i, known in enumerate(merged[:len(data_findings)]) if known.code == finding.code), None)
        if same is not None:
            if "converter_message" in finding.evidence:
                merged[same] = _confirmed(merged[same], finding)
            continue
        confirmed = [i for i, known in enumerate(merged[:len(data_findings)]) if _confirms(finding, known)]
        for index in confirmed:
            merged[index] = _confirmed(merged[index], finding)
        merged.append(replace(finding, precedence=CONFIRMED_PRECEDENCE + 1) if confirmed else finding)
    return merged


def _confirms(outcome: Finding, data: Finding) -> bool:
    """True when `outcome` (the converter's error) is about the problem `data` found in the samples."""
    check = catalog.get(outcome.code)
    if data.code not in check.confirms:
        return False
    if check.confirms_after_crash:
        return data.severity == "error" and outcome.evidence.get("stage", "").startswith(("calibrating", "quantizing"))
    return data.code == "QD313" or 0 in data.evidence.get("first_samples", [])  # the converter stops at sample 0


def _confirmed(data: Finding, outcome: Finding) -> Finding:
    """The data finding, with the converter's confirmation: first, and an error when the converter failed on it."""
    message = outcome.evidence.get("converter_message")
    evidence = {**data.evidence, "confirmed_by_converter": outcome.code}
    if message:
        evidence["converter_message"] = message
    return replace(data, evidence=evidence, precedence=CONFIRMED_PRECEDENCE,
                   severity="error" if outcome.severity == "error" else data.severity)
