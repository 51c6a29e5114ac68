"""The `Check` record: one catalog entry, documented like a linter rule."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from quantdoctor.environment import VERIFIED_TENSORFLOW
from quantdoctor.report.model import Finding, Fix, Location

CATEGORIES = {
    "1": "unsupported_op",
    "2": "dtype_mismatch",
    "3": "calibration",
    "4": "metadata",
    "5": "accuracy",
    "9": "environment",
}


# Evidence key: the finding is about a list item for one of several inputs, paired by position in the
# converter's input order (which the model's own order need not be).
PAIRED_IN_CONVERTER_ORDER = "paired_in_converter_order"

REDUCE_HINT = (" To find the layer that triggers it, with a script for a bug report: "
               "`quantdoctor reduce MODEL --data DATA --repro repro.py` (`qd.reduce` in Python).")


@dataclass(frozen=True)
class Check:
    """A known failure signature with a stable code.

    `detects` and `why` document the check (`quantdoctor explain`), `example` shows code that
    triggers it, `fix` and `fix_code` say what to write instead. `precedence` orders findings of
    equal severity: root causes (low) come before the symptoms they explain (high). A `reducible`
    check is a converter failure worth isolating: its findings' fix names `quantdoctor reduce`.
    `float_model_fails`: the finding says the float model itself is already wrong on the eval data,
    so no quantization setting answers it, and an accuracy budget measured against it means nothing.
    `verified_on` lists the TensorFlow releases (minor versions) its test passed on.

    Facts other layers act on, kept here so that no code list lives outside the catalog:
    `automatic_fix`, `fix` has a repair registered for the code (a test keeps the two equal);
    `rewrite`, only a change to the model's own code removes it (what to rewrite);
    `repaired_in_data`, a data check's finding that `fix` repairs on the samples;
    `fails_conversion`, a data finding after which the converter raises or dies;
    `ranges_from_samples`, about how the samples set activation ranges (QAT ranges win over it);
    `keeps_float`, about float ops left in the model (an accuracy budget keeps some on purpose);
    `confirms`, the data findings this converter outcome confirms (`confirms_after_crash`: only
    when the process died calibrating or quantizing); `from_vela`, a finding of Vela's compilation
    of one model (a model changed since needs Vela's word again);
    `overlay_cause`, the cause label the Model Explorer overlay puts on the tensor a finding of
    this code names ("clipped range", "crushed merge", ...);
    `certain_failure`, an error finding of this code, made before converting, means the conversion
    fails: quantdoctor announces it at once (an early answer) and `fail_fast` stops there.
    `certain_if` narrows that to findings whose evidence holds a true value under this key (what
    the check measured: an input's key missing, not only extra ones). See `predicts_failure`.
    """

    code: str
    name: str
    severity: str
    title: str
    detects: str
    why: str
    example: str
    fix: str
    fix_code: str | None = None
    precedence: int = 50
    float_model_fails: bool = False
    reducible: bool = False  # a converter bug to isolate: the fix also points to `quantdoctor reduce`
    verified_on: tuple[str, ...] = VERIFIED_TENSORFLOW
    automatic_fix: bool = False
    rewrite: str | None = None
    repaired_in_data: bool = False
    fails_conversion: bool = False
    ranges_from_samples: bool = False
    keeps_float: bool = False
    confirms: tuple[str, ...] = ()
    confirms_after_crash: bool = False
    from_vela: bool = False
    overlay_cause: str | None = None
    certain_failure: bool = False
    certain_if: str | None = None

    @property
    def category(self) -> str:
        """The JSON category, given by the code's range (QD2xx is dtype_mismatch, ...)."""
        return CATEGORIES[self.code[2]]

    def predicts_failure(self, finding: Finding) -> bool:
        """True when `finding` (of this code, made before converting) says for certain that the conversion fails.

        Only an error of a `certain_failure` code whose evidence holds `certain_if` (when set) counts. A
        finding about a list item paired with one of several inputs by position never does: the
        converter pairs list items in its own input order, known only once it has converted.
        """
        if not self.certain_failure or finding.code != self.code or finding.severity != "error":
            return False
        if finding.evidence.get(PAIRED_IN_CONVERTER_ORDER):
            return False
        return self.certain_if is None or bool(finding.evidence.get(self.certain_if))

    def finding(self, message: str, *, location: Location | None = None, evidence: dict[str, Any] | None = None,
                fix: str | None = None, fix_code: str | None = None, severity: str | None = None) -> Finding:
        """A finding of this check, with the specifics of one occurrence."""
        return Finding(
            code=self.code,
            category=self.category,
            severity=severity or self.severity,
            title=self.title,
            message=message,
            fix=Fix(summary=(fix or self.fix) + (REDUCE_HINT if self.reducible else ""),
                    code=fix_code if fix_code is not None else self.fix_code),
            location=location or Location(),
            evidence=evidence or {},
            precedence=self.precedence,
            verified_on=self.verified_on,
        )

    def explain(self) -> str:
        """The documentation `quantdoctor explain CODE` prints."""
        sections = [
            f"{self.code} {self.name} ({self.category}, {self.severity})",
            self.title,
            "",
            "What it detects",
            self.detects,
            "",
            "Why it matters",
            self.why,
            "",
            "Example",
            self.example,
            "",
            "Fix",
            self.fix,
        ]
        if self.fix_code:
            sections += ["", self.fix_code]
        return "\n".join(sections)
