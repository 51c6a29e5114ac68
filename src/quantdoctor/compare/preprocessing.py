"""When the float model already fails on the eval data: say so, and find the preprocessing mistake.

A quantized model is never better than its float reference. When both score at chance on the
labels, or both predict one class for every input, quantization is not the problem (QD510).
The float model is then run again on the eval data with one classic mistake undone at a time
(QD511): the model's own normalisation applied a second time (the graph starts with Rescaling,
Normalization or Sub/Div by constants and the data is already normalised), 0..255 against 0..1,
and swapped channels (RGB/BGR).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from quantdoctor import catalog
from quantdoctor.audit.normalisation import input_normalisation, normalised_already
from quantdoctor.audit.tflite_model import read_tflite
from quantdoctor.compare.float_probe import ProbeRequest, ProbeResponse, predictions
from quantdoctor.errors import UsageError
from quantdoctor.intake.array_files import REAL_KINDS
from quantdoctor.intake.data import CalibrationSet
from quantdoctor.isolation.runner import run_isolated
from quantdoctor.report.model import Finding
from quantdoctor.runtime.measures import reads_as_class_scores, varies

MIN_SAMPLES = 10          # fewer eval samples say nothing about chance
CHANCE_SIGMAS = 3.0       # an accuracy within this many binomial standard deviations of chance is chance
RECOVERY = 0.2            # a variant explains the failure when it adds this much accuracy, above chance
ONE_CLASS_SHARE = 0.8     # without labels: a variant is sound when no class takes more than this share


@dataclass(frozen=True)
class Failure:
    """How the float model fails on the eval data."""

    samples: int
    classes: int
    float_accuracy: float | None
    quant_accuracy: float | None
    chance: float | None
    one_class: int | None  # the class both models predict for every input
    float_class: int | None = None  # the class the float model predicts for every input, if one
    quant_class: int | None = None  # the class the quantized model predicts for every input, if one
    float_range: tuple[float, float] | None = None  # the float output's values over the eval data

    def constant(self) -> bool:
        """Whether the float output is the same for every input (`measures.varies`): its one class is a tie."""
        return self.float_range is not None and not varies(*self.float_range)

    def sound(self, predictions: np.ndarray, labels: np.ndarray | None) -> bool:
        """True when `predictions` are what a working model gives: above chance, or varied without labels."""
        if labels is not None and self.float_accuracy is not None:
            accuracy = float(np.mean(predictions == labels))
            return accuracy > self.chance_bound() and accuracy >= self.float_accuracy + RECOVERY
        share = np.bincount(predictions).max() / len(predictions)
        return share <= ONE_CLASS_SHARE

    def chance_bound(self) -> float:
        chance = self.chance or 1.0 / self.classes
        return chance + CHANCE_SIGMAS * float(np.sqrt(chance * (1 - chance) / self.samples))


def float_failure(outputs: dict[str, np.ndarray], labels: np.ndarray | None) -> Failure | None:
    """How the float and quantized models both fail on the eval data, or None when the float model works."""
    reference, quantized = outputs["float_0"], outputs["quant_0"]
    if reference.ndim < 2 or reference.shape[-1] < 2 or len(reference) < MIN_SAMPLES:
        return None  # not a classifier's scores, or too few samples
    top_float = reference.reshape(-1, reference.shape[-1]).argmax(-1)
    top_quant = quantized.reshape(-1, quantized.shape[-1]).argmax(-1)
    classes = reference.shape[-1]
    float_class, quant_class = (int(top[0]) if len(set(top)) == 1 else None for top in (top_float, top_quant))
    one_class = float_class if float_class is not None and quant_class is not None else None
    if labels is not None:
        truth = np.asarray(labels).reshape(top_float.shape)
        chance = max(1.0 / classes, float(np.bincount(truth.astype(int)).max() / len(truth)))
        failure = Failure(len(truth), classes, float(np.mean(top_float == truth)), float(np.mean(top_quant == truth)),
                          chance, one_class, float_class, quant_class)
        # Too few samples for the labels' class balance (the bound reaches 1.0: even a perfect score
        # could be luck) tell nothing; nor does one class predicted for labels that are all that class.
        decidable = failure.chance_bound() < 1.0
        at_chance = decidable and max(failure.float_accuracy, failure.quant_accuracy) <= failure.chance_bound()
        one_wrong_class = one_class is not None and failure.float_accuracy < 1.0
        return failure if at_chance or one_wrong_class else None
    if one_class is None or not reads_as_class_scores(float(reference.min()), float(reference.max()), classes):
        return None
    return Failure(len(top_float), classes, None, None, None, one_class, float_class, quant_class,
                   (float(reference.min()), float(reference.max())))


def variants(evaluation: CalibrationSet, normalisation: dict[str, tuple[np.ndarray, np.ndarray]]) -> list[dict]:
    """The preprocessing mistakes worth undoing on this data, as variants for the float probe."""
    arrays = [a for sample in evaluation.samples for a in sample.arrays if a.dtype.kind in REAL_KINDS]
    if not arrays:
        return []
    low, high = min(float(a.min()) for a in arrays), max(float(a.max()) for a in arrays)
    found = []
    if len(normalisation) == 1:  # the model normalises its input itself: feed the data back un-normalised
        scale, offset = next(iter(normalisation.values()))
        values = np.concatenate([a.ravel() for a in arrays]).astype(np.float64)
        if normalised_already(values, scale, offset):  # only data centred near 0 with unit spread
            found.append({"cause": "normalised_twice", "scale": (1 / scale).tolist(), "offset": (-offset / scale).tolist()})
    if all(a.ndim >= 3 and a.shape[-1] == 3 for a in arrays):
        found.append({"cause": "channels_swapped", "reverse_channels": True})
    if high > 2.0:
        found.append({"cause": "range_0_255", "scale": 1 / 255.0, "offset": 0.0})
    if -1.5 <= low and high <= 1.5:
        found.append({"cause": "range_0_1", "scale": 255.0, "offset": 0.0})
    return found


def probe(float_model: bytes, evaluation: CalibrationSet, candidates: list[dict], timeout: float) -> list[np.ndarray]:
    """The float model's predicted classes on the eval data under each variant (an isolated process)."""
    workdir = Path(tempfile.mkdtemp(prefix="quantdoctor-probe-"))
    try:
        (workdir / "float.tflite").write_bytes(float_model)
        evaluation.save(workdir / "eval.npz")
        request = ProbeRequest(model=str(workdir / "float.tflite"), data=str(workdir / "eval.npz"), variants=candidates,
                               response=str(workdir / "response.json"), outputs=str(workdir / "outputs.npz"))
        run = run_isolated("quantdoctor.compare.float_probe", request, workdir, timeout, needs_tensorflow=False)
        if run.outcome != "done" or ProbeResponse.from_json(run.response).variants != len(candidates):
            raise UsageError(f"running the float model on variants of the eval data failed ({run.outcome})")
        with np.load(request.outputs) as outputs:
            return [outputs[f"variant_{i}"] for i in range(len(candidates))]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def probed_in_place(float_path: Path, evaluation: CalibrationSet, outputs: dict[str, np.ndarray],
                    labels: np.ndarray | None) -> Probed | None:
    """In a worker that has just compared the models (its `outputs`): when the float model fails on the eval
    data, the variants `float_failure_findings` would probe and the float model's predictions under each,
    run here; None when it works. `float_failure_findings` takes them instead of starting the float probe."""
    if float_failure(outputs, labels) is None:
        return None
    candidates = variants(evaluation, input_normalisation(read_tflite(float_path.read_bytes())))
    found = predictions(str(float_path), evaluation.samples, candidates) if candidates else {}
    return Probed(candidates, [found[f"variant_{i}"] for i in range(len(candidates))])


@dataclass(frozen=True)
class Probed:
    """The float model's predicted classes under each variant of the eval data, as a worker ran them."""

    candidates: list[dict]
    predictions: list[np.ndarray]

    def answers(self, candidates: list[dict]) -> bool:
        """True when these are the predictions for exactly `candidates` (compared as JSON carries them)."""
        return json.loads(json.dumps(candidates)) == json.loads(json.dumps(self.candidates))


def float_failure_findings(outputs: dict[str, np.ndarray], labels: np.ndarray | None, float_model: bytes,
                           evaluation: CalibrationSet, timeout: float,
                           quantization_findings: list[Finding] = (), probed: Probed | None = None) -> list[Finding]:
    """QD510 when the float model already fails on the eval data, and QD511 for the mistake that explains it.

    `quantization_findings` are compare's findings on the outputs (QD504, QD507, QD518, QD519): when some are
    errors, quantization broke the model too, and QD510 says both instead of "quantization is not the problem";
    when only warnings, it says quantization does not explain the failure, though it moves the outputs too.
    `probed` are the variants' predictions a worker already ran (`probed_in_place`): used when they answer
    the variants asked here, else the float probe runs them in its own process.
    """
    failure = float_failure(outputs, labels)
    if failure is None:
        return []
    truth = None if labels is None else np.asarray(labels).reshape(-1)
    normalisation = input_normalisation(read_tflite(float_model))
    candidates = variants(evaluation, normalisation)
    if probed is not None and probed.answers(candidates):
        predictions = probed.predictions
    else:
        predictions = probe(float_model, evaluation, candidates, timeout) if candidates else []
    results = [_result(candidate, found, truth) for candidate, found in zip(candidates, predictions)]
    explaining = next((r for r in sorted(results, key=lambda r: -r["score"]) if failure.sound(r["predictions"], truth)),
                      None)
    findings = [_failure_finding(failure, results, quantization_findings)]
    if explaining is not None:
        findings.append(_cause_finding(explaining, failure, evaluation, normalisation))
    return findings


def _result(candidate: dict, predictions: np.ndarray, truth: np.ndarray | None) -> dict[str, Any]:
    score = float(np.mean(predictions == truth)) if truth is not None else \
        float(1.0 - np.bincount(predictions).max() / len(predictions))
    return {**candidate, "predictions": predictions, "score": round(score, 4)}


def _failure_finding(failure: Failure, results: list[dict[str, Any]],
                     quantization_findings: list[Finding] = ()) -> Finding:
    if failure.float_accuracy is not None:
        how = (f"the float model scores {failure.float_accuracy:.2f} and the quantized model "
               f"{failure.quant_accuracy:.2f} on the labels, where chance is {failure.chance:.2f} "
               f"({failure.classes} classes, {failure.samples} samples)")
    elif failure.constant():
        low, high = failure.float_range
        how = (f"the float model's output is the same for all {failure.samples} inputs (it spans "
               f"[{low:.4g}, {high:.4g}]): its class {failure.float_class} is a tie, not a prediction")
    else:
        how = f"the float model predicts class {failure.float_class} for all {failure.samples} inputs"
    if failure.float_class is not None and failure.float_accuracy is not None:
        how += f"; the float model predicts class {failure.float_class} for every input"
    if failure.constant():
        pass  # no prediction to compare the quantized model's with
    elif failure.quant_class is not None and failure.quant_class == failure.float_class:
        how += ", and so does the quantized model"
    elif failure.quant_class is not None:
        how += f", the quantized model class {failure.quant_class}"
    codes = sorted({f.code for f in quantization_findings if f.severity == "error"})
    warned = sorted({f.code for f in quantization_findings if f.severity != "error"})
    if codes:
        verdict = (f"the float model is already wrong on this data, and quantization breaks its outputs too "
                   f"({', '.join(codes)}): fix the data first, then the quantization")
    elif warned:
        verdict = (f"quantization does not explain that, though it moves the outputs too ({', '.join(warned)}): fix "
                   "the data first, then compare again")
    else:
        verdict = "quantization is not the problem"
    checked = ", ".join(f"{_CAUSES[r['cause']][0]} ({r['score']:.2f})" for r in results) or "none applied to this data"
    evidence = {"float_accuracy": failure.float_accuracy, "quant_accuracy": failure.quant_accuracy,
                "chance": failure.chance, "one_class": failure.one_class, "float_class": failure.float_class,
                "quant_class": failure.quant_class, "samples": failure.samples,
                "variants_checked": {r["cause"]: r["score"] for r in results},
                "quantization_findings": codes, "quantization_warnings": warned}
    # Without labels, one class for every input may be the eval data's own (one class, or a regression
    # output): a warning; so is a float failure next to the quantization errors that rank first. Labels
    # prove the float model wrong: an error.
    # A float output that does not move at all has nothing for quantization to lose, as the outputs' own rule
    # says (`measures.output_state`): information, so compare and diagnose give the same verdict.
    warning = failure.float_accuracy is None or bool(codes)
    severity = "info" if failure.float_accuracy is None and failure.constant() else "warning" if warning else None
    fix = None
    if severity == "info":
        fix = ("Check that the model's trained weights are loaded: an output that does not depend on the input leaves "
               "nothing to measure. Then compare again on data preprocessed as in training.")
    return catalog.get("QD510").finding(
        f"On the eval data {how}: {verdict}. Preprocessing checked: {checked}.",
        evidence=evidence, severity=severity, fix=fix)


_CAUSES = {  # cause -> (what the variant does, what it means, the code to write)
    "normalised_twice": ("un-normalised (as raw data)",
                         "the graph starts with its own normalisation and the eval data is already normalised: it is "
                         "normalised twice",
                         "x = raw_data   # the model normalises its input itself: feed it un-normalised data"),
    "channels_swapped": ("channels reversed",
                         "the eval data's channels are in the other order (RGB vs BGR) than the training data's",
                         "x = x[..., ::-1]   # the channel order of the training data, for calibration and eval alike"),
    "range_0_255": ("divided by 255",
                    "the eval data is in 0..255 and the model was trained on 0..1",
                    "x = x / 255.0   # as in training, for calibration and eval alike"),
    "range_0_1": ("multiplied by 255",
                  "the eval data is in 0..1 and the model takes 0..255 (it may normalise its input itself)",
                  "x = x * 255.0   # as in training, for calibration and eval alike"),
}


def _cause_finding(result: dict[str, Any], failure: Failure, evaluation: CalibrationSet,
                   normalisation: dict[str, tuple[np.ndarray, np.ndarray]]) -> Finding:
    action, meaning, code = _CAUSES[result["cause"]]
    if failure.float_accuracy is not None:
        gain = f"scores {result['score']:.2f} instead of {failure.float_accuracy:.2f}"
    else:
        gain = f"predicts {len(set(result['predictions'].tolist()))} different classes instead of one"
    evidence: dict[str, Any] = {"cause": result["cause"], "score": result["score"]}
    detail = ""
    if result["cause"] == "normalised_twice":
        scale, offset = next(iter(normalisation.values()))
        values = np.concatenate([a.ravel() for s in evaluation.samples for a in s.arrays]).astype(np.float64)
        evidence.update(model_scale=scale.tolist(), model_offset=offset.tolist(),
                        data_mean=round(float(values.mean()), 4), data_std=round(float(values.std()), 4))
        detail = (f" (the model computes x * {_vector(scale)} + {_vector(offset)} first; the data has mean "
                  f"{values.mean():.3g} and standard deviation {values.std():.3g})")
    return catalog.get("QD511").finding(
        f"With the eval data {action}, the float model {gain}: {meaning}{detail}.",
        evidence=evidence, fix_code=code, severity=None if failure.float_accuracy is not None else "warning")


def _vector(values: np.ndarray) -> str:
    return f"{values[0]:.4g}" if values.size == 1 else "[" + ", ".join(f"{v:.4g}" for v in values) + "]"
