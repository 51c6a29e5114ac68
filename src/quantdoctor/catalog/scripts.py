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
        detects="The values in an integer input, when the model runs, span a few levels only (such as 0 "
                "and 1) where the input's calibrated range spans the whole integer range. That is what "
                "`x.astype(np.int8)` makes of floats in [0, 1]: it truncates them instead of quantizing them.",
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
