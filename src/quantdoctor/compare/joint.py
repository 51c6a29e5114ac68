"""compare's side of the joint worker (`compare.joint_worker`): what to ask it, and what it measured.

The conversion's worker compares the models right after converting them, in the same process. Its
results are taken only when they are whole: a comparison it did not run (a cached conversion, eval
data that does not fit, a run check that failed) or did not finish (it died, or the time ran out)
leaves compare to run the compare worker as before.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from quantdoctor.compare.joint_worker import ComparisonPhase, ComparisonResponse, JointRequest
from quantdoctor.compare.labels import Labels
from quantdoctor.compare.preprocessing import Probed
from quantdoctor.compare.worker import CompareResponse
from quantdoctor.convert.worker import ConversionRequest
from quantdoctor.diagnosis.classify_failure import first_line
from quantdoctor.diagnosis.pipeline import AfterConversion
from quantdoctor.errors import UsageError
from quantdoctor.intake.data import CalibrationSet
from quantdoctor.isolation.protocol import read_json

MODULE = "quantdoctor.compare.joint_worker"


@dataclass
class Measured:
    """What a comparison measured: the compare worker's response, the models' outputs, its seconds, and
    the float probe's predictions when it ran them too (None: not run)."""

    response: CompareResponse
    outputs: dict[str, np.ndarray]
    seconds: float
    probed: Probed | None = None


class JointComparison:
    """A private directory holding the eval data for the joint worker, and what it leaves there."""

    def __init__(self, evaluation: CalibrationSet, truth: Labels | None,
                 progress: Callable[[int, int], None] | None) -> None:
        """Write the eval samples (and the labels' classes, which decide whether the float probe runs)."""
        self.directory = Path(tempfile.mkdtemp(prefix="quantdoctor-joint-"))
        self._progress = progress
        evaluation.save(self.directory / "eval.npz")
        self.request = ComparisonPhase(**{name: str(self.directory / file) for name, file in
                                          (("data", "eval.npz"), ("response", "compare.json"),
                                           ("outputs", "outputs.npz"), ("progress", "progress.json"),
                                           ("probed", "probed.npz"))})
        if truth is None or truth.classes is not None:  # compare probes only then (see `with_comparison`)
            self.request.probe = True
            if truth is not None:
                self.request.labels = str(self.directory / "labels.npy")
                np.save(self.request.labels, truth.classes)

    @property
    def after_conversion(self) -> AfterConversion:
        """The comparison as work for the conversion's worker."""
        return AfterConversion(MODULE, self.joined, self.poll)

    def joined(self, conversion: ConversionRequest) -> JointRequest:
        """The joint worker's request: `conversion` (the conversion worker's or AEQ's), then this comparison."""
        return JointRequest.from_json({**conversion.to_json(), "after_conversion": self.request.to_json()})

    def poll(self) -> None:
        """Pass the comparison's progress on, once it runs."""
        state = read_json(Path(self.request.progress))
        if self._progress and state:
            self._progress(state["done"], state["total"])

    def measured(self, rows: int) -> Measured | None:
        """What the worker measured on the `rows` eval rows compare runs, or None when it did not compare them
        all; a UsageError when LiteRT refused to run the models on them (as the compare worker says it)."""
        response = ComparisonResponse.from_json(read_json(Path(self.request.response)))
        if response.model_error is not None:
            raise UsageError(f"running the models on the eval data failed: {first_line(response.model_error)}")
        if response.samples != rows or not Path(self.request.outputs).is_file():
            return None
        self.poll()
        with np.load(self.request.outputs) as outputs:
            arrays = {key: outputs[key] for key in outputs.files}
        probed = None
        if response.probed_variants is not None:
            with np.load(self.request.probed) as found:
                probed = Probed(response.probed_variants,
                                [found[f"variant_{i}"] for i in range(len(response.probed_variants))])
        return Measured(response, arrays, response.seconds, probed)

    def close(self) -> None:
        """Remove the directory."""
        shutil.rmtree(self.directory, ignore_errors=True)
