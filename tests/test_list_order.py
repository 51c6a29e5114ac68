"""QD313 for inputs of different shapes: the items' shapes show which input each belongs to. Lists
that fit the converter's order are a warning, and the converter's real failure comes first; lists
in another order are the root cause once the converter fails on them. The converter's order is its
own: with concrete functions it is mostly the declared one, and the tests accept either outcome."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_finding, only, root

import quantdoctor as qd


@pytest.fixture(scope="module")
def recurrent_two_inputs():
    """A sequence and a feature vector (distinct shapes), the sequence through an LSTM with a fixed batch of 1:
    TF 2.21's calibrator crashes in its loop."""
    keras.utils.set_random_seed(0)
    sequence, extra = keras.Input((10, 4), batch_size=1, name="sequence"), keras.Input((3,), batch_size=1, name="extra")
    merged = keras.layers.Concatenate()([keras.layers.LSTM(8, name="my_lstm")(sequence), keras.layers.Dense(4)(extra)])
    model = keras.Model([sequence, extra], keras.layers.Dense(2, name="head")(merged))
    return tf.function(lambda sequence, extra: model([sequence, extra])).get_concrete_function(
        tf.TensorSpec((1, 10, 4), tf.float32, name="sequence"), tf.TensorSpec((1, 3), tf.float32, name="extra"))


def list_samples(order: str) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(0)
    pairs = [(rng.normal(size=(1, 10, 4)).astype(np.float32), rng.normal(size=(1, 3)).astype(np.float32))
             for _ in range(40)]
    return [list(pair) if order == "sequence first" else list(pair[::-1]) for pair in pairs]


def assert_pairing_judged_by_the_converter(report, belongs: list[str]) -> None:
    """The calibrator pairs list items with the converter's order of inputs, which (even for concrete
    functions, now and then) is not the declared one. Items that fit it let calibration run into the
    LSTM's crash, the root cause, and QD313 stays a warning; items that do not make a kernel fail
    to prepare, which confirms QD313 as the root cause."""
    pairing = only(report, "QD313")
    assert pairing.evidence["items_belong_to"] == belongs
    shapes = ", ".join(str(tuple(shape)) for shape in pairing.evidence["sample_shapes"])
    assert pairing.message.startswith(f"Sample #0 is a list of arrays shaped {shapes}: by shape they belong to "
                                      f"inputs '{belongs[0]}', '{belongs[1]}', in this order.")
    if report.conversion["outcome"] == "crash":
        crash = root(report)
        assert crash.code in ("QD108", "QD901") and crash.evidence["stage"].startswith("calibrating")
        assert_finding(pairing, "QD313", "calibration", "warning", input=belongs[0])
    else:
        assert report.conversion["outcome"] == "error"
        assert root(report) is pairing
        assert_finding(pairing, "QD313", "calibration", "error", input=belongs[0])
        assert pairing.evidence["confirmed_by_converter"] == "QD310"
        assert "failed to prepare" in only(report, "QD310").message


def test_lists_in_the_converters_order_warn_and_the_converters_crash_is_the_root_cause(recurrent_two_inputs):
    report = qd.diagnose([recurrent_two_inputs], lambda: iter(list_samples("sequence first")))
    assert_pairing_judged_by_the_converter(report, ["sequence", "extra"])


def test_lists_in_another_order_are_the_root_cause_the_converter_confirms(recurrent_two_inputs):
    report = qd.diagnose([recurrent_two_inputs], lambda: iter(list_samples("extra first")))
    assert_pairing_judged_by_the_converter(report, ["extra", "sequence"])


@pytest.mark.parametrize("shapes, expected", [
    ([(1, 5, 3), (1, 10, 4)], ("warning", ["extra", "sequence"])),  # the shapes show where each item belongs
    ([(1, 10, 4), (1, 10, 4)], ("warning", None)),                   # both items fit both inputs: no telling
    ([(1, 5), (1, 5)], None),                                         # no input takes these: QD306's to say
])
def test_list_items_are_judged_by_which_inputs_their_shapes_fit(shapes, expected):
    from quantdoctor.intake.data import from_generator
    from quantdoctor.intake.recipe import Recipe
    from quantdoctor.preflight.data_checks import InputSpec, check_calibration

    inputs = [InputSpec("sequence", (1, None, 4), "float32"), InputSpec("extra", (1, None, None), "float32")]
    samples = [[np.zeros(shape, np.float32) for shape in shapes]] * 120
    findings = [f for f in check_calibration(from_generator(lambda: iter(samples)), inputs, Recipe.for_mode("int8"))
                if f.code == "QD313"]
    if expected is None:
        assert findings == []
        return
    [finding] = findings
    assert (finding.severity, finding.evidence.get("items_belong_to")) == expected
    assert finding.evidence["samples_affected"] == 120
