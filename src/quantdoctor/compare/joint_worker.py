"""The joint worker: compare's conversion and its comparison in one process.

Run as `python -m quantdoctor.compare.joint_worker REQUEST.json`. It serves the conversion request
first, exactly as the conversion worker does (the TFLiteConverter's, or AEQ's for a float `.tflite`):
same stages, outcomes and response, so a converter crash or hang is still the converter's finding.
Then, when the conversion produced a model, its float twin and a run check that passed, it runs
compare's lanes on the eval data (the request's `after_conversion`) in the same process: TensorFlow
and the model are loaded once, LiteRT is loaded already (the run check used it), and the float
reference is the very file the conversion wrote. When the float model fails on the eval data, the
float probe's variants run here too.

The comparison's own modules (Numba's compiled statistics) are imported after the conversion, never on a
thread beside it: once, with a thread importing them during the conversion, the run check's XNNPACK
delegate failed to create its runtime (a false QD112); this module imports only the compare worker's
messages before converting. The comparison's results go to files of their own (`ComparisonResponse`); the
conversion's response only gains `after_conversion_seconds`, the time spent after converting, which the
conversion's reported time leaves out. When this step does not run, or dies, the parent compares in the
compare worker as before.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from quantdoctor.compare.worker import CompareResponse
from quantdoctor.convert import aeq_worker, worker
from quantdoctor.convert.aeq_worker import AeqRequest, AeqResponse
from quantdoctor.convert.worker import ConversionRequest, ConversionResponse
from quantdoctor.errors import UsageError
from quantdoctor.intake.data import CalibrationSet
from quantdoctor.isolation.protocol import Message, raised_in, read_message, serve, write_message
from quantdoctor.litert import interpreter_package


@dataclass
class ComparisonPhase(Message):
    """The comparison after converting: the eval samples saved at `data`; where the compare worker's response,
    outputs and progress go (`response`, `outputs`, `progress`); with `probe`, the float probe's predictions
    (`probed`, .npz) when the float model fails, judged on the classes saved at `labels` (.npy) when given."""

    data: str
    response: str
    outputs: str
    progress: str
    probed: str
    probe: bool = False
    labels: str | None = None


@dataclass
class ComparisonResponse(CompareResponse):
    """The compare worker's response, with the comparison's seconds and, when the float probe's variants ran
    here, their descriptions (`Probed.candidates`)."""

    seconds: float | None = None
    probed_variants: list[dict[str, Any]] | None = None


@dataclass
class JointRequest(ConversionRequest):
    """A conversion request (AEQ's, with `aeq_recipe`), and the comparison to run after it."""

    after_conversion: ComparisonPhase = field(kw_only=True)
    aeq_recipe: str | list[dict[str, Any]] | None = None

    def conversion(self) -> ConversionRequest:
        """The conversion request alone, as the conversion worker (or AEQ's) reads it."""
        fields = {key: value for key, value in self.to_json().items() if key not in ("after_conversion", "aeq_recipe")}
        if self.aeq_recipe is None:
            return ConversionRequest.from_json(fields)
        return AeqRequest.from_json({**fields, "aeq_recipe": self.aeq_recipe})


def main(request: JointRequest) -> int:
    """Convert as the conversion worker does, then compare (see the module docstring)."""
    aeq = request.aeq_recipe is not None
    code = aeq_worker.main(request.conversion()) if aeq else worker.main(request.conversion())
    response_path = Path(request.response)
    response = read_message(response_path, AeqResponse if aeq else ConversionResponse)
    if _comparable(response):
        started = time.perf_counter()
        compare(request.after_conversion, Path(request.float_twin_output), Path(request.output))
        response.after_conversion_seconds = round(time.perf_counter() - started, 3)
        write_message(response_path, response)
    return code


def _comparable(response: ConversionResponse) -> bool:
    """True when the conversion made a model that runs (its run check passed) and its float twin."""
    return (response.outcome == "ok" and response.float_twin == "ok"
            and (response.run_check or {}).get("outcome") == "ok")


def compare(phase: ComparisonPhase, float_path: Path, quant_path: Path) -> None:
    """Both models side by side on the eval samples of `phase.data`, fitted to the quantized model:
    the compare worker's response, outputs and progress files at the paths `phase` names, and with
    `phase.probe`, the float probe's predictions (`phase.probed`, .npz) when the float model fails."""
    from quantdoctor.audit.tflite_model import read_tflite
    from quantdoctor.compare.preprocessing import probed_in_place
    from quantdoctor.compare.rows import eval_rows
    from quantdoctor.compare.worker import analyse

    try:
        evaluation = eval_rows(CalibrationSet.load(Path(phase.data)), read_tflite(quant_path.read_bytes()))
    except UsageError:
        return  # eval data that does not fit: the parent says so, as before
    started = time.perf_counter()
    try:
        analysed, outputs = analyse(str(float_path), str(quant_path), evaluation.samples, Path(phase.progress))
    except Exception as exc:
        if not raised_in(exc, interpreter_package()):
            raise
        write_message(Path(phase.response), ComparisonResponse(model_error=f"{type(exc).__name__}: {exc}"))
        return
    np.savez(phase.outputs, **outputs)
    response = ComparisonResponse(**vars(analysed), seconds=round(time.perf_counter() - started, 3))
    if phase.probe:
        labels = np.load(phase.labels) if phase.labels else None
        try:
            probed = probed_in_place(float_path, evaluation, outputs, labels)
        except Exception as exc:  # the parent's float probe runs the variants again, and reports the failure
            if not raised_in(exc, interpreter_package()):
                raise
            probed = None
        if probed is not None:
            np.savez(phase.probed, **{f"variant_{i}": p for i, p in enumerate(probed.predictions)})
            response.probed_variants = probed.candidates
    write_message(Path(phase.response), response)


if __name__ == "__main__":
    sys.exit(serve(main, sys.argv[1], JointRequest))
