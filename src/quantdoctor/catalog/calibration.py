"""QD3xx: representative dataset (calibration data) problems."""

from quantdoctor.catalog.check import Check

_LIST_GENERATOR = """def representative_dataset():
    for sample in samples:                       # each sample: one batch of 1
        yield [sample.astype(np.float32)]        # a list: one array per model input"""

CHECKS = (
    Check(
        code="QD301", name="missing-representative-dataset", severity="error", precedence=10,
        repaired_in_data=True, fails_conversion=True, certain_failure=True, certain_if="converter_requires_dataset",
        title="Full integer quantization requested without a representative dataset",
        detects="The settings ask for integer activations (TFLITE_BUILTINS_INT8, int8/uint8 I/O, or 16x8) "
                "but no representative dataset was given.",
        why="Without samples the converter cannot measure activation ranges; it refuses "
            "(`For full integer quantization, a representative_dataset must be specified`).",
        example="converter.optimizations = [tf.lite.Optimize.DEFAULT]\n"
                "converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]",
        fix="Give 100-500 real, preprocessed inputs as a representative dataset.",
        fix_code="converter.representative_dataset = representative_dataset\n\n" + _LIST_GENERATOR,
    ),
    Check(
        code="QD302", name="empty-representative-dataset", severity="error", precedence=10,
        repaired_in_data=True,
        title="The representative dataset yielded no samples",
        detects="The representative_dataset generator (or the data file) produced zero samples.",
        why="With nothing to calibrate on, the converter may quietly produce a dynamic-range model with "
            "float inputs and outputs, ignoring the integer types you asked for, or fail later.",
        example="def representative_dataset():\n"
                "    for x in []:        # an exhausted iterator, an empty folder, a wrong glob\n"
                "        yield [x]",
        fix="Make the generator yield real samples; a generator function must be callable more than once, "
            "so do not wrap a one-shot iterator.",
        fix_code=_LIST_GENERATOR,
    ),
    Check(
        code="QD303", name="bare-array-sample", severity="error", precedence=10,
        automatic_fix=True, repaired_in_data=True, fails_conversion=True, certain_failure=True,
        title="The representative dataset yields a bare array instead of a list",
        detects="Each sample must be a list (one array per input), a dict (input name -> array) or a "
                "(signature_key, dict) tuple; a bare array was yielded.",
        why="The calibrator rejects it with `Unsupported value from dataset`, followed by the whole array "
            "printed as text.",
        example="yield sample.astype(np.float32)      # missing the list around it",
        fix="Wrap the array in a list.",
        fix_code="yield [sample.astype(np.float32)]",
    ),
    Check(
        code="QD304", name="wrong-input-count", severity="error", precedence=10,
        repaired_in_data=True, fails_conversion=True, certain_failure=True,
        title="Samples carry a different number of arrays than the model has inputs",
        detects="A sample list has more or fewer arrays than the model's signature has inputs.",
        why="The calibrator pairs arrays with inputs by position: missing inputs fail, extra arrays fail or "
            "are fed to the wrong input.",
        example="yield [image, mask]    # for a model with one input",
        fix="Yield exactly one array per model input, in the model's input order (or a dict by name).",
        fix_code="yield {name: value for name, value in zip(input_names, arrays)}",
    ),
    Check(
        code="QD305", name="dict-keys-mismatch", severity="error", precedence=10,
        automatic_fix=True, repaired_in_data=True, fails_conversion=True, certain_failure=True,
        certain_if="missing_inputs",  # the calibrator looks up each input's key: extra keys alone pass
        title="Sample dict keys do not match the model's input names",
        detects="The representative dataset yields dicts whose keys differ from the signature's input "
                "names.",
        why="Inputs are looked up by name: unknown keys fail, and a missing name leaves an input unfed.",
        example="yield {'img': x}     # the signature calls the input 'image'",
        fix="Use the signature's input names as keys (see `model.inputs` / the report's inputs).",
    ),
    Check(
        code="QD306", name="sample-shape-mismatch", severity="error", precedence=10,
        automatic_fix=True, repaired_in_data=True, fails_conversion=True, certain_failure=True,
        certain_if="fixed_dimension_differs",  # a sample of another rank may be resized to, and calibrate
        title="Sample shape does not match the model input",
        detects="A sample's shape differs from the input's shape in a dimension the signature fixes "
                "(a missing batch axis, another image size, channels last vs first).",
        why="The calibrator either refuses to resize the input (`ResizeInputTensorStrict only allows "
            "mutating unknown dimensions`) or a kernel fails to prepare; with a larger batch it may "
            "silently calibrate on other shapes than you deploy.",
        example="yield [image]                 # (224, 224, 3): no batch axis\n"
                "yield [image[None]]           # (1, 224, 224, 3): right",
        fix="Yield samples shaped exactly like one inference batch (batch size 1 included).",
        fix_code="yield [np.expand_dims(image, 0).astype(np.float32)]",
    ),
    Check(
        code="QD307", name="non-finite-samples", severity="error", precedence=15,
        automatic_fix=True, repaired_in_data=True,
        title="Calibration samples contain NaN or Inf",
        detects="Some sample values are NaN or infinite.",
        why="The converter accepts them without a word; the measured ranges become meaningless (NaN or "
            "infinite scales), and the quantized model's outputs are garbage.",
        example="yield [np.log(image)]    # log(0) = -inf",
        fix="Clean the data (np.nan_to_num, or drop the samples) and fix the preprocessing that produced them.",
        fix_code="sample = np.nan_to_num(sample, nan=0.0, posinf=0.0, neginf=0.0)",
    ),
    Check(
        code="QD308", name="too-few-samples", severity="warning", precedence=80,
        ranges_from_samples=True,
        title="Too few calibration samples",
        detects="The representative dataset has fewer than 100 samples.",
        why="Activation ranges measured on a handful of samples miss the values real inputs produce; "
            "those get clipped and accuracy drops. 100-500 varied samples is the usual range.",
        example="for _ in range(10):\n    yield [...]",
        fix="Use at least 100 (better 300-500) real samples drawn across your classes and conditions.",
    ),
    Check(
        code="QD309", name="random-noise-samples", severity="warning", precedence=70,
        ranges_from_samples=True,
        title="Calibration samples look like random noise, not real inputs",
        detects="Neighbouring values in the samples are uncorrelated (as in `np.random.rand` or "
                "`np.random.randn`), which real images, audio and sequences never are.",
        why="Ranges calibrated on noise do not match the activations of real data: quantization succeeds "
            "but accuracy can collapse.",
        example="yield [np.random.rand(1, 224, 224, 3).astype(np.float32)]",
        fix="Calibrate on real inputs, preprocessed exactly as at inference (a few hundred from your "
            "training or validation set).",
        fix_code="def representative_dataset():\n"
                 "    for image in validation_images[:300]:\n"
                 "        yield [preprocess(image)[None].astype(np.float32)]",
    ),
    Check(
        code="QD310", name="kernel-prepare-failed", severity="error", precedence=20,
        fails_conversion=True, confirms=("QD306", "QD304", "QD313"),
        title="A kernel failed to prepare while calibrating on a sample",
        detects="During calibration the TFLite interpreter reports `Node number N (OP) failed to prepare`: "
                "a sample's shape (or type) cannot flow through that kernel.",
        why="Calibration stops; the message names a kernel-internal check and a node number, not the "
            "sample or layer at fault.",
        example="yield [image]   # (8, 8, 3) into a Conv2D model expecting (1, 8, 8, 3)",
        fix="Feed samples with exactly the shape of one inference batch; see the sample shape reported.",
    ),
    Check(
        code="QD311", name="constant-input", severity="warning", precedence=75,
        ranges_from_samples=True,
        title="An input is constant over all calibration samples",
        detects="Every calibration value of an input is the same (all zeros, a placeholder, a padding mask "
                "that is never set).",
        why="Its quantization range collapses to a point, so every real value is clipped to it on device.",
        example="yield [np.zeros((1, 8, 8, 3), np.float32)]",
        fix="Calibrate with real, varied inputs for this input.",
    ),
    Check(
        code="QD312", name="generator-raised", severity="error", precedence=5,
        repaired_in_data=True, fails_conversion=True,
        title="The representative dataset generator raised an exception",
        detects="Calling or iterating the representative_dataset function raised an exception.",
        why="The converter surfaces it from deep inside calibration, far from your data code.",
        example="def representative_dataset():\n"
                "    for path in paths:\n"
                "        yield [load(path)]     # raises on a corrupt file",
        fix="Fix the generator: the exception and the sample index it failed at are shown above.",
    ),
    Check(
        code="QD313", name="list-samples-for-several-inputs", severity="error", precedence=12,
        automatic_fix=True, fails_conversion=True,
        title="List samples for a model with several inputs: the order is the converter's, not yours",
        detects="The representative dataset yields lists for a model with more than one input. The "
                "calibrator pairs list items with the converted model's input tensors in *its* order, which "
                "under TF 2.21 is not `model.inputs` order and not even the same from one process to the "
                "next (a Keras model with inputs [image, meta] is calibrated as [meta, image] in some runs). "
                "When the inputs share one shape nothing fails: the order is read from the produced model, and "
                "an order other than `model.inputs` is an error, the same order a warning that names it. When "
                "their shapes differ, the items' shapes show which input each belongs to: a warning that names "
                "them, an error once the converter fails on the pairing.",
        why="Arrays go to the wrong inputs: a kernel fails to prepare, or, when shapes happen to fit, "
            "calibration silently measures the wrong ranges. A conversion that works today may fail on the next "
            "run: the pairing is luck.",
        example="yield [image, meta]",
        fix="Yield a dict keyed by input name: the calibrator then matches arrays by name.",
        fix_code="yield {'image': image[None].astype(np.float32), 'meta': meta[None].astype(np.float32)}",
    ),
    Check(
        code="QD314", name="calibration-range-mismatch", severity="warning", precedence=60,
        ranges_from_samples=True,
        title="Calibration data does not cover the inference data's range",
        detects="With inference data given (`--eval-data`), a share of its values lies outside the range "
                "the calibration samples span, or its range is of another scale altogether (calibration in "
                "[0, 1] but inference in [0, 255]; inference data normalised twice).",
        why="Quantization ranges come from the calibration samples: inference values beyond them are clipped "
            "to the edge, and a range 255 times too wide leaves a handful of integer levels for real data.",
        example="calibration: image / 255.0      inference: raw uint8 pixels cast to float",
        fix="Preprocess calibration and inference data with the same function, and calibrate on samples drawn "
            "from the data the model will see.",
        fix_code="def preprocess(image):\n    return (image / 255.0).astype(np.float32)   # the one function both use",
    ),
    Check(
        code="QD315", name="signature-without-samples", severity="error", precedence=10,
        automatic_fix=True, repaired_in_data=True,
        title="A converted signature gets no calibration samples and stays float",
        detects="The model converts several signatures, and some receive no sample: the samples are lists "
                "(which the calibrator feeds to one signature only), or `(signature_key, dict)` tuples that "
                "leave a signature out. Dicts without a signature key are refused outright "
                "(`SignatureDef signature_key is None and model has 2 Signatures`).",
        why="Except for dicts, the conversion succeeds, and the signatures without samples keep float kernels, "
            "with DEQUANTIZE around them: nothing warns, and the model is not the integer model you asked for.",
        example="converter = tf.lite.TFLiteConverter.from_saved_model(path)   # signatures 'encode' and 'decode'\n"
                "converter.representative_dataset = lambda: ([x] for x in samples)",
        fix="Yield `(signature_key, {input name: array})` tuples, samples for every signature.",
        fix_code="def representative_dataset():\n"
                 "    for x in samples:\n"
                 "        for key in ('encode', 'decode'):          # every signature you convert\n"
                 "            yield key, {'x': x[None].astype(np.float32)}",
    ),
    Check(
        code="QD316", name="data-normalised-twice", severity="warning", precedence=30,
        title="The samples are normalised already, and the model normalises its input again",
        detects="The model's graph starts with its own normalisation (Rescaling, Normalization, Sub/Div by "
                "constants: `x * scale + offset` with |scale| of 1/10 or less, so it expects raw-range values "
                "such as pixels in 0..255), while the calibration or eval samples are centred near 0 (|mean| "
                "under 0.5) with unit spread (standard deviation 0.25 to 2). Read from the data alone: no "
                "labels needed.",
        why="The model squeezes the already normalised samples a second time: every input looks alike to it, "
            "its float outputs barely depend on the input, and calibration sets ranges for data it never sees "
            "in production. With labels, `quantdoctor compare` measures it (QD510, QD511).",
        example="normalization = keras.layers.Normalization(); normalization.adapt(raw_images)\n"
                "calibration = (raw_images - mean) / std   # normalised before the model normalises again",
        fix="Feed raw (un-normalised) samples, as the model was trained with, in calibration and inference; "
            "or take the normalisation out of the model.",
        fix_code="def representative_dataset():\n"
                 "    for x in raw_samples:                 # the model normalises its input itself\n"
                 "        yield [x[None].astype(np.float32)]",
    ),
)
