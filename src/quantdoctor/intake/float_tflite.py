"""Float `.tflite` models as input: quantized with LiteRT's own quantizer, ai-edge-quantizer (AEQ).

PyTorch models converted with litert-torch and ONNX models converted with onnx2tf arrive as float
`.tflite` files; AEQ is the quantizer for them. It is an optional extra (`quantdoctor[aeq]`): a
float `.tflite` given without it is refused with one line saying what to install, before any work.

Each quantdoctor mode maps to one of AEQ's own recipes. The converter settings beside it
(`converter_settings`) are what the data checks and the audit read: a static recipe calibrates
and asks for integer activations, a dynamic or weight-only recipe reads no data.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

from quantdoctor.errors import DataLoadError, ModelLoadError, UsageError
from quantdoctor.intake.paths import regular_file
from quantdoctor.intake.recipe import Recipe

AEQ_MODULE = "ai_edge_quantizer"
AEQ_INSTALL = "pip install 'quantdoctor[aeq]'"
# quantdoctor mode -> AEQ recipe function (ai_edge_quantizer.recipe), and the converter mode it amounts to.
AEQ_RECIPES = {
    "int8": ("static_wi8_ai8", "int8"),
    "int8-strict": ("static_wi8_ai8", "int8-strict"),
    "int16x8": ("static_wi8_ai16", "int16x8"),
    "dynamic": ("dynamic_wi8_afp32", "dynamic"),
    "weight-only": ("weight_only_wi8_afp32", "dynamic"),
}
STATIC_RECIPES = ("static_wi8_ai8", "static_wi8_ai16")
_TFLITE_IDENTIFIER = b"TFL3"


def is_tflite_path(model: object) -> bool:
    """True for a path (str or Path) that names a `.tflite` file by its suffix."""
    return isinstance(model, (str, Path)) and Path(model).suffix.lower() == ".tflite"


def aeq_installed() -> bool:
    """True when ai-edge-quantizer can be imported (checked without importing it; a module blocked in
    `sys.modules` counts as missing)."""
    try:
        return importlib.util.find_spec(AEQ_MODULE) is not None
    except (ImportError, ValueError):
        return False


def check_tflite_file(path: Path) -> Path:
    """`path`, when it is a regular file carrying the TFLite flatbuffer identifier; one line otherwise."""
    regular_file(path, "model", ModelLoadError)
    try:
        with open(path, "rb") as stream:
            header = stream.read(8)
    except OSError as exc:
        raise ModelLoadError(f"cannot read {path}: {exc.strerror}") from exc
    if header[4:8] != _TFLITE_IDENTIFIER:
        raise ModelLoadError(f"{path} is not a .tflite model (no TFL3 flatbuffer identifier)")
    return path


def require_aeq(path: Path) -> None:
    """Refuse a float `.tflite` input when ai-edge-quantizer is not installed: one line, what to install."""
    if not aeq_installed():
        raise UsageError(f"{path.name} is a float .tflite model: quantizing it needs LiteRT's quantizer "
                         f"(ai-edge-quantizer), which is not installed; install it with: {AEQ_INSTALL}")


def aeq_recipe_name(mode: str | None) -> str:
    """The AEQ recipe a quantdoctor `--mode` stands for; a UsageError lists the modes AEQ has."""
    mode = mode or "int8"
    if mode not in AEQ_RECIPES:
        raise UsageError(f"mode '{mode}' has no ai-edge-quantizer recipe for a float .tflite model: choose one of "
                         f"{', '.join(AEQ_RECIPES)}")
    return AEQ_RECIPES[mode][0]


# The input and output types AEQ gives a model under each recipe: static recipes quantize them too.
_IO_TYPES = {"static_wi8_ai8": "int8", "static_wi8_ai16": "int16"}


def converter_settings(mode: str | None, io: str | None, select_tf_ops: bool) -> Recipe:
    """The converter settings an AEQ recipe amounts to, for the data checks and the audit.

    AEQ decides the input and output types itself (integer under a static recipe, float otherwise) and has
    no Select TF ops: asking for either is refused.
    """
    recipe_name = aeq_recipe_name(mode)
    if io not in (None, "float"):
        raise UsageError(f"--io {io} is not available with ai-edge-quantizer: it sets the model's input and "
                         "output types itself (integer under a static recipe, float otherwise)")
    if select_tf_ops:
        raise UsageError("--select-tf-ops applies to the TensorFlow converter, not to a .tflite model")
    recipe = Recipe.for_mode(AEQ_RECIPES[mode or "int8"][1])
    recipe.calibrate = recipe_name in STATIC_RECIPES
    recipe.inference_input_type = recipe.inference_output_type = _IO_TYPES.get(recipe_name, "float32")
    return recipe


_ENTRY_KEYS = ("regex", "operation", "algorithm_key")


def load_recipe(path: str | Path) -> list[dict[str, Any]]:
    """An AEQ recipe JSON file (a list of entries with regex, operation, algorithm_key and op_config, later
    entries winning), checked for its shape before anything runs; one line when it is not one."""
    path = regular_file(Path(path), "AEQ recipe", DataLoadError)
    try:
        entries = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataLoadError(f"AEQ recipe {path} is not a JSON file: {str(exc)[:200]}") from exc
    if not isinstance(entries, list) or not entries:
        raise DataLoadError(f"AEQ recipe {path} must be a non-empty JSON list of entries")
    for number, entry in enumerate(entries):
        if not isinstance(entry, dict) or not all(isinstance(entry.get(key), str) for key in _ENTRY_KEYS):
            raise DataLoadError(f"AEQ recipe {path}: entry #{number} needs the strings {', '.join(_ENTRY_KEYS)}")
        if not isinstance(entry.get("op_config", {}), dict):
            raise DataLoadError(f"AEQ recipe {path}: entry #{number}'s op_config must be an object")
        try:
            re.compile(entry["regex"])
        except re.error as exc:
            raise DataLoadError(f"AEQ recipe {path}: entry #{number}'s regex {entry['regex']!r} is not a regular "
                                f"expression ({exc})") from exc
        if entry["algorithm_key"] != "no_quantize" and not isinstance(
                entry.get("op_config", {}).get("weight_tensor_config"), dict):  # AEQ reads it from every such entry
            raise DataLoadError(f"AEQ recipe {path}: entry #{number} quantizes ({entry['algorithm_key']}), so its "
                                "op_config needs a weight_tensor_config object")
    return entries


def recipe_settings(entries: list[dict[str, Any]]) -> Recipe:
    """The converter settings a recipe of the user's amounts to: static (calibrated, int8 or int16 activations)
    when an entry quantizes activations, weight quantization without calibration otherwise."""
    bits = {(entry.get("op_config") or {}).get("activation_tensor_config", {}).get("num_bits")
            for entry in entries if entry["algorithm_key"] != "no_quantize"} - {None}
    mode = "int16x8" if 16 in bits else "int8" if bits else "dynamic"
    recipe = Recipe.for_mode(mode)
    recipe.inference_input_type = recipe.inference_output_type = {"int16x8": "int16", "int8": "int8"}.get(
        mode, "float32")
    return recipe
