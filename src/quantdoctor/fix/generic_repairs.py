"""Repair by search: generic repairs for a converter failure the catalogue has no repair for.

When `fix`'s rounds end unverified on a converter bug (a crash, a timeout, an unrecognised error:
the `reducible` checks), `reduce` names the culprit layers, and these repairs are tried on the
plan, cheapest first. Each is verified as every fix is (the real converter, the audit for the
target, a LiteRT run, compare with eval data); the first verified one wins. None of them is keyed
on a finding code: they change how the culprit is converted, not what the catalogue knows.

1. 16x8 → int8: the culprit's op may have no working 16x8 kernel.
2. Float fallback: under integer-only ops, let the culprit's ops stay float (targets that run float).
3. Dynamic range: no calibration at all (weights int8, activations float), with a warning that the
   model is not integer; never for an integer-only target or integer I/O.
4. Select TF ops: TensorFlow's kernels for the culprit's ops (targets that run float); calibration
   cannot run Flex ops, so this is dynamic range plus the Flex delegate: dearer than 3.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from quantdoctor.edits.plan import Plan
from quantdoctor.fix.repairs import INT8_ACTIVATIONS_COST, Blocked, Repair, allows_float_ops, switch_16x8_to_int8

DYNAMIC_RANGE_WARNING = ("the model is NOT integer: weights int8, activations float (dynamic range); an "
                         "integer-only accelerator or microcontroller cannot run it")


@dataclass(frozen=True)
class Culprit:
    """What the generic repairs know of the failure: its code, the culprit layers, their op types."""

    code: str
    layers: list[str]
    op_types: list[str]

    def describe(self) -> str:
        return ", ".join(f"'{name}'" for name in self.layers) or "the culprit layers"


GenericRepair = Callable[[Plan, Culprit], "Repair | Blocked | None"]


def int16x8_to_int8(plan: Plan, culprit: Culprit) -> Repair | Blocked | None:
    """16x8 activations → int8, keeping integer-only ops where the target needs them."""
    change = switch_16x8_to_int8(plan, culprit.code, "16x8 quantization switched to int8: "
                                 f"{culprit.describe()} fail(s) to convert in 16x8")
    if change is None:
        return None
    return Repair(culprit.code, change, "generic repair after reduce", INT8_ACTIVATIONS_COST)


def float_fallback(plan: Plan, culprit: Culprit) -> Repair | Blocked | None:
    """Integer-only ops → int8 with float fallback: ops without a working int8 kernel stay float."""
    recipe = plan.recipe
    if not recipe.int8_only_ops:
        return None
    if not allows_float_ops(plan.target):
        return Blocked(culprit.code, f"keeping {culprit.describe()} float is not allowed: the {plan.target} runs "
                       "integer ops only", "replace the culprit layers with ones that have integer kernels")
    change = f"float fallback allowed (TFLITE_BUILTINS next to TFLITE_BUILTINS_INT8) for {culprit.describe()}"
    plan.change_settings(culprit.code, change, supported_ops=[*recipe.supported_ops, "TFLITE_BUILTINS"])
    return Repair(culprit.code, change, "generic repair after reduce",
                  "ops without an int8 kernel compute in float on the CPU, with DEQUANTIZE/QUANTIZE around them")


def select_tf_ops(plan: Plan, culprit: Culprit) -> Repair | Blocked | None:
    """TensorFlow's own kernels (Flex) for the culprit's ops; no calibration (the calibrator has no Flex)."""
    recipe = plan.recipe
    if "SELECT_TF_OPS" in recipe.supported_ops:
        return None
    if not allows_float_ops(plan.target):
        return Blocked(culprit.code, f"Select TF ops for {culprit.describe()} are not allowed: the {plan.target} "
                       "cannot run Flex ops", "replace the culprit layers with TFLite builtin ops")
    if {recipe.inference_input_type, recipe.inference_output_type} - {"float32"}:
        return None  # integer I/O needs calibration, which cannot run Flex ops
    ops = [op for op in recipe.supported_ops if op != "TFLITE_BUILTINS_INT8"] or ["TFLITE_BUILTINS"]
    change = (f"Select TF ops enabled for {culprit.describe()} (ops {', '.join(culprit.op_types[:6]) or '?'}); "
              "representative dataset dropped, since the calibrator cannot run Flex ops")
    plan.change_settings(culprit.code, change, supported_ops=[*ops, "SELECT_TF_OPS"], calibrate=False)
    return Repair(culprit.code, change, "generic repair after reduce",
                  "the app must link the Flex delegate (several MB); " + DYNAMIC_RANGE_WARNING)


def dynamic_range(plan: Plan, culprit: Culprit) -> Repair | Blocked | None:
    """No calibration: dynamic range quantization, with a warning; never for integer-only targets."""
    recipe = plan.recipe
    if not recipe.calibrate:
        return None
    if not allows_float_ops(plan.target) or {recipe.inference_input_type, recipe.inference_output_type} - {"float32"}:
        return Blocked(culprit.code, "dynamic range quantization is not integer, and these settings ask for an "
                       "integer model", "report the converter bug with the repro (quantdoctor reduce --repro)")
    ops = [op for op in recipe.supported_ops if op != "TFLITE_BUILTINS_INT8"] or ["TFLITE_BUILTINS"]
    change = f"dynamic range quantization: no calibration, since calibrating {culprit.describe()} fails"
    plan.change_settings(culprit.code, change, supported_ops=ops, calibrate=False)
    return Repair(culprit.code, change, "generic repair after reduce", "WARNING: " + DYNAMIC_RANGE_WARNING)


GENERIC_REPAIRS: tuple[GenericRepair, ...] = (int16x8_to_int8, float_fallback, dynamic_range, select_tf_ops)


def generic_plans(plan: Plan, culprit: Culprit) -> list[tuple[Plan, Repair] | Blocked]:
    """Each generic repair that applies, on its own copy of `plan`, cheapest first (or why not)."""
    tried: list[tuple[Plan, Repair] | Blocked] = []
    for repair in GENERIC_REPAIRS:
        candidate = plan.copy()
        outcome: Any = repair(candidate, culprit)
        if isinstance(outcome, Repair):
            tried.append((candidate, outcome))
        elif isinstance(outcome, Blocked):
            tried.append(outcome)
    return tried
