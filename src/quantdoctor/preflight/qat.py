"""Quantization-aware trained (QAT) models: telling them apart, and what changes for them.

A QAT model carries its activation ranges in FakeQuant ops learned during training. With
optimizations enabled the converter quantizes it from those ranges: it needs no representative
dataset (except for the TFLITE_BUILTINS_INT8 check, which runs before the graph is read), and
calibration samples no longer set the ranges. Findings that judge samples as a source of ranges
are then only informative.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from quantdoctor import catalog
from quantdoctor.report.model import Finding

# tfmot's Keras layers (tensorflow_model_optimization.quantization.keras): a model quantize_model() built.
TFMOT_LAYER_CLASSES = frozenset({"QuantizeWrapper", "QuantizeWrapperV2", "QuantizeLayer"})
QAT_NOTE = (" The model is quantization-aware trained: its trained ranges are used, and these samples only set "
            "the ranges of tensors the training left without one.")


def is_qat_model(inventory: dict[str, Any] | None, layers: list[dict[str, str]]) -> bool:
    """True when the converter's own check finds FakeQuant ops in the serving graph (the worker's
    inventory), or the Keras model is built from tfmot's quantize layers."""
    return bool(inventory and inventory.get("qat")) or any(layer["class"] in TFMOT_LAYER_CLASSES for layer in layers)


def qat_aware(findings: list[Finding]) -> list[Finding]:
    """Findings about samples as a source of ranges, demoted to info with the reason: the QAT ranges win."""
    return [replace(f, severity="info", message=f.message + QAT_NOTE) if catalog.get(f.code).ranges_from_samples else f
            for f in findings]
