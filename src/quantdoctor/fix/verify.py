"""The checks a fixed model passes before fix returns it, and the isolated LiteRT run among them.

A model is verified when the real converter produced it in the isolated worker, its report has no
error finding (the audit passes for the target: fully integer where the target needs it), LiteRT
runs it on calibration samples in a child process (`python -m quantdoctor.fix.verify`), and, with
eval data, compare finds no QD5xx error.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from quantdoctor.intake.data import CalibrationSet
from quantdoctor.isolation.protocol import Message, read_message, write_message
from quantdoctor.isolation.runner import run_isolated
from quantdoctor.report.model import Report

RUN_SAMPLES = 2  # calibration samples LiteRT runs the model on
_RUN_TIMEOUT = 300.0


@dataclass
class RunRequest(Message):
    """Run the .tflite at `model` on the samples saved at `data` (a CalibrationSet file)."""

    model: str
    data: str
    response: str


@dataclass
class RunResponse(Message):
    """How LiteRT ran it: `outcome` "ok" or "error" (with `error`); the rows run, whether they were zeros
    (no samples), and each output's name, shape and finiteness."""

    outcome: str
    error: str | None = None
    samples: int = 0
    zeros: bool = False
    outputs: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Verification:
    """Each check's result: True passed, False failed, None not run; `details` says why."""

    converted: bool = False
    audit: bool | None = None
    runs: bool | None = None
    compared: bool | None = None
    details: list[str] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        """True when every check that applies passed (compare applies only with eval data)."""
        return self.converted and bool(self.audit) and bool(self.runs) and self.compared is not False

    def to_dict(self) -> dict[str, Any]:
        return {"verified": self.verified, "converted": self.converted, "audit": self.audit, "runs": self.runs,
                "compared": self.compared, "details": self.details}


def check_report(report: Report) -> Verification:
    """The converter and audit checks, read from a report."""
    verification = Verification(converted=report.tflite_model is not None)
    if not verification.converted:
        verification.details.append(f"the converter produced no model (conversion {report.conversion['outcome']})")
        return verification
    errors = [f for f in report.findings if f.severity == "error"]
    verification.audit = not errors
    if errors:
        verification.details.append("errors remain: " + ", ".join(f"{f.code} {f.title}" for f in errors))
    return verification


def check_runs(tflite_model: bytes, calibration: CalibrationSet | None, flex_ops: list[str], workdir: Path,
               verification: Verification) -> None:
    """Run the model with LiteRT on the first calibration samples, in a child process."""
    if flex_ops:
        verification.runs = False
        verification.details.append(
            f"LiteRT cannot run it here: {', '.join(flex_ops)} needs the Flex delegate, which the LiteRT Python "
            "package does not carry; run it where your app links the Flex delegate")
        return
    (workdir / "verify.tflite").write_bytes(tflite_model)
    samples = calibration.samples[:RUN_SAMPLES] if calibration and calibration.samples else []
    CalibrationSet(samples, source="verify").save(workdir / "verify.npz")
    request = RunRequest(model=str(workdir / "verify.tflite"), data=str(workdir / "verify.npz"),
                         response=str(workdir / "verify_response.json"))
    run = run_isolated("quantdoctor.fix.verify", request, workdir, _RUN_TIMEOUT)
    response = RunResponse.from_json(run.response) if run.response else None
    if run.outcome != "done" or response is None or response.outcome != "ok":
        how = (response and response.error) or (f"the LiteRT process was killed by {run.signal_name}"
                                                if run.signal_name else f"the LiteRT process ended: {run.outcome}")
        verification.runs = False
        verification.details.append(f"LiteRT failed to run it: {how}")
        return
    bad = [o["name"] for o in response.outputs if not o["finite"]]
    verification.runs = not bad
    what = "zero-filled inputs (no calibration data)" if response.zeros else f"{response.samples} row(s)"
    verification.details.append(f"LiteRT ran it on {what}" + (
        f", but output(s) {', '.join(bad)} hold NaN or Inf" if bad else ""))


def main(request_path: str) -> int:
    """Child process: run the model on the samples, write each output's shape and finiteness."""
    request = read_message(Path(request_path), RunRequest)
    try:
        response = RunResponse(outcome="ok", **_run(request.model, CalibrationSet.load(Path(request.data)).samples))
    except Exception as exc:  # the model failing to run is the finding, not a crash of quantdoctor
        response = RunResponse(outcome="error", error=f"{type(exc).__name__}: {exc}".strip())
    write_message(Path(request.response), response)
    return 0


def _run(model_path: str, samples: list[Any]) -> dict[str, Any]:
    """Every signature on its calibration rows, fitted as the run check fits them (`check_rows`:
    by name or in order, never filled in; zeros only without samples and with fixed sizes)."""
    from quantdoctor.litert import new_interpreter
    from quantdoctor.runtime.check import check_rows
    from quantdoctor.runtime.feed import arrays_for, as_input, detailed_input

    interpreter = new_interpreter(model_path)
    signatures = list(interpreter.get_signature_list())
    if not signatures:
        raise ValueError("the model has no signature to run")
    outputs: dict[str, np.ndarray] = {}
    count, origins = 0, set()
    for key in signatures:
        runner = interpreter.get_signature_runner(key)
        inputs = [detailed_input(name, detail) for name, detail in runner.get_input_details().items()]
        mine = [s for s in samples if s.kind != "signature" or s.signature_key == key]
        rows, origin = check_rows(inputs, mine)
        origins.add(origin)
        for row in rows:
            results = runner(**{i.name: as_input(i, a) for i, a in zip(inputs, arrays_for(inputs, row))})
            outputs.update({f"{key}/{name}": value for name, value in results.items()})
            count += 1
    if not count:
        raise ValueError("no calibration sample fits the model, and its free input sizes rule out zeros")
    return {"samples": count, "zeros": origins == {"zeros"},
            "outputs": [{"name": name, "shape": list(value.shape),
                         "finite": bool(np.isfinite(value).all()) if value.dtype.kind == "f" else True}
                        for name, value in outputs.items()]}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
