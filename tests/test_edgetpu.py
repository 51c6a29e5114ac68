"""--target edgetpu: the published Edge TPU rules applied to real converted models, labelled as predicted."""

from __future__ import annotations

import json
from importlib import resources

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_finding, only
from models import Projection, dataset_from, int8_converter, smooth_images

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
    assert finding.evidence["rule_source"] == {"url": "https://coral.ai/docs/edgetpu/models-intro/#supported-operations",
                                               "section": "Supported operations"}
    assert finding.evidence["compiler_status"] == "Operation not supported"
    assert finding.evidence["compiler_status_after"] == "More than one subgraph is not supported"
    assert finding.message.endswith('The compiler\'s log would say "Operation not supported", and "More than one '
                                    'subgraph is not supported" for the ops after it.')
    edgetpu = report.audit["edgetpu"]
    assert 0 < edgetpu["edgetpu_ops"] < edgetpu["ops"] and edgetpu["cpu_ops"] >= 3  # the head's ops follow it
    assert "FULLY_CONNECTED" in finding.message.split("would run on the CPU too")[0]
    assert render_plain(report).splitlines()[1].endswith(
        f"from CUMSUM in layer 'running_total' on, {edgetpu['cpu_ops']} op(s) on the CPU")


def per_pixel_softmax() -> keras.Model:
    """A softmax over the channels of every pixel: SOFTMAX on a [1, 8, 8, 4] tensor."""
    inputs = keras.Input((8, 8, 3), batch_size=1, name="image")
    return keras.Model(inputs, keras.layers.Softmax(name="per_pixel")(keras.layers.Conv2D(4, 3, padding="same")(inputs)))


def per_step_dense() -> keras.Model:
    """A Dense on every step of a sequence: FULLY_CONNECTED with a [1, 6, 3] output."""
    steps = keras.Input((6, 5), batch_size=1, name="steps")
    return keras.Model(steps, keras.layers.Dense(3, name="per_step")(steps))


@pytest.mark.parametrize("case, rule, detail, status", [
    ("dynamic", "static_shapes", "has the dynamic shape [-1, 8, 8, 3]", None),
    ("deep", "three_innermost_dims", "has the shape [1, 2, 4, 8, 4]",
     "Tensor has unsupported rank (up to 3 innermost dimensions mapped)"),
    ("softmax", "op_limitation", "SOFTMAX's input has the shape [1, 8, 8, 4]: the Edge TPU's softmax takes a "
     "1-dimensional input", "Operation is otherwise supported, but not mapped due to some unspecified limitation"),
    ("dense", "op_limitation", "FULLY_CONNECTED's output has the shape [1, 6, 3]: the Edge TPU's is one-dimensional",
     "Operation is otherwise supported, but not mapped due to some unspecified limitation"),
])
def test_each_published_rule(case, rule, detail, status):
    models = {"dynamic": lambda: int8_model(net(batch=None)),
              "deep": lambda: int8_model(five_dimensional()),
              "softmax": lambda: int8_model(per_pixel_softmax()),
              "dense": lambda: int8_converter(per_step_dense(), dataset_from(np.random.default_rng(0).random(
                  (4, 6, 5), dtype=np.float32)), int8_io=True).convert()}
    finding = only(qd.audit(models[case](), target="edgetpu"), "QD122")
    assert finding.evidence["rule"] == rule and detail in finding.message
    assert finding.message.startswith("Predicted (not compiled): ")
    assert finding.evidence["compiler_status"] == status
    assert (f'The compiler\'s log would say "{status}"' in finding.message) == (status is not None)
    assert "unverified" not in finding.message


def test_float_input_and_output_are_converted_on_the_cpu_without_cutting_the_model():
    report = qd.audit(int8_converter(net(), dataset_from(smooth_images(4, 8))).convert(), target="edgetpu")
    finding = only(report, "QD122")
    assert finding.severity == "warning" and finding.evidence["rule"] == "outside_segment"
    edgetpu = report.audit["edgetpu"]
    assert edgetpu["first_cpu_op"] is None and edgetpu["outside_cpu_ops"] == 2 == edgetpu["cpu_ops"]
    assert edgetpu["edgetpu_ops"] == edgetpu["ops"] - 2
    assert finding.message == (
        "Predicted (not compiled): 2 op(s) would run on the CPU outside the Edge TPU's part, without cutting it: "
        "before it, QUANTIZE (converts the model's float input 'serving_default_image:0'; the compiler's log would say "
        "\"Operation is otherwise supported, but not mapped due to some unspecified limitation\"); after it, DEQUANTIZE "
        "(converts to the model's float output 'StatefulPartitionedCall_1:0'; the compiler's log would say \"Operation "
        "is working on an unsupported data type\"). The 3 op(s) between can run on the Edge TPU (rule: The compiler "
        "maps one contiguous part of the model: ops it cannot map before the first one it can (near the inputs, such "
        "as the QUANTIZE of a float input), and the DEQUANTIZE of a float output after the part, run on the CPU "
        "without cutting it). Give the model int8 or uint8 inputs and outputs (--io int8, or --io uint8) to keep the "
        "conversions off the CPU.")
    assert render_plain(report).splitlines()[1] == (
        "Edge TPU, predicted (not compiled): 3 of 5 op(s) on the Edge TPU; 2 op(s) on the CPU before or after the "
        "Edge TPU's part")


@pytest.mark.code("QD122")
def test_ops_near_the_input_that_the_edge_tpu_cannot_map_run_before_its_part_without_cutting_it():
    """As google-coral/edgetpu#461 (4 ops close to the input on the CPU, the rest mapped) and #597."""
    inputs = keras.Input((8, 8, 3), batch_size=1, name="image")
    x = keras.layers.Lambda(lambda t: tf.math.cumsum(t, axis=1), name="preprocess")(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(x)
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(keras.layers.Flatten(name="flat")(x)))
    report = qd.diagnose(model, smooth_images(4, 8), io="int8", target="edgetpu", trust_model=True)
    [finding] = [f for f in report.findings if f.code == "QD122"]
    edgetpu = report.audit["edgetpu"]
    rows = finding.evidence["ops"]
    assert [(row["op"], row["side"], row["rule"]) for row in rows] == [
        ("DEQUANTIZE", "before", "int8_tensors"), ("CUMSUM", "before", "supported_op"),
        ("QUANTIZE", "before", "int8_tensors")]
    assert rows[1]["layer"] == "preprocess" and rows[1]["compiler_status"] == "Operation not supported"
    assert edgetpu["first_cpu_op"] is None and edgetpu["outside_cpu_ops"] == 3 == edgetpu["cpu_ops"]
    assert edgetpu["edgetpu_ops"] == edgetpu["ops"] - 3 >= 3  # CONV_2D, RESHAPE, FULLY_CONNECTED
    assert finding.severity == "warning" and finding.message.endswith(
        "Other ops before the first one the Edge TPU maps can move into your own preprocessing.")


def test_a_finding_on_an_unverified_rule_says_so():
    module = Projection()
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [module.encode.get_concrete_function(), module.decode.get_concrete_function()], module)
    report = qd.audit(converter.convert(), target="edgetpu")
    subgraphs = [f for f in report.findings if f.evidence.get("rule") == "single_subgraph"]
    assert len(subgraphs) == 1 and subgraphs[0].evidence["rule_source"] == "unverified"
    assert subgraphs[0].message.endswith("This rule is unverified: no published source confirms it.")


def test_an_op_counted_on_the_edge_tpu_by_an_unverified_entry_is_named():
    model = net(keras.layers.Lambda(lambda t: tf.math.rsqrt(t * t + 1.0), name="inverse_norm"))
    report = qd.audit(int8_model(model), target="edgetpu")
    finding = only(report, "QD122")
    assert report.audit["edgetpu"]["unverified_ops"] == ["RSQRT"] and report.audit["edgetpu"]["cpu_ops"] == 0
    assert finding.severity == "warning" and finding.evidence["rule_source"] == "unverified"
    assert finding.message == (
        "Predicted (not compiled): RSQRT in layer 'inverse_norm' is counted on the Edge TPU by an unverified entry "
        "of the rule table: no "
        "published source confirms that the Edge TPU maps RSQRT, so it and everything after it may run on the CPU "
        "instead.")


def test_every_rule_and_op_names_its_source():
    """Fails when an entry of the rule table has no source, or a source without its page and section."""
    table = json.loads(resources.files("quantdoctor.audit").joinpath("edgetpu_rules.json").read_text())
    entries = [("rule " + rule["id"], rule) for rule in table["rules"]] + [("op " + op, e) for op, e in table["ops"].items()]
    for name, entry in entries:
        assert "source" in entry, f"{name} has no source"
        source = entry["source"]
        assert source == "unverified" or (source["url"].startswith("https://") and source["section"]), name
        assert source == "unverified" or entry["checked_against"], f"{name}: what was read to check it?"
    assert [rule["id"] for rule in table["rules"] if rule["source"] == "unverified"] == ["single_subgraph"]
    assert sorted(op for op, entry in table["ops"].items() if entry["source"] == "unverified") == [
        "RSQRT", "SQUARED_DIFFERENCE"]
    assert all(rule["text"] for rule in table["rules"]) and table["how_to_update"]
    assert "CONV_2D" in table["ops"] and "CUMSUM" not in table["ops"]


def test_an_op_the_table_says_may_stay_on_the_cpu_is_a_warning_not_a_certainty():
    """RESIZE_BILINEAR may stay on the CPU depending on its sizes, a threshold the table does not give
    (google-coral/edgetpu#597 saw the resizes on the CPU at 512x512)."""
    model = net(keras.layers.Resizing(16, 16, interpolation="bilinear", name="upsample"))
    report = qd.audit(int8_model(model), target="edgetpu")
    finding = only(report, "QD122")
    assert report.audit["edgetpu"]["uncertain_ops"] == ["RESIZE_BILINEAR"]
    assert report.audit["edgetpu"]["cpu_ops"] == 0 and finding.severity == "warning"
    assert finding.message.startswith("Predicted (not compiled): RESIZE_BILINEAR in layer 'upsample")
    assert finding.message.endswith(
        "is counted on the Edge TPU, but the compiler may leave it on the CPU depending on its sizes, to avoid a loss "
        "of precision (a threshold the table does not give); then it and everything after it would run on the CPU.")


def test_keras_3_upsampling_is_a_5_d_repeat_the_edge_tpu_cuts_at():
    """Keras 3's UpSampling2D converts to RESHAPE/TILE through a [1, 8, 1, 8, 4] tensor, not to
    RESIZE_NEAREST_NEIGHBOR: the rank rule cuts there."""
    report = qd.audit(int8_model(net(keras.layers.UpSampling2D(name="upsample"))), target="edgetpu")
    cut = first_cpu(report)
    assert (cut["op"], cut["rule"]) == ("RESHAPE", "three_innermost_dims") and "[1, 8, 1, 8, 4]" in cut["detail"]
    assert cut["compiler_status"] == "Tensor has unsupported rank (up to 3 innermost dimensions mapped)"
    assert report.audit["edgetpu"]["edgetpu_ops"] == 1  # the Conv2D before it
