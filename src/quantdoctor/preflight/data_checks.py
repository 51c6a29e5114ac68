"""Checks on the calibration samples against the model's inputs (NumPy only, no TensorFlow).

They run on exactly the samples the converter is fed, and do not wait for the converter to
complain: NaN samples, for one, are accepted by it without a word.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from quantdoctor import catalog
from quantdoctor.catalog.check import PAIRED_IN_CONVERTER_ORDER
from quantdoctor.intake.array_files import REAL_KINDS
from quantdoctor.intake.data import CalibrationSet, Sample
from quantdoctor.intake.model import is_valid_tf_name
from quantdoctor.intake.recipe import Recipe
from quantdoctor.report.model import Finding, Location

MIN_SAMPLES = 100
MAX_CLIPPED = 0.01
RANGE_RATIO = 50.0
LIST_ORDER_HINT = " List items are paired with inputs in the converter's order: yield a dict by input name."
NOISE_CORRELATION = 0.1
_MAX_PAIRED_INPUTS = 6  # list items matched to inputs by trying every order
_NOISE_SAMPLES = 32


@dataclass(frozen=True)
class InputSpec:
    """A model input as the signature declares it; `None` dimensions are free."""

    name: str
    shape: tuple[int | None, ...] | None
    dtype: str

    @classmethod
    def from_dict(cls, spec: dict[str, Any]) -> InputSpec:
        shape = spec.get("shape")
        return cls(spec["name"], tuple(shape) if shape is not None else None, spec["dtype"])

    def fixes_another_size(self, shape: tuple[int, ...]) -> bool:
        """True when `shape` has the input's rank and another size in a dimension the signature fixes: the
        calibrator cannot resize the input to it. (A sample of another rank may be resized to.)"""
        return self.shape is not None and len(shape) == len(self.shape) \
            and any(d is not None and d != s for d, s in zip(self.shape, shape))

    def accepts_shape(self, shape: tuple[int, ...]) -> bool:
        """True when every dimension the signature fixes has the same size in `shape`."""
        if self.shape is None:
            return True
        return len(shape) == len(self.shape) and all(d is None or d == s for d, s in zip(self.shape, shape))


def check_signature_coverage(calibration: CalibrationSet | None, signature_keys: list[str],
                             float_signatures: list[str] | None = None) -> list[Finding]:
    """Converted signatures that no sample is meant for (QD315): they stay float, or the samples are refused.

    `signature_keys` are the signatures the conversion has (the produced model's, or the
    converter's own choice before it ran); `float_signatures`, when a model was produced, those of
    them that compute in float there: a signature without samples that came out integer is no finding.
    """
    if calibration is None or not calibration.samples or len(signature_keys) < 2:
        return []
    named = {sample.signature_key for sample in calibration.samples if sample.kind == "signature"}
    left_out = [key for key in signature_keys if key not in named]
    staying_float = left_out if float_signatures is None else [key for key in left_out if key in float_signatures]
    if not staying_float:
        return []
    evidence: dict[str, Any] = {"signatures": signature_keys, "without_samples": left_out}
    if float_signatures is not None:
        evidence["float_signatures"] = float_signatures
    if named:
        message = (f"The samples name signature(s) {_quoted(sorted(named))}; {_quoted(staying_float)} get none and "
                   "stay float.")
    elif any(sample.kind == "dict" for sample in calibration.samples):
        message = (f"The model converts {len(signature_keys)} signatures ({_quoted(signature_keys)}) and the samples "
                   "are dicts that name none: the converter refuses them (`signature_key is None`).")
    elif float_signatures is not None:
        message = (f"The model has {len(signature_keys)} signatures ({_quoted(signature_keys)}) and the samples name "
                   f"none: the calibrator fed them all to one, and {_quoted(staying_float)} stayed float.")
    else:
        message = (f"The model converts {len(signature_keys)} signatures ({_quoted(signature_keys)}) and the samples "
                   f"name none: the calibrator feeds them all to one, and the other {len(signature_keys) - 1} stay "
                   "float.")
    return [catalog.get("QD315").finding(message, evidence=evidence)]


def check_list_order(calibration: CalibrationSet | None, inputs: list[InputSpec], converter_order: list[str] | None,
                     declared_order: list[str] | None) -> list[Finding]:
    """List samples for several inputs of one shape (QD313): a list item that reaches the wrong input
    fails nowhere, since every input accepts it. The calibrator pairs items with inputs in the
    converter's order (`converter_order`, read from the produced model; None before it exists),
    which the model's own order (`declared_order`, None when it declares none) need not be."""
    shapes = {spec.shape for spec in inputs}
    if (calibration is None or len(inputs) < 2 or len(shapes) != 1
            or not any(sample.kind == "list" for sample in calibration.samples)):
        return []
    shape = _shape(next(iter(shapes))) if next(iter(shapes)) is not None else "of unknown shape"
    evidence = {"input_names": [spec.name for spec in inputs], "converter_order": converter_order,
                "declared_order": declared_order}
    lead = f"Samples are lists for {len(inputs)} inputs that all take {shape}"
    if converter_order and declared_order and converter_order != declared_order:
        swapped = next(i for i, (a, b) in enumerate(zip(converter_order, declared_order)) if a != b)
        return [catalog.get("QD313").finding(
            f"{lead}. The converter paired list items with its inputs in the order {_quoted(converter_order)}, "
            f"the model declares {_quoted(declared_order)}: lists in the model's order calibrated input "
            f"'{converter_order[swapped]}' with the arrays meant for '{declared_order[swapped]}', and nothing failed.",
            location=Location(input=converter_order[swapped]), evidence=evidence)]
    if converter_order:
        order = f"in the converter's order: {_quoted(converter_order)}"
    else:
        order = ("in the converter's order, known once it has produced a model"
                 + (f" (the model declares {_quoted(declared_order)})" if declared_order else ""))
    return [catalog.get("QD313").finding(
        f"{lead}: list items are paired with inputs {order}. Nothing checks that pairing: arrays in "
        "another order calibrate the wrong inputs without an error.", evidence=evidence, severity="warning")]


def _quoted(names: list[str]) -> str:
    return ", ".join(f"'{name}'" for name in names)


def check_input_names(inputs: list[InputSpec]) -> list[Finding]:
    """Inputs whose names the converter cannot export to a signature (QD405)."""
    return [catalog.get("QD405").finding(
        f"Input '{spec.name}' is not a valid TensorFlow name: the converter's export of the model fails on it.",
        location=Location(input=spec.name), evidence={"name": spec.name})
        for spec in inputs if not is_valid_tf_name(spec.name)]


def check_input_shapes(inputs: list[InputSpec], target: str | None) -> list[Finding]:
    """Inputs whose non-batch dimensions (or rank) the signature leaves unknown."""
    findings = []
    for spec in inputs:
        if spec.shape is None or any(d is None for d in spec.shape[1:]):
            findings.append(catalog.get("QD404").finding(
                f"Input '{spec.name}' has shape {_shape(spec.shape) if spec.shape else 'of unknown rank'}.",
                location=Location(input=spec.name), evidence={"shape": list(spec.shape or [])},
                severity="warning" if target in ("int8-accelerator", "microcontroller") else None))
    return findings


def data_is_used(recipe: Recipe) -> bool:
    """True when the converter reads calibration data under these settings."""
    return recipe.calibrate and recipe.reads_calibration_data


def check_unused_data(calibration: CalibrationSet | None, recipe: Recipe, mode_requested: bool) -> list[Finding]:
    """QD908: data given for settings that never read it. A mode the user asked for by name (`--mode
    dynamic --data ...`) makes it a note; a converter set up with a dataset it then ignores, a warning."""
    if calibration is None or data_is_used(recipe):
        return []
    if "float16" in recipe.supported_types:
        why = "float16 quantization converts the weights to float16 and never calibrates"
    elif recipe.optimizations:
        why = "dynamic range quantization quantizes the weights only and never calibrates"
    else:
        why = ("no optimization is enabled (converter.optimizations is empty), so the converter does not "
               "quantize and the model stays float")
    return [catalog.get("QD908").finding(
        f"{calibration.source} is not used: {why}.", evidence={"mode": recipe.mode, "samples": len(calibration)},
        severity="info" if mode_requested else None)]


def check_calibration(calibration: CalibrationSet | None, inputs: list[InputSpec], recipe: Recipe) -> list[Finding]:
    """All calibration findings for these samples, model inputs and settings."""
    if calibration is None:
        return _missing_dataset(recipe)
    findings: list[Finding] = []
    if calibration.generator_error:
        findings.append(catalog.get("QD312").finding(
            f"{calibration.source} raised {calibration.generator_error}",
            evidence={"error": calibration.generator_error, "samples_before_error": len(calibration)}))
    if not calibration.samples:
        if not calibration.generator_error:
            findings.append(catalog.get("QD302").finding(
                f"{calibration.source} yielded no samples.", evidence={"samples": 0}))
        return findings
    findings += _check_packaging(calibration, inputs)
    findings += _check_values(calibration, inputs)
    return findings


QAT_INT8_ONLY_FIX = ("Drop TFLITE_BUILTINS_INT8: the QAT ranges are used and inference_input_type/"
                     "inference_output_type still apply. Or keep it and pass any small dataset: a few samples "
                     "satisfy the check, and their values do not replace the trained ranges.")
QAT_INT8_ONLY_CODE = ("converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]   # QAT ranges used\n"
                      "# or keep TFLITE_BUILTINS_INT8 and give any few samples:\n"
                      "converter.representative_dataset = lambda: ([x[None].astype(np.float32)] for x in samples[:8])")


def _missing_dataset(recipe: Recipe) -> list[Finding]:
    if not recipe.needs_calibration:
        return []
    evidence = {"mode": recipe.mode, "qat_model": recipe.qat_model}
    if recipe.qat_model and recipe.optimizing:  # only the INT8-only check is left to need a dataset
        evidence["converter_requires_dataset"] = recipe.int8_ops_requested
        return [catalog.get("QD301").finding(
            "The model is quantization-aware trained: its FakeQuant ops carry the ranges, so it needs no "
            "calibration data. The converter refuses anyway, because its check for TFLITE_BUILTINS_INT8 runs before "
            "it reads the model's graph and does not see the QAT ranges.",
            evidence=evidence, fix=QAT_INT8_ONLY_FIX, fix_code=QAT_INT8_ONLY_CODE)]
    if recipe.int8_only_ops or recipe.calibrate or recipe.mode == "int16x8":
        return [catalog.get("QD301").finding(
            f"The settings ask for integer activations (mode {recipe.mode}) but no representative dataset "
            "was given.", evidence={**evidence, "converter_requires_dataset": recipe.int8_ops_requested})]
    io = {"inference_input_type": recipe.inference_input_type, "inference_output_type": recipe.inference_output_type}
    if recipe.qat_model:  # not optimized: the QAT ranges need nothing but optimizations
        return [catalog.get("QD205").finding(
            f"inference_input_type={recipe.inference_input_type} and inference_output_type="
            f"{recipe.inference_output_type} need a fully integer model. The model is quantization-aware trained, "
            "so its ranges are there, but converter.optimizations is empty: nothing is quantized.",
            evidence={**io, "qat_model": True},
            fix="Enable optimizations; a QAT model needs no representative dataset for integer I/O.",
            fix_code="converter.optimizations = [tf.lite.Optimize.DEFAULT]")]
    return [catalog.get("QD205").finding(
        f"inference_input_type={recipe.inference_input_type} and inference_output_type="
        f"{recipe.inference_output_type} need a fully integer model, which needs a representative dataset.",
        evidence=io)]


def _check_packaging(calibration: CalibrationSet, inputs: list[InputSpec]) -> list[Finding]:
    """Per sample: how it is packaged, how many arrays, which keys, which dtypes and shapes.

    The same problem in many samples is one finding, counting the samples (`_with_sample_count`).
    """
    problems: dict[tuple, tuple[Finding, list[int]]] = {}
    for index, sample in enumerate(calibration.samples):
        for key, finding in _sample_problems(index, sample, inputs):
            problems.setdefault(key, (finding, []))[1].append(index)
    return [_with_sample_count(finding, indices) for finding, indices in problems.values()]


def _sample_problems(index: int, sample: Sample, inputs: list[InputSpec]) -> list[tuple[tuple, Finding]]:
    """(key, finding) for what is wrong with one sample; equal keys are the same problem."""
    names = [spec.name for spec in inputs]
    if sample.holds_non_arrays:
        found = _non_array_problems(index, sample, inputs)
        return found + ([(("QD303",), _bare_sample(sample, index))] if sample.kind == "tuple" else [])
    if sample.kind in ("array", "tuple"):
        return [(("QD303",), _bare_sample(sample, index))]
    found = []
    if sample.kind == "list" and len({spec.shape for spec in inputs}) > 1:
        found += _list_pairing_problems(index, sample, inputs)
    if sample.kind == "list" and inputs and len(sample.values) != len(inputs):
        return found + [(("QD304", len(sample.values)), catalog.get("QD304").finding(
            f"Sample #{index} holds {len(sample.values)} arrays; the model has {len(inputs)} input(s): "
            f"{', '.join(names)}.", evidence={"arrays_in_sample": len(sample.values), "model_inputs": names}))]
    if sample.kind in ("dict", "signature") and inputs and set(sample.values) != set(names):
        keys = sorted(sample.values)
        missing = sorted(set(names) - set(keys))
        return found + [(("QD305", tuple(keys)), catalog.get("QD305").finding(
            f"Sample #{index} has keys {keys}; the model's inputs are named {names}.",
            location=Location(input=", ".join(missing) or None),
            evidence={"sample_keys": keys, "input_names": names, "missing_inputs": missing}))]
    several_in_list = sample.kind == "list" and len(inputs) > 1
    for spec, array in _pair(sample, inputs):
        found += _array_problems(index, spec, array, several_in_list)
    return found


def _list_pairing_problems(index: int, sample: Sample, inputs: list[InputSpec]) -> list[tuple[tuple, Finding]]:
    """QD313 for a list sample for inputs of different shapes, judged by its items' shapes: a warning.

    The calibrator pairs list items with inputs by position, in the converter's order, which is
    neither the model's nor known before the converter has run. When the items' shapes fit one
    pairing only, they show where each belongs, and a converter whose order differs fails on them
    (its error then confirms this finding, an error from there on). When several pairings fit, the
    shapes cannot tell. When none fits, the shapes are wrong, which QD306 says.
    """
    arrays = sample.arrays
    if len(arrays) != len(inputs):
        return []  # QD304
    names = [spec.name for spec in inputs]
    fitting = _fitting_orders(arrays, inputs)
    if not fitting:
        return []
    shapes = ", ".join(_shape(a.shape) for a in arrays)
    evidence = {"input_names": names, "sample_shapes": [list(a.shape) for a in arrays]}
    if len(fitting) > 1:
        return [(("QD313", "ambiguous"), catalog.get("QD313").finding(
            f"Sample #{index} is a list of arrays shaped {shapes} for inputs {_quoted(names)}: the shapes fit more "
            "than one pairing of items with inputs, so nothing shows which input each item reaches.",
            evidence=evidence, severity="warning"))]
    belongs = [names[target] for target in fitting[0]]
    return [(("QD313", "by shape"), catalog.get("QD313").finding(
        f"Sample #{index} is a list of arrays shaped {shapes}: by shape they belong to inputs {_quoted(belongs)}, "
        "in this order. The calibrator pairs list items with inputs in the converter's order, which is not the "
        "model's own: a converter with another order fails on these samples, a dict by input name never does.",
        location=Location(input=belongs[0]), evidence={**evidence, "items_belong_to": belongs}, severity="warning"))]


def _fitting_orders(arrays: list[np.ndarray], inputs: list[InputSpec]) -> list[tuple[int, ...]]:
    """Every assignment of the arrays to distinct inputs that their shapes fit (order[i]: array i's input);
    past _MAX_PAIRED_INPUTS inputs only the positional one is tried."""
    orders = (itertools.permutations(range(len(inputs))) if len(inputs) <= _MAX_PAIRED_INPUTS
              else [tuple(range(len(inputs)))])
    return [order for order in orders
            if all(inputs[target].accepts_shape(array.shape) for array, target in zip(arrays, order))]


# What to do instead, by the kind of value yielded (`_value_kind` of its description).
_NON_ARRAY_FIXES = {
    "function": "Call the function and yield what it returns, an array; not the function object itself.",
    "None": "Something that makes the samples returned None (a load that failed quietly?): yield arrays only, "
            "and repair or skip the samples that come back None.",
    "text": "Load what the text names (an image, a file) and yield its array, not the text.",
    "bytes": "Decode the bytes into an array of numbers (np.frombuffer, an image decoder) and yield that.",
    "class": "Yield arrays, not a class: call what makes the sample and yield its array.",
    "generator": "Yield the generator's arrays (`yield from` it), not the generator object.",
    "list": "The items have different lengths, or are not numbers: pad or crop them to the input's shape and "
            "yield np.asarray(items, np.float32).",
    "tuple": "The items have different lengths, or are not numbers: pad or crop them to the input's shape and "
             "yield np.asarray(items, np.float32).",
}


def _non_array_problems(index: int, sample: Sample, inputs: list[InputSpec]) -> list[tuple[tuple, Finding]]:
    """QD211 for a sample, or the items of one, that are not numeric arrays."""
    check = catalog.get("QD211")
    if sample.kind == "other":
        what = str(sample.note)
        return [(("QD211", None, _value_kind(what)), check.finding(
            f"Sample #{index} is {what}, not a list of arrays.",
            evidence={"yielded": what}, fix=_NON_ARRAY_FIXES.get(_value_kind(what))))]
    found = []
    for key, what in sample.not_arrays.items():
        if sample.kind in ("list", "tuple"):
            name = inputs[int(key)].name if int(key) < len(inputs) else None
            where = f"item {key}" + (f" (input '{name}')" if name else "")
        else:
            name = key
            where = f"key '{key}'"
        found.append((("QD211", key, _value_kind(what)), check.finding(
            f"Sample #{index} holds {what} at {where}, not an array.", location=Location(input=name),
            evidence={"yielded": what, "item": key}, fix=_NON_ARRAY_FIXES.get(_value_kind(what)))))
    return found


def _value_kind(description: str) -> str:
    """"function" for "the function 'load' (...)": the word after the article of `describe_value`."""
    words = description.split(" ")
    return words[1] if words[0] in ("the", "a", "an") and len(words) > 1 else words[0]


def _array_problems(index: int, spec: InputSpec | None, array: np.ndarray,
                    several_in_list: bool) -> list[tuple[tuple, Finding]]:
    name = spec.name if spec else None
    expected = spec.dtype if spec else "float32"
    paired = {PAIRED_IN_CONVERTER_ORDER: True} if several_in_list else {}
    found = []
    if array.dtype.name != expected and (spec or array.dtype == np.float64):
        code = "QD201" if array.dtype == np.float64 and expected == "float32" else "QD204"
        found.append(((code, name, array.dtype.name), catalog.get(code).finding(
            f"Sample #{index} for input '{name or 0}' is {array.dtype.name}; the input expects {expected}.",
            location=Location(input=name),
            evidence={"sample_dtype": array.dtype.name, "input_dtype": expected, **paired},
            fix_code=None if code == "QD201" else f"yield [sample.astype(np.{expected})]")))
    if spec and not spec.accepts_shape(array.shape):
        found.append((("QD306", name, array.shape), catalog.get("QD306").finding(
            f"Sample #{index} for input '{name}' has shape {_shape(array.shape)}; the input expects "
            f"{_shape(spec.shape)}.{LIST_ORDER_HINT if several_in_list else ''}",
            location=Location(input=name),
            evidence={"sample_shape": list(array.shape), "input_shape": list(spec.shape or []),
                      "fixed_dimension_differs": spec.fixes_another_size(array.shape), **paired})))
    return found


def _check_values(calibration: CalibrationSet, inputs: list[InputSpec]) -> list[Finding]:
    """Across samples, per input: non-finite values, constant inputs, noise-like data, sample count."""
    findings = []
    count = len(calibration)
    if count < MIN_SAMPLES and not calibration.truncated:
        findings.append(catalog.get("QD308").finding(
            f"{count} calibration sample(s); at least {MIN_SAMPLES} real samples are recommended.",
            evidence={"samples": count, "recommended_min": MIN_SAMPLES}))
    for position, (name, arrays) in enumerate(_arrays_by_input(calibration, inputs).items()):
        label = name if name is not None else str(position)
        numeric = [a for a in arrays if a.dtype.kind in REAL_KINDS]
        floats = [a for a in numeric if np.issubdtype(a.dtype, np.floating)]
        bad = [i for i, a in enumerate(floats) if not np.isfinite(a).all()]
        if bad:
            nan = sum(int(np.isnan(a).sum()) for a in floats)
            inf = sum(int(np.isinf(a).sum()) for a in floats)
            findings.append(catalog.get("QD307").finding(
                f"{len(bad)} of {len(floats)} samples for input '{label}' contain non-finite values "
                f"({nan} NaN, {inf} Inf).",
                location=Location(input=name), evidence={"samples_affected": len(bad), "nan": nan, "inf": inf}))
            continue
        if numeric and all(a.size for a in numeric):
            low = min(float(a.min()) for a in numeric)
            high = max(float(a.max()) for a in numeric)
            if low == high:
                findings.append(catalog.get("QD311").finding(
                    f"Every calibration value of input '{label}' is {low:g}.",
                    location=Location(input=name), evidence={"value": low}))
                continue
        correlation = _neighbour_correlation(floats[:_NOISE_SAMPLES])
        if correlation is not None and abs(correlation) < NOISE_CORRELATION:
            findings.append(catalog.get("QD309").finding(
                f"Neighbouring values of input '{label}' are uncorrelated (r = {correlation:.3f}); real "
                "images, audio or sequences give r well above 0.5.",
                location=Location(input=name), evidence={"neighbour_correlation": round(correlation, 4)}))
    return findings


def check_against_inference(calibration: CalibrationSet | None, evaluation: CalibrationSet,
                            inputs: list[InputSpec]) -> list[Finding]:
    """Per input: inference values the calibrated range would clip, and ranges of another scale."""
    if calibration is None or not calibration.samples:
        return []
    calibrated = _arrays_by_input(calibration, inputs)
    findings = []
    for name, eval_arrays in _arrays_by_input(evaluation, inputs).items():
        calib_arrays = [a for a in calibrated.get(name, []) if a.dtype.kind in REAL_KINDS]
        eval_arrays = [a for a in eval_arrays if a.dtype.kind in REAL_KINDS]
        if not calib_arrays or not eval_arrays:
            continue
        low, high = min(float(a.min()) for a in calib_arrays), max(float(a.max()) for a in calib_arrays)
        values = np.concatenate([a.ravel() for a in eval_arrays]).astype(np.float64)
        clipped = float(np.mean((values < low) | (values > high)))
        calib_span, eval_span = high - low, float(values.max() - values.min())
        if clipped <= MAX_CLIPPED and not (calib_span and eval_span * RANGE_RATIO < calib_span):
            continue
        findings.append(catalog.get("QD314").finding(
            _range_message(name, (low, high), (float(values.min()), float(values.max())), clipped),
            location=Location(input=name),
            evidence={"calibration_range": [low, high], "inference_range": [float(values.min()), float(values.max())],
                      "clipped_fraction": round(clipped, 4)}))
    return findings


QAT_CLIPPED_ERROR = 0.5  # past this share of clipped values the model sees mostly the edge of its range


def check_against_qat_ranges(ranges: dict[str, tuple[float, float]], inputs: list[InputSpec],
                             datasets: dict[str, CalibrationSet | None]) -> list[Finding]:
    """Per input of a QAT model: data (`{"calibration data": ..., "eval data": ...}`) outside the input
    range the training learned (`ranges`, read from the produced model's input quantizer)."""
    if len(ranges) == 1 and len(inputs) == 1:  # one input: no name to match
        ranges = {inputs[0].name: next(iter(ranges.values()))}
    findings = []
    for name, (low, high) in ranges.items():
        disagreements = {}
        for label, data in datasets.items():
            arrays = [a for a in _arrays_by_input(data, inputs).get(name, []) if a.dtype.kind in REAL_KINDS] \
                if data is not None and data.samples else []
            if not arrays:
                continue
            values = np.concatenate([a.ravel() for a in arrays]).astype(np.float64)
            clipped = float(np.mean((values < low) | (values > high)))
            span = float(values.max() - values.min())
            if clipped > MAX_CLIPPED or (span and span * RANGE_RATIO < high - low):
                disagreements[label] = {"range": [float(values.min()), float(values.max())],
                                        "clipped_fraction": round(clipped, 4)}
        if not disagreements:
            continue
        parts = [f"the {label} spans [{d['range'][0]:.4g}, {d['range'][1]:.4g}] ({d['clipped_fraction']:.1%} clipped)"
                 for label, d in disagreements.items()]
        worst = max(d["clipped_fraction"] for d in disagreements.values())
        findings.append(catalog.get("QD412").finding(
            f"Input '{name}' was trained (QAT) with the range [{low:.4g}, {high:.4g}], but {' and '.join(parts)}. "
            "Calibration data does not change a QAT model's ranges.",
            location=Location(input=name), severity="error" if worst > QAT_CLIPPED_ERROR else None,
            evidence={"qat_range": [low, high], **{label.replace(" ", "_"): d for label, d in disagreements.items()}}))
    return findings


def _range_message(name: str | None, calib: tuple[float, float], inference: tuple[float, float], clipped: float) -> str:
    text = (f"Input '{name}' was calibrated on [{calib[0]:.4g}, {calib[1]:.4g}] but inference data spans "
            f"[{inference[0]:.4g}, {inference[1]:.4g}]: {clipped:.1%} of inference values would be clipped.")
    calib_span, inference_span = calib[1] - calib[0], inference[1] - inference[0]
    if calib_span and inference_span > RANGE_RATIO * calib_span:
        text += " The scales differ by two orders of magnitude: one side is probably not normalised (0..255 vs 0..1)."
    elif inference_span and calib_span > RANGE_RATIO * inference_span:
        text += " Inference data is far narrower: it is probably normalised twice."
    return text


def _neighbour_correlation(arrays: list[np.ndarray]) -> float | None:
    """Correlation of each value with its neighbour along axis 1 (rows / time), or None if undefined."""
    arrays = [a.astype(np.float64) for a in arrays if a.ndim >= 3 and a.shape[1] >= 4]
    if not arrays or len({a.shape for a in arrays}) != 1:
        return None
    stacked = np.stack(arrays)
    here, there = stacked[:, :, :-1].ravel(), stacked[:, :, 1:].ravel()
    if here.std() == 0 or there.std() == 0:
        return None
    return float(np.corrcoef(here, there)[0, 1])


def _pair(sample: Sample, inputs: list[InputSpec]) -> list[tuple[InputSpec | None, np.ndarray]]:
    if sample.kind in ("dict", "signature"):
        by_name = {spec.name: spec for spec in inputs}
        return [(by_name.get(key), value) for key, value in sample.values.items()]
    arrays = sample.arrays
    return [(inputs[i] if i < len(inputs) else None, a) for i, a in enumerate(arrays)]


def _arrays_by_input(calibration: CalibrationSet, inputs: list[InputSpec]) -> dict[str | None, list[np.ndarray]]:
    grouped: dict[str | None, list[np.ndarray]] = {}
    for sample in calibration.samples:
        if sample.kind in ("array", "tuple") or sample.holds_non_arrays:
            continue
        for position, (spec, array) in enumerate(_pair(sample, inputs)):
            key = spec.name if spec else (f"#{position}" if not inputs else None)
            if key is not None:
                grouped.setdefault(key, []).append(array)
    return grouped


def _bare_sample(sample: Sample, index: int) -> Finding:
    if sample.kind == "array":
        what = f"a bare {sample.arrays[0].dtype.name} array of shape {_shape(sample.arrays[0].shape)}"
    else:
        count = len(sample.values) + len(sample.not_arrays)
        what = f"a tuple of {count} item(s) (a tuple must be (signature_key, dict))"
    return catalog.get("QD303").finding(f"Sample #{index} is {what}, not a list of arrays.",
                                        evidence={"yielded": sample.kind})


def _with_sample_count(finding: Finding, indices: list[int]) -> Finding:
    finding.evidence["samples_affected"] = len(indices)
    finding.evidence["first_samples"] = indices[:5]
    if len(indices) > 1:
        return replace(finding, message=f"{finding.message} ({len(indices)} samples affected)")
    return finding


def _shape(shape: Any) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"
