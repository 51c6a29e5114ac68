"""The user's model and data as given to `diagnose`, `fix`, `compare`, `budget` and `reduce`: a model
source, the converter settings and the calibration (or eval) set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from quantdoctor import tf_private
from quantdoctor.errors import UsageError
from quantdoctor.intake import data as data_intake
from quantdoctor.intake import model as model_intake
from quantdoctor.intake.data import DEFAULT_MAX_SAMPLES, CalibrationSet
from quantdoctor.intake.recipe import Recipe


def recipe_and_data(model: Any, data: Any, mode: str | None, io: str | None, select_tf_ops: bool,
                    max_samples: int) -> tuple[Recipe, CalibrationSet | None]:
    """The settings (a converter's own, or those of `mode`, `io`, `select_tf_ops`) and the calibration data."""
    if model_intake.is_converter(model):
        if mode or io or select_tf_ops:
            raise UsageError("mode, io and select_tf_ops come from the converter itself: set them on the converter")
        recipe = Recipe.from_converter(model)
        data = data if data is not None else tf_private.representative_dataset_function(model.representative_dataset)
        recipe.calibrate = data is not None  # data given here acts as the converter's representative_dataset
    else:
        recipe = Recipe.for_mode(mode or "int8", io or "float", select_tf_ops)
    return recipe, calibration_set(data, max_samples)


def model_source(model: Any, workdir: Path) -> model_intake.ModelSource:
    """Models given without a converter convert as the matching `TFLiteConverter.from_*` would:
    concrete functions as `from_concrete_functions(functions)` (no trackable object: frozen)."""
    if isinstance(model, (str, Path)):
        return model_intake.from_path(model)
    if isinstance(model, (list, tuple)) and model and all(_is_concrete_function(f) for f in model):
        return model_intake.from_concrete_functions(list(model), None, workdir)
    if _is_concrete_function(model):
        return model_intake.from_concrete_functions([model], None, workdir)
    if model_intake.is_keras_model(model):
        return model_intake.from_keras_model(model, workdir)
    raise UsageError(f"cannot diagnose a {type(model).__name__}: pass a model path, a Keras model, "
                     "concrete functions or a tf.lite.TFLiteConverter")


def _is_concrete_function(value: Any) -> bool:
    return hasattr(value, "graph") and hasattr(value, "structured_input_signature")


def eval_set(data: Any, max_samples: int = DEFAULT_MAX_SAMPLES) -> CalibrationSet | None:
    """Eval data in any accepted form (see `calibration_set`), refused in one line when nothing can be
    measured on it (`check_eval_values`); None stays None."""
    evaluation = calibration_set(data, max_samples, "eval data")
    check_eval_values(evaluation)
    return evaluation


def calibration_set(data: Any, max_samples: int = DEFAULT_MAX_SAMPLES,
                    what: str = "calibration data") -> CalibrationSet | None:
    """Calibration (or eval) data in any accepted form, as a CalibrationSet; None stays None.

    `what` names the data in error messages ("eval data", ...).
    """
    if data is None or isinstance(data, CalibrationSet):
        return data
    if isinstance(data, (str, Path)):
        return data_intake.from_file(data, max_samples, what)
    if isinstance(data, np.ndarray):
        return data_intake.from_arrays({"arr_0": data}, max_samples=max_samples)
    if isinstance(data, dict) and all(isinstance(v, np.ndarray) for v in data.values()):
        return data_intake.from_arrays(data, max_samples=max_samples)
    if callable(data) or hasattr(data, "__iter__"):
        return data_intake.from_generator(data, max_samples)
    raise UsageError(f"unsupported calibration data {type(data).__name__}: pass a .npz/.npy path or a "
                     "representative_dataset function")


def check_eval_values(evaluation: CalibrationSet | None) -> None:
    """A UsageError, before any work, for eval data nothing can be measured on: no sample at all, a
    sample that is not numeric arrays, or values that are NaN or infinite (no SQNR, histogram or
    accuracy holds them). `diagnose`, `fix` and `compare` refuse it in these same words."""
    if evaluation is None:
        return
    if not evaluation.samples:
        raise UsageError("eval data holds no sample: give at least one")
    for number, sample in enumerate(evaluation.samples):
        if sample.not_arrays or sample.kind == "other":
            what = next(iter(sample.not_arrays.values()), sample.note or "something else")
            raise UsageError(f"eval sample #{number} is not numeric arrays ({what}): give one array per input")
        for name, array in sample.values.items():
            if array.dtype.kind in "fc" and not np.isfinite(array).all():
                bad = "NaN" if np.isnan(array).any() else "an infinite value"
                raise UsageError(f"eval sample #{number} for input {name!r} holds {bad}: nothing can be measured "
                                 "on it; drop or repair that sample")
