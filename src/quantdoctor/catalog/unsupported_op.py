"""QD1xx: operations the converter or the TFLite runtime cannot run as asked."""

from quantdoctor.catalog.check import Check

SELECT_TF_OPS_CODE = """converter.target_spec.supported_ops = [
    tf.lite.OpsSet.TFLITE_BUILTINS,
    tf.lite.OpsSet.SELECT_TF_OPS,   # runs this op with TensorFlow's kernel (float)
]"""

CHECKS = (
    Check(
        code="QD101", name="op-needs-select-tf-ops", severity="error", precedence=40,
        title="Op has no TFLite builtin kernel; Select TF ops can run it",
        detects="The converter reports `'tf.X' op is neither a custom op nor a flex op` with "
                "`Error code: ERROR_NEEDS_FLEX_OPS`: no TFLite builtin implements the op, but TensorFlow's "
                "own kernel for it is in the Select TF ops (Flex) allowlist.",
        why="The conversion stops. With Select TF ops enabled the model converts, but the op runs with "
            "TensorFlow's float kernel: the binary grows by the Flex delegate, the op is not quantized, and "
            "integer-only accelerators (Edge TPU, NPUs, microcontrollers) cannot run the model.",
        example="keras.layers.Lambda(lambda x: tf.linalg.det(x))   # MatrixDeterminant: Flex only",
        fix="Replace the op with TFLite builtins, or accept a float op and enable Select TF ops.",
        fix_code=SELECT_TF_OPS_CODE,
    ),
    Check(
        code="QD102", name="op-has-no-kernel", severity="error", precedence=40,
        title="Op has neither a TFLite builtin nor a Select TF ops kernel",
        detects="The converter reports `'tf.X' op is neither a custom op nor a flex op` with "
                "`Error code: ERROR_NEEDS_CUSTOM_OPS`: the op is not a TFLite builtin and is not in the Select "
                "TF ops allowlist either.",
        why="Enabling Select TF ops does not help. The model converts only with `allow_custom_ops = True`, "
            "and then only runs where someone registers a custom kernel for the op.",
        example="keras.layers.Lambda(lambda x: tf.math.igamma(x, x))",
        fix="Rewrite the layer with ops TFLite supports (the layer named above), or register a custom op "
            "kernel in your runtime and convert with allow_custom_ops.",
        fix_code="converter.allow_custom_ops = True  # only with your own kernel registered at runtime",
    ),
    Check(
        code="QD103", name="rnn-tensorlist-dynamic-batch", severity="error", precedence=30,
        title="RNN layer with a dynamic batch cannot be lowered to TFLite",
        detects="`'tf.TensorListReserve' op requires element_shape to be static` and `Lowering tensor list "
                "ops is failed`: a recurrent layer (LSTM, GRU, SimpleRNN, or a tf.while_loop over a "
                "TensorArray) was traced with an unknown batch size, so its per-step buffer has no static "
                "shape.",
        why="Keras 3 RNN layers are not fused into TFLite's LSTM kernels; they lower to a while loop over "
            "TensorLists, which needs static shapes. The conversion fails in every mode.",
        example="inputs = keras.Input((10, 4))            # batch size unknown\n"
                "outputs = keras.layers.LSTM(8)(inputs)",
        fix="Give the model a static batch size (best: stays builtin and quantizable), or keep the dynamic "
            "batch and run the TensorList ops with Select TF ops (float, needs the Flex runtime).",
        fix_code="# Either: rebuild the inference model with a fixed batch size\n"
                 "inputs = keras.Input((10, 4), batch_size=1)\n"
                 "# Or: keep the dynamic batch and use Select TF ops\n"
                 "converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]\n"
                 "converter._experimental_lower_tensor_list_ops = False",
    ),
    Check(
        code="QD104", name="op-not-quantizable", severity="error", precedence=40,
        title="Op has no integer kernel, but integer-only ops were requested",
        detects="The quantizer cannot produce an INT8 (or 16x8) version of an op while "
                "`supported_ops = [TFLITE_BUILTINS_INT8]` forbids float fallback (`Quantization not yet "
                "supported for op`, `op is not quantizable`).",
        why="Full-integer-only conversion fails; the model cannot run on an integer-only target as written.",
        example="converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]\n"
                "# with a layer whose op has no int8 kernel",
        fix="Replace the op with one that has an integer kernel, or allow float fallback for it "
            "(TFLITE_BUILTINS alongside TFLITE_BUILTINS_INT8).",
        fix_code="converter.target_spec.supported_ops = [\n"
                 "    tf.lite.OpsSet.TFLITE_BUILTINS_INT8,\n"
                 "    tf.lite.OpsSet.TFLITE_BUILTINS,  # float fallback for ops without int8 kernels\n"
                 "]",
    ),
    Check(
        code="QD105", name="float-ops-in-integer-model", severity="warning", precedence=60,
        title="Ops stayed float in a model meant to be integer",
        detects="The produced .tflite still has ops computing in float32 between DEQUANTIZE and QUANTIZE "
                "although full integer quantization was requested. Under `TFLITE_BUILTINS_INT8` the converter "
                "does not enforce this for every op (CUMSUM, FLOOR_MOD and others stay float silently).",
        why="Each float island costs a dequantize/quantize round trip on the CPU, and integer-only "
            "accelerators reject the model or split it into partitions.",
        example="keras.layers.Lambda(lambda x: tf.math.cumsum(x, axis=-1))\n"
                "converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]",
        fix="Replace the op with integer-capable builtins, or accept the float island if your target runs "
            "float ops (CPU, GPU).",
    ),
    Check(
        code="QD106", name="flex-ops-in-model", severity="warning", precedence=70,
        title="The model needs the Select TF ops (Flex) runtime",
        detects="The produced .tflite contains Flex ops (custom ops named `Flex...`).",
        why="The app must link the Flex delegate (several MB), the ops run TensorFlow's float kernels, and "
            "integer-only accelerators and LiteRT for Microcontrollers cannot run them.",
        example="converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]",
        fix="Replace the ops named above with TFLite builtins if the target cannot carry the Flex runtime.",
    ),
    Check(
        code="QD107", name="custom-ops-in-model", severity="warning", precedence=70,
        title="The model contains custom ops that need your own kernels",
        detects="The produced .tflite contains custom ops (converted with `allow_custom_ops = True`).",
        why="The interpreter refuses the model unless a kernel is registered for each custom op.",
        example="converter.allow_custom_ops = True",
        fix="Register a kernel for each custom op in your runtime, or rewrite the layer with builtin ops.",
    ),
)
