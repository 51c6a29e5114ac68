"""A fused RELU6 whose output was calibrated to an almost empty range: LiteRT's builtin kernel refuses the op
(its clamp overflows int32 on the output scale) while XNNPACK runs it. ai-edge-quantizer produces such a model
from a layer with near-zero weights; TensorFlow's converter does not. QD112, predicted from the model and
checked here against the real interpreter."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from float_tflite import float_tflite, write
from helpers import assert_finding, root

import quantdoctor as qd
from quantdoctor.litert import new_interpreter
from quantdoctor.report.model import QuantizationError


def quiet_depthwise_model() -> keras.Model:
    """A depthwise conv with fused RELU6 whose weights are near zero (an untrained or pruned layer)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3), name="image")
    features = keras.layers.Conv2D(8, 3, padding="same", name="conv")(inputs)
    quiet = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu6", name="quiet_dw")
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(quiet(features))
    model = keras.Model(inputs, keras.layers.Dense(4, name="head")(pooled))
    kernel, bias = quiet.get_weights()
    quiet.set_weights([kernel * 1e-9, bias * 0.0])
    return model


def images(count: int, seed: int) -> np.ndarray:
    grid = np.linspace(0, 1, 16, dtype=np.float32)
    rng = np.random.default_rng(seed)
    return np.clip(grid[None, :, None, None] * grid[None, None, :, None] + 0.1 * rng.normal(size=(count, 16, 16, 3)),
                   0, 1).astype(np.float32)


def builtin_kernels_refuse(tflite_model: bytes) -> str | None:
    """The builtin kernels' refusal when they prepare the model, None when they take it."""
    try:
        new_interpreter(tflite_model, reference_kernels=True).allocate_tensors()
    except RuntimeError as exc:
        return str(exc)
    return None


@pytest.mark.code("QD112")
def test_a_relu6_clamp_that_overflows_on_its_output_scale_is_found_in_the_model_aeq_made(tmp_path):
    pytest.importorskip("ai_edge_quantizer")
    model = write(tmp_path / "quiet_float.tflite", float_tflite(quiet_depthwise_model()))
    np.savez(tmp_path / "calib.npz", image=images(100, seed=0))
    report = qd.diagnose(model, tmp_path / "calib.npz", mode="int8")
    finding = root(report)
    assert_finding(finding, "QD112", "unsupported_op", "error", layer="quiet_dw", op="DEPTHWISE_CONV_2D")
    assert finding.message.startswith("DEPTHWISE_CONV_2D #1 in layer 'quiet_dw' fuses RELU6, and its output scale ")
    assert "beyond int32: LiteRT's builtin kernel refuses the op when it prepares it" in finding.message
    assert finding.evidence["quantized_bound"] > 2**31 and finding.evidence["predicted"] is True
    # What the rule predicts is what the real interpreter does: the builtin kernel refuses that very op,
    refusal = builtin_kernels_refuse(report.tflite_model)
    assert refusal is not None and "no_integer_overflow_from_quantization" in refusal
    assert "Node number 1 (DEPTHWISE_CONV_2D) failed to prepare" in refusal
    default = new_interpreter(report.tflite_model)  # while the default delegates (XNNPACK) run it
    default.allocate_tensors()
    default.set_tensor(default.get_input_details()[0]["index"],
                       np.zeros(default.get_input_details()[0]["shape"], np.int8))
    default.invoke()

    np.savez(tmp_path / "eval.npz", image=images(30, seed=1))
    with pytest.raises(QuantizationError) as raised:  # nothing to compare: compare stops with the report
        qd.compare(model, tmp_path / "calib.npz", eval_data=tmp_path / "eval.npz", mode="int8")
    assert root(raised.value.report).code == "QD112"


def test_the_tensorflow_converter_gives_the_same_layer_a_scale_the_builtin_kernel_takes():
    converter = tf.lite.TFLiteConverter.from_keras_model(quiet_depthwise_model())
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    calibration = images(100, seed=0)
    converter.representative_dataset = lambda: ([row[None]] for row in calibration)
    report = qd.diagnose(converter)
    assert not [f for f in report.findings if f.code == "QD112"]
    assert builtin_kernels_refuse(report.tflite_model) is None
