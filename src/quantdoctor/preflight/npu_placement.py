"""Preflight for Ethos-U targets: which layers Vela will leave on the CPU, predicted from the TF graph alone.

The rules are read from the installed Vela, not copied: its compiler core's op table for the
accelerator (`regor.tflite_operator_constraints`: which TFLite ops have an NPU kernel, and the
constraints each op carries) and the limits of its constraint checks (`TFLiteSupportedOperators`:
stride range, pooling kernel ranges). A limit applies only where the core's table for that op
states the matching constraint, so a core that lifts a limit (the Ethos-U85 runs a depthwise
stride of 4) lifts the prediction too. The TF op -> TFLite op mapping is the converter's own,
from `preflight/op_support.json`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from quantdoctor.catalog.locations import name_for_path
from quantdoctor.catalog.npu import vela_core_name
from quantdoctor.intake.recipe import Recipe
from quantdoctor.preflight.predict import classify, op_support

_CONVERSIONS = {"QUANTIZE", "DEQUANTIZE"}
_POOLS = {"AvgPool": "AVERAGE_POOL_2D", "MaxPool": "MAX_POOL_2D"}
_CONVOLUTIONS = {"Conv2D": "CONV_2D", "DepthwiseConv2dNative": "DEPTHWISE_CONV_2D"}
_INT16X8 = "EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8"
# Shape arithmetic (Shape, and the slicing and packing of its int32 result): the converter folds it
# wherever the shapes are known, so it is not predicted.
_SHAPE_OPS = {"Shape", "ShapeN", "Size", "Rank"}
_INDEX_TYPES = {"int32", "int64"}
# Not predicted: Vela's "Stride>3 only with VALID padding" for CONV_2D and pools is about the padding
# the op really adds, which SAME padding leaves at 0 for some input sizes: unknown from the graph.
# A matrix product with a weight operand converts to FULLY_CONNECTED (a Dense layer on a sequence).
_MATMULS = {"MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3"}
_WEIGHTS = {"ReadVariableOp", "Const", "ResourceGather"}
# A division by a constant converts to a multiplication (Keras' hard_swish, x * relu6(x + 3) / 6, to HARD_SWISH).
_DIVISIONS = {"RealDiv", "Div"}


@lru_cache(maxsize=2)
def vela_rules(core: str) -> dict[str, list[str]]:
    """The installed Vela's op table for `core`: TFLite op -> its constraints."""
    from ethosu import regor

    return {name.replace("ARGMAX", "ARG_MAX"): list(rules)
            for name, rules in regor.tflite_operator_constraints(core).items()}


def vela_limits() -> dict[str, tuple[int, int]]:
    """The installed Vela's numeric limits: strides, and pooling kernel width/height and area."""
    from ethosu.vela.tflite_supported_operators import TFLiteSupportedOperators as limits

    return {"stride": limits.stride_range, "filter": limits.filter_range,
            "filter_height": limits.filter_height_range, "filter_product": limits.filter_product_range}


def predict_cpu_layers(inventory: dict[str, Any], recipe: Recipe, layer_names: list[str],
                       accelerator: str) -> list[dict[str, Any]]:
    """The graph's nodes Vela is predicted to leave on the CPU: `{"layer", "tf_op", "op", "reason"}`,
    one per (layer, TFLite op), in graph order. Shape arithmetic is left out (see _SHAPE_OPS)."""
    core = vela_core_name(accelerator)
    rules, limits = vela_rules(core), vela_limits()
    predicted: dict[tuple, dict[str, Any]] = {}
    for node in inventory.get("nodes", []):
        if node["op"] in _SHAPE_OPS or (node["dtypes"] and set(node["dtypes"]) <= _INDEX_TYPES):
            continue
        op, reason = _refusal(node, recipe, rules, limits, core)
        if reason:
            layer = name_for_path(node["name"], layer_names)
            predicted.setdefault((layer, op), {"layer": layer, "tf_op": node["op"], "op": op, "reason": reason})
    return list(predicted.values())


def prediction_against_actual(predicted: list[dict[str, Any]], npu: dict[str, Any]) -> dict[str, Any]:
    """The preflight's predicted CPU layers next to Vela's actual ones (the conversions at float
    inputs and outputs left out: they follow from the I/O types, not the graph)."""
    actual = sorted({op["layer"] or op["tensor"] for op in npu.get("ops", [])
                     if op["target"] != "NPU" and op.get("conversion") is None})
    expected = sorted({entry["layer"] or entry["tf_op"] for entry in predicted})
    return {"predicted_cpu": predicted, "predicted_cpu_layers": expected, "actual_cpu_layers": actual,
            "agrees": expected == actual}


def _refusal(node: dict[str, Any], recipe: Recipe, rules: dict[str, list[str]], limits: dict[str, tuple[int, int]],
             core: str) -> tuple[str | None, str | None]:
    """(TFLite op, why Vela will leave it on the CPU), or (op, None) when it will not."""
    op_class = classify(node["op"])
    tflite_ops = [name for name in op_support().get(node["op"], {}).get("tflite_ops", []) if name not in _CONVERSIONS]
    op = _CONVOLUTIONS.get(node["op"]) or _POOLS.get(node["op"]) or (tflite_ops[0] if tflite_ops else None)
    if node["op"] in _MATMULS and set(node.get("input_ops", [])) & _WEIGHTS:
        op, tflite_ops = "FULLY_CONNECTED", ["FULLY_CONNECTED"]
    if node["op"] in _DIVISIONS and node.get("input_ops", [])[1:2] == ["Const"]:
        op, tflite_ops = "MUL", ["MUL"]
    if op_class in ("float", "flex", "custom"):
        return op or node["op"], f"stays float ({op_class}): Vela runs integer tensors only"
    missing = [name for name in tflite_ops if name not in rules]
    if op_class == "int8" and missing:
        return missing[0], f"Vela has no {core} kernel for {missing[0]}"
    if op is None or op not in rules:
        return op, None
    own = " ".join(rules[op]).lower()
    strides = max(_spatial(node.get("strides")), default=1)
    if "kernel stride must be in the range" in own and strides > limits["stride"][1]:
        return op, f"stride {strides} is above Vela's limit of {limits['stride'][1]}"
    kernel = _spatial(node.get("ksize"))
    if node["op"] in _POOLS and len(kernel) == 2:
        height, width = kernel
        if node.get("padding") == "SAME" and "kernel width and height must be less than or equal to" in own \
                and max(kernel) > limits["filter"][1]:
            return op, f"pool size {height}x{width} with SAME padding is above Vela's limit of {limits['filter'][1]}"
        if height > limits["filter_height"][1] or height * width > limits["filter_product"][1]:
            return op, f"pool size {height}x{width} is above Vela's limits"
    weights = bool(set(node.get("input_ops", [])) & _WEIGHTS)
    if _INT16X8 in recipe.supported_ops and any(_eight_bit_only(rule, op, weights) for rule in rules[op]):
        return op, f"16-bit activations: Vela's {op} takes 8-bit inputs only"
    return op, None


def _eight_bit_only(rule: str, op: str, weights: bool) -> bool:
    """True when one of Vela's rules asks this op for 8-bit inputs. A rule that starts "IF Matmul or (FC
    with dynamic weights)" holds for a product of two activations only, not for a layer with weights."""
    if "Int8" not in rule or "Int16" in rule or "precision" not in rule:
        return False
    if rule.startswith("IF Matmul or (FC with dynamic weights)"):
        return op == "BATCH_MATMUL" or not weights
    return not rule.startswith("IF")


def _spatial(values: list[int] | None) -> list[int]:
    """Height and width of an NHWC strides or ksize attribute."""
    return list(values[1:3]) if values and len(values) == 4 else []


def npu_preflight(inventory: dict[str, Any] | None, recipe: Recipe, layer_names: list[str], target: str | None,
                  npu: dict[str, Any] | None) -> dict[str, Any] | None:
    """The report's `preflight.npu` for an Ethos-U target: the prediction, and Vela's actual placement
    when Vela compiled the model (`npu`, the report's `audit.npu`); None for other targets."""
    if not inventory or not target or not target.startswith("ethos-u"):
        return None
    predicted = predict_cpu_layers(inventory, recipe, layer_names, target)
    if npu and npu.get("outcome") == "ok":
        return prediction_against_actual(predicted, npu)
    return {"predicted_cpu": predicted, "predicted_cpu_layers": sorted({e["layer"] or e["tf_op"] for e in predicted}),
            "actual_cpu_layers": None, "agrees": None}
