"""Mistakes in the user's own scripts, seen by `quantdoctor run` and `qd.watch()` as the script runs.

Each reads as "the quantized model is inaccurate" although the model is fine: the script feeds
or reads it wrongly. The codes keep their ranges' categories (QD2xx a type mismatch, QD5xx a
wrong result).
"""

from quantdoctor.catalog.check import Check

DEQUANTIZE_CODE = ("scale, zero_point = output_details['quantization']\n"
                   "y = (interpreter.get_tensor(output_details['index']).astype(np.float32) - zero_point) * scale")
QUANTIZE_CODE = ("scale, zero_point = input_details['quantization']\n"
                 "x_q = np.clip(np.round(x / scale + zero_point), -128, 127).astype(np.int8)   # uint8: 0, 255\n"
                 "interpreter.set_tensor(input_details['index'], x_q)")

CHECKS = (
    Check(
        code="QD213", name="float-fed-to-integer-input", severity="error", precedence=10,
        title="Floats fed to an integer model input",
        detects="The script passes a float array to an input whose type is int8, uint8 or int16 (a model "
                "converted with `inference_input_type = tf.int8` or `tf.uint8`). LiteRT then refuses it: "
                "`Cannot set tensor: Got value of type FLOAT32 but expected type INT8`.",
        why="An integer input takes quantized values: each float must be divided by the input's scale and "
            "shifted by its zero point. LiteRT's message names the type, not the arithmetic to write.",
        example="interpreter.set_tensor(input_details['index'], image)   # image is float32 in [0, 1]",
        fix="Quantize the input with the model's own scale and zero point (the numbers are in the message).",
        fix_code=QUANTIZE_CODE,
    ),
    Check(
        code="QD214", name="raw-cast-integer-input", severity="error", precedence=10,
        title="Integer input values look like normalised floats cast with astype",
        detects="The values in an integer input, when the model runs, are only levels that a raw cast of the "
                "input's calibrated float range gives, where quantizing uses the whole integer range. "
                "`x.astype(np.int8)` truncates floats in [0, 1] to {0, 1}; `x.astype(np.uint8)` turns floats in "
                "[-1, 1] into {255, 0, 1} (negatives wrap around), and every float strictly between -1 and 1 into 0, "
                "which counts when each of the first invocations is fed such a constant.",
        why="No error is raised: the model sees an almost constant input and its outputs are garbage, which "
            "reads as a badly quantized model.",
        example="interpreter.set_tensor(input_details['index'], (image / 255.0).astype(np.uint8))",
        fix="Quantize with the input's scale and zero point instead of casting.",
        fix_code=QUANTIZE_CODE,
    ),
    Check(
        code="QD215", name="quantized-output-used-as-float", severity="error", precedence=10,
        title="A quantized output is compared with floats without dequantization",
        detects="An int8/uint8 model output, as `get_tensor` or a signature runner returned it, is compared "
                "with a float (a 0.5 threshold) or subtracted from float references. Its values are "
                "quantization levels (-128..127), not the model's float outputs.",
        why="Thresholds and errors computed on raw levels are meaningless: the model looks inaccurate although "
            "it is fine. An argmax over raw outputs is fine (it does not depend on the scale) and is not "
            "reported.",
        example="scores = interpreter.get_tensor(output_details['index'])\n"
                "positive = scores[0] > 0.5",
        fix="Dequantize with the output's scale and zero point before using the values as floats.",
        fix_code=DEQUANTIZE_CODE,
    ),
    Check(
        code="QD216", name="keras3-model-to-tfmot", severity="error", precedence=10,
        title="A Keras 3 model or layer was given to tfmot, which needs tf_keras",
        detects="tfmot's quantize_model, quantize_apply or quantize_annotate_* receives a Keras 3 object "
                "(`import keras`, or `tf.keras` under TensorFlow 2.16+). tfmot 0.8 checks for tf_keras (Keras 2) "
                "classes and raises \"`model` can only be a `keras.Model` instance. You passed an instance of "
                "type: Sequential.\"",
        why="The message names the class the model has; it does not say that two Keras packages are involved, "
            "nor that the model must be built with the other one.",
        example="import keras\n"
                "model = keras.Sequential([...])\n"
                "tfmot.quantization.keras.quantize_model(model)",
        fix="Build the model with tf_keras (`pip install tf_keras`, then `import tf_keras as keras`), or set "
            "TF_USE_LEGACY_KERAS=1 before TensorFlow is imported so that tf.keras is tf_keras. Load saved weights "
            "into the tf_keras model.",
        fix_code="import tf_keras as keras   # Keras 2, what tfmot quantizes\n"
                 "model = keras.Sequential([...])   # the same layers\n"
                 "q_aware_model = tfmot.quantization.keras.quantize_model(model)",
    ),
    Check(
        code="QD415", name="tfmot-unsupported-layer", severity="error", precedence=10,
        title="tfmot has no QuantizeConfig for a layer of the model",
        detects="quantize_model or quantize_apply raises \"Layer layer_normalization:<class ...LayerNormalization'> "
                "is not supported\": the default 8-bit scheme has no QuantizeConfig for that layer type, and tfmot "
                "refuses the whole model because of it.",
        why="tfmot stops at the first such layer; fixing it one layer at a time takes as many runs as there are "
            "unsupported layers. quantdoctor lists them all.",
        example="model = tf_keras.Sequential([..., tf_keras.layers.LayerNormalization(), ...])\n"
                "tfmot.quantization.keras.quantize_model(model)",
        fix="Annotate only the layers tfmot supports and quantize_apply the result (code below): the others stay "
            "float. Or annotate the layer with a QuantizeConfig of your own: one whose methods return no "
            "quantizers (a no-op config) keeps it float inside the quantized model, under quantize_scope.",
        fix_code="def annotate(layer):\n"
                 "    if isinstance(layer, tf_keras.layers.LayerNormalization):\n"
                 "        return layer\n"
                 "    return tfmot.quantization.keras.quantize_annotate_layer(layer)\n"
                 "\n"
                 "annotated = tf_keras.models.clone_model(model, clone_function=annotate)\n"
                 "q_aware_model = tfmot.quantization.keras.quantize_apply(annotated)",
    ),
    Check(
        code="QD516", name="resized-input-not-allocated", severity="error", precedence=10,
        title="An input was resized without allocate_tensors()",
        detects="`resize_tensor_input` changed an input's shape, and the script then set the input or invoked "
                "the model before calling `allocate_tensors()`.",
        why="Resizing invalidates the tensor buffers: LiteRT refuses the input (`Tensor is unallocated`) or "
            "the invocation until they are allocated again.",
        example="interpreter.resize_tensor_input(input_details['index'], [32, 224, 224, 3])\n"
                "interpreter.set_tensor(input_details['index'], batch)",
        fix="Call allocate_tensors() after resizing, before setting inputs.",
        fix_code="interpreter.resize_tensor_input(input_details['index'], batch.shape)\n"
                 "interpreter.allocate_tensors()\n"
                 "interpreter.set_tensor(input_details['index'], batch)",
    ),
    Check(
        code="QD517", name="signature-runner-wrong-keys", severity="error", precedence=10,
        title="A signature runner was called with keys its signature does not have",
        detects="A runner from `get_signature_runner()` is called with keyword arguments that are not the "
                "signature's input names, or without some of them. The names are the signature's (`x`), "
                "not the tensor names (`serving_default_x:0`) nor Keras' defaults (`input_1`).",
        why="LiteRT only says `Invalid Input name (input_1) for SignatureDef` or that the count differs; it "
            "does not list the names it expects.",
        example="runner = interpreter.get_signature_runner()\n"
                "runner(input_1=image)   # the signature's input is called 'image'",
        fix="Call the runner with exactly the signature's input names (listed in the message).",
        fix_code="runner = interpreter.get_signature_runner()\n"
                 "print(runner.get_input_details().keys())   # the names to use\n"
                 "outputs = runner(image=image)",
    ),
)
