"""The repair registry: one small function per repair, keyed by the catalog code it answers.

A repair looks at one finding and at the `Bench` (the plan so far, the latest report, the samples
as the plan feeds them). It changes the plan and returns a `Repair` saying what changed, why,
and what it costs; or returns `Blocked` when it cannot apply here (with the reason and what the
user must change); or None when there is nothing left for it to do. A finding whose code has an
entry in `REPAIRS` is marked `fix.automatic` in every report.

A repair never hides a problem: a semantic change or a degraded target is said in `cost`. Names from
the user's files (inputs, keys, layers, signatures, ops) are quoted with `repr()` in what it says.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np

from quantdoctor import catalog
from quantdoctor.edits.plan import Plan, Step, apply_data_steps
from quantdoctor.edits.transforms import is_finite
from quantdoctor.intake.data import CalibrationSet
from quantdoctor.intake.options import Target
from quantdoctor.preflight.data_checks import InputSpec
from quantdoctor.report.model import Finding, Report

_INT16X8 = "EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8"
_MAX_ASSIGNED_INPUTS = 6  # inputs matched to arrays by trying every pairing


@dataclass(frozen=True)
class Repair:
    """A change fix made: the finding code it answers, what changed, why, and what it costs."""

    code: str
    change: str
    why: str
    cost: str

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "change": self.change, "why": self.why, "cost": self.cost}


@dataclass(frozen=True)
class Blocked:
    """A finding fix cannot repair here: why not, and what the user must change."""

    code: str
    reason: str
    instruction: str

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "reason": self.reason, "instruction": self.instruction}


@dataclass
class Bench:
    """What a repair works with: the plan (changed in place), the latest report, the samples as the
    plan feeds them (None without data), and whether the model is a Keras model fix can edit."""

    plan: Plan
    report: Report
    original_data: CalibrationSet | None
    keras: bool
    _samples: tuple[int, CalibrationSet | None] = field(default=(-1, None), init=False, repr=False)

    @property
    def calibration(self) -> CalibrationSet | None:
        """The user's samples through the plan's data steps (steps are only ever added)."""
        if self._samples[0] != len(self.plan.data_steps):
            self._samples = (len(self.plan.data_steps), apply_data_steps(self.original_data, self.plan.data_steps))
        return self._samples[1]

    @property
    def inputs(self) -> list[InputSpec]:
        """The model's inputs, as the latest report describes them, under the names the plan gives them."""
        names = {old: new for step in self.plan.model_steps if step.function == "with_input_names"
                 for old, new in step.args[0].items()}
        specs = [InputSpec.from_dict(spec) for spec in self.report.model.get("inputs", [])]
        return [replace(spec, name=names.get(spec.name, spec.name)) for spec in specs]

    def has_data(self) -> bool:
        return self.original_data is not None and bool(self.original_data.samples)


RepairFunction = Callable[[Finding, Bench], Any]


def allows_float_ops(target: str | None) -> bool:
    """Whether the deployment target runs float (and Select TF) ops: anything but an integer-only one."""
    return target is None or Target(target).runs_float_ops


def blocked_without_repair(finding: Finding, bench: Bench | None = None) -> Blocked:
    """What fix says about an error no repair answers: the diagnosis, and what the user must change."""
    if finding.code in ("QD301", "QD302") and not (bench and bench.has_data()):
        return _no_data(finding)
    where = finding.location.describe()
    rewrite = catalog.get(finding.code).rewrite
    if rewrite:
        return Blocked(finding.code, finding.message, f"{rewrite} in {where or 'the model'}: {finding.fix.summary}")
    return Blocked(finding.code, finding.message, f"{finding.fix.summary}{f' ({where})' if where else ''}")


# --- data ----------------------------------------------------------------------------------------


def _by_position(bench: Bench) -> bool:
    """True when the samples are lists (keyed by position), False for dicts (keyed by input name)."""
    calibration = bench.calibration
    return not calibration or all(s.kind not in ("dict", "signature") for s in calibration.samples)


def _key(bench: Bench, name: str | None) -> Any:
    names = [spec.name for spec in bench.inputs]
    if _by_position(bench):
        return names.index(name) if name in names else 0
    return name


def cast_samples(finding: Finding, bench: Bench) -> Repair | Blocked | None:
    """QD201/QD204: cast every sample array to its input's dtype. Complex samples for a real input
    are cast only when every imaginary part is 0: otherwise what the model should see is the user's call."""
    inputs = bench.inputs
    if not inputs or any(s.function == "cast_to" for s in bench.plan.data_steps):
        return None
    got, wanted = finding.evidence.get("sample_dtype", "another dtype"), finding.evidence.get("input_dtype")
    if got.startswith("complex") and _imaginary_parts(bench):
        return Blocked(finding.code, f"{finding.message} Their imaginary parts are not 0: no cast keeps them.",
                       "decide what the model sees: the real part (x.real), the magnitude (np.abs(x)), or the real "
                       f"and imaginary parts as channels, and feed that as {wanted or 'the input dtype'}")
    keys = range(len(inputs)) if _by_position(bench) else [spec.name for spec in inputs]
    dtypes = {key: spec.dtype for key, spec in zip(keys, inputs)}
    wanted = wanted or (inputs[0].dtype if len(inputs) == 1 else "the input dtype")
    name = finding.location.input or inputs[0].name
    change = f"samples for input {name!r} cast from {got} to {wanted}"
    if got.startswith("float") and wanted.startswith(("int", "uint")):
        cost = "fractions are truncated: make sure these samples are meant as integers"
    elif got == "float64":
        cost = "none: calibration measures value ranges, which float32 holds"
    elif got.startswith("complex"):
        cost = "none: every imaginary part is 0, and the real parts are unchanged"
    else:
        cost = "none: the values are unchanged"
    bench.plan.add_data_step(Step(finding.code, "map", "cast_to", (dtypes,), change))
    return Repair(finding.code, change, f"the converter refuses {got} samples for a {wanted} input", cost)


def _imaginary_parts(bench: Bench) -> bool:
    """True when some complex sample array has an imaginary part other than 0."""
    samples = bench.calibration.samples if bench.calibration else []
    return any(np.iscomplexobj(a) and bool(np.any(a.imag != 0)) for sample in samples for a in sample.arrays)


def wrap_bare_arrays(finding: Finding, bench: Bench) -> Repair | Blocked | None:
    """QD303: a bare array (or a tuple of arrays) becomes a list."""
    kinds = {s.kind for s in bench.calibration.samples}
    if "other" in kinds:
        return blocked_without_repair(finding, bench)
    if not kinds & {"array", "tuple"}:
        return None
    change = "each bare array sample wrapped in a list" if "array" in kinds else "each tuple sample turned into a list"
    bench.plan.add_data_step(Step(finding.code, "map", "as_list", (), change))
    return Repair(finding.code, change, "the converter takes a list (or a dict) of arrays per sample", "none")


def add_batch_axis(finding: Finding, bench: Bench) -> Repair | Blocked | None:
    """QD306: samples one axis short of their input gain a leading batch axis of 1."""
    name = finding.location.input
    spec = next((s for s in bench.inputs if s.name == name), None)
    shape = tuple(finding.evidence.get("sample_shape", ()))
    if spec is None or spec.shape is None or len(shape) != len(spec.shape) - 1 or not spec.accepts_shape((1, *shape)):
        return Blocked(finding.code, finding.message,
                       f"feed samples for input {name!r} in the input's own shape "
                       f"{_dims(spec.shape if spec else None)} "
                       "(resize or crop them where you preprocess them)")
    key = _key(bench, name)
    change = f"samples for input {name!r} given their missing batch axis: {_dims(shape)} -> {_dims((1, *shape))}"
    bench.plan.add_data_step(Step(finding.code, "map", "with_batch_axis", ((key,),), change))
    return Repair(finding.code, change, "each sample is one batch of the input, batch axis first", "none")


def map_dict_keys(finding: Finding, bench: Bench) -> Repair | Blocked | None:
    """QD305: dict keys renamed to the input names where the pairing is unambiguous."""
    sample = next((s for s in bench.calibration.samples if s.kind == "dict"
                   and set(s.values) != {spec.name for spec in bench.inputs}), None)
    if sample is None:
        return blocked_without_repair(finding, bench)
    pairing = assign_inputs({key: value.shape for key, value in sample.values.items()}, bench.inputs)
    if pairing is None:
        return Blocked(finding.code, finding.message, "name each sample's arrays by the model's inputs "
                       f"({', '.join(spec.name for spec in bench.inputs)}): their shapes leave the pairing open")
    renamed = {key: name for key, name in pairing.items() if key != name}
    change = "sample keys renamed to the model's inputs: " + ", ".join(f"{k!r} -> {v!r}" for k, v in renamed.items())
    bench.plan.add_data_step(Step(finding.code, "map", "keyed_by_input", (pairing,), change))
    return Repair(finding.code, change, "the calibrator matches dict samples to inputs by name",
                  "none, if each array is what its shape says: the pairing was decided by shape")


def pair_list_items(finding: Finding, bench: Bench) -> Repair | Blocked | None:
    """QD313: list items paired with the inputs by shape, yielded as dicts by input name."""
    sample = next((s for s in bench.calibration.samples if s.kind == "list"), None)
    if sample is None:
        return None
    pairing = assign_inputs(dict(enumerate(a.shape for a in sample.arrays)), bench.inputs)
    if pairing is None:
        return Blocked(finding.code, finding.message, finding.fix.summary)
    change = "list items yielded as dicts by input name: " + ", ".join(f"item {k} -> {v!r}" for k, v in pairing.items())
    bench.plan.add_data_step(Step(finding.code, "map", "keyed_by_input", (pairing,), change))
    return Repair(finding.code, change, "the calibrator pairs list items with inputs in its own order, not yours",
                  "none: the pairing was decided by shape, which only one order fits")


def drop_non_finite(finding: Finding, bench: Bench) -> Repair | Blocked | None:
    """QD307: samples holding NaN or Inf are dropped, and counted."""
    if any(s.function == "is_finite" for s in bench.plan.data_steps):
        return None
    samples = bench.calibration.samples
    dropped = sum(not _finite(s) for s in samples)
    if dropped == len(samples):
        return Blocked(finding.code, f"Every one of the {len(samples)} samples holds NaN or Inf.",
                       "fix the preprocessing that produces NaN/Inf (log of 0, division by 0), then calibrate again")
    change = f"{dropped} of {len(samples)} samples dropped for holding NaN or Inf"
    bench.plan.add_data_step(Step(finding.code, "filter", "is_finite", (), change))
    return Repair(finding.code, change,
                  "NaN or Inf makes the calibrated ranges meaningless (an Inf crashes the quantizer)",
                  f"calibration on {len(samples) - dropped} samples; the preprocessing that made NaN/Inf still does")


def key_by_signature(finding: Finding, bench: Bench) -> Repair | Blocked | None:
    """QD315: samples that name no signature calibrate every converted signature."""
    samples = bench.calibration.samples
    keys = finding.evidence.get("signatures", [])
    if any(s.kind == "signature" for s in samples):
        return Blocked(finding.code, finding.message, "yield (signature_key, dict) samples for "
                       f"{', '.join(repr(k) for k in finding.evidence.get('without_samples', []))} too: "
                       "fix cannot tell which of your samples fit another signature")
    specs = bench.report.model.get("signature_inputs", {})
    first = samples[0]
    signatures = {}
    for key in keys:
        inputs = [InputSpec.from_dict(spec) for spec in specs.get(key, [])]
        if first.kind == "dict":
            fits = set(first.values) == {spec.name for spec in inputs}
            names: list[str] | None = [] if fits else None
        else:
            pairing = assign_inputs(dict(enumerate(a.shape for a in first.arrays)), inputs) if inputs else None
            names = [pairing[position] for position in range(len(pairing))] if pairing else None
        if names is None:
            return Blocked(finding.code, f"The samples do not fit the inputs of signature {key!r}.",
                           "yield (signature_key, {input name: array}) samples for every signature you convert")
        signatures[key] = names
    change = f"each sample calibrates every converted signature ({', '.join(signatures)})"
    bench.plan.add_data_step(Step(finding.code, "expand", "for_each_signature", (signatures,), change))
    return Repair(finding.code, change, "samples that name no signature calibrate one signature only; the others "
                  "stayed float", f"{len(signatures)}x the calibration steps; the same samples are taken as "
                  "representative for every signature")


def assign_inputs(shapes: dict[Any, tuple], inputs: list[InputSpec]) -> dict[Any, str] | None:
    """Each key (dict key or list position) paired with an input: by name where they agree, by shape
    otherwise; None unless exactly one pairing fits every shape."""
    if len(shapes) != len(inputs) or len(inputs) > _MAX_ASSIGNED_INPUTS:
        return None
    by_name = {key: key for key in shapes if key in {spec.name for spec in inputs}}
    rest_keys = [key for key in shapes if key not in by_name]
    rest_inputs = [spec for spec in inputs if spec.name not in by_name.values()]
    fits = [dict(zip(rest_keys, (spec.name for spec in order))) for order in itertools.permutations(rest_inputs)
            if all(spec.accepts_shape(tuple(shapes[key])) for key, spec in zip(rest_keys, order))]
    return {**by_name, **fits[0]} if len(fits) == 1 else None


def _finite(sample: Any) -> bool:
    return is_finite(sample.replay())


# --- settings ------------------------------------------------------------------------------------


def resolve_float16_with_int8(finding: Finding, bench: Bench) -> Repair | None:
    """QD203: float16 and integer-only ops: the target decides which was meant."""
    plan, recipe = bench.plan, bench.plan.recipe
    if "float16" not in recipe.supported_types:
        return None
    if plan.target == "gpu":
        ops = [op for op in recipe.supported_ops if op != "TFLITE_BUILTINS_INT8"]
        change = "float16 kept; integer-only ops, integer I/O and calibration dropped (the gpu target runs float16)"
        plan.change_settings(finding.code, change, supported_ops=ops if "TFLITE_BUILTINS" in ops else
                             ["TFLITE_BUILTINS", *ops], inference_input_type="float32",
                             inference_output_type="float32", calibrate=False)
        return Repair(finding.code, change, finding.title,
                      "a float16 model: float16 weights, float computation, about twice the size of an int8 model")
    change = ("float16 dropped: full integer quantization, as the integer-only settings ask "
              f"(target {plan.target or 'cpu'})")
    plan.change_settings(finding.code, change, supported_types=[])
    return Repair(finding.code, change, finding.title,
                  "activations in int8 instead of float16: accuracy can drop more; measure it with --eval-data")


def supply_full_integer(finding: Finding, bench: Bench) -> Repair | Blocked | None:
    """QD205: integer I/O needs full integer quantization: the optimization and the calibration data."""
    if not bench.has_data():
        return _no_data(finding)
    recipe = bench.plan.recipe
    if "DEFAULT" in recipe.optimizations and recipe.calibrate:
        return None
    change = "optimizations = [DEFAULT] and the calibration data as representative dataset (full integer)"
    bench.plan.change_settings(finding.code, change, optimizations=["DEFAULT"], calibrate=True)
    return Repair(finding.code, change, "integer input/output types need a fully integer model",
                  "activations in int8: measure the accuracy with --eval-data")


def _no_data(finding: Finding) -> Blocked:
    return Blocked(finding.code, "There is no calibration data at all.",
                   "pass a few hundred real, preprocessed inputs: --data calib.npz (one array per input, samples "
                   "along axis 0), or data= / converter.representative_dataset in Python")


def enable_select_tf_ops(finding: Finding, bench: Bench) -> Repair | Blocked | None:
    """QD101: run the op with TensorFlow's kernel (Flex), where the target runs float ops."""
    plan, recipe = bench.plan, bench.plan.recipe
    what = f"{finding.location.op or 'the op'} in {_where(finding)}"
    if not allows_float_ops(plan.target):
        return Blocked(finding.code, f"{what} has no TFLite builtin kernel, and an {plan.target} cannot run Select "
                       "TF (Flex) ops.", f"replace {what} with TFLite builtin ops (quantdoctor does not rewrite "
                       "layers), or deploy to a target that runs float ops")
    if "SELECT_TF_OPS" in recipe.supported_ops:
        return None
    change = f"Select TF ops enabled: {what} runs with TensorFlow's own kernel (Flex)"
    cost = f"the app must link the Flex delegate (several MB); {finding.location.op or 'the op'} runs in float"
    values: dict[str, Any] = {"supported_ops": [*recipe.supported_ops, "SELECT_TF_OPS"]}
    if recipe.calibrate:
        if {recipe.inference_input_type, recipe.inference_output_type} - {"float32"}:
            return Blocked(finding.code, f"{what} needs Select TF ops, which calibration cannot run (QD109), and "
                           "integer I/O needs calibration.", f"use float I/O, or replace {what} with builtin ops")
        values["calibrate"] = False
        change += "; representative dataset dropped, since the calibrator cannot run Flex ops (QD109)"
        cost += "; activations stay float (dynamic range: weights int8 only)"
    plan.change_settings(finding.code, change, **values)
    return Repair(finding.code, change, finding.title, cost)


def drop_calibration(finding: Finding, bench: Bench) -> Repair | Blocked | None:
    """QD109: a Flex or custom op cannot be calibrated: dynamic range, where the target runs float ops."""
    plan, recipe = bench.plan, bench.plan.recipe
    if not allows_float_ops(plan.target) or {recipe.inference_input_type, recipe.inference_output_type} - {"float32"}:
        return blocked_without_repair(finding, bench)
    if not recipe.calibrate:
        return None
    change = f"representative dataset dropped: {finding.location.op or 'a Flex op'} cannot run in the calibrator"
    plan.change_settings(finding.code, change, calibrate=False)
    return Repair(finding.code, change, finding.title, "activations stay float (dynamic range: weights int8 only)")


def allow_float_fallback(finding: Finding, bench: Bench) -> Repair | Blocked | None:
    """QD104/QD105: an op without an int8 kernel stays float, where the target runs float ops."""
    plan, recipe = bench.plan, bench.plan.recipe
    if finding.severity != "error":
        return None
    what = f"{finding.location.op or 'an op'} in {_where(finding)}"
    if not allows_float_ops(plan.target):
        return Blocked(finding.code, f"{what} has no integer kernel, and the {plan.target} runs integer ops only.",
                       f"replace {what} with ops that have integer kernels (quantdoctor does not rewrite layers)")
    if not recipe.int8_only_ops:
        return None
    change = f"float fallback allowed (TFLITE_BUILTINS next to TFLITE_BUILTINS_INT8): {what} runs in float"
    plan.change_settings(finding.code, change, supported_ops=[*recipe.supported_ops, "TFLITE_BUILTINS"])
    return Repair(finding.code, change, finding.title,
                  f"{finding.location.op or 'the op'} computes in float on the CPU, with DEQUANTIZE/QUANTIZE around it")


INT8_ACTIVATIONS_COST = "activations in 8 bits instead of 16: less precision; measure the accuracy with --eval-data"


def switch_16x8_to_int8(plan: Plan, code: str, change: str) -> str | None:
    """Quantize `plan` to int8 instead of 16x8 (integer-only ops kept where the target needs them),
    recorded under `code` as `change`. int16 input and output types, which int8 quantization does not
    take, become int8, and the change says so. Returns the change as made; None when the plan is not 16x8."""
    recipe = plan.recipe
    if _INT16X8 not in recipe.supported_ops:
        return None
    integer = "TFLITE_BUILTINS_INT8" if not allows_float_ops(plan.target) else "TFLITE_BUILTINS"
    ops = [op for op in recipe.supported_ops if op != _INT16X8]
    io = {name: "int8" for name in ("inference_input_type", "inference_output_type")
          if getattr(recipe, name) == "int16"}
    if io:
        change += "; the int16 input/output types become int8 (int8 quantization takes no int16 I/O)"
    plan.change_settings(code, change, supported_ops=ops if integer in ops else [integer, *ops], **io)
    return change


def int16x8_to_int8(finding: Finding, bench: Bench) -> Repair | None:
    """QD113: an op without a 16x8 kernel: the model quantizes to int8 instead."""
    change = switch_16x8_to_int8(bench.plan, finding.code, "16x8 quantization switched to int8: "
                                 f"{finding.location.op or 'an op'} has no working 16x8 kernel")
    if change is None:
        return None
    return Repair(finding.code, change, finding.title, INT8_ACTIVATIONS_COST)


def keep_failing_op_float(finding: Finding, bench: Bench) -> Repair | Blocked | None:
    """QD112: an op whose quantized kernel fails when LiteRT runs the model (location.op: the TFLite
    op). In 16x8 the model quantizes to int8 instead; keeping one op float in an int8 model needs the
    selective quantizer, so fix says how."""
    if _INT16X8 in bench.plan.recipe.supported_ops:
        return int16x8_to_int8(finding, bench)
    op = finding.location.op or "the op"
    return Blocked(finding.code, finding.message, f"keep {op} float when quantizing: "
                   f"tf.lite.experimental.QuantizationDebugOptions(denylisted_ops={[op]!r}) with "
                   "QuantizationDebugger.get_nondebug_quantized_model()")


# --- the model (Keras only) ----------------------------------------------------------------------


def _model_step(finding: Finding, bench: Bench, step: Step, why: str, cost: str) -> Repair | Blocked | None:
    if not bench.keras:
        return Blocked(finding.code, f"{finding.message} fix edits Keras models only.", finding.fix.summary)
    if any(s.function == step.function for s in bench.plan.model_steps):
        return None
    bench.plan.model_steps.append(step)
    return Repair(finding.code, step.note, why, cost)


def fix_recurrent_batch(finding: Finding, bench: Bench) -> Repair | Blocked | None:
    """QD103: a recurrent loop with a dynamic batch: unrolled when calibrating, else a static batch of 1."""
    if bench.plan.recipe.calibrate:
        return unroll_recurrence(finding, bench)
    step = Step(finding.code, "model", "with_static_batch", (1,),
                f"a clone of the model with a static batch of 1, so the loop of {_where(finding)} has static shapes")
    return _model_step(finding, bench, step, "TensorList lowering needs a static batch size",
                       "the converted model takes exactly one sample per call (batch 1)")


def unroll_recurrence(finding: Finding, bench: Bench) -> Repair | Blocked | None:
    """QD108 (and QD103 when calibrating): recurrent layers unrolled into plain ops."""
    steps = [spec.shape[1] for spec in bench.inputs if spec.shape and len(spec.shape) > 2]
    if not steps or None in steps:
        return Blocked(finding.code, f"{finding.message} Unrolling needs a fixed sequence length.",
                       "give the model's sequence input a fixed length (keras.Input((T, features))), then unroll its "
                       "recurrent layers (unroll=True); or convert without calibration (--mode dynamic)")
    step = Step(finding.code, "model", "with_unrolled_recurrence", (),
                f"recurrent layers unrolled (unroll=True), {_where(finding)} first: plain ops, no TensorList loop")
    return _model_step(finding, bench, step, "TF 2.21 cannot lower a dynamic-batch loop, and its calibrator crashes "
                       "in a recurrent loop", f"one copy of the cell per time step ({max(steps)} steps): a larger "
                       f"graph, and the sequence length is fixed at {max(steps)}")


def float32_clone(finding: Finding, bench: Bench) -> Repair | Blocked | None:
    """QD207: a mixed_float16 model rebuilt in float32 with the same weights."""
    step = Step(finding.code, "model", "in_float32", (),
                "every layer rebuilt with the float32 policy, with the same weights (no mixed_float16)")
    return _model_step(finding, bench, step, "the converter takes float32 graphs, not float16 math",
                       "the float model the converter starts from computes in float32: its results can differ "
                       "from the mixed-precision model's in float16's last digits")


def rename_inputs(finding: Finding, bench: Bench) -> Repair | Blocked | None:
    """QD405: a validly named Input in front of each invalidly named one; dict samples follow."""
    names = {spec.name: valid_tf_name(spec.name, {s.name for s in bench.inputs})
             for spec in bench.inputs if spec.name == finding.location.input}
    if not names:
        return None
    renamed = ", ".join(f"{old!r} -> {new!r}" for old, new in names.items())
    step = Step(finding.code, "model", "with_input_names", (names,),
                f"input {renamed} by a new Input in front (the model's own layers and weights, shared)")
    outcome = _model_step(finding, bench, step, "SavedModel signature arguments must be valid TensorFlow names",
                          f"the converted model's input is named {', '.join(repr(n) for n in names.values())}")
    if isinstance(outcome, Repair) and not _by_position(bench):
        keys = {key: names.get(key, key) for key in bench.calibration.samples[0].values}
        note = f"sample keys renamed: {renamed}"
        bench.plan.add_data_step(Step(finding.code, "map", "keyed_by_input", (keys,), note))
    return outcome


def add_inputs(finding: Finding, bench: Bench) -> Repair | Blocked | None:
    """QD408: one Input per call argument in front of the model, shaped like the first sample (without its
    batch axis); the model's layers and weights, shared."""
    if not finding.evidence.get("built", True):
        return Blocked(finding.code, f"{finding.message} Converting it would convert its random initial weights.",
                       "train the model or load its weights first (call it once on a batch so Keras builds it)")
    if not bench.has_data():
        return Blocked(finding.code, f"{finding.message} The input shapes come from the samples, and there are none.",
                       finding.fix.summary)
    sample = bench.calibration.samples[0]
    arguments = list(finding.evidence.get("call_arguments") or [])
    if sample.kind in ("dict", "signature"):
        names = list(sample.values)
        call = "keywords" if set(names) <= set(arguments) else "dict"
    else:
        count = len(sample.values)
        call = "positional" if count > 1 and count == len(arguments) else "single" if count == 1 else "list"
        names = arguments if call == "positional" else [arguments[0] if arguments else "inputs"] if count == 1 \
            else [f"input_{position}" for position in range(count)]
    inputs = [(name, list(array.shape[1:]), "float32" if array.dtype.kind in "fc" else str(array.dtype))
              for name, array in zip(names, sample.arrays)]
    shapes = ", ".join(f"{name!r} {_dims(shape)}" for name, shape, _ in inputs)
    step = Step(finding.code, "model", "with_inputs", (inputs, call), f"an Input in front of the model: {shapes}")
    outcome = _model_step(finding, bench, step, "the converter reads a Keras model's input shapes from its Input "
                          "layers", "none: the converted model is the same layers and weights, with inputs shaped "
                          "like the samples")
    if isinstance(outcome, Repair) and len(inputs) > 1 and sample.kind not in ("dict", "signature"):
        # the converter orders several inputs its own way: the list items go to the arguments they were given for
        keys = {position: name for position, (name, _, _) in enumerate(inputs)}
        bench.plan.add_data_step(Step(finding.code, "map", "keyed_by_input", (keys,),
                                      "sample list items keyed by the argument each was given for"))
    return outcome


def valid_tf_name(name: str, taken: set[str]) -> str:
    """`name` made a valid TensorFlow node name (invalid characters become '_'), unlike any in `taken`."""
    candidate = re.sub(r"[^A-Za-z0-9_.\\/>-]", "_", name).lstrip("_") or "input"
    if not re.match(r"[A-Za-z0-9.]", candidate):
        candidate = f"input_{candidate}"
    unique, number = candidate, 1
    while unique in taken:
        unique, number = f"{candidate}_{number}", number + 1
    return unique


# --- NPU targets ---------------------------------------------------------------------------------


def keep_on_npu(finding: Finding, bench: Bench) -> Repair | Blocked | None:
    """QD120: an op Vela leaves on the CPU. Repairs that keep it on the NPU: int8 instead of 16x8 where
    Vela has no 16-bit kernel, a static batch of 1 where a dynamic shape is the reason. Otherwise
    the op stays on the CPU, and fix says what that costs in partitions and CPU MACs."""
    reason = finding.evidence.get("vela_reason") or ""
    detail = finding.evidence.get("vela_detail") or ""
    if "16-bit" in detail and _INT16X8 in bench.plan.recipe.supported_ops:
        return int16x8_to_int8(finding, bench)
    if "dynamic" in f"{reason} {detail}".lower() and _dynamic_batch(bench):
        return _static_batch(finding, bench, "Vela places ops on tensors of unknown size on the CPU")
    return Blocked(finding.code, f"{finding.message} {npu_cost(bench.report)}", finding.fix.summary)


def static_batch_for_npu(finding: Finding, bench: Bench) -> Repair | Blocked | None:
    """QD920: Vela failed; a model with a dynamic batch gets a static batch of 1 (Vela compiles batch 1)."""
    if not _dynamic_batch(bench):
        return blocked_without_repair(finding, bench)
    return _static_batch(finding, bench, "Vela compiles models of batch 1 with static shapes")


def npu_cost(report: Report) -> str:
    """What the ops left on the CPU cost, from the report's Vela compilation (QD121's figures)."""
    npu = (report.audit or {}).get("npu") or {}
    if npu.get("outcome") != "ok":
        return ""
    return (f"It stays on the CPU: {npu['cpu_ops']} op(s) there cut the model into {npu['npu_partitions']} NPU and "
            f"{npu['cpu_partitions']} CPU partition(s), with {npu['cpu_macs']} of {npu['macs']} MACs "
            f"({npu['cpu_mac_share']:.1%}) on the CPU.")


def _dynamic_batch(bench: Bench) -> bool:
    return any(spec.shape and spec.shape[0] is None for spec in bench.inputs)


def _static_batch(finding: Finding, bench: Bench, why: str) -> Repair | Blocked | None:
    step = Step(finding.code, "model", "with_static_batch", (1,),
                f"a clone of the model with a static batch of 1, so {_where(finding)} has static shapes on the NPU")
    return _model_step(finding, bench, step, why, "the converted model takes exactly one sample per call (batch 1)")


def _where(finding: Finding) -> str:
    return f"layer {finding.location.layer!r}" if finding.location.layer else "the model"


def _dims(shape: Any) -> str:
    return "(?)" if shape is None else "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


REPAIRS: dict[str, RepairFunction] = {
    "QD101": enable_select_tf_ops,
    "QD103": fix_recurrent_batch,
    "QD104": allow_float_fallback,
    "QD105": allow_float_fallback,
    "QD108": unroll_recurrence,
    "QD109": drop_calibration,
    "QD112": keep_failing_op_float,
    "QD113": int16x8_to_int8,
    "QD120": keep_on_npu,
    "QD201": cast_samples,
    "QD203": resolve_float16_with_int8,
    "QD204": cast_samples,
    "QD205": supply_full_integer,
    "QD207": float32_clone,
    "QD303": wrap_bare_arrays,
    "QD305": map_dict_keys,
    "QD306": add_batch_axis,
    "QD307": drop_non_finite,
    "QD313": pair_list_items,
    "QD315": key_by_signature,
    "QD405": rename_inputs,
    "QD408": add_inputs,
    "QD920": static_batch_for_npu,
}
