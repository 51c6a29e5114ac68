"""QD1xx: operations the converter or the TFLite runtime cannot run as asked."""

from quantdoctor.catalog.check import Check

SELECT_TF_OPS_CODE = """converter.target_spec.supported_ops = [
    tf.lite.OpsSet.TFLITE_BUILTINS,
    tf.lite.OpsSet.SELECT_TF_OPS,   # runs this op with TensorFlow's kernel (float)
]"""

CHECKS = (
    Check(
        code="QD101", name="op-needs-select-tf-ops", severity="error", precedence=40,
        automatic_fix=True,
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
        code="QD102", name="op-has-no-kernel", severity="error", precedence=35, certain_failure=True,
        rewrite="rewrite the op: neither TFLite nor Select TF ops has a kernel for it",
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
        automatic_fix=True,
        title="RNN layer with a dynamic batch cannot be lowered to TFLite",
        detects="`'tf.TensorListReserve' op requires element_shape to be static` and `Lowering tensor list "
                "ops is failed`: a recurrent layer (LSTM, GRU, SimpleRNN, or a tf.while_loop over a "
                "TensorArray) was traced with an unknown batch size, so its per-step buffer has no static "
                "shape.",
        why="Keras 3 RNN layers are not fused into TFLite's LSTM kernels; they lower to a while loop over "
            "TensorLists, which needs static shapes. The conversion fails in every mode.",
        example="inputs = keras.Input((10, 4))            # batch size unknown\n"
                "outputs = keras.layers.LSTM(8)(inputs)",
        fix="For INT8, unroll the recurrence (needs a fixed sequence length): the loop becomes plain "
            "MatMul/Logistic/Tanh ops and quantizes fully. A static batch size makes the loop convert, but "
            "only in float or dynamic range: INT8 calibration of the loop crashes under TF 2.21 (QD108). "
            "Select TF ops keep the dynamic batch, also without INT8 calibration.",
        fix_code="# Best for INT8: unroll the recurrence (fixed sequence length)\n"
                 "outputs = keras.layers.LSTM(8, unroll=True)(inputs)\n"
                 "# Or: a static batch size (float / dynamic range quantization only)\n"
                 "inputs = keras.Input((10, 4), batch_size=1)\n"
                 "# Or: keep the dynamic batch and run the loop with Select TF ops (float)\n"
                 "converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]\n"
                 "converter._experimental_lower_tensor_list_ops = False",
    ),
    Check(
        code="QD104", name="op-not-quantizable", severity="error", precedence=40,
        automatic_fix=True,
        title="Op has no integer kernel, but integer-only ops were requested",
        detects="The quantizer stops with `Quantization not yet supported for op: 'ATAN2'`: an op has no "
                "INT8 version while `supported_ops = [TFLITE_BUILTINS_INT8]` forbids float fallback. The "
                "legacy quantizer (`experimental_new_quantizer = False`) raises this; the default MLIR "
                "quantizer instead leaves the op float silently (see QD105).",
        why="Full-integer-only conversion fails; the model cannot run on an integer-only target as written.",
        example="keras.layers.Lambda(lambda x: tf.math.atan2(x, x + 1.0))\n"
                "converter.experimental_new_quantizer = False\n"
                "converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]",
        fix="Replace the op with one that has an integer kernel, or allow float fallback for it "
            "(TFLITE_BUILTINS alongside TFLITE_BUILTINS_INT8).",
        fix_code="converter.target_spec.supported_ops = [\n"
                 "    tf.lite.OpsSet.TFLITE_BUILTINS_INT8,\n"
                 "    tf.lite.OpsSet.TFLITE_BUILTINS,  # float fallback for ops without int8 kernels\n"
                 "]",
    ),
    Check(
        code="QD105", name="float-ops-in-integer-model", severity="warning", precedence=60,
        automatic_fix=True, keeps_float=True,
        title="Ops stayed float in a model meant to be integer",
        detects="The produced .tflite still has ops computing in float32 between DEQUANTIZE and QUANTIZE "
                "although full integer quantization was requested. Under `TFLITE_BUILTINS_INT8` the converter "
                "does not enforce this for every op (CUMSUM, FLOOR_MOD and others stay float silently).",
        why="Each float island costs a dequantize/quantize round trip on the CPU, and integer-only "
            "accelerators reject the model or split it into partitions.",
        example="keras.layers.Lambda(lambda x: tf.math.cumsum(x, axis=-1))\n"
                "converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]",
        fix="Three options: replace the op with integer-capable builtins (see the layer named); accept the "
            "float island if your target runs float ops (CPU, GPU); or, for an op TFLite lacks entirely, "
            "run it with Select TF ops (float, needs the Flex runtime).",
        fix_code="# accept float fallback explicitly instead of pretending the model is integer-only\n"
                 "converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]",
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
    Check(
        code="QD108", reducible=True, name="rnn-calibration-crash", severity="error", precedence=30,
        automatic_fix=True, confirms=("QD304", "QD306", "QD307", "QD313"), confirms_after_crash=True,
        title="INT8 calibration crashed in a recurrent layer's loop",
        detects="The converter process died from a signal while calibrating a model with LSTM/GRU/SimpleRNN "
                "layers. Keras 3 recurrent layers are not fused into TFLite's LSTM kernels; their while "
                "loop over TensorLists crashes the TF 2.21 calibrator (segmentation fault).",
        why="In your own process this kills Python without a message. No setting of the calibrator avoids it "
            "while the loop stays a loop.",
        example="inputs = keras.Input((10, 4), batch_size=1)\n"
                "outputs = keras.layers.LSTM(8)(inputs)    # + representative_dataset",
        fix="Unroll the recurrence (fixed sequence length) so it quantizes as plain ops, or skip INT8 "
            "calibration for this model (dynamic range quantization: drop the representative dataset).",
        fix_code="outputs = keras.layers.LSTM(8, unroll=True)(inputs)",
    ),
    Check(
        code="QD109", name="op-blocks-calibration", severity="error", precedence=30,
        automatic_fix=True,
        title="Calibration cannot run a Select TF (Flex) or custom op",
        detects="With Select TF ops or allow_custom_ops *and* a representative dataset, calibration fails: "
                "`Node number N (FlexX) failed to prepare` or `There are unresolved custom ops`. The converter "
                "calibrates in a TFLite interpreter that has neither the Flex delegate nor your custom kernels.",
        why="No INT8 model can be produced while the op is in the graph; the error reads like a runtime "
            "problem, not a conversion setting.",
        example="converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]\n"
                "converter.representative_dataset = representative_dataset   # + a Flex-only op in the model",
        fix="Replace the op with TFLite builtins to get full INT8, or drop the representative dataset and "
            "accept dynamic range quantization (weights int8, activations float).",
        fix_code="converter.representative_dataset = None   # dynamic range: converts with the Flex op",
    ),
    Check(
        code="QD110", name="accelerator-partitions", severity="error", precedence=62,
        keeps_float=True,
        title="Ops an integer-only accelerator cannot run split the graph",
        detects="Auditing for `--target int8-accelerator` (and every `--mode int8-strict` diagnose): float, "
                "Flex or custom ops remain. Edge TPU-, NPU- and DSP-style delegates run integer ops only; each "
                "island of other ops goes back to the CPU and splits the integer ops into partitions.",
        why="Every partition boundary costs a round trip between accelerator and CPU; many delegates refuse "
            "models with more than one partition, or run the whole model on the CPU.",
        example="quantdoctor audit model.tflite --target int8-accelerator",
        fix="Remove the islands listed in the evidence (replace the ops in the layers named), so the whole "
            "graph is one integer partition.",
    ),
    Check(
        code="QD111", name="microcontroller-unsupported-op", severity="error", precedence=62,
        title="Ops without an INT8 kernel in LiteRT for Microcontrollers",
        detects="Auditing for `--target microcontroller`: the model uses ops (or float versions of ops) that "
                "LiteRT for Microcontrollers has no INT8 kernel for (list kept in audit/tflm_int8_ops.json).",
        why="The micro interpreter fails to find a registration for the op and the model does not run.",
        example="quantdoctor audit model.tflite --target microcontroller",
        fix="Replace the ops listed with ones the microcontroller runtime supports in INT8, and make sure the "
            "model is fully integer (no float islands).",
    ),
    Check(
        code="QD112", name="model-fails-at-runtime", severity="error", precedence=15,
        automatic_fix=True,
        title="The converted model does not run in LiteRT",
        detects="After every successful conversion quantdoctor runs the produced model once, in an isolated "
                "process, on a calibration sample (zeros when there is none and the input sizes are fixed). "
                "The LiteRT interpreter refused an op (`Node number N (OP) failed to prepare`, `failed to "
                "invoke`), or aborted the whole process while allocating tensors; then quantdoctor finds the op "
                "by running ever shorter prefixes of the model in probe processes. Predicted from the model "
                "alone: an op whose fused RELU6 or RELU_N1_TO_1 clamp overflows int32 on its output scale, which "
                "LiteRT's builtin kernel refuses to prepare while XNNPACK runs it (audit/activation_clamps.py).",
        why="The converter does not check that the runtime has a kernel for each op at the types it chose. "
            "int16x8 quantization in particular leaves int16 ops that LiteRT refuses (SQUARED_DIFFERENCE from "
            "a Keras LayerNormalization) or aborts on (the SUB of a tf_keras LayerNormalization): in an app "
            "the abort kills the process without a message.",
        example="x = tf_keras.layers.LayerNormalization()(x)\n"
                "converter.target_spec.supported_ops = [\n"
                "    tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]",
        fix="Keep the op named in float (selective quantization, code below), or quantize to int8 instead of "
            "16x8.",
        fix_code="debug_options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=['<tensor>'])\n"
                 "debugger = tf.lite.experimental.QuantizationDebugger(\n"
                 "    converter=converter, debug_dataset=representative_dataset, debug_options=debug_options)\n"
                 "tflite_model = debugger.get_nondebug_quantized_model()",
    ),
    Check(
        code="QD113", name="op-without-16x8-kernel", severity="error", precedence=40,
        automatic_fix=True,
        title="An op has no 16x8 quantized kernel",
        detects="16x8 quantization (`EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8`) stops with "
                "`Quantization to 16x8-bit not yet supported for op: 'CUMSUM'`: the op has no version with int16 "
                "activations, and no float fallback was allowed. Earlier releases filed this as QD325, a calibration "
                "finding: it is about the op's kernels, not the data.",
        why="Nothing converts. Far fewer ops have 16x8 kernels than int8 ones (CUMSUM, DIV, SIN, "
            "L2_NORMALIZATION, FLOOR_MOD and others have none in TF 2.21).",
        example="keras.layers.Lambda(lambda x: tf.math.cumsum(x, axis=-1))\n"
                "converter.target_spec.supported_ops = [\n"
                "    tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]",
        fix="Quantize to int8 instead (`quantdoctor fix` does), or allow float fallback for the op "
            "(TFLITE_BUILTINS next to the 16x8 ops), or replace the op.",
        fix_code="converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]   # int8, float fallback",
    ),
    Check(
        code="QD114", name="per-channel-dense-for-microcontroller", severity="warning", precedence=63,
        title="Dense weights quantized per channel, which microcontroller kernels long refused or misread",
        detects="Auditing for `--target microcontroller`: the produced model's FULLY_CONNECTED ops carry int8 "
                "weights with a scale per output channel (per-axis quantization parameters), which the converter "
                "writes by default (TF 2.21 does).",
        why="LiteRT for Microcontrollers refused per-channel FULLY_CONNECTED weights until late 2024, and vendor "
            "kernel libraries (CMSIS-NN ports, NPU SDKs) built from older releases read one scale and gave wrong "
            "results into 2025: the model loads, or runs and answers wrongly, depending on the runtime.",
        example="converter.optimizations = [tf.lite.Optimize.DEFAULT]\n"
                "converter.representative_dataset = representative_dataset   # Dense layers: one scale per unit",
        fix="Unless your runtime is known to take per-channel FULLY_CONNECTED weights, quantize Dense layers per "
            "tensor (one scale for each weight matrix); convolutions stay per channel.",
        fix_code="converter._experimental_disable_per_channel_quantization_for_dense_layers = True",
    ),
)
