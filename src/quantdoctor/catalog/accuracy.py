"""QD5xx: the model converted, but the quantized model is wrong or too lossy (found by `compare`)."""

import ast
import re
from dataclasses import replace

from quantdoctor.catalog.check import Check
from quantdoctor.report.model import Finding

DEGRADED_OUTPUT = ("QD504", "QD507", "QD518", "QD519")
# `keep_float_code`'s first two lines, its tensors' list in the group.
_KEPT_FLOAT = re.compile(r"debug_options = tf\.lite\.experimental\.QuantizationDebugOptions\(\n    denylisted_nodes=(\[.*?\])\)\n")


def outputs_degrade(findings: list[Finding]) -> bool:
    """Whether the measured outputs degrade: one collapsed, destroyed or drifting to an error, or channels of
    one lost (a crushed merge that is itself the output)."""
    return any(f.code in DEGRADED_OUTPUT and (f.severity == "error" or f.code == "QD518") for f in findings)


def unreachable(finding: Finding, rows: str) -> Finding:
    """A layer finding on a model whose float outputs do not vary over the `rows` ("eval", "calibration"): no error
    inside can reach them, so it is information only (the outputs' own rule leaves them alone too)."""
    return replace(finding, severity="info",
                   message=f"{finding.message} The model's outputs do not vary over the {rows} samples (in float), "
                           "so no error inside can reach them.")


def keep_float_code(tensors: list[str]) -> str:
    """The converter code that keeps the ops producing `tensors` in float (selective quantization)."""
    names = ", ".join(repr(t) for t in tensors)
    return ("debug_options = tf.lite.experimental.QuantizationDebugOptions(\n"
            f"    denylisted_nodes=[{names}])\n"
            "debugger = tf.lite.experimental.QuantizationDebugger(\n"
            "    converter=converter, debug_dataset=representative_dataset, debug_options=debug_options)\n"
            "tflite_model = debugger.get_nondebug_quantized_model()   # those ops stay float")


def kept_float_tensors(code: str | None) -> list[str] | None:
    """The tensors a `keep_float_code` snippet keeps float (its names are Python literals, one line); None for any
    other code."""
    found = _KEPT_FLOAT.match(code or "")
    return list(ast.literal_eval(found.group(1))) if found else None


def lost_channels_text(output: str, lost: list[int], sqnr_db: float, where: str) -> str:
    """QD518's message: an output whose small channels are crushed while its whole SQNR looks fine."""
    shown = ", ".join(str(c) for c in lost[:8]) + (f" and {len(lost) - 8} more" if len(lost) > 8 else "")
    return (f"{where}, quantized {output} loses channel(s) {shown} (last axis): their quantization error is as "
            f"large as their values, while the whole output keeps {sqnr_db:.1f} dB because larger channels set "
            "its scale.")


def lost_channels_severity(lost: list[int], channels: int | None) -> str | None:
    """QD518's severity: an error when most of the output's channels (last axis) are lost, since the output then
    keeps less of what the float model says than it loses; else the catalog's warning (None)."""
    return "error" if channels and 2 * len(lost) > channels else None


def drift_text(output: str, state: str, numbers: dict, where: str, *, follows_top1: float, confidence: float) -> str:
    """QD519's message: how far a quantized output strays from the float one, in the numbers that decided it
    (`numbers` holds the top-1 counts of `measures.top1_counts` for class scores). A `state` of "unshown" is an
    agreement of `follows_top1` or more that the rows do not show at `confidence`: it says why that is a warning."""
    parts = [f"keeps an SQNR of {numbers['sqnr_db']:.1f} dB against the float model"]
    if numbers.get("top1_agreement") is not None:
        parts.append(f"its top-1 class agrees with the float model's on {numbers['top1_agreeing_rows']} of the "
                     f"{numbers['top1_rows']} rows ({numbers['top1_agreement']:.0%})")
    if numbers.get("worst_channel_sqnr_db") is not None:
        parts.append(f"its worst channel keeps {numbers['worst_channel_sqnr_db']:.1f} dB")
    if state == "top1_collapsed":
        how = "its predictions collapse"
    elif state == "unshown":
        how = (f"{numbers['top1_rows']} rows do not show {follows_top1:.0%} agreement or more (at {confidence:.0%} "
               f"confidence it may be as low as {numbers['top1_lower_bound']:.0%}), so an OK would be a guess: the "
               "output may follow the float one only loosely")
    else:
        how = "it follows the float output only loosely"
    return f"{where}, quantized {output} {'; '.join(parts)}: {how}."


def unshown_fix(*, in_compare: bool, shown_by: tuple[int, int], follows_top1: float, otherwise: str) -> str:
    """QD519's fix for an agreement the rows do not show (`drift_text`'s "unshown"): measure on more held-out rows
    (`shown_by`: so many agreeing rows out of so many would show `follows_top1`), then `otherwise` if it stays
    under."""
    agreeing, rows = shown_by
    measure = ("Measure on more eval rows to tell" if in_compare else
               "The rows measured are calibration rows, the inputs the quantizer was fitted to: run `quantdoctor "
               "compare` with held-out eval data to measure the agreement where it counts")
    return (f"{measure} ({agreeing} of {rows} agreeing rows show {follows_top1:.0%}). If it stays under "
            f"{follows_top1:.0%}: {otherwise[0].lower()}{otherwise[1:]}")


SOFTMAX_STEP = 1 / 256  # the fixed int8 output step of SOFTMAX and LOGISTIC in LiteRT
FEW_STEPS = 32  # probabilities that never reach this many steps keep few levels on that grid


def probability_grid_note(low: float, high: float) -> str:
    """A sentence on the int8 softmax's fixed 1/256 step when an output's probabilities stay within a few of
    its steps (a head over many classes); empty otherwise."""
    if low < 0.0 or high > FEW_STEPS * SOFTMAX_STEP:
        return ""
    return (f" Its probabilities stay under {high:.3g}, {high / SOFTMAX_STEP:.2g} step(s) of the fixed 1/256 grid "
            "of an int8 softmax: probabilities under about 0.004 all read 0 (keep the softmax in float, or "
            "compare the logits before it).")


def collapse_fix(*, in_compare: bool, layer_codes: list[str] = ()) -> str:
    """QD504's fix, for where it is printed: the run check points to compare; compare points to its layer
    findings by code (`layer_codes`, wherever the ranking prints them) only when it has some."""
    if not in_compare:
        first = "Run `quantdoctor compare` with eval data to see the layer where the signal is lost"
    elif layer_codes:
        first = f"See the layer findings ({', '.join(layer_codes)} in this report) for where the signal is lost"
    else:
        first = "No single layer stands out: the error builds up over the network"
    return (f"{first}; recalibrate on representative data, or keep the output head in float (selective "
            "quantization), or quantize it with int16 activations (int16x8).")


TINY_ACTIVATION = 1e-6  # activations within this magnitude sit below any range worth bounding
NEGLIGIBLE_ADDEND = 1e-3  # an ADD input spanning under this share of the other moves the sum by under 1/4 step
BOX_SPAN = 32.0  # a merge input spanning more than this next to one within [0, 1]: coordinates in pixels


def merge_fix(op: str, small_span: float, large_span: float) -> str:
    """QD503/QD506's fix, from what the merge is: inputs too small for any range to help, a residual ADD,
    coordinates in pixels next to scores (a detection head), or inputs of different ranges in general."""
    keep = "or keep the merge in float (code below)"
    if large_span < TINY_ACTIVATION:
        return (f"Its inputs span under {large_span:.2g}: keep the merge in float (code below); bounding or rescaling "
                "ranges this small cannot help below the smallest range the converter calibrates.")
    if op == "ADD":
        return ("Bound the larger branch's range (a BatchNormalization or a clipping activation before the add), "
                f"{keep}; a residual branch this small may also be dropped if it barely contributes.")
    if large_span > BOX_SPAN and small_span <= 1.0:
        return f"Divide the boxes by the image size before merging, output them separately, {keep}."
    return ("Bring the inputs to similar ranges before merging (a scale on the larger one), output them "
            f"separately, {keep}.")


CHECKS = (
    Check(
        code="QD501", name="layer-error-outlier", severity="warning", overlay_cause="outlier layer", precedence=40,
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
        code="QD502", name="saturated-activation", severity="warning", overlay_cause="clipped range", precedence=45,
        title="Activations clip: the calibrated range is narrower than the eval data",
        detects="A share of a layer's float activations on eval data falls outside the range calibrated on "
                "the representative dataset.",
        why="Clipped values all become the same integer; the information beyond the range is lost.",
        example="calibrating on dark images and evaluating on bright ones",
        fix="Recalibrate with samples that cover the eval data (both ranges are shown), preprocessed the same way.",
    ),
    Check(
        code="QD503", name="mixed-range-merge", severity="warning", overlay_cause="crushed merge", precedence=40,
        title="A concatenation or add forces one scale on inputs of very different ranges",
        detects="Comparing float and quantized activations on eval data: CONCATENATION/ADD/PACK takes inputs "
                "whose float ranges differ by 50x or more; INT8 gives the result a single scale, so the "
                "small-range input keeps a handful of levels. The inputs are found behind ops that only move "
                "or requantize values (a Dense on a rank-3 tensor ends in a RESHAPE). The message counts the "
                "channels of the result that keep no signal at all (quantized to a constant: 0 dB); that is an "
                "error only when a model output degrades too (QD504, QD507, QD519 as an error). An ADD whose "
                "small input spans under 1/1000 of the other (a LayerScale residual branch) is left out: it "
                "moves the sum by under a quarter of an int8 step.",
        why="The classic cause of all-zero scores in detectors: box coordinates in 0..640 concatenated with "
            "scores in 0..1 leave the scores one or two quantization steps.",
        example="keras.layers.Concatenate()([boxes_in_pixels, scores])",
        fix="Bring the inputs to similar ranges before merging (divide boxes by the image size), output them "
            "separately, or keep the merge in float (code below).",
        fix_code=keep_float_code(["<tensor>"]),
    ),
    Check(
        code="QD506", name="merge-crushes-input", severity="error", overlay_cause="crushed merge", precedence=18,
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
        code="QD519", name="output-drift", severity="warning", precedence=24,
        title="A quantized output follows the float output only loosely",
        detects="Run on the first few calibration samples (every diagnose with calibration data) or on the "
                "eval samples (compare), a model output that the float model varies keeps an SQNR under 12 dB "
                "against the float model (its noise over 6% of the signal's power), or, for class scores, its "
                "top-1 class changes on 2 inputs or more while the inputs measured do not show 90% agreement or "
                "more at 95% confidence (the Wilson score lower bound under 90%: 30 agreeing of 32 inputs do not "
                "show it, 95 of 100 do). An error when the top-1 "
                "class changes on more than half the inputs, whatever the SQNR (an offset common to every class "
                "raises it without telling the classes apart): the classifier's predictions collapse. Class "
                "scores are probabilities over 2 channels or more, or at least 5 channels.",
        why="Between an output destroyed (QD507, 3 dB) and one that follows the float model there is a range "
            "where every layer looks acceptable and the answers still change: a clean verdict must mean the "
            "quantized outputs follow the float ones, shown by the inputs measured, not merely not refuted by them.",
        example="a deep residual network whose BatchNorm statistics make activations span very different "
                "ranges: end-to-end SQNR 5 dB, the top-1 class agreeing on a third of the inputs",
        fix="Run `quantdoctor compare` with eval data to see which layers lose the signal, then keep those in "
            "float or recalibrate on more representative samples; `quantdoctor fix --target cpu` tries the "
            "float fallbacks.",
    ),
    Check(
        code="QD510", name="float-model-wrong-on-eval-data", severity="error", precedence=6, float_model_fails=True,
        title="The float model is already wrong on the eval data",
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
            "warning, not an error, while most channels survive: a channel the model predicts as noise around 0 "
            "(an autoencoder's blank border pixels) loses nothing real. An error when most channels are lost "
            "(3 of 4 outputs crushed under a fourth held at -1000): the output no longer says what the float "
            "model says, whatever its SQNR.",
        example="outputs = keras.layers.Dense(2)(features)   # targets: a price in the hundreds, a rate near 0.1",
        fix="If those channels matter, give them a range of their own: scale the targets so the channels "
            "share a range (and undo it after inference), split them into a second output, or keep the "
            "output layer float (code below).",
        fix_code=keep_float_code(["<output tensor>"]),
    ),
)
