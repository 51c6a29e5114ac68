"""QD9xx: the converter process itself crashed, hung, ran out of memory, or failed unexplained; and
settings under which the converter silently ignores what it was given (QD908)."""

from quantdoctor.catalog.check import Check

CHECKS = (
    Check(
        code="QD901", reducible=True, name="converter-crashed", severity="error", precedence=90,
        confirms=("QD304", "QD306", "QD307", "QD313"), confirms_after_crash=True,
        title="The converter process crashed",
        detects="The conversion process died from a signal (segmentation fault, abort) or exited without "
                "reporting a result.",
        why="In your own process this kills Python with no error message; quantdoctor ran it isolated, so "
            "you get the signal, the stage it reached, and the last lines it printed.",
        example="keras.Input((None, None, 3)) -> Conv2D(4, 3), calibrated on 2x2 images: SIGFPE",
        fix="If it died while calibrating, look at the sample shapes and values shown (a sample smaller than "
            "a kernel, Inf values); otherwise at the layer in the last frames. --keep-workdir DIR keeps the "
            "request, samples and log to attach to a bug report.",
    ),
    Check(
        code="QD902", reducible=True, name="converter-timeout", severity="error", precedence=90,
        title="The conversion did not finish within the time limit",
        detects="The converter ran longer than `--timeout` seconds and was stopped.",
        why="Very large constant folds, huge unrolled loops or a hang in calibration can take forever.",
        example="quantdoctor diagnose big.keras --timeout 60",
        fix="Raise --timeout if the model is simply large; otherwise see which stage it reached below and "
            "reduce the calibration samples (--max-samples) or the model.",
    ),
    Check(
        code="QD903", name="converter-out-of-memory", severity="error", precedence=90,
        title="The converter ran out of memory",
        detects="The conversion process failed to allocate memory (MemoryError, std::bad_alloc, "
                "ResourceExhaustedError), was killed by the system's out-of-memory killer, or crashed at its "
                "--memory-limit.",
        why="Constant folding and calibration of large models can need several times the model's size.",
        example="quantdoctor diagnose model.keras --memory-limit 2000",
        fix="Convert on a machine with more memory, lower --max-samples, or raise --memory-limit.",
    ),
    Check(
        code="QD904", reducible=True, name="unexplained-converter-error", severity="error", precedence=95,
        title="The converter failed with an error quantdoctor does not recognise",
        detects="The conversion raised an error that matches no known failure signature.",
        why="The raw message is kept in the evidence so nothing is lost.",
        example="any converter error not yet in the catalog",
        fix="Read the converter's message below; if it names an op or layer, try Select TF ops or replacing "
            "that layer.",
    ),
    Check(
        code="QD908", name="calibration-data-unused", severity="warning", precedence=70,
        title="Calibration data was given, but these settings never read it",
        detects="A representative dataset or --data came with settings that do not calibrate: no optimization "
                "enabled (the model stays float), dynamic range, or float16 quantization.",
        why="The converter quietly ignores the samples. A user who set a dataset expects quantized "
            "activations and gets a model whose activations stay float; a user who chose dynamic range on "
            "purpose should know the data plays no part.",
        example="converter.representative_dataset = gen   # but converter.optimizations was never set",
        fix="For integer activations, enable Optimize.DEFAULT and leave float16 out of supported_types "
            "(quantdoctor --mode int8); for dynamic range or float16, drop the data.",
        fix_code="converter.optimizations = [tf.lite.Optimize.DEFAULT]\n"
                 "converter.representative_dataset = representative_dataset",
    ),
    Check(
        code="QD909", name="keras3-saved-model-unreadable", severity="error", precedence=85,
        verified_on=("2.16",),
        title="This TensorFlow cannot convert the SavedModel it writes for a Keras 3 model",
        detects="The converter aborts with `missing attribute 'value'` and `LLVM ERROR: Failed to infer result "
                "type(s)` on a Keras 3 model converted with from_keras_model, or saved with "
                "tf.saved_model.save and converted with from_saved_model.",
        why="TensorFlow 2.16's converter cannot read the variable reads of the SavedModel it writes for a "
            "Keras 3 layer (a Conv2D kernel, for one): the process aborts before any quantization. Keras' own "
            "export writes them in a form it reads, and later releases (verified: 2.18 and 2.21) read both.",
        example="keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3)]) on TensorFlow 2.16 -> "
                "tf.lite.TFLiteConverter.from_keras_model(model).convert(): Aborted",
        fix="Export the model with Keras and convert that SavedModel, or use TensorFlow 2.18 or newer.",
        fix_code='model.export("exported")   # Keras 3: a SavedModel TensorFlow 2.16 reads\n'
                 'converter = tf.lite.TFLiteConverter.from_saved_model("exported")',
    ),
)
