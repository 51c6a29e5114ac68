"""QD5xx: the model converted, but the quantized model is wrong or too lossy (found by `compare`)."""

from quantdoctor.catalog.check import Check


def keep_float_code(tensors: list[str]) -> str:
    """The converter code that keeps the ops producing `tensors` in float (selective quantization)."""
    names = ", ".join(repr(t) for t in tensors)
    return ("debug_options = tf.lite.experimental.QuantizationDebugOptions(\n"
            f"    denylisted_nodes=[{names}])\n"
            "debugger = tf.lite.experimental.QuantizationDebugger(\n"
            "    converter=converter, debug_dataset=representative_dataset, debug_options=debug_options)\n"
            "tflite_model = debugger.get_nondebug_quantized_model()   # those ops stay float")


def lost_channels_text(output: str, lost: list[int], sqnr_db: float, where: str) -> str:
    """QD518's message: an output whose small channels are crushed while its whole SQNR looks fine."""
    shown = ", ".join(str(c) for c in lost[:8]) + (f" and {len(lost) - 8} more" if len(lost) > 8 else "")
    return (f"{where}, quantized {output} loses channel(s) {shown} (last axis): their quantization error is as "
            f"large as their values, while the whole output keeps {sqnr_db:.1f} dB because larger channels set "
            "its scale.")


CHECKS = (
    Check(
        code="QD501", name="layer-error-outlier", severity="warning", precedence=40,
        title="One layer loses far more accuracy than its peers",
        detects="Comparing float and quantized activations on eval data, a layer's worst channel keeps far less "
                "signal (SQNR) than the median layer, and it loses that on its own rather than inheriting it "
                "from the layers before.",
        why="A single badly quantized layer often explains most of an INT8 model's accuracy drop; the rest "
            "of the graph is fine.",
        example="a layer whose activation range explodes (e.g. an unnormalised exp or square) before a Dense",
        fix="Keep this layer in float (selective quantization, code below), or bound its activation range "
            "(BatchNormalization, a clipping activation) and retrain.",
        fix_code=keep_float_code(["<tensor>"]),
    ),
    Check(
        code="QD502", name="saturated-activation", severity="warning", precedence=45,
        title="Activations clip: the calibrated range is narrower than the eval data",
        detects="A share of a layer's float activations on eval data falls outside the range calibrated on "
                "the representative dataset.",
        why="Clipped values all become the same integer; the information beyond the range is lost.",
        example="calibrating on dark images and evaluating on bright ones",
        fix="Recalibrate with samples that cover the eval data (both ranges are shown), preprocessed the same way.",
    ),
    Check(
        code="QD503", name="mixed-range-merge", severity="warning", precedence=40,
        title="A concatenation or add forces one scale on inputs of very different ranges",
        detects="Comparing float and quantized activations on eval data: CONCATENATION/ADD/PACK takes inputs "
                "whose float ranges differ by 50x or more; INT8 gives the result a single scale, so the "
                "small-range input keeps a handful of levels. The inputs are found behind ops that only move "
                "or requantize values (a Dense on a rank-3 tensor ends in a RESHAPE). An error when channels of "
                "the result keep no signal at all (quantized to a constant: 0 dB); the message counts them.",
        why="The classic cause of all-zero scores in detectors: box coordinates in 0..640 concatenated with "
            "scores in 0..1 leave the scores one or two quantization steps.",
        example="keras.layers.Concatenate()([boxes_in_pixels, scores])",
        fix="Bring the inputs to similar ranges before merging (divide boxes by the image size), output them "
            "separately, or keep the merge in float (code below).",
        fix_code=keep_float_code(["<tensor>"]),
    ),
    Check(
        code="QD506", name="merge-crushes-input", severity="error", precedence=18,
        title="A merge's output scale is too coarse for one of its inputs",
        detects="Read from the quantization parameters of any integer model, no data needed: an input of "
                "CONCATENATION or PACK (ADD: a warning) whose calibrated range (its own scale times its "
                "integer levels, found behind RESHAPE and requantizing QUANTIZE ops) spans fewer than two steps "
                "of the merge's output scale.",
        why="The input's values all land on one or two levels of the result: detector scores next to box "
            "coordinates in pixels all read 0 while the output's overall SQNR still looks healthy. For an ADD "
            "the small addend is below the sum's resolution.",
        example="boxes = keras.layers.Rescaling(640.0)(keras.layers.Dense(4)(features))   # [1, anchors, 4]\n"
                "scores = keras.layers.Dense(80, activation='sigmoid')(features)          # [1, anchors, 80]\n"
                "outputs = keras.layers.Concatenate()([boxes, scores])",
        fix="Bring the inputs to similar ranges before merging (divide boxes by the image size), output them "
            "separately, or keep the merge in float (code below).",
        fix_code=keep_float_code(["<tensor>"]),
    ),
    Check(
        code="QD504", name="output-collapse", severity="error", precedence=20,
        title="A quantized output collapses to a (near) constant",
        detects="A model output of the quantized model barely moves (its spread is under 1% of the float "
                "output's): stuck at one value, or squeezed into a sliver of the real range. compare measures it "
                "on the eval samples; every diagnose with calibration data measures it on the first few "
                "calibration samples, against the float model the converter quantized.",
        why="The quantized model answers the same thing whatever the input: its scale is far too coarse for "
            "the output's real range, or an upstream layer saturates completely.",
        example="a regression head calibrated on samples whose outputs span a tiny range",
        fix="See the layer findings above for where the signal is lost; recalibrate on representative data, "
            "or keep the output head in float.",
    ),
    Check(
        code="QD505", name="integer-input-fed-floats", severity="info", precedence=90,
        title="The model takes integer input: feed it quantized values, not floats",
        detects="The quantized model's input is int8/uint8 while the eval data is float. quantdoctor quantized "
                "the eval data with the input's scale and zero point; code that casts floats to int8 instead "
                "feeds the model garbage.",
        why="Casting 0.73 to int8 gives 0, not the intended level; outputs are wrong without any error.",
        example="interpreter.set_tensor(input_index, image.astype(np.int8))",
        fix="Quantize inputs with the model's own parameters (and dequantize int8 outputs the same way).",
        fix_code="scale, zero_point = input_details['quantization']\n"
                 "q = np.clip(np.round(x / scale) + zero_point, -128, 127).astype(np.int8)",
    ),
    Check(
        code="QD507", name="output-destroyed", severity="error", precedence=22,
        title="A quantized output no longer follows the float output",
        detects="Run on the first few calibration samples (every diagnose with calibration data) or on the "
                "eval samples (compare), a model output of the quantized model differs from the float model's "
                "about as much as the float output itself measures: SQNR at or under 3 dB (the error's power at "
                "least half the signal's), while the output still moves (else QD504).",
        why="Quantization noise as large as the signal: the outputs are noise, whatever an accuracy number on "
            "a few easy inputs says.",
        example="keras.layers.Lambda(lambda x: x[:, 1:] - x[:, :1])   # two pixel positions, 0..640, a step of 2.5\n"
                "# their difference (about +-1) is lost in the inputs' quantization",
        fix="Compare the model layer by layer (`quantdoctor compare`) to find where the signal is lost, then "
            "recalibrate on representative data or keep that layer in float.",
    ),
    Check(
        code="QD510", name="float-model-wrong-on-eval-data", severity="error", precedence=6, float_model_fails=True,
        title="The float model is already wrong on the eval data: quantization is not the problem",
        detects="On the eval data, the float model and the quantized model both score at chance on the labels, "
                "or both predict one class for every input.",
        why="The quantized model cannot be better than its float reference. When the float model fails too, "
            "the eval data does not match what the model was trained on: look at the preprocessing, not at "
            "quantization.",
        example="eval_data = raw_images            # the model was trained on raw_images / 255.0",
        fix="Preprocess the eval data exactly as the training data (the check for the classic mistakes is "
            "reported with it), then compare again.",
    ),
    Check(
        code="QD511", name="preprocessing-mismatch", severity="error", precedence=5, float_model_fails=True,
        title="The eval data is preprocessed differently from what the model expects",
        detects="When the float model fails on the eval data, quantdoctor runs it again on the data with one "
                "classic preprocessing mistake undone: channels reversed (RGB/BGR), values scaled by 255 or "
                "1/255, or the model's own normalisation (Rescaling, Normalization, Sub/Div by constants at its "
                "input) applied a second time. A variant that brings the float model back is the cause.",
        why="The model is fine; the data fed to it is not the data it was trained on.",
        example="x = (image - mean) / std       # and the model starts with its own Normalization layer",
        fix="Feed the data as the variant that worked (shown with its accuracy), in calibration and inference.",
    ),
    Check(
        code="QD518", name="output-channels-lost", severity="warning", precedence=45,
        title="Some channels of a quantized output are lost while the whole output looks fine",
        detects="Run on the first few calibration samples (every diagnose with calibration data) or on the "
                "eval samples (compare), some channels (last axis) of a model output keep an SQNR of 1 dB or "
                "less against the float model (rounded to a constant) while the output as a whole scores well. "
                "Outputs whose float values all lie in [0, 1] (probabilities) are left out.",
        why="One int8 scale serves the whole output, and the largest channel sets it: a regression head "
            "with one target in the hundreds and one around 0.1 rounds the small one to a constant. A "
            "warning, not an error: a channel the model predicts as noise around 0 (an autoencoder's blank "
            "border pixels) loses nothing real.",
        example="outputs = keras.layers.Dense(2)(features)   # targets: a price in the hundreds, a rate near 0.1",
        fix="If those channels matter, give them a range of their own: scale the targets so the channels "
            "share a range (and undo it after inference), split them into a second output, or keep the "
            "output layer float (code below).",
        fix_code=keep_float_code(["<output tensor>"]),
    ),
)
