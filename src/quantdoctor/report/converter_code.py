"""Converter settings written as Python code, for the scripts quantdoctor writes (`fix --script`,
`reduce --repro`): only settings that differ from a new converter's, and every name checked to be a
plain identifier before it becomes code."""

from __future__ import annotations

from typing import Any

from quantdoctor.errors import InternalError
from quantdoctor.intake.recipe import Recipe

# What a new tf.lite.TFLiteConverter holds (a test checks these against the installed converter).
CONVERTER_DEFAULTS: dict[str, Any] = {
    "allow_custom_ops": False, "experimental_new_converter": True, "experimental_new_quantizer": True,
    "experimental_enable_resource_variables": True, "_experimental_lower_tensor_list_ops": True,
    "_experimental_default_to_single_batch_in_tensor_list_ops": False, "_experimental_disable_per_channel": False,
    "_experimental_disable_per_channel_quantization_for_dense_layers": False, "unfold_batchmatmul": False,
    "legalize_custom_tensor_list_ops": False, "exclude_conversion_metadata": False,
}


def recipe_lines(recipe: Recipe) -> list[tuple[str, str]]:
    """(recipe field, converter line) for every setting that differs from a new converter's."""
    lines = [("optimizations", "converter.optimizations = ["
              + ", ".join(f"tf.lite.Optimize.{identifier(name)}" for name in recipe.optimizations) + "]")]
    lines.append(("supported_ops", "converter.target_spec.supported_ops = ["
                  + ", ".join(f"tf.lite.OpsSet.{identifier(name)}" for name in recipe.supported_ops) + "]"))
    lines.append(("supported_types", "converter.target_spec.supported_types = ["
                  + ", ".join(f"tf.{identifier(name)}" for name in recipe.supported_types) + "]"))
    for field in ("inference_input_type", "inference_output_type"):
        lines.append((field, f"converter.{field} = tf.{identifier(getattr(recipe, field))}"))
    lines.append(("calibrate", "converter.representative_dataset = representative_dataset" if recipe.calibrate
                  else "converter.representative_dataset = None"))
    lines += [(name, f"converter.{identifier(name)} = {value!r}") for name, value in recipe.flags.items()
              if CONVERTER_DEFAULTS.get(name, not value) != value]
    return lines


def identifier(name: str) -> str:
    """`name`, checked to be a plain Python identifier before it is written into the script as code."""
    if not (isinstance(name, str) and name.isidentifier() and name.isascii()):
        raise InternalError(f"not an identifier, so not written into the script as code: {name!r}")
    return name
