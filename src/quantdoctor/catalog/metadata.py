"""QD4xx: signatures and model metadata the converter needs."""

from quantdoctor.catalog.check import Check

CHECKS = (
    Check(
        code="QD401", name="no-signature", severity="error", precedence=10,
        title="The SavedModel has no signature to convert",
        detects="The SavedModel was saved without signatures: the converter stops with `Only support at least "
                "one signature key.`",
        why="The converter needs a signature to know the model's inputs and outputs.",
        example="tf.saved_model.save(module, path)    # no signatures=...",
        fix="Save the model with a serving signature.",
        fix_code="tf.saved_model.save(module, path, signatures={\n"
                 "    'serving_default': module.__call__.get_concrete_function(tf.TensorSpec([None, 4], tf.float32)),\n"
                 "})",
    ),
    Check(
        code="QD402", name="unknown-signature-key", severity="error", precedence=10,
        title="The requested signature key is not in the SavedModel",
        detects="`from_saved_model(path, signature_keys=[...])` names a signature the SavedModel does not have "
                "(`Invalid signature key 'serve' found. Valid keys are ...`).",
        why="Keras `model.export()` names its endpoint 'serve' but also stores it as 'serving_default'; other "
            "exporters use their own names. Nothing converts until the key matches.",
        example="tf.lite.TFLiteConverter.from_saved_model(path, signature_keys=['serve'])",
        fix="Use one of the valid keys listed in the evidence (`saved_model_cli show --dir PATH` lists them too).",
        fix_code="tf.lite.TFLiteConverter.from_saved_model(path, signature_keys=['serving_default'])",
    ),
    Check(
        code="QD403", name="tensor-without-quantization-params", severity="warning", precedence=65,
        title="Integer tensors without quantization parameters",
        detects="The .tflite has int8/uint8/int16 activation tensors with no scale or zero point.",
        why="Kernels and delegates that need the parameters refuse the tensor or compute with a scale of 1, "
            "and code feeding the model cannot convert real values to its integers.",
        example="a model edited by hand, or converted by a tool that drops quantization metadata",
        fix="Convert again from the float model with a representative dataset so every activation is calibrated.",
    ),
    Check(
        code="QD404", name="dynamic-input-shape", severity="info", precedence=85,
        title="An input has unknown dimensions besides the batch",
        detects="The signature leaves a non-batch dimension of an input unknown (`None`), or its rank.",
        why="The converter accepts it and calibrates at the shapes of the samples, but integer-only "
            "accelerators and LiteRT for Microcontrollers need static shapes, and every new input size "
            "makes the CPU interpreter re-plan its memory.",
        example="keras.Input((None, None, 3))",
        fix="Fix the deployed input size in the model you convert (the weights do not change).",
        fix_code="inputs = keras.Input((224, 224, 3))   # rebuild with a fixed size, then model.set_weights(...)",
    ),
    Check(
        code="QD405", name="invalid-input-name", severity="error", precedence=10,
        automatic_fix=True, fails_conversion=True,
        title="A model input's name is not a valid TensorFlow name",
        detects="An input is named outside TensorFlow's node-name pattern `^[A-Za-z0-9.][A-Za-z0-9_.\\\\/>-]*$` "
                "(a space, a leading `_`, `:`, `(`, a non-ASCII letter): `TFLiteConverter.from_keras_model` fails "
                "with `TypeError: 'NoneType' object is not callable`, in every mode, float included.",
        why="Keras 3 accepts any input name, but the converter first exports the model to a SavedModel "
            "signature, whose arguments must be valid node names. That export error is swallowed, and the "
            "converter falls back to a Keras 2 code path that fails for an unrelated reason: it needs functions "
            "that only tf_keras provides. In a process that has imported tf_keras (tfmot imports it) the fallback "
            "traces the model instead, and the same conversion succeeds there.",
        example="inputs = keras.Input((8,), name='my features')",
        fix="Rename the input. For a trained model, put a validly named Input in front of it: the layers "
            "and weights are shared, nothing is retrained.",
        fix_code="inputs = keras.Input(model.inputs[0].shape[1:], name='my_features')\n"
                 "renamed = keras.Model(inputs, model(inputs))\n"
                 "converter = tf.lite.TFLiteConverter.from_keras_model(renamed)",
    ),
    Check(
        code="QD406", name="weights-left-as-variables", severity="error", precedence=8,
        title="The converted model keeps its weights as variables that nothing initialises",
        detects="The .tflite holds the weights as resource variables (VAR_HANDLE / READ_VARIABLE ops) and no "
                "op assigns them: the converter did not fold them into constants. Under TF 2.21 a Keras 3 model "
                "saved with `tf.saved_model.save`, or given as the trackable object of `from_concrete_functions`, "
                "converts this way. Calibration then fails with `variable != nullptr ... (READ_VARIABLE) failed to "
                "invoke`; without calibration the conversion succeeds.",
        why="LiteRT starts such variables empty: the model reads uninitialised memory, so the calibrator stops, "
            "and a model converted without calibration runs and returns garbage with no error at all.",
        example="tf.saved_model.save(model, path, signatures=serve)      # model is a Keras 3 model\n"
                "converter = tf.lite.TFLiteConverter.from_saved_model(path)\n"
                "# or: tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()], model)",
        fix="Export the Keras model with `model.export()` (or convert it with `from_keras_model`); for concrete "
            "functions, pass the tf.function itself as the trackable object: the converter then freezes the weights.",
        fix_code="model.export('exported')\n"
                 "converter = tf.lite.TFLiteConverter.from_saved_model('exported')\n"
                 "# or: tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()], serve)",
    ),
    Check(
        code="QD407", name="invalid-layer-name", severity="error", precedence=10, fails_conversion=True,
        title="A layer's or the model's name is not a valid TensorFlow name",
        detects="A layer (nested ones included) or the model is named outside TensorFlow's root-scope pattern "
                "`^[A-Za-z0-9.][A-Za-z0-9_.\\\\/>-]*$` (a space, `#`, a quote, a leading `_`, a non-ASCII letter): "
                "`TFLiteConverter.from_keras_model` fails with `TypeError: 'NoneType' object is not callable`, "
                "the same words as for an invalid input name (QD405).",
        why="Keras 3 accepts any layer name, but the converter's export of the model opens a name scope per "
            "layer and names each variable after its layer; both refuse such names. That error is swallowed, "
            "and the converter's fallback fails for an unrelated reason. Renaming the layer object is not "
            "enough: its variables keep the old name. The model has to be rebuilt from a renamed config.",
        example="x = keras.layers.Dense(8, name='my dense')(inputs)",
        fix="Rebuild the model from its config with valid names and copy the weights over: the layers and "
            "weights are the same, nothing is retrained.",
        fix_code="import re\n\n"
                 "def layer_names(layer):\n"
                 "    return [layer.name, *(name for sublayer in getattr(layer, 'layers', []) "
                 "for name in layer_names(sublayer))]\n\n"
                 "def valid_name(name):\n"
                 "    name = re.sub(r'[^A-Za-z0-9_.>-]', '_', name)\n"
                 "    return name if re.match(r'[A-Za-z0-9.]', name) else 'x' + name\n\n"
                 "valid = {name: valid_name(name) for name in layer_names(model)}\n\n"
                 "def renamed(node):\n"
                 "    if isinstance(node, dict):\n"
                 "        return {key: renamed(value) for key, value in node.items()}\n"
                 "    if isinstance(node, (list, tuple)):\n"
                 "        return [renamed(value) for value in node]\n"
                 "    return valid.get(node, node) if isinstance(node, str) else node\n\n"
                 "fixed = type(model).from_config(renamed(model.get_config()))\n"
                 "fixed.set_weights(model.get_weights())\n"
                 "converter = tf.lite.TFLiteConverter.from_keras_model(fixed)",
    ),
    Check(
        code="QD408", name="model-input-shapes-unknown", severity="error", precedence=10,
        automatic_fix=True, fails_conversion=True,
        title="The converter cannot tell the Keras model's inputs",
        detects="`TFLiteConverter.from_keras_model` fails with `Model ... cannot be saved because the input shapes "
                "have not been set`: the model has no Input layers and no recorded call the converter can read "
                "its input shapes from. A subclassed model whose `call` takes several tensor arguments, a "
                "`keras.layers.TFSMLayer` (an exported SavedModel reloaded into Keras 3), and a subclassed model "
                "never called all fail this way.",
        why="For a model without Input layers the converter traces `call` with the shapes Keras recorded "
            "when the model was first built, and Keras records only the first argument's. A TFSMLayer records "
            "none. A model never called has no weights yet: converting it would convert random numbers.",
        example="class Decoder(keras.Model):\n"
                "    def call(self, tokens, state):\n"
                "        ...\n"
                "converter = tf.lite.TFLiteConverter.from_keras_model(decoder)   # decoder trained, then converted",
        fix="Put one `keras.Input` per call argument in front of the model, shaped like one sample without its "
            "batch axis, and convert that functional model: the layers and weights are the model's own, shared. "
            "A model never called must be trained or have its weights loaded first. A TFSMLayer's SavedModel "
            "also converts as it is, with `from_saved_model`.",
        fix_code="tokens, state = keras.Input((16,), dtype='int32'), keras.Input((64,))\n"
                 "wrapped = keras.Model([tokens, state], decoder(tokens, state))\n"
                 "converter = tf.lite.TFLiteConverter.from_keras_model(wrapped)",
    ),
    Check(
        code="QD410", name="fake-quant-left-in-model", severity="warning", precedence=58,
        title="A training-time FakeQuant survived into the .tflite as a QUANTIZE/DEQUANTIZE round trip",
        detects="The .tflite has a QUANTIZE whose result goes straight into a DEQUANTIZE: a FakeQuant op of a "
                "quantization-aware trained graph that the converter kept as a round trip instead of folding "
                "its range into an integer op.",
        why="The ops around it compute in float with the quantization noise added: slower and larger than "
            "either the float or the integer model, and not what the training prepared.",
        example="quantize_apply() on a model whose annotated Dense follows an unannotated custom layer, "
                "converted without a representative dataset",
        fix="Give a representative dataset: a model that is only partly quantization-aware trained needs one for "
            "the tensors the training left without a range (next to the round trip), and the quantizer then folds "
            "it into integer ops. The trained ranges stay as they are.",
        fix_code="converter.optimizations = [tf.lite.Optimize.DEFAULT]\n"
                 "converter.representative_dataset = representative_dataset   # ranges for the tensors QAT left out",
    ),
    Check(
        code="QD411", name="qat-model-without-optimizations", severity="error", precedence=12,
        title="A quantization-aware trained model converted without optimizations stays float",
        detects="The graph carries FakeQuant ranges from quantization-aware training (tfmot's QuantizeWrapper "
                "layers), and `converter.optimizations` is empty.",
        why="Without optimizations the converter does not quantize: it keeps every FakeQuant as a QUANTIZE/"
            "DEQUANTIZE round trip around float ops. The trained ranges go unused and the model is float, "
            "with extra ops.",
        example="converter = tf.lite.TFLiteConverter.from_keras_model(quantize_model(model))\n"
                "tflite_model = converter.convert()",
        fix="Enable optimizations. A QAT model needs no representative dataset: its ranges are trained.",
        fix_code="converter.optimizations = [tf.lite.Optimize.DEFAULT]",
    ),
    Check(
        code="QD412", name="qat-range-mismatch", severity="warning", precedence=60,
        title="The data falls outside the input range the QAT model was trained with",
        detects="The input range a quantization-aware trained model learned (its first FakeQuant, the input "
                "quantizer of the .tflite) does not cover the calibration or eval data: a share of the values "
                "is clipped, or the data uses a sliver of the range.",
        why="A QAT model keeps its trained ranges; calibration data does not change them. Data preprocessed "
            "differently from training (0..255 against 0..1, another normalisation) is clipped at the input "
            "or squeezed into a few integer levels, and the model's answers degrade.",
        example="training on image / 255.0, deployment on raw pixels",
        fix="Feed the model data preprocessed exactly as during training (the trained range is shown); if the "
            "deployment data really differs, fine-tune the QAT model on it.",
    ),
)
