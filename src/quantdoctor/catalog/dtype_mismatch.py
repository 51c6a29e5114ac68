"""QD2xx: data type mismatches — float64, integer samples, float16 misuse, input/output types."""

from quantdoctor.catalog.check import Check

CHECKS = (
    Check(
        code="QD201", name="float64-calibration-samples", severity="error", precedence=10,
        automatic_fix=True, repaired_in_data=True, fails_conversion=True, certain_failure=True,
        title="Calibration samples are float64 but the model input is float32",
        detects="The representative dataset yields float64 arrays (NumPy's default: `np.random.rand`, "
                "`np.array([...])` of Python floats, pandas columns). The calibrator refuses them: "
                "`Cannot set tensor: Got value of type FLOAT64 but expected type FLOAT32`.",
        why="Calibration stops at the first sample. The converter's message names a TFLite tensor, not the "
            "line in your data pipeline that produced float64.",
        example="def representative_dataset():\n"
                "    for _ in range(10):\n"
                "        yield [np.random.rand(1, 224, 224, 3)]   # float64",
        fix="Cast every sample to the input's dtype before yielding it.",
        fix_code="def representative_dataset():\n"
                 "    for sample in samples:\n"
                 "        yield [sample.astype(np.float32)]",
    ),
    Check(
        code="QD202", name="float64-ops-in-graph", severity="error", precedence=20,
        rewrite="keep the math in float32 (no automatic repair edits a layer's code)",
        title="The model computes in float64, which TFLite has no kernels for",
        detects="A layer casts to float64 (or builds float64 constants) and runs ordinary math on it. The "
                "converter reports the op (`'tf.Mul' op is neither a custom op nor a flex op`), but the op "
                "itself is supported: its float64 type is not.",
        why="The conversion fails, and the message points at an ordinary Mul or Add. Select TF ops would "
            "only move the float64 math to TensorFlow kernels, unquantized.",
        example="class Scale(keras.layers.Layer):\n"
                "    def call(self, x):\n"
                "        return tf.cast(tf.cast(x, tf.float64) * 2.0, tf.float32)",
        fix="Keep the layer's math in float32: drop the float64 cast (or cast constants with dtype=x.dtype).",
        fix_code="def call(self, x):\n"
                 "    return x * tf.constant(2.0, dtype=x.dtype)",
    ),
    Check(
        code="QD203", name="float16-with-int8-only", severity="error", precedence=10,
        automatic_fix=True,
        title="float16 requested together with integer-only ops",
        detects="`target_spec.supported_types = [tf.float16]` combined with "
                "`supported_ops = [TFLITE_BUILTINS_INT8]` (or int8 input/output types). The converter "
                "rejects the combination: `supported_types should be left uninitizalized or set to {tf.int8}`.",
        why="float16 quantization keeps float activations; integer-only ops need integer activations. The "
            "two requests contradict each other, so nothing converts.",
        example="converter.target_spec.supported_types = [tf.float16]\n"
                "converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]",
        fix="Choose one: full INT8 (drop supported_types) or float16 (drop TFLITE_BUILTINS_INT8 and the "
            "representative dataset).",
        fix_code="# full integer INT8\n"
                 "converter.target_spec.supported_types = []\n"
                 "converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]\n"
                 "# or float16\n"
                 "converter.target_spec.supported_types = [tf.float16]\n"
                 "converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]",
    ),
    Check(
        code="QD204", name="sample-dtype-mismatch", severity="error", precedence=10,
        automatic_fix=True, repaired_in_data=True, fails_conversion=True, certain_failure=True,
        title="Calibration samples have the wrong dtype for the input",
        detects="A sample's dtype differs from the model input's (integers for a float input, float for an "
                "integer input). The calibrator refuses it: `Cannot set tensor: Got value of type INT32 but "
                "expected type FLOAT32`.",
        why="Calibration stops at the first sample. Even where a cast would be accepted, integer pixel data "
            "fed to a model trained on normalised floats gives ranges 255 times too wide.",
        example="yield [np.random.randint(0, 255, (1, 8, 8, 3))]   # int64 for a float32 input",
        fix="Preprocess calibration samples exactly as at inference, and cast to the input's dtype.",
        fix_code="yield [(image / 255.0).astype(np.float32)]",
    ),
    Check(
        code="QD205", name="integer-io-without-full-integer", severity="error", precedence=10,
        automatic_fix=True, fails_conversion=True,
        title="Integer input/output types requested without full integer quantization",
        detects="`inference_input_type` or `inference_output_type` is int8/uint8, but the settings do not ask "
                "for full integer quantization (no optimizations or no representative dataset).",
        why="Only a fully integer model can take integer inputs; the converter refuses with "
            "`The inference_input_type and inference_output_type must be tf.float32`.",
        example="converter.inference_input_type = tf.int8   # but no representative_dataset",
        fix="Give a representative dataset (full integer quantization), or keep float32 input/output.",
        fix_code="converter.optimizations = [tf.lite.Optimize.DEFAULT]\n"
                 "converter.representative_dataset = representative_dataset\n"
                 "converter.inference_input_type = tf.int8\n"
                 "converter.inference_output_type = tf.int8",
    ),
    Check(
        code="QD206", name="io-type-not-honoured", severity="error", precedence=50,
        title="The produced model's input/output types are not the ones requested",
        detects="The conversion succeeded but the .tflite's inputs or outputs have another type than "
                "`inference_input_type`/`inference_output_type` asked for (for instance float32 I/O after "
                "an empty representative dataset silently fell back to dynamic range quantization).",
        why="Code that feeds the model int8 data, or a delegate that needs integer I/O, fails on device.",
        example="converter.inference_input_type = tf.int8\n"
                "converter.representative_dataset = lambda: iter([])   # yields nothing",
        fix="Fix the cause reported above (usually the representative dataset) and convert again.",
    ),
    Check(
        code="QD207", name="float16-ops-in-graph", severity="error", precedence=20,
        automatic_fix=True,
        title="The model computes in float16 (mixed precision), which the converter cannot take",
        detects="Layers built under `keras.mixed_precision.set_global_policy('mixed_float16')` run MatMul, "
                "Conv2D, BiasAdd in float16. The converter reports them as `'tf.MatMul' op is neither a custom "
                "op nor a flex op`, with f16 tensor types, in every mode.",
        why="The conversion fails although every op is an ordinary builtin: their float16 type is the problem.",
        example="keras.mixed_precision.set_global_policy('mixed_float16')\n"
                "model = build_model()",
        fix="Rebuild the model for export under the float32 policy and copy the trained weights over; use "
            "float16 quantization (supported_types=[tf.float16]) if you want float16 weights.",
        fix_code="keras.mixed_precision.set_global_policy('float32')\n"
                 "export_model = build_model()\n"
                 "export_model.set_weights(trained_model.get_weights())\n"
                 "converter = tf.lite.TFLiteConverter.from_keras_model(export_model)",
    ),
    Check(
        code="QD208", name="tf1-setting-ignored", severity="warning", precedence=30,
        title="A TF1 converter setting on a TF2 converter: silently ignored",
        detects="A setting only the TF1 converter (`tf.compat.v1.lite.TFLiteConverter`) reads is set on a TF2 "
                "`tf.lite.TFLiteConverter`: `inference_type`, `quantized_input_stats`, `default_ranges_stats`, "
                "`change_concat_input_ranges`, `reorder_across_fake_quant`, `drop_control_dependency`, "
                "`output_format`, `dump_graphviz_dir`, `dump_graphviz_video`, `conversion_summary_dir`, "
                "`post_training_quantize`, `target_ops`. The list is read from TensorFlow's own converter classes.",
        why="The TF2 converter has no such settings, so the assignment makes a plain attribute nothing reads: no "
            "error, no warning. `inference_type = tf.uint8` gives no uint8 model (the graph is int8, the I/O "
            "follow `inference_input_type`), `post_training_quantize = True` no quantization at all.",
        example="converter = tf.lite.TFLiteConverter.from_keras_model(model)\n"
                "converter.inference_type = tf.uint8\n"
                "converter.quantized_input_stats = {'image': (128.0, 127.0)}",
        fix="Remove the TF1 setting and write the TF2 way given for it (each finding names one setting).",
    ),
    Check(
        code="QD209", name="not-integer-for-microcontroller", severity="error", precedence=55,
        title="The model is not integer: LiteRT for Microcontrollers cannot run it as an INT8 model",
        detects="With `--target microcontroller`, the produced model computes in float: float16 weights "
                "dequantized to float32 in front of float ops (float16 quantization), int8 weights with float "
                "activations (dynamic range quantization), or no quantization at all.",
        why="LiteRT for Microcontrollers runs int8 models: its DEQUANTIZE kernel takes int8/int16 only, so a "
            "float16 model does not even load, and it has no hybrid (dynamic range) kernels. The float ops are "
            "not missing INT8 kernels: the settings never asked for integer activations.",
        example="converter.optimizations = [tf.lite.Optimize.DEFAULT]\n"
                "converter.target_spec.supported_types = [tf.float16]",
        fix="Convert with full integer settings: a representative dataset, integer-only ops and int8 I/O.",
        fix_code="converter.optimizations = [tf.lite.Optimize.DEFAULT]\n"
                 "converter.representative_dataset = representative_dataset\n"
                 "converter.target_spec.supported_types = []\n"
                 "converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]\n"
                 "converter.inference_input_type = tf.int8\n"
                 "converter.inference_output_type = tf.int8",
    ),
    Check(
        code="QD210", name="uint8-io-for-microcontroller", severity="warning", precedence=64,
        title="uint8 input/output on a microcontroller: int8 is the supported boundary type",
        detects="With `--target microcontroller`, a model input or output is uint8.",
        why="LiteRT for Microcontrollers dropped uint8 quantization: only its QUANTIZE kernel still takes uint8, to "
            "requantize to int8 at the model's edge, and releases before mid-2022 (and ports built from them) "
            "reject a uint8 input in that kernel too. Any other op touching a uint8 tensor fails to prepare. "
            "int8 I/O runs everywhere and saves the requantize ops.",
        example="converter.inference_input_type = tf.uint8\nconverter.inference_output_type = tf.uint8",
        fix="Use int8 input and output; shift uint8 data by 128 on the device (same scale, zero point - 128).",
        fix_code="converter.inference_input_type = tf.int8\n"
                 "converter.inference_output_type = tf.int8\n"
                 "# on the device: int8_value = uint8_value - 128",
    ),
    Check(
        code="QD211", name="sample-not-an-array", severity="error", precedence=10,
        repaired_in_data=True,
        title="A calibration sample holds something that is not an array of numbers",
        detects="The representative dataset yields, as a sample or as an item of one, something other than a "
                "numeric array or tensor: a function object (a placeholder left in a copied snippet, or `load` "
                "where `load(path)` was meant), None (a loader that failed quietly), a file name, text, a "
                "ragged list. The converter stops on it with `AttributeError: 'function' object has no attribute "
                "'shape'`.",
        why="Calibration stops at that sample, and the converter's message names neither the sample nor where "
            "the value came from.",
        example="def representative_dataset():\n"
                "    for path in paths:\n"
                "        yield [load_image]          # the function, not load_image(path)",
        fix="Yield NumPy arrays (or tensors) of numbers, one per model input, shaped like the input with a "
            "batch of 1.",
        fix_code="def representative_dataset():\n"
                 "    for path in paths:\n"
                 "        yield [load_image(path)[None].astype(np.float32)]",
    ),
)
