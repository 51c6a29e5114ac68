"""--target edgetpu: the published Edge TPU rules applied to real converted models, labelled as predicted."""

from __future__ import annotations

import json
from importlib import resources

import keras
import pytest
import tensorflow as tf
from helpers import assert_finding, only
from models import dataset_from, int8_converter, smooth_images

import quantdoctor as qd
from quantdoctor.report.terminal import render_plain


def net(*middle: keras.layers.Layer, batch: int | None = 1) -> keras.Model:
    inputs = keras.Input((8, 8, 3), batch_size=batch, name="image")
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    for layer in middle:
        x = layer(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="head")(keras.layers.Flatten(name="flat")(x)))


def five_dimensional() -> keras.Model:
    """A maximum over the second dimension of a 5-D tensor (sized 2)."""
    inputs = keras.Input((8, 8, 3), batch_size=1, name="image")
    rows = keras.layers.Reshape((2, 4, 8, 4), name="split_rows")(keras.layers.Conv2D(4, 3, padding="same")(inputs))
    halves = keras.layers.Lambda(lambda t: tf.reduce_max(t, axis=1), name="max_of_halves")(rows)
    flat = keras.layers.Flatten(name="flat")(halves)
    return keras.Model(inputs, keras.layers.Dense(2, name="head")(flat))


def int8_model(model: keras.Model) -> bytes:
    return int8_converter(model, dataset_from(smooth_images(4, 8)), strict=False, int8_io=True).convert()


def first_cpu(report: qd.Report) -> dict:
    return report.audit["edgetpu"]["first_cpu_op"]


def test_a_model_within_every_rule_is_predicted_all_on_the_edge_tpu():
    report = qd.audit(int8_model(net()), target="edgetpu")
    edgetpu = report.audit["edgetpu"]
    assert [f.code for f in report.findings] == [] and edgetpu["cpu_ops"] == 0
    assert edgetpu["edgetpu_ops"] == edgetpu["ops"] == report.audit["op_count"]
    assert render_plain(report).splitlines()[1] == (
        f"Edge TPU, predicted (not compiled): {edgetpu['ops']} of {edgetpu['ops']} op(s) on the Edge TPU")


@pytest.mark.code("QD122")
def test_a_float_op_and_everything_after_it_are_predicted_on_the_cpu():
    model = net(keras.layers.Lambda(lambda t: tf.math.cumsum(t, axis=-1), name="running_total"))
    report = qd.diagnose(model, smooth_images(4, 8), io="int8", target="edgetpu", trust_model=True)
    finding = only(report, "QD122")
    assert_finding(finding, "QD122", "unsupported_op", "error", layer="running_total", op="CUMSUM")
    assert finding.message.startswith("Predicted (not compiled): CUMSUM in layer 'running_total' would run on the "
                                      "CPU, not on the Edge TPU: CUMSUM is not in the Edge TPU's operation list")
    assert finding.evidence["predicted"] is True and finding.evidence["compiled"] is False
    assert finding.evidence["rule_source"] == "models-intro#supported-operations"
    edgetpu = report.audit["edgetpu"]
    assert 0 < edgetpu["edgetpu_ops"] < edgetpu["ops"] and edgetpu["cpu_ops"] >= 3  # the head's ops follow it
    assert "FULLY_CONNECTED" in finding.message.split("would run on the CPU too")[0]
    assert render_plain(report).splitlines()[1].endswith(
        f"from CUMSUM in layer 'running_total' on, {edgetpu['cpu_ops']} op(s) on the CPU")


@pytest.mark.parametrize("case, rule, detail", [
    ("dynamic", "static_shapes", "has the dynamic shape [-1, 8, 8, 3]"),
    ("deep", "three_innermost_dims", "has the shape [1, 2, 4, 8, 4]"),
    ("float_io", "int8_tensors", "is float32"),
])
def test_each_published_rule(case, rule, detail):
    models = {"dynamic": lambda: int8_model(net(batch=None)),
              "deep": lambda: int8_model(five_dimensional()),
              "float_io": lambda: int8_converter(net(), dataset_from(smooth_images(4, 8))).convert()}
    finding = only(qd.audit(models[case](), target="edgetpu"), "QD122")
    assert finding.evidence["rule"] == rule and detail in finding.message
    assert finding.message.startswith("Predicted (not compiled): ")


def test_rule_table_names_a_source_for_every_rule():
    table = json.loads(resources.files("quantdoctor.audit").joinpath("edgetpu_rules.json").read_text())
    assert {rule["id"] for rule in table["rules"]} == {
        "int8_tensors", "static_shapes", "three_innermost_dims", "supported_op", "single_subgraph", "first_unsupported"}
    assert all(rule["source"] and rule["text"] for rule in table["rules"]) and table["how_to_update"]
    assert "CONV_2D" in table["ops"] and "CUMSUM" not in table["ops"]
