"""--target edgetpu against real Edge TPU compiler logs that users posted: each test rebuilds the reported
model's relevant part as a tiny Keras model, converts it with the real converter, and checks that the
prediction names the op the compiler named, for the reason its log line gives (the rule's compiler_status).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from models import dataset_from, int8_converter, smooth_images

import quantdoctor as qd
from quantdoctor.audit.edgetpu import edgetpu_rules
from quantdoctor.audit.tflite_model import read_tflite

UNSUPPORTED_TYPE = "Operation is working on an unsupported data type"
UNSPECIFIED = "Operation is otherwise supported, but not mapped due to some unspecified limitation"
RANK = "Tensor has unsupported rank (up to 3 innermost dimensions mapped)"


def dynamic_range(model: keras.Model) -> bytes:
    """`optimizations = [DEFAULT]` without a representative dataset: int8 weights, float activations."""
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return converter.convert()


def predicted_cut(report: qd.Report) -> dict:
    edgetpu = report.audit["edgetpu"]
    assert edgetpu["first_cpu_op"], f"no cut predicted: {edgetpu}"
    return edgetpu["first_cpu_op"]


def test_f0cal_google_coral_20_float_io_mobilenet_runs_its_middle_on_the_edge_tpu():
    """https://github.com/f0cal/google-coral/issues/20: a post-training quantized MobileNetV2 with float input
    and output. The log: QUANTIZE "Operation is otherwise supported, but not mapped due to some unspecified
    limitation", DEQUANTIZE "Operation is working on an unsupported data type"; ADD, PAD, CONV_2D,
    DEPTHWISE_CONV_2D, MEAN, FULLY_CONNECTED and SOFTMAX "Mapped to Edge TPU" (70 on the Edge TPU, 2 on the CPU)."""
    image = keras.Input((16, 16, 3), batch_size=1, name="image")
    x = keras.layers.Conv2D(8, 3, strides=2, name="stem")(keras.layers.ZeroPadding2D(name="stem_pad")(image))
    y = keras.layers.Conv2D(8, 1, name="project")(keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(x))
    x = keras.layers.Add(name="residual")([x, y])
    logits = keras.layers.Dense(4, name="logits")(keras.layers.GlobalAveragePooling2D(name="pool")(x))
    model = keras.Model(image, keras.layers.Softmax(name="probabilities")(logits))
    tflite = int8_converter(model, dataset_from(smooth_images(4, 16))).convert()
    report = qd.audit(tflite, target="edgetpu")
    edgetpu = report.audit["edgetpu"]
    assert edgetpu["first_cpu_op"] is None and edgetpu["cpu_ops"] == edgetpu["outside_cpu_ops"] == 2
    [finding] = report.findings
    assert [(row["op"], row["side"], row["compiler_status"]) for row in finding.evidence["ops"]] == [
        ("QUANTIZE", "before", UNSPECIFIED), ("DEQUANTIZE", "after", UNSUPPORTED_TYPE)]
    ops = [op.name for op in read_tflite(tflite).ops]
    assert (ops[0], ops[-1]) == ("QUANTIZE", "DEQUANTIZE")
    assert set(ops[1:-1]) <= {"ADD", "PAD", "CONV_2D", "DEPTHWISE_CONV_2D", "MEAN", "FULLY_CONNECTED", "SOFTMAX"}
    assert edgetpu["edgetpu_ops"] == edgetpu["ops"] - 2 >= 6


def test_google_coral_edgetpu_609_default_optimizations_leave_every_op_on_the_cpu():
    """https://github.com/google-coral/edgetpu/issues/609: a small handwriting model converted with default
    optimizations only (no representative dataset). Every op in the log: "Operation is working on an
    unsupported data type"; 0 ops on the Edge TPU."""
    model = keras.Sequential([keras.Input((28, 28, 1), batch_size=1, name="digit"),
                              keras.layers.Flatten(name="flatten"),
                              keras.layers.Dense(16, activation="relu", name="hidden"),
                              keras.layers.Dense(10, name="classes")])
    report = qd.audit(dynamic_range(model), target="edgetpu")
    cut = predicted_cut(report)
    assert (cut["index"], cut["rule"], cut["compiler_status"]) == (0, "int8_tensors", UNSUPPORTED_TYPE)
    assert report.audit["edgetpu"]["edgetpu_ops"] == 0


def test_cpm_hand_82_weight_only_quantized_convolutions_run_on_the_cpu():
    """https://github.com/timctho/convolutional-pose-machines-tensorflow/issues/82 (also google-coral/edgetpu#225):
    a convolutional pose machine quantized by weight only. The log: CONV_2D (31) "Operation is working on an
    unsupported data type"; 0 of 42 ops on the Edge TPU."""
    image = keras.Input((16, 16, 3), batch_size=1, name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="stage1_conv1")(image)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="stage1_conv2")(x)
    model = keras.Model(image, keras.layers.Conv2D(4, 1, name="stage1_heatmaps")(x))
    report = qd.audit(dynamic_range(model), target="edgetpu")
    cut = predicted_cut(report)
    assert (cut["op"], cut["rule"], cut["compiler_status"]) == ("CONV_2D", "int8_tensors", UNSUPPORTED_TYPE)
    assert report.audit["edgetpu"]["edgetpu_ops"] == 0


def test_google_coral_edgetpu_708_five_dimensional_reshape_is_refused_for_its_rank():
    """https://github.com/google-coral/edgetpu/issues/708: a detection model whose head reshapes to more than
    3 dimensions above size 1. The log: RESHAPE (4) "Tensor has unsupported rank (up to 3 innermost
    dimensions mapped)". Here a box head reshaped to (rows, columns, anchors, coordinates)."""
    image = keras.Input((8, 8, 3), batch_size=1, name="image")
    boxes = keras.layers.Conv2D(12, 3, padding="same", name="box_head")(image)
    per_anchor = keras.layers.Reshape((8, 8, 3, 4), name="anchors")(boxes)
    model = keras.Model(image, keras.layers.Dense(2, name="refine")(per_anchor))
    report = qd.audit(int8_converter(model, dataset_from(smooth_images(4, 8)), int8_io=True).convert(),
                      target="edgetpu")
    cut = predicted_cut(report)
    assert (cut["op"], cut["rule"], cut["compiler_status"]) == ("RESHAPE", "three_innermost_dims", RANK)
    assert "has the shape [1, 8, 8, 3, 4]" in cut["detail"], cut


def test_google_coral_edgetpu_342_ops_after_the_cut_are_logged_as_another_subgraph():
    """https://github.com/google-coral/edgetpu/issues/342 (and #490, PINTO0309/openvino2tensorflow#28): a PAD
    "Mapped to Edge TPU", then an op the compiler does not map ("Operation not supported"), and every supported op
    after it logged "More than one subgraph is not supported" (CONV_2D, ADD, PAD, MEAN, FULLY_CONNECTED in #342).
    Here the unmapped op is a cumulative sum, an op not in the list."""
    image = keras.Input((8, 8, 3), batch_size=1, name="image")
    x = keras.layers.ZeroPadding2D(name="pad")(image)
    x = keras.layers.Lambda(lambda t: tf.math.cumsum(t, axis=1), name="running_total")(x)
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(x)
    model = keras.Model(image, keras.layers.Dense(2, name="head")(keras.layers.GlobalAveragePooling2D(name="gap")(x)))
    report = qd.diagnose(model, smooth_images(4, 8), io="int8", target="edgetpu", trust_model=True)
    cut = predicted_cut(report)
    assert (cut["op"], cut["layer"], cut["compiler_status"]) == ("CUMSUM", "running_total", "Operation not supported")
    finding = next(f for f in report.findings if f.code == "QD122")
    assert finding.evidence["compiler_status_after"] == "More than one subgraph is not supported"
    after = finding.message.split("would run on the CPU too")[0]
    assert all(op in after for op in ("CONV_2D", "MEAN", "FULLY_CONNECTED"))
    assert report.audit["edgetpu"]["edgetpu_ops"] == 1  # the PAD, "Mapped to Edge TPU" as in #342's log


def test_google_coral_edgetpu_818_a_gelu_model_is_not_read_at_all():
    """https://github.com/google-coral/edgetpu/issues/818: a quantized model with a GELU activation stops the
    compiler with "ERROR: Op builtin_code out of range: 150. Are you using old TFLite binary with newer model?"."""
    features = keras.Input((8,), batch_size=1, name="features")
    hidden = keras.layers.Dense(8, activation="gelu", name="mlp")(features)
    model = keras.Model(features, keras.layers.Dense(2, name="head")(hidden))
    report = qd.audit(int8_converter(model, dataset_from(np.random.default_rng(0).random((4, 8), dtype=np.float32)),
                                     int8_io=True).convert(), target="edgetpu")
    cut = predicted_cut(report)
    assert (cut["op"], cut["rule"]) == ("GELU", "known_builtin_codes")
    assert cut["compiler_status"] == "Op builtin_code out of range: 150. Are you using old TFLite binary with newer model?"
    assert report.audit["edgetpu"]["edgetpu_ops"] == 0 == report.audit["edgetpu"]["ops"] - report.audit["edgetpu"]["cpu_ops"]
    [finding] = report.findings
    assert finding.severity == "error" and "could not read the model: GELU in " in finding.message


def test_the_compiler_status_lines_quoted_by_the_rules_are_the_users_logs():
    """The log lines the table quotes are the ones the reproduced threads show, word for word."""
    statuses = {rule_id: rule.get("compiler_status") for rule_id, rule in edgetpu_rules()["rules"].items()}
    assert statuses["int8_tensors"] == UNSUPPORTED_TYPE and statuses["three_innermost_dims"] == RANK
    assert statuses["op_limitation"] == UNSPECIFIED
    assert statuses["first_unsupported"] == "More than one subgraph is not supported"
    assert all(seen.startswith("https://github.com/") for rule in edgetpu_rules()["rules"].values()
               for seen in rule.get("compiler_status_seen_in", []))
