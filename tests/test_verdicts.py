"""Accuracy verdicts: what OK means in numbers (QD519), one rule for outputs in the run check and in compare,
each model's own predictions in QD510, crushed merges that matter only when outputs degrade, and double
normalisation read from the data alone (QD316)."""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest
from helpers import assert_finding, only, root

import quantdoctor as qd
from quantdoctor.audit.normalisation import input_normalisation
from quantdoctor.audit.tflite_model import read_tflite
from quantdoctor.compare.preprocessing import variants
from quantdoctor.diagnosis.pipeline import diagnose_with_float_twin
from quantdoctor.intake.data import from_arrays

OUTPUT_CODES = ("QD504", "QD507", "QD518", "QD519")


def normal(count: int, features: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count, features)).astype(np.float32)


def crushed_classifier(gain: float, offset: float = 0.0) -> keras.Model:
    """Dense(16) -> Dense(10) with default names. Hidden channel 0 is `gain` times louder than the others and
    sets the hidden tensor's one int8 scale, which crushes the channels the head reads (it ignores channel 0);
    `offset` is added to every class score alike."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,))
    hidden, head = keras.layers.Dense(16), keras.layers.Dense(10)
    model = keras.Model(inputs, head(hidden(inputs)))
    kernel, bias = hidden.get_weights()
    kernel[:, 0] *= gain
    hidden.set_weights([kernel, bias])
    kernel, bias = head.get_weights()
    kernel[0, :] = 0.0
    head.set_weights([kernel, bias + offset])
    return model


def output_codes(report) -> list[tuple[str, str]]:
    return [(f.code, f.severity) for f in report.findings if f.code in OUTPUT_CODES]


@pytest.mark.code("QD519")
def test_an_output_that_follows_the_float_one_only_loosely_is_a_warning_in_diagnose_and_compare():
    model, data = crushed_classifier(gain=50.0), normal(100)
    report = qd.diagnose(model, data)
    drift = only(report, "QD519")
    assert_finding(drift, "QD519", "accuracy", "warning", layer="dense_1")
    assert drift.message.startswith("On 100 calibration sample(s), quantized output 'StatefulPartitionedCall_1:0' "
                                    "(layer 'dense_1') keeps an SQNR of ")
    assert drift.message.endswith("it follows the float output only loosely.")
    assert 3.0 < drift.evidence["sqnr_db"] < 12.0 and drift.evidence["calibration_rows"] == 100
    assert report.verdict == "converted_with_problems" and "No problems found" not in str(report)

    compared = qd.compare(model, data, eval_data=normal(60, seed=1))
    measured = only(compared, "QD519")
    assert measured.severity == "warning" and measured.message.startswith("Over the eval samples")
    assert measured.evidence["sqnr_db"] == compared.comparison["end_to_end"]["sqnr_db"] < 12.0
    assert compared.verdict == report.verdict  # the same verdict class from both


@pytest.mark.code("QD519")
def test_diagnose_sees_a_top1_class_changing_on_one_input_in_eight_as_compare_does():
    """A score offset keeps the SQNR above 40 dB while the crushed hidden channels flip the class on 1 input in
    8: one change in 8 rows proves nothing, 15 in 100 do. The run check runs 100 calibration rows."""
    model, data = crushed_classifier(gain=30.0, offset=30.0), normal(100)
    report = qd.diagnose(model, data)
    drift = only(report, "QD519")
    assert drift.severity == "warning" and drift.evidence["calibration_rows"] == 100
    assert drift.evidence["sqnr_db"] > 12.0 and drift.evidence["top1_agreement"] == 0.85
    first_eight = qd.compare(model, data, eval_data=data[:8])  # what 8 rows say: 1 change, no finding
    assert first_eight.comparison["end_to_end"]["top1_agreement"] == 0.875 and first_eight.verdict == "ok"
    compared = qd.compare(model, data, eval_data=normal(100, seed=1))
    assert compared.verdict == report.verdict == "converted_with_problems", [f.code for f in compared.findings]


@pytest.mark.code("QD519", "QD510")
def test_two_changes_in_32_rows_do_not_show_90_percent_agreement_in_diagnose_or_compare():
    """32 calibration samples: a score offset keeps the SQNR near 50 dB while the crushed hidden channels change
    the class on 2 of the 32 rows: 94% agreement, whose lower confidence bound (83%) does not show the 90% an OK
    needs. The same rows in compare give the same warning by the same rule; held-out rows give a warning too,
    and QD510 (labels at chance) does not call quantization blameless next to it."""
    model, data = crushed_classifier(gain=25.0, offset=30.0), normal(32)
    report = qd.diagnose(model, data)
    unshown = only(report, "QD519")
    assert unshown.severity == "warning" and report.verdict == "converted_with_problems"
    assert unshown.evidence["sqnr_db"] > 12.0 and unshown.evidence["top1_agreement"] == 0.9375
    assert (unshown.evidence["top1_agreeing_rows"], unshown.evidence["top1_rows"]) == (30, 32)
    assert unshown.evidence["top1_lower_bound"] == pytest.approx(0.8277, abs=1e-4)
    assert "its top-1 class agrees with the float model's on 30 of the 32 rows (94%)" in unshown.message
    assert unshown.message.endswith("32 rows do not show 90% agreement or more (at 95% confidence it may be as low "
                                    "as 83%), so an OK would be a guess: the output may follow the float one only "
                                    "loosely."), unshown.message
    assert unshown.fix.summary.startswith("The rows measured are calibration rows, the inputs the quantizer was "
                                          "fitted to: run `quantdoctor compare` with held-out eval data")
    assert "(95 of 100 agreeing rows show 90%)" in unshown.fix.summary

    same_rows = qd.compare(model, data, eval_data=data)
    measured = only(same_rows, "QD519")
    assert measured.severity == "warning" and same_rows.verdict == report.verdict
    counts = ("top1_agreement", "top1_agreeing_rows", "top1_rows", "top1_lower_bound")
    assert {key: measured.evidence[key] for key in counts} == {key: unshown.evidence[key] for key in counts}
    assert measured.message.startswith("Over the eval samples") and "32 rows do not show 90%" in measured.message
    assert measured.fix.summary.startswith("Measure on more eval rows to tell (95 of 100 agreeing rows show 90%).")

    labels = np.random.default_rng(3).integers(0, 10, 100)
    held_out = qd.compare(model, data, eval_data=normal(100, seed=1), labels=labels)
    drift = only(held_out, "QD519")
    assert drift.severity == "warning" and drift.evidence["top1_rows"] == 100 and held_out.verdict == report.verdict
    failure = only(held_out, "QD510")
    assert failure.evidence["quantization_warnings"] == ["QD519"] and failure.evidence["quantization_findings"] == []
    assert "quantization does not explain that, though it moves the outputs too (QD519)" in failure.message
    assert "quantization is not the problem" not in str(held_out)


@pytest.mark.code("QD519")
def test_a_classifier_whose_top1_class_collapses_is_an_error_though_its_sqnr_looks_fine():
    """A score offset common to every class gives the output 34 dB of SQNR; the argmax still follows noise."""
    model, data = crushed_classifier(gain=150.0, offset=30.0), normal(100)
    report = qd.diagnose(model, data)
    collapsed = root(report)
    assert_finding(collapsed, "QD519", "accuracy", "error", layer="dense_1")
    assert collapsed.evidence["sqnr_db"] > 20 and collapsed.evidence["top1_agreement"] < 0.5
    assert "its predictions collapse" in collapsed.message

    compared = qd.compare(model, data, eval_data=normal(60, seed=1))
    measured = root(compared)
    assert_finding(measured, "QD519", "accuracy", "error")
    assert compared.comparison["end_to_end"]["top1_agreement"] == measured.evidence["top1_agreement"] < 0.5
    assert "top-1 class agrees with the float model's on" in measured.message
    assert [f.code for f in compared.findings].count("QD519") == 1  # the run check's is replaced by compare's


def test_an_output_that_follows_the_float_one_is_ok_in_diagnose_and_compare():
    """One class change in the 100 calibration rows proves nothing (and 99 of 100 show 90% agreement anyway)."""
    model, data = crushed_classifier(gain=1.0), normal(100)
    report = qd.diagnose(model, data)
    assert report.verdict == "ok" and str(report).endswith("No problems found.")
    check = report.audit["run_check"]["outputs"][0]
    assert check["sqnr_db"] >= 12.0 and check["top1_agreement"] == 0.99
    compared = qd.compare(model, data, eval_data=normal(60, seed=1))
    assert compared.verdict == "ok", [f.code for f in compared.findings]
    assert compared.comparison["end_to_end"]["sqnr_db"] >= 12.0


@pytest.mark.code("QD504")
def test_an_output_the_float_model_holds_constant_is_left_alone_by_the_run_check_and_compare():
    """A softmax over scores that hardly depend on the input (kernel at 1e-5): its float output spans under 1% of
    its size, as MobileNetV2's does with untouched random weights. Nothing there for quantization to lose."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(10, activation="softmax",
                                                                     kernel_initializer=keras.initializers.RandomNormal(stddev=1e-5))])
    data = normal(100)
    report = qd.diagnose(model, data)
    assert output_codes(report) == [] and report.verdict == "ok"
    compared = qd.compare(model, data, eval_data=normal(30, seed=1))
    assert output_codes(compared) == [] and compared.verdict == report.verdict, [f.code for f in compared.findings]


def thousand_class_head() -> keras.Model:
    """1000 classes whose probabilities stay near 0.001 (under a step of the int8 softmax's 1/256 grid), with
    class 7 a little ahead for every input: the float model predicts 7, the quantized one reads all zeros."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,), name="features")
    scores = keras.layers.Dense(1000, name="scores",
                                kernel_initializer=keras.initializers.RandomNormal(stddev=0.01))(inputs)
    model = keras.Model(inputs, keras.layers.Softmax(name="probabilities")(scores))
    kernel, bias = model.get_layer("scores").get_weights()
    bias[7] = 0.4
    model.get_layer("scores").set_weights([kernel, bias])
    return model


@pytest.mark.code("QD510", "QD504")
def test_float_failure_next_to_a_destroyed_output_names_each_models_predictions_and_no_contradiction():
    model, data = thousand_class_head(), normal(100)
    compared = qd.compare(model, data, eval_data=normal(40, seed=1))
    collapsed = root(compared)
    assert_finding(collapsed, "QD504", "accuracy", "error")
    assert re.search(r"Its probabilities stay under 0\.00\d+, 0\.\d+ step\(s\) of the fixed 1/256 grid of an int8 "
                     r"softmax: probabilities under about 0\.004 all read 0", collapsed.message), collapsed.message
    assert "quantdoctor compare" not in collapsed.fix.summary  # printed by compare itself
    assert collapsed.fix.summary.startswith("No single layer stands out")  # compare found no layer finding
    failure = only(compared, "QD510")
    assert failure.severity == "warning"
    assert failure.evidence["float_class"] == 7 and failure.evidence["quant_class"] == 0
    assert "the float model predicts class 7 for all 40 inputs, the quantized model class 0" in failure.message
    assert "quantization breaks its outputs too (QD504)" in failure.message
    assert "quantization is not the problem" not in str(compared)


def merge_inside() -> keras.Model:
    """Boxes in pixels concatenated with sigmoid scores inside the model; the head reads only the boxes, so the
    crushed scores never reach the output."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(1)
    inputs = keras.Input((8,))
    trunk = keras.layers.Dense(16, activation="relu")(inputs)
    boxes = keras.layers.Rescaling(640.0)(keras.layers.Dense(4)(trunk))
    merged = keras.layers.Concatenate()([boxes, keras.layers.Dense(3, activation="sigmoid")(trunk)])
    head = keras.layers.Dense(2)
    model = keras.Model(inputs, head(merged))
    kernel, bias = head.get_weights()
    kernel[4:] = 0.0
    head.set_weights([kernel / 640.0, bias])
    return model


@pytest.mark.code("QD503", "QD506")
def test_a_crushed_merge_whose_outputs_follow_the_float_model_is_a_warning():
    model, data = merge_inside(), normal(100)
    report = qd.diagnose(model, data, mode="int8-strict", io="int8")
    crushed = only(report, "QD506")
    assert_finding(crushed, "QD506", "accuracy", "warning", layer="concatenate", op="CONCATENATION")
    assert crushed.message.endswith("The model's outputs still follow the float model on the calibration samples "
                                    "checked.")
    assert "divide the boxes by the image size" in crushed.fix.summary.lower()  # pixels next to scores
    assert output_codes(report) == [] and report.root_cause is None

    compared = qd.compare(model, data, eval_data=normal(40, seed=1))
    measured = only(compared, "QD503")
    assert_finding(measured, "QD503", "accuracy", "warning", layer="concatenate", op="CONCATENATION")
    assert measured.evidence["lost_channels"] == [4, 5, 6]
    assert output_codes(compared) == [] and "QD506" not in [f.code for f in compared.findings]


def layer_scale_blocks(blocks: int = 3) -> keras.Model:
    """Residual blocks whose branch is scaled by 1e-6 before the add (ConvNeXt's LayerScale at its start)."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,))
    x = keras.layers.Dense(16)(inputs)
    for _ in range(blocks):
        branch = keras.layers.Rescaling(1e-6)(keras.layers.Dense(16, activation="relu")(x))
        x = keras.layers.Add()([x, branch])
    return keras.Model(inputs, keras.layers.Dense(4)(x))


def test_a_residual_branch_a_millionth_of_the_other_is_no_merge_finding():
    model, data = layer_scale_blocks(), normal(100)
    compared = qd.compare(model, data, eval_data=normal(40, seed=1))
    assert not [f for f in compared.findings if f.code in ("QD503", "QD506")], [f.code for f in compared.findings]
    assert compared.verdict == "ok", [f.message for f in compared.findings]


@pytest.mark.code("QD510")
def test_a_float_output_the_same_for_every_input_is_no_prediction_and_leaves_the_verdict_ok():
    """Scores of 1e-8 round to one probability, 0.1 exactly, for every class and input (an untrained network's
    softmax, as MobileNetV2's with random weights): class 0 wins a tie. Nothing for quantization to lose, and no
    prediction of the float model to call wrong: information, and diagnose and compare agree on OK."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    tiny = keras.initializers.RandomNormal(stddev=1e-9)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(10, activation="softmax", kernel_initializer=tiny)])
    data = normal(100)
    report = qd.diagnose(model, data)
    assert report.verdict == "ok", [f.code for f in report.findings]
    compared = qd.compare(model, data, eval_data=normal(30, seed=1))
    tie = only(compared, "QD510")
    assert tie.severity == "info" and compared.verdict == report.verdict
    assert "the float model's output is the same for all 30 inputs (it spans [0.1, 0.1]): its class 0 is a tie, " \
           "not a prediction: quantization is not the problem." in tie.message, tie.message
    assert "so does the quantized model" not in tie.message
    assert tie.fix.summary.startswith("Check that the model's trained weights are loaded")


@pytest.mark.code("QD503", "QD506")
def test_a_crushed_merge_in_a_model_whose_outputs_never_move_is_information_in_diagnose_and_compare():
    """The boxes-and-scores merge of `merge_inside`, read by a head whose kernel is all zeros: the output is 0
    for every input, so what the merge crushes cannot reach it."""
    model, data = merge_inside(), normal(100)
    head = model.layers[-1]
    head.set_weights([np.zeros_like(w) for w in head.get_weights()])
    report = qd.diagnose(model, data, mode="int8-strict", io="int8")
    static = only(report, "QD506")
    assert static.severity == "info" and report.verdict == "ok", [(f.code, f.severity) for f in report.findings]
    assert static.message.endswith("The model's outputs do not vary over the calibration samples (in float), so no "
                                   "error inside can reach them.")
    compared = qd.compare(model, data, eval_data=normal(40, seed=1))
    measured = only(compared, "QD503")
    assert_finding(measured, "QD503", "accuracy", "info", layer="concatenate", op="CONCATENATION")
    assert measured.message.endswith("do not vary over the eval samples (in float), so no error inside can reach "
                                     "them.")
    assert compared.verdict == report.verdict == "ok", [(f.code, f.severity) for f in compared.findings]


@pytest.mark.code("QD503")
def test_a_merge_of_activations_too_small_for_any_range_says_keep_it_float_not_bound_the_range():
    """Two branches at 1e-7 and 1e-9 (a network whose signal dies out, as MobileNetV2's late blocks with random
    weights) added: bounding a range this small cannot help; keeping the merge in float can."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,))
    large = keras.layers.Rescaling(1e-7)(keras.layers.Dense(16, activation="relu")(inputs))
    small = keras.layers.Rescaling(1e-9)(keras.layers.Dense(16, activation="relu")(inputs))
    model = keras.Model(inputs, keras.layers.Rescaling(1e7)(keras.layers.Add()([large, small])))
    compared = qd.compare(model, normal(100), eval_data=normal(40, seed=1))
    merge = only(compared, "QD503")
    assert merge.location.op == "ADD" and max(merge.evidence["input_spans"].values()) < 1e-6
    assert merge.fix.summary.startswith("Its inputs span under ") and "keep the merge in float" in merge.fix.summary
    assert "Bound the larger branch" not in merge.fix.summary


@pytest.mark.code("QD501", "QD507")
def test_a_softmax_losing_its_probabilities_is_kept_float_and_the_output_names_the_layer_finding_by_code():
    """Four hidden layers, then a softmax over 1000 classes whose probabilities stay near 0.001 (EfficientNetB0
    with BatchNorm statistics from the data): the softmax is the outlier layer. Its int8 range is fixed, so no
    bounding helps; and the output finding ranks first, so it names the layer finding by code, not as "above"."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,), name="features")
    x = inputs
    for number in range(4):
        x = keras.layers.Dense(16, activation="relu", name=f"hidden_{number}")(x)
    scores = keras.layers.Dense(1000, name="scores", kernel_initializer=keras.initializers.RandomNormal(stddev=0.3))(x)
    model = keras.Model(inputs, keras.layers.Softmax(name="probabilities")(scores))
    compared = qd.compare(model, normal(100), eval_data=normal(40, seed=1))
    destroyed = root(compared)
    assert destroyed.code == "QD507" and compared.findings.index(destroyed) == 0
    assert destroyed.fix.summary.startswith("Act on the layer findings first (QD501 in this report;")
    assert "above" not in destroyed.fix.summary
    outlier = only(compared, "QD501")
    assert_finding(outlier, "QD501", "accuracy", "warning", layer="probabilities", op="SOFTMAX")
    assert outlier.fix.summary.startswith("SOFTMAX's int8 output has a range and step that LiteRT fixes")
    assert "bound" not in outlier.fix.summary.lower()


def raw_pixel_model(style: str) -> keras.Model:
    """A model that normalises raw 0..255 pixels itself, (x - 127.5) / 64, in two styles. (A Rescaling right
    before a convolution is folded into its weights by the converter: no graph shows it then.)"""
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    if style == "sequential":
        return keras.Sequential([keras.Input((6, 6, 3)), keras.layers.Rescaling(1 / 64, offset=-127.5 / 64),
                                 keras.layers.MaxPooling2D(2, strides=1), keras.layers.Conv2D(4, 3, activation="relu"),
                                 keras.layers.Flatten(),
                                 keras.layers.Dense(5)])
    inputs = keras.Input((6, 6, 3), name="image")
    normalization = keras.layers.Normalization(mean=127.5, variance=64.0 ** 2)
    features = keras.layers.Conv2D(4, 3, activation="relu")(normalization(inputs))
    return keras.Model(inputs, keras.layers.Dense(5)(keras.layers.Flatten()(features)))


@pytest.mark.code("QD316")
@pytest.mark.parametrize("style", ["sequential", "functional"])
def test_data_normalised_before_a_model_that_normalises_itself_is_found_without_labels(style):
    model = raw_pixel_model(style)
    rng = np.random.default_rng(0)
    raw = rng.uniform(0, 255, (100, 6, 6, 3)).astype(np.float32)
    normalised = ((raw - 127.5) / 73.6).astype(np.float32)
    report, float_model = diagnose_with_float_twin(model, normalised)
    twice = only(report, "QD316")
    assert_finding(twice, "QD316", "calibration", "warning")
    assert twice.message.startswith(f"Input '{report.model['inputs'][0]['name']}': the model starts by computing "
                                    "x * 0.01562 + -1.992, so it expects raw values")
    assert "the calibration data is centred near 0 with unit spread already" in twice.message
    assert abs(twice.evidence["data_mean"]) < 0.1 and 0.9 < twice.evidence["data_std"] < 1.1

    clean = qd.diagnose(model, raw)
    assert "QD316" not in [f.code for f in clean.findings]
    # compare's retry of the same mistake looks at the data first: raw pixels are not normalised twice
    normalisation = input_normalisation(read_tflite(float_model))
    causes = {v["cause"] for v in variants(from_arrays({"image": raw}), normalisation)}
    assert "normalised_twice" not in causes and "range_0_255" in causes
    assert "normalised_twice" in {v["cause"] for v in variants(from_arrays({"image": normalised}), normalisation)}


@pytest.mark.code("QD504")
def test_fix_on_a_target_running_float_ops_keeps_the_head_float_when_an_output_collapses():
    from quantdoctor.fix.fix_model import fix

    result = fix(thousand_class_head(), normal(100), target="cpu")
    assert "the plain INT8 model's QD504 answered by keeping ops float" in result.verification.details
    assert result.budget is not None and result.budget["met_budget"], result.budget
    assert result.budget["objective"]["min_sqnr_db"] == 12.0  # what OK means
    kept = {row["op"] for row in result.budget["kept_float"]}
    assert "SOFTMAX" in kept, result.budget["kept_float"]
    assert result.model is not None
    assert not [f for f in result.after.findings if f.severity == "error"], result.after.findings


@pytest.mark.code("QD502")
def test_a_group_of_findings_on_several_ops_of_one_layer_names_each_layer_once():
    """A LayerNormalization lowers to several ops; eval data 4x louder than calibration clips most of them (as
    ConvNeXt's layer norms on the zoo): the group prints its count and each layer once, the JSON every finding."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,))
    x = keras.layers.LayerNormalization(name="norm")(keras.layers.Dense(16, name="wide")(inputs))
    model = keras.Model(inputs, keras.layers.Dense(4, name="head")(x))
    compared = qd.compare(model, normal(100), eval_data=normal(40, seed=1) * 4)
    clipped = [f for f in compared.findings if f.code == "QD502"]
    layers = list(dict.fromkeys(f.location.layer for f in clipped))
    assert len(clipped) > len(layers) >= 1, [(f.location.layer, f.location.op) for f in clipped]
    line = next(line for line in str(compared).splitlines() if "the same at" in line)
    assert line.strip() == f"×{len(clipped)} in {len(layers)} places: the same at {', '.join(layers)} (every one in " \
                           "the JSON report)"
    group = next(g for g in compared.to_dict()["finding_groups"] if g["code"] == "QD502")
    assert group["count"] == len(clipped) and len(group["layers"]) == len(clipped)
