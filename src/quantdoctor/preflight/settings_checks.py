"""Checks on the converter settings themselves (no model execution, no TensorFlow import).

TF1 settings that a TF2 converter never reads (QD208), and a quantization-aware trained model
converted without optimizations (QD411).
"""

from __future__ import annotations

import json

from quantdoctor import catalog
from quantdoctor.catalog.tf1_settings import tf2_way
from quantdoctor.intake.recipe import Recipe
from quantdoctor.report.model import Finding, Location


def check_settings(recipe: Recipe) -> list[Finding]:
    """Every finding about the settings as such, for this recipe."""
    return _tf1_settings(recipe) + _qat_without_optimizations(recipe)


def _tf1_settings(recipe: Recipe) -> list[Finding]:
    findings = []
    for name, value in recipe.tf1_settings.items():
        instead, code = tf2_way(name, value)
        findings.append(catalog.get("QD208").finding(
            f"converter.{name} = {json.dumps(value)} is a TF1 converter setting; this TF2 converter ignores it. "
            f"{instead}",
            location=Location(setting=name), evidence={"setting": name, "value": value}, fix="Remove the setting; the TF2 way:", fix_code=code))
    return findings


def _qat_without_optimizations(recipe: Recipe) -> list[Finding]:
    if not recipe.qat_model or recipe.optimizing or recipe.integer_io:
        return []  # integer I/O: the converter refuses, and QD205 says so with the same fix
    return [catalog.get("QD411").finding(
        "The model is quantization-aware trained, but converter.optimizations is empty: the converter keeps its "
        "FakeQuant ops as QUANTIZE/DEQUANTIZE round trips and every other op computes in float.",
        evidence={"optimizations": recipe.optimizations})]
