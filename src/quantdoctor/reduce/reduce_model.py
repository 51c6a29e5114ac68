"""`qd.reduce`: the smallest part of a Keras model that fails to convert the same way.

The model converts once as it is (the baseline, which also lists its layer calls); the failure
to keep is its root cause, or the finding of the code asked for. Each candidate sub-model is then
converted in the same isolated worker with the same settings, calibrated on the user's samples run
through the float layers before the cut (see `edits/cut.py`), and compared by signature
(`reduce/signature.py`). The search is `reduce/search.py`.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from quantdoctor.diagnosis.pipeline import diagnose_prepared
from quantdoctor.errors import UsageError
from quantdoctor.intake import model as model_intake
from quantdoctor.intake import options
from quantdoctor.intake.data import CalibrationSet
from quantdoctor.intake.imports import current as current_imports
from quantdoctor.intake.imports import handed_over
from quantdoctor.intake.model import ModelSource
from quantdoctor.intake.paths import check_outputs
from quantdoctor.intake.recipe import Recipe
from quantdoctor.intake.user_input import model_source, recipe_and_data
from quantdoctor.isolation.cleanup import run_interruptible
from quantdoctor.isolation.runner import DEFAULT_TIMEOUT
from quantdoctor.reduce.repro import write_repro
from quantdoctor.reduce.search import smallest_failing
from quantdoctor.reduce.signature import Signature
from quantdoctor.report.model import Finding, Report

DEFAULT_REDUCE_SAMPLES = 100  # the failure rarely needs more; each candidate runs them through its prefix
_CODE = re.compile(r"^QD\d{3}$")


@dataclass
class ReduceResult:
    """What `reduce` found: the failure it kept, the culprit layer calls, and what it cost."""

    signature: Signature
    finding: Finding
    culprits: list[dict[str, Any]]
    layer_count: int
    conversions: int
    seconds: float
    report: Report  # the baseline diagnosis of the whole model
    culprit_report: Report | None = None  # the diagnosis of the culprit sub-model alone
    repro: str | None = None  # the repro script, when asked for
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def bound(self) -> float:
        """The conversions one culprit may cost: 2·log2(N) + 4."""
        import math

        return 2 * math.log2(max(self.layer_count, 1)) + 4

    def to_dict(self) -> dict[str, Any]:
        """JSON form: signature, culprits (name, layer, class, op types, shapes, dtypes), counts."""
        return {"signature": self.signature.to_dict(), "signature_text": self.signature.describe(),
                "finding": self.finding.to_dict(), "culprits": self.culprits, "layer_count": self.layer_count,
                "conversions": self.conversions, "conversion_bound": round(self.bound, 2),
                "seconds": round(self.seconds, 2), "settings": self.settings,
                "culprit_conversion": self.culprit_report.conversion if self.culprit_report else None,
                "repro_written": self.repro is not None}


@run_interruptible
def reduce(model: Any, data: Any = None, *, mode: str | None = None, io: str | None = None,
           select_tf_ops: bool = False, target: str | None = None, code: str | None = None,
           repro: str | Path | None = None, with_weights: bool = False, with_source: bool = False,
           max_samples: int = DEFAULT_REDUCE_SAMPLES, timeout: float = DEFAULT_TIMEOUT,
           memory_limit_mb: int | None = None, trust_model: bool = False,
           imports: list[str] | None = None) -> ReduceResult:
    """Cut `model` to the fewest layer calls that fail to convert the way the whole model does.

    `model` is a `.keras`/`.h5` file, a Keras model (functional, Sequential, nested; Keras 3 or
    tf_keras) or a `from_keras_model` converter (whose settings are used). `data`, `mode`, `io`,
    `select_tf_ops`, `target`, `timeout` and `memory_limit_mb` are as for `diagnose`. `code` picks
    the failure to keep among several (default: the root cause). `repro` is a path for a standalone
    script (TensorFlow and NumPy only) that rebuilds the culprit layers and fails the same way
    (random weights, the real ones with `with_weights`; the source of the user's modules that define
    custom culprit layers in it with `with_source`). `imports` are .py files or modules to import
    before loading the model (its registered custom layers; see `intake/imports.py`): trusted code.
    Returns a `ReduceResult`.
    """
    if imports:
        with handed_over(imports):
            return reduce(model, data, mode=mode, io=io, select_tf_ops=select_tf_ops, target=target, code=code,
                          repro=repro, with_weights=with_weights, with_source=with_source,
                          max_samples=max_samples, timeout=timeout,
                          memory_limit_mb=memory_limit_mb, trust_model=trust_model)
    import time

    started = time.perf_counter()
    max_samples = options.RunOptions.checked(timeout=timeout, memory_limit_mb=memory_limit_mb,
                                             max_samples=max_samples).max_samples
    if code is not None and not (isinstance(code, str) and _CODE.match(code)):
        raise UsageError(f"code must be a finding code such as QD108, not {code!r}")
    if repro is not None:
        check_outputs(inputs=(model, data), outputs={"--repro": repro})
    workdir = Path(tempfile.mkdtemp(prefix="quantdoctor-reduce-"))
    try:
        source, recipe, calibration, library = _intake(model, data, mode, io, select_tf_ops, max_samples, workdir)
        session = _Session(source, recipe, calibration, workdir, library, target=target, timeout=timeout,
                           memory_limit_mb=memory_limit_mb, trust_model=trust_model or library is not None)
        report, graph = session.baseline()
        finding = _kept_finding(report, code)
        signature = Signature.of(finding)
        calls = graph["calls"]
        if not calls:
            raise UsageError("reduce found no layer calls to cut in this model")
        culprit = smallest_failing(len(calls), lambda keep: signature.matches(session.candidate(keep)))
        culprit_report = session.candidate(frozenset(culprit))
        weights = session.weights(frozenset(culprit)) if with_weights else None
        result = ReduceResult(signature=signature, finding=finding,
                              culprits=[_culprit(calls[index], culprit_report) for index in culprit],
                              layer_count=len(calls), conversions=session.conversions,
                              seconds=time.perf_counter() - started, report=report, culprit_report=culprit_report,
                              settings={**recipe.to_dict(), "target": target})
        if repro is not None:
            result.repro = write_repro(Path(repro), graph, culprit, recipe, signature, weights,
                                       imports=current_imports(), with_source=with_source)
        return result
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


class _Session:
    """The conversions of one reduction, each in its own directory, remembered by the calls kept."""

    def __init__(self, source: ModelSource, recipe: Recipe, calibration: CalibrationSet | None, workdir: Path,
                 library: str | None, **settings: Any):
        self.source, self.recipe, self.calibration, self.workdir = source, recipe, calibration, workdir
        self.library = library  # "tf_keras" when the file is quantdoctor's save of a tf_keras model
        self.settings = settings
        self.conversions = 0
        self.reports: dict[frozenset[int], Report] = {}

    def _run(self, cut: dict[str, Any], name: str) -> Report:
        directory = self.workdir / name
        directory.mkdir()
        cut = {key: str(directory / value) if key in ("describe", "data_output", "weights_output") else value
               for key, value in cut.items()}
        if self.library:
            cut["library"] = self.library
        self.conversions += 1
        report, _ = diagnose_prepared(replace(self.source, cut=cut), self.recipe, self.calibration, directory,
                                      cache=False, **self.settings)
        return report

    def baseline(self) -> tuple[Report, dict[str, Any]]:
        """The whole model's diagnosis and its call graph."""
        report = self._run({"describe": "graph.json", "keep": None}, "baseline")
        return report, json.loads((self.workdir / "baseline" / "graph.json").read_text())

    def candidate(self, keep: frozenset[int]) -> Report:
        """The diagnosis of the sub-model of the calls `keep`."""
        if keep not in self.reports:
            name = f"cut-{len(self.reports)}"
            self.reports[keep] = self._run({"keep": sorted(keep), "data_output": "cut.npz",
                                            "weights_output": "weights.npz"}, name)
            self.reports[keep].conversion["cut_directory"] = name
        return self.reports[keep]

    def weights(self, keep: frozenset[int]) -> dict[str, Any]:
        """The real weights of the calls `keep`, as the candidate's worker saved them."""
        import numpy as np

        path = self.workdir / self.reports[keep].conversion["cut_directory"] / "weights.npz"
        with np.load(path, allow_pickle=False) as saved:
            return {key: saved[key] for key in saved.files}


def _intake(model: Any, data: Any, mode: str | None, io: str | None, select_tf_ops: bool, max_samples: int,
            workdir: Path) -> tuple[ModelSource, Recipe, CalibrationSet | None, str | None]:
    """The Keras model to cut as a file the worker loads, the settings, the samples; and for a file
    that is quantdoctor's own save of the user's object (trusted: it is already running here), the
    Keras that saved it ("keras" or "tf_keras"; None for the user's own file)."""
    recipe, calibration = recipe_and_data(model, data, mode, io, select_tf_ops, max_samples)
    keras_model = None
    if model_intake.is_converter(model):
        from quantdoctor import tf_private

        keras_model = tf_private.converter_keras_model(model)
        if keras_model is None:
            raise UsageError("reduce cuts Keras models: build the converter with TFLiteConverter.from_keras_model, "
                             "or pass the .keras file")
    elif model_intake.is_keras_model(model):
        keras_model = model
    if keras_model is not None:
        path = workdir / "model.keras"
        try:
            keras_model.save(path)
        except Exception as exc:  # the user's model cannot be saved (an unserializable custom layer, say)
            raise UsageError(f"reduce cannot save Keras model '{keras_model.name}' to cut it: {exc}") from exc
        library = "tf_keras" if type(keras_model).__module__.startswith("tf_keras") else "keras"
        return model_intake.from_path(path), recipe, calibration, library
    source = model_source(model, workdir)
    if source.loader != "keras_file":
        raise UsageError(f"reduce cuts Keras models (.keras or .h5 files, Keras objects); {source.source} is a "
                         f"{source.format}")
    return source, recipe, calibration, None


def _kept_finding(report: Report, code: str | None) -> Finding:
    """The failure to reduce: the finding of `code`, or the root cause."""
    if code is not None:
        found = next((f for f in report.findings if f.code == code), None)
        if found is None:
            present = ", ".join(dict.fromkeys(f.code for f in report.findings)) or "none"
            raise UsageError(f"the conversion has no {code} finding to reduce (its findings: {present})")
        return found
    if report.root_cause is None:
        raise UsageError("reduce needs a failure: this model converts with no error finding "
                         "(pass --code to reduce a warning)")
    return report.root_cause


def _culprit(call: dict[str, Any], report: Report) -> dict[str, Any]:
    """A culprit call in the user's terms: layer name, class, the op types its conversion has, shapes."""
    ops = (report.preflight or {}).get("ops", [])
    own = [op["op"] for op in ops if call["layer"] in (op.get("layers") or [])]
    return {"name": call["name"], "layer": call["layer"], "class": call["class"],
            "op_types": own or [op["op"] for op in ops],
            "input_shapes": call["input_shapes"], "input_dtypes": call["input_dtypes"],
            "output_shapes": call["output_shapes"], "dtype_policy": call["dtype_policy"]}
