"""Checks for float `.tflite` models quantized with ai-edge-quantizer (AEQ): its errors and its silent fallback."""

from __future__ import annotations

import json
import re

from quantdoctor.catalog.check import Check

AEQ_RECIPE_EXAMPLE = ('quantizer = Quantizer("model_float.tflite", recipe.static_wi8_ai8())\n'
                      'result = quantizer.quantize(quantizer.calibrate({"serving_default": samples}))')



# AEQ cuts an op's scope to this many characters (ai_edge_quantizer's tfl_flatbuffer_utils.get_op_scope).
_AEQ_SCOPE_LENGTH = 10000


def op_scope(outputs: list[str], inputs: list[str]) -> str:
    """The scope AEQ matches a recipe entry's regex against (`tfl_flatbuffer_utils.get_op_scope`): the op's output
    tensor names (its input names when no output has one), each followed by ';', cut to 10,000 characters."""
    names = [name for name in outputs if name] or [name for name in inputs if name]
    return "".join(f"{name};" for name in names)[:_AEQ_SCOPE_LENGTH]


def scope_regex(scope: str) -> str:
    """An AEQ recipe regex matching the op of `scope` (`op_scope`) and no other: the whole scope, since a tensor
    name may hold ';', AEQ's separator."""
    return "^" + re.escape(scope) + "$"


def no_quantize_entries(scopes: list[str]) -> str:
    """AEQ recipe entries (JSON) that keep the ops of `scopes` in float."""
    return json.dumps([{"regex": scope_regex(scope), "operation": "*", "algorithm_key": "no_quantize"}
                       for scope in scopes], indent=1)


CHECKS = (
    Check(
        code="QD130", name="aeq-op-left-float", severity="warning", precedence=58,
        title="ai-edge-quantizer left ops in float although the recipe asks to quantize them",
        detects="An op whose output tensor the recipe's regex matches, under a recipe with integer activations, "
                "still computes in float in the produced model, between DEQUANTIZE and QUANTIZE.",
        why="AEQ's recipe manager skips every op its algorithm has no config for without a word: the model "
            "comes out 'quantized', but that op runs in float on the CPU, and an integer-only accelerator "
            "refuses the whole model.",
        example=AEQ_RECIPE_EXAMPLE + "   # an EXP in the model stays float",
        fix="Replace the op with one AEQ quantizes (EXP: a LOGISTIC or a lookup), keep it float on purpose with "
            "a no_quantize entry for its tensor, or deploy on a target that runs float ops.",
        fix_code='{"regex": "<tensor name>", "operation": "*", "algorithm_key": "no_quantize"}',
    ),
    Check(
        code="QD131", name="aeq-op-without-int16-kernel", severity="warning", precedence=58,
        title="The 16-bit recipe left ops in float: they have no 16-bit activation kernel",
        detects="Under static_wi8_ai16 (int16 activations), ops that AEQ and LiteRT only quantize with 8-bit "
                "activations stay float in the produced model.",
        why="The model mixes int16 and float: every such op costs a DEQUANTIZE/QUANTIZE pair, runs in float "
            "on the CPU, and an accelerator that runs 16x8 refuses it.",
        example=AEQ_RECIPE_EXAMPLE.replace("static_wi8_ai8", "static_wi8_ai16"),
        fix="Give those ops 8-bit activations with a static_wi8_ai8 entry for their tensors (later entries win), "
            "or use --mode int8.",
        fix_code='{"regex": "<tensor name>", "operation": "*", "algorithm_key": "min_max_uniform_quantize",\n'
                 ' "op_config": {"activation_tensor_config": {"num_bits": 8, "symmetric": false, '
                 '"granularity": "TENSORWISE", "dtype": "INT"}, ...}}',
    ),
    Check(
        code="QD330", name="aeq-signature-not-calibrated", severity="error", precedence=25,
        title="A signature of the model was never calibrated: AEQ has no ranges for its tensors",
        detects="AEQ's quantize() refuses with 'Failed to get quantization parameters for tensor: ... not found in "
                "tensor_name_to_qsv' (no range recorded) or 'Missing QSVs (min/max) for tensor ... Please check if "
                "Signature ... has been calibrated' (an empty one): the calibration data fed some signatures and not "
                "this one.",
        why="A static recipe needs the range of every activation of every signature. Samples for one "
            "signature say nothing about the tensors of another.",
        example='quantizer.calibrate({"encode": samples})   # the model also has a "decode" signature',
        fix="Give samples for every signature: (signature_key, {input_name: array}) tuples, one set per signature.",
        fix_code="def representative_dataset():\n"
                 "    for x in encode_samples:\n        yield ('encode', {'x': x})\n"
                 "    for z in decode_samples:\n        yield ('decode', {'z': z})",
    ),
    Check(
        code="QD331", name="aeq-static-recipe-without-calibration", severity="error", precedence=25,
        title="A static recipe was run without calibration: AEQ cannot quantize activations",
        detects="A static recipe (static_wi8_ai8, static_wi8_ai16) reached quantize() with no calibration "
                "result: no samples, samples that fit no signature, or a path (AEQ's command line) that never "
                "calibrates.",
        why="Static recipes fix the activations' scales ahead of time from calibrated ranges; without them AEQ "
            "stops with 'Model quantization statistics values (QSVs) are required'.",
        example="Quantizer('model.tflite', recipe.static_wi8_ai8()).quantize()   # no calibrate()",
        fix="Calibrate on real samples through the Python API (quantdoctor --data calib.npz), or choose a recipe "
            "without calibration: --mode dynamic or weight-only.",
    ),
    Check(
        code="QD332", name="aeq-model-without-signatures", severity="error", precedence=24,
        title="The float model has no signature: AEQ calibrates through signatures only",
        detects="AEQ's calibrate() stops with 'SignatureDef signature_key is None and model has 0 Signatures': "
                "the .tflite carries no SignatureDef, as models from from_concrete_functions without their "
                "trackable object, from older converters and from some tools do.",
        why="AEQ runs each calibration sample through a signature runner, keyed by signature. A model without "
            "any has nothing to run samples through, so a static recipe cannot get its activation ranges.",
        example="tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()]).convert()"
                "   # no trackable_obj: no signature",
        fix="Re-export with a signature (from_saved_model, or from_concrete_functions([fn], trackable_obj)), or "
            "add one to the file (code below, then quantize model_float_signed.tflite); a dynamic or weight-only "
            "recipe (--mode dynamic) needs no calibration.",
        fix_code="import flatbuffers\n"
                 "from ai_edge_litert import schema_py_generated as schema\n\n"
                 "with open('model_float.tflite', 'rb') as file:\n"
                 "    model = schema.ModelT.InitFromPackedBuf(file.read(), 0)\n"
                 "graph = model.subgraphs[0]\n\n"
                 "def tensor_map(index):\n"
                 "    entry = schema.TensorMapT()\n"
                 "    entry.name, entry.tensorIndex = graph.tensors[index].name, index\n"
                 "    return entry\n\n"
                 "signature = schema.SignatureDefT()\n"
                 "signature.signatureKey, signature.subgraphIndex = b'serving_default', 0\n"
                 "signature.inputs = [tensor_map(index) for index in graph.inputs]\n"
                 "signature.outputs = [tensor_map(index) for index in graph.outputs]\n"
                 "model.signatureDefs = [signature]\n"
                 "builder = flatbuffers.Builder(1024)\n"
                 "builder.Finish(model.Pack(builder), file_identifier=b'TFL3')\n"
                 "with open('model_float_signed.tflite', 'wb') as file:\n"
                 "    file.write(builder.Output())",
    ),
    Check(
        code="QD430", name="aeq-tensor-names-not-unique", severity="error", precedence=20,
        title="Two tensors of the model share a name: AEQ refuses the model",
        detects="AEQ's 'Tensor name ... is not unique in the model': its recipes, calibration results and "
                "parameters are all keyed by tensor name.",
        why="Exporters that name tensors after modules (or leave them empty) can give two tensors one name; "
            "AEQ cannot tell them apart and stops before quantizing.",
        example="a litert-torch or onnx2tf export where two ops' outputs carry the same name",
        fix="Re-export with unique names (name the modules or ONNX nodes), or rename the duplicated tensors in "
            "the flatbuffer before quantizing.",
    ),
    Check(
        code="QD431", name="aeq-recipe-regex-matches-nothing", severity="warning", precedence=65,
        title="A recipe entry's regex matches no tensor of the model: the entry does nothing",
        detects="An entry of the AEQ recipe whose regex matches no op output tensor name of the model (AEQ "
                "matches the regex with re.search against those names).",
        why="AEQ applies such an entry to nothing and says nothing, so the op meant to stay float or get "
            "another precision is quantized like the rest.",
        example='{"regex": "conv1", ...}   # the exporter named the tensor "model/conv2d/Conv2D"',
        fix="Write the regex against the tensor names of the float model (the report lists them): exporters "
            "name tensors their own way.",
    ),
)
