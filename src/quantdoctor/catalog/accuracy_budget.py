"""QD513, QD514: accuracy budgets (`fix --max-drop`): what the search for a float fallback found."""

from quantdoctor.catalog.accuracy import keep_float_code
from quantdoctor.catalog.check import Check

CHECKS = (
    Check(
        code="QD513", name="accuracy-budget-missed", severity="error", precedence=30,
        title="No float fallback meets the accuracy budget",
        detects="Searching for the ops to keep in float, no variant met the budget, not even the one keeping "
                "every quantizable op in float. quantdoctor returns the best variant it found, marked as missing "
                "the budget.",
        why="What still loses accuracy is not an op a float fallback can keep: typically the integer input or "
            "output of the model itself (their quantization stays whatever ops are float), or a budget tighter "
            "than the float model's own run-to-run noise.",
        example="a regression model with int8 input and output asked to keep 60 dB of SQNR on its output: "
                "an int8 output carries about 8 bits",
        fix="Loosen the budget, keep the model's input and output in float (inference_input_type / "
            "inference_output_type tf.float32), or calibrate with data closer to the eval data.",
    ),
    Check(
        code="QD514", name="scale-sharing-kept-float", severity="info", precedence=80,
        title="A concatenation stays float together with the ops sharing its scale",
        detects="The float fallback that meets the budget keeps a CONCATENATION (or PACK) in float together "
                "with its producers and consumers: in int8 the merge gives every input one scale.",
        why="An int8 concatenation forces its output's scale onto its inputs, so a small-range input is crushed "
            "before the merge and the consumer requantizes from the merged range. Keeping the concatenation "
            "alone in float restores nothing; the ops around it must go with it.",
        example="keras.layers.Concatenate()([features, boxes_in_pixels]) feeding a Dense layer",
        fix="To quantize them all instead, bring the merged inputs to similar ranges before the concatenation "
            "(normalise the large one), or output them separately; until then keep the group float (code below).",
        fix_code=keep_float_code(["<producer>", "<concatenation>", "<consumer>"]),
    ),
)
