"""The report data model: findings with stable codes, and the report that orders them.

`Report.to_dict()` is the JSON contract described in the project's design notes; other programs
parse it, so fields are only ever added.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from quantdoctor._version import __version__
from quantdoctor.environment import VERIFIED_TENSORFLOW, Environment, current, releases_text
from quantdoctor.errors import QuantdoctorError
from quantdoctor.report.grouping import groups_json

SCHEMA_VERSION = 1
SEVERITIES = ("error", "warning", "info")


@dataclass(frozen=True)
class Location:
    """Where a finding points, in the user's terms: Keras layer, op, tensor, model input, converter setting."""

    layer: str | None = None
    op: str | None = None
    tensor: str | None = None
    input: str | None = None
    setting: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return {"layer": self.layer, "op": self.op, "tensor": self.tensor, "input": self.input,
                "setting": self.setting}

    def describe(self) -> str:
        """A short human description such as `layer 'lstm' (op tf.TensorListReserve)`."""
        parts = []
        if self.layer:
            parts.append(f"layer '{self.layer}'")
        if self.input:
            parts.append(f"input '{self.input}'")
        if self.op:
            parts.append(f"op {self.op}")
        if self.tensor and not self.layer:
            parts.append(f"tensor '{self.tensor}'")
        if self.setting:
            parts.append(f"setting converter.{self.setting}")
        return ", ".join(parts)


@dataclass(frozen=True)
class Fix:
    """What to do about a finding: a sentence, and the code to write where there is one."""

    summary: str
    code: str | None = None
    automatic: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"summary": self.summary, "code": self.code, "automatic": self.automatic}


@dataclass(frozen=True)
class Finding:
    """One problem found, identified by a stable catalog code such as QD201.

    `verified_on`: the TensorFlow releases whose converter was seen to produce it this way (the
    check's and, for a converter message, its matcher's)."""

    code: str
    category: str
    severity: str
    title: str
    message: str
    fix: Fix
    location: Location = field(default_factory=Location)
    evidence: dict[str, Any] = field(default_factory=dict)
    precedence: int = 50
    verified_on: tuple[str, ...] = VERIFIED_TENSORFLOW

    def unverified_note(self, environment: Environment) -> str | None:
        """"verified on TensorFlow 2.18 and 2.21; you run 2.16: the message may differ", or None."""
        if environment.tensorflow_release is None or environment.verified(self.verified_on):
            return None
        return (f"verified on TensorFlow {releases_text(self.verified_on)}; you run {environment.tensorflow.version}: "
                "the message may differ")

    def verification(self, environment: Environment) -> dict[str, Any]:
        """The finding's `verification` in the JSON report: where it was verified, and whether here."""
        return {"verified_on": list(self.verified_on),
                "verified": environment.tensorflow_release is not None and environment.verified(self.verified_on),
                "note": self.unverified_note(environment)}

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "category": self.category,
            "severity": self.severity,
            "title": self.title,
            "message": self.message,
            "location": self.location.to_dict(),
            "evidence": self.evidence,
            "fix": self.fix.to_dict(),
        }


def rank_findings(findings: list[Finding]) -> list[Finding]:
    """Order findings most decisive first: errors before warnings, root causes before symptoms.

    Findings with the same code and location are reported once.
    """
    unique: dict[tuple, Finding] = {}
    for finding in findings:
        unique.setdefault((finding.code, finding.location), finding)
    return sorted(unique.values(), key=lambda f: (SEVERITIES.index(f.severity), f.precedence))


@dataclass(frozen=True)
class Report:
    """The outcome of a diagnosis: findings ranked root cause first, plus what was run and produced.

    Frozen: a step that adds to a report (the AEQ findings, a comparison, an accuracy budget) returns
    a new one built with `dataclasses.replace`, so a report handed on never changes behind its holder.
    """

    model: dict[str, Any]
    settings: dict[str, Any]
    findings: list[Finding]
    conversion: dict[str, Any]
    audit: dict[str, Any] | None = None
    preflight: dict[str, Any] | None = None
    comparison: dict[str, Any] | None = None
    budget: dict[str, Any] | None = None  # from fix with an accuracy budget: the float fallback that meets it
    # from diagnose: the root cause predicted with certainty before converting, and whether the converter confirmed it
    early_answer: dict[str, Any] | None = None
    tflite_model: bytes | None = field(default=None, repr=False)

    @property
    def root_cause(self) -> Finding | None:
        """The first error finding: the cause quantdoctor stands behind."""
        return next((f for f in self.findings if f.severity == "error"), None)

    @property
    def verdict(self) -> str:
        """`failed` (no model produced), `converted_with_problems` (warnings or errors), `ok`, or
        `not_converted` for a preflight-only run (its predicted outcome is `preflight.verdict`)."""
        if self.conversion.get("outcome") == "skipped":
            return "not_converted"
        attempted = self.conversion.get("attempted", False)
        if attempted and self.conversion.get("outcome") != "ok":
            return "failed"
        if not attempted and self.root_cause is not None:
            return "failed"
        if any(f.severity in ("error", "warning") for f in self.findings):
            return "converted_with_problems"
        return "ok"

    def worst_severity(self) -> str | None:
        """The most severe level among the findings, or None when there are none."""
        levels = [SEVERITIES.index(f.severity) for f in self.findings]
        return SEVERITIES[min(levels)] if levels else None

    def to_dict(self) -> dict[str, Any]:
        """The JSON report contract (schema_version 1)."""

        environment = current()
        return {
            "schema_version": SCHEMA_VERSION,
            "tool": {"name": "quantdoctor", "version": __version__},
            "environment": environment.to_dict(),
            "model": self.model,
            "settings": self.settings,
            "verdict": self.verdict,
            "findings": [{**f.to_dict(), "verification": f.verification(environment)} for f in self.findings],
            "finding_groups": groups_json(self.findings),
            "conversion": self.conversion,
            "audit": self.audit,
            "preflight": self.preflight,
            **({"comparison": self.comparison} if self.comparison is not None else {}),
            **({"budget": self.budget} if self.budget is not None else {}),
            **({"early_answer": self.early_answer} if self.early_answer is not None else {}),
        }

    def __str__(self) -> str:
        from quantdoctor.report.terminal import render_plain

        return render_plain(self)


class QuantizationError(QuantdoctorError):
    """A conversion failed; `report` holds the diagnosis, its root cause first."""

    def __init__(self, report: Report):
        self.report = report
        root = report.root_cause
        headline = f"{root.code} {root.title}: {root.message}" if root else "conversion failed"
        super().__init__(f"quantization failed — {headline}\nFix: {root.fix.summary}" if root else headline)
