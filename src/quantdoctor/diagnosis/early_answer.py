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
from quantdoctor.convert.worker import ConversionResponse
from quantdoctor.errors import UsageError
from quantdoctor.isolation.protocol import read_json
from quantdoctor.report.model import Finding, Report, rank_findings

NOT_ATTEMPTED = "not_attempted"  # the conversion outcome when fail_fast stopped at a prediction


class StopAtPrediction(Exception):
    """Raised while the worker runs, when fail_fast stops at a certain prediction (the worker is killed)."""


@dataclass
class EarlyAnswers:
    """One diagnosis's events (to `on_event`, a callable taking each event as a dict) and the root cause
    it predicted with certainty before converting, if any.

    A prediction names one cause, and only when nothing else known could stop the converter first: every
    error found before converting is certain, and all of them have one code (the converter stops at the
    first failure, in an order of its own). From the samples alone (stage `data`) the graph is not yet
    known; the traced graph (stage `graph`) is checked against that prediction, which is withdrawn when
    the graph holds another error. `fail_fast` stops only at a prediction the traced graph agrees with.
    """

    on_event: Callable[[dict[str, Any]], None] | None = None
    fail_fast: bool = False
    started: float = field(default_factory=time.perf_counter)
    finding: Finding | None = None
    stage: str | None = None
    seconds: float | None = None
    graph_checked: bool = False  # the prediction stands after the traced graph was judged
    withdrawn: str | None = None  # why the traced graph contradicted a prediction from the samples

    def __post_init__(self) -> None:
        if self.on_event is not None and not callable(self.on_event):
            raise UsageError(f"on_event must be a function taking each event (a dict), not {self.on_event!r}")

    def emit(self, event: str, **fields: Any) -> None:
        """Send one event, stamped with the seconds since the diagnosis started."""
        if self.on_event is not None:
            self.on_event({"event": event, "seconds": round(time.perf_counter() - self.started, 3), **fields})

    @property
    def stopping(self) -> bool:
        """True when fail_fast stops this diagnosis before converting: a prediction the traced graph agrees with."""
        return self.fail_fast and self.finding is not None and self.graph_checked and self.withdrawn is None

    def predict(self, findings: list[Finding], stage: str) -> None:
        """Judge every finding known at `stage` ("data": the samples against the declared inputs; "graph": the
        traced model too): announce their one certain cause, or, at the graph stage, withdraw a prediction
        from the samples that they no longer support."""
        cause = certain_cause(findings)
        if stage == "graph" and self.finding is not None:
            if cause is not None and cause.code == self.finding.code:
                self.graph_checked = True
            elif self.withdrawn is None:
                others = sorted({f.code for f in findings if f.severity == "error"} - {self.finding.code})
                self.withdrawn = (f"the traced model and the samples hold other errors ({', '.join(others)}): the "
                                  "converter may stop at one of them first")
                self.emit("predicted", stage=stage, withdrawn=True, because=self.withdrawn,
                          finding=self.finding.to_dict())
            return
        if self.finding is not None or cause is None:
            return
        self.finding, self.stage, self.graph_checked = cause, stage, stage == "graph"
        self.seconds = round(time.perf_counter() - self.started, 3)
        self.emit("predicted", stage=stage, fail_fast=self.fail_fast, finding=self.finding.to_dict())

    @property
    def not_attempted(self) -> str:
        """Why fail_fast did not attempt the conversion (`stopping` was true)."""
        finding = self.finding
        return (f"fail_fast: {finding.code} ({finding.title}) was predicted with certainty from the samples and "
                "the traced model")

    def watch(self, response_path: Path, judge: Callable[[ConversionResponse], list[Finding]]) -> Callable[[], None]:
        """A poll for the worker's run: once its response says it has described and traced the model (stage
        `converting`), the findings `judge` makes of that response are judged (`predict`, stage "graph");
        with fail_fast, a prediction they support stops the worker (StopAtPrediction)."""
        judged = False

        def poll() -> None:
            nonlocal judged
            if judged:
                return
            try:
                response = ConversionResponse.from_json(read_json(response_path))
            except ValueError:  # never half-written (write_json replaces it whole), but do not die on it
                return
            if response.stage not in ("converting", "done") or response.model is None:
                return
            judged = True
            self.predict(judge(response), "graph")
            if self.stopping:
                raise StopAtPrediction()

        return poll

    def record(self, report: Report) -> dict[str, Any] | None:
        """The report's `early_answer`: the predicted finding's code, when and from what it was known, whether
        the traced graph withdrew it, and whether the converter confirmed it (None when it did not convert)."""
        if self.finding is None:
            return None
        return {"code": self.finding.code, "title": self.finding.title, "message": self.finding.message,
                "stage": self.stage, "seconds": self.seconds, "withdrawn": self.withdrawn is not None,
                **({"withdrawn_because": self.withdrawn} if self.withdrawn else {}),
                "confirmed": confirmed(self.finding, report)}


def certain_cause(findings: list[Finding]) -> Finding | None:
    """The one cause `findings` (all those known before converting) say the conversion fails of, or None:
    every error among them is certain (`Check.predicts_failure`) and of one code."""
    errors = [f for f in rank_findings(findings) if f.severity == "error"]
    if not errors or not all(catalog.get(f.code).predicts_failure(f) for f in errors):
        return None
    return errors[0] if len({f.code for f in errors}) == 1 else None


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
