"""`fix --max-drop` for a float `.tflite`: the fewest ops kept float (or 16-bit) that meet the budget, as an
ai-edge-quantizer recipe JSON, verified by running AEQ with that file in a fresh process.

The search runs isolated (`budget/aeq_worker.py`); the recipe it returns is written where the user
asked, then `diagnose` quantizes the model again with that very file (its own worker process,
calibrating anew) and the model that comes out must be the one the search scored, byte for byte.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from quantdoctor.budget.aeq_worker import BudgetRequest, BudgetResponse
from quantdoctor.budget.objective import Objective
from quantdoctor.compare.labels import read_labels
from quantdoctor.diagnosis.pipeline import diagnose
from quantdoctor.errors import UsageError
from quantdoctor.intake import float_tflite
from quantdoctor.intake.data import DEFAULT_MAX_SAMPLES
from quantdoctor.intake.output_file import write_output
from quantdoctor.intake.paths import check_outputs
from quantdoctor.intake.user_input import calibration_set, eval_set
from quantdoctor.isolation.runner import DEFAULT_TIMEOUT, run_isolated
from quantdoctor.report.model import Report


@dataclass
class AeqRecipeResult:
    """The budget search on a float .tflite: the recipe written, whether it met the budget, and whether
    AEQ run afresh with the recipe file made the same model (`verified`)."""

    met_budget: bool
    verified: bool
    kept: list[dict[str, Any]]
    entries: list[dict[str, Any]]
    objective: dict[str, Any]
    int8_value: float | None
    chosen_value: float | None
    evaluations: int
    model: bytes | None = field(default=None, repr=False)
    report: Report | None = None  # the verifying diagnosis, run with the written recipe

    def to_dict(self) -> dict[str, Any]:
        """JSON form (the model's bytes left out)."""
        return {"met_budget": self.met_budget, "verified": self.verified, "kept_float": self.kept,
                "recipe": self.entries, "objective": self.objective, "int8_value": self.int8_value,
                "chosen_value": self.chosen_value, "evaluations": self.evaluations,
                "report": self.report.to_dict() if self.report else None}


def fit_aeq_recipe(model: str | Path, data: Any, eval_data: Any, recipe_output: str | Path, *,
                   labels: Any = None, mode: str | None = None, max_drop: float | None = None,
                   min_sqnr: float | None = None, max_samples: int = DEFAULT_MAX_SAMPLES,
                   timeout: float = DEFAULT_TIMEOUT) -> AeqRecipeResult:
    """Search the fewest ops kept out of AEQ's recipe for `mode` that meet the accuracy budget on `eval_data`,
    write the recipe to `recipe_output`, and verify it reproduces the model in a fresh process."""
    recipe_name = float_tflite.aeq_recipe_name(mode)
    if recipe_name not in float_tflite.STATIC_RECIPES:
        raise UsageError(f"an accuracy budget searches the ops a static recipe quantizes: use --mode int8 or int16x8, "
                         f"not {mode}")
    Objective.create(max_drop=max_drop, min_sqnr=min_sqnr, labels=None, metric=None)  # the budget, checked first
    check_outputs(inputs=(model, data, eval_data, labels), outputs={"--recipe": recipe_output})
    if data is None or eval_data is None:
        raise UsageError("an accuracy budget needs calibration data (--data) and eval data (--eval-data)")
    calibration = calibration_set(data, max_samples)
    evaluation = eval_set(eval_data, max_samples)
    label_values = read_labels(labels, evaluation)
    float_tflite.require_aeq(float_tflite.check_tflite_file(Path(model)))
    workdir = Path(tempfile.mkdtemp(prefix="quantdoctor-aeq-"))
    try:
        calibration.save(workdir / "calibration.npz")
        evaluation.save(workdir / "eval.npz")
        labels_path = None
        if label_values is not None:
            labels_path = workdir / "labels.npy"
            np.save(labels_path, label_values.classes)
        request = BudgetRequest(model=str(Path(model).resolve()), recipe=recipe_name,
                                data=str(workdir / "calibration.npz"), eval_data=str(workdir / "eval.npz"),
                                response=str(workdir / "response.json"), output=str(workdir / "model.tflite"),
                                max_drop=max_drop, min_sqnr=min_sqnr, labels=str(labels_path) if labels_path else None)
        run = run_isolated("quantdoctor.budget.aeq_worker", request, workdir, timeout)
        if run.outcome != "done" or run.response.get("stage") != "done":
            raise UsageError(f"the AEQ budget search did not finish ({run.outcome}): {run.stderr[-300:].strip()}")
        response = BudgetResponse.from_json(run.response)
        searched = (workdir / "model.tflite").read_bytes() if (workdir / "model.tflite").is_file() else None
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if response.error is not None:  # AEQ failed calibrating with its own recipe: the diagnosis says why, no recipe is written
        report = diagnose(model, data, mode=mode, max_samples=max_samples, timeout=timeout)
        return AeqRecipeResult(met_budget=False, verified=False, kept=[], entries=[], objective={},
                               int8_value=None, chosen_value=None, evaluations=0, report=report)
    write_output(recipe_output, json.dumps(response.entries, indent=1), "--recipe")
    report = diagnose(model, data, aeq_recipe=recipe_output, max_samples=max_samples, timeout=timeout)
    verified = searched is not None and report.tflite_model == searched
    return AeqRecipeResult(met_budget=response.met_budget, verified=verified, kept=response.kept,
                           entries=response.entries, objective=response.objective, int8_value=response.int8_value,
                           chosen_value=response.chosen_value, evaluations=response.evaluations,
                           model=searched if verified else None, report=report)
