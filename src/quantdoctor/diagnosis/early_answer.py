"""Early answers: a failure the data checks or the preflight predict with certainty, announced before
the converter has run, then confirmed (or not) by the converter.

Which findings are certain is a fact of their catalog entry (`Check.predicts_failure`). A diagnosis
reports its stages as events, in order: `started`, `predicted` (at most once, when a certain finding
is known), `converted`, `audited` (when a model was produced), `done`. With `fail_fast` it stops at a
certain prediction: the conversion is not attempted, and the report says why.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from quantdoctor import catalog
from quantdoctor.errors import UsageError
from quantdoctor.isolation.protocol import read_json
from quantdoctor.report.model import Finding, Report, rank_findings

NOT_ATTEMPTED = "not_attempted"  # the conversion outcome when fail_fast stopped at a prediction
STAGES = ("data", "graph")  # predicted from the samples and the model's declared inputs, or after the worker traced it


class StopAtPrediction(Exception):
    """Raised while the worker runs, when fail_fast stops at a certain prediction (the worker is killed)."""


@dataclass
class EarlyAnswers:
    """One diagnosis's events (to `on_event`, a callable taking each event as a dict) and the root cause
    it predicted with certainty before converting, if any."""

    on_event: Callable[[dict[str, Any]], None] | None = None
    fail_fast: bool = False
    started: float = field(default_factory=time.perf_counter)
    finding: Finding | None = None
    stage: str | None = None
    seconds: float | None = None

    def __post_init__(self) -> None:
        if self.on_event is not None and not callable(self.on_event):
            raise UsageError(f"on_event must be a function taking each event (a dict), not {self.on_event!r}")

    def emit(self, event: str, **fields: Any) -> None:
        """Send one event, stamped with the seconds since the diagnosis started."""
        if self.on_event is not None:
            self.on_event({"event": event, "seconds": round(time.perf_counter() - self.started, 3), **fields})

    @property
    def stopping(self) -> bool:
        """True when fail_fast stops this diagnosis before converting."""
        return self.fail_fast and self.finding is not None

    def predict(self, findings: list[Finding], stage: str) -> None:
        """Announce the first certain finding among `findings` (ranked root cause first) unless one was."""
        if self.finding is not None:
            return
        certain = [f for f in rank_findings(findings) if catalog.get(f.code).predicts_failure(f)]
        if not certain:
            return
        self.finding, self.stage = certain[0], stage
        self.seconds = round(time.perf_counter() - self.started, 3)
        self.emit("predicted", stage=stage, fail_fast=self.fail_fast, finding=self.finding.to_dict())

    def watch(self, response_path: Path, judge: Callable[[dict[str, Any]], list[Finding]]) -> Callable[[], None]:
        """A poll for the worker's run: once its response says it has described and traced the model (stage
        `converting`), the findings `judge` makes of that response are predicted from; with fail_fast, a
        certain one stops the worker (StopAtPrediction)."""
        judged = False

        def poll() -> None:
            nonlocal judged
            if judged or self.finding is not None:
                return
            try:
                response = read_json(response_path)
            except ValueError:  # never half-written (write_json replaces it whole), but do not die on it
                return
            if response.get("stage") not in ("converting", "done") or "model" not in response:
                return
            judged = True
            self.predict(judge(response), "graph")
            if self.stopping:
                raise StopAtPrediction()

        return poll

    def record(self, report: Report) -> dict[str, Any] | None:
        """The report's `early_answer`: the predicted finding's code, when and from what it was known, and
        whether the converter confirmed it (None when the conversion was not attempted)."""
        if self.finding is None:
            return None
        return {"code": self.finding.code, "title": self.finding.title, "message": self.finding.message,
                "stage": self.stage, "seconds": self.seconds, "confirmed": confirmed(self.finding, report)}


def confirmed(predicted: Finding, report: Report) -> bool | None:
    """Whether the converter confirmed the predicted finding: it failed, and its own error (or the crash
    that confirms it) is about that finding's code. None when it did not run."""
    conversion = report.conversion
    if not conversion.get("attempted") or conversion.get("outcome") in (None, "skipped", NOT_ATTEMPTED):
        return None
    if conversion.get("outcome") == "ok":
        return False
    return any(f.code == predicted.code and ("converter_message" in f.evidence or "confirmed_by_converter" in f.evidence)
               for f in report.findings)
