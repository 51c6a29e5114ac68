"""One test per private TensorFlow hook in `quantdoctor.tf_private`: each fails first when a TF upgrade
moves what it relies on."""

from __future__ import annotations

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from quantdoctor.audit.checks import float_ops
from quantdoctor.audit.tflite_model import read_tflite
from quantdoctor.tf_private import capture_quantizer_calls, quantize_calibrated
from models import dataset_from, int8_converter, vectors, with_layer


@pytest.fixture(scope="module")
def captured():
    """A Dense -> ReLU -> Dense model converted once in full INT8, with its quantizer call recorded."""
    import keras

    model = with_layer(keras.layers.ReLU(name="relu"))
    converter = int8_converter(model, dataset_from(vectors(40)))
    with capture_quantizer_calls() as calls:
        converted = converter.convert()
    return converted, calls


def test_the_quantizer_call_of_a_conversion_is_captured_and_tensorflow_restored(captured):
    from tensorflow.lite.python import lite

    converted, calls = captured
    assert len(calls) == 1
    call = calls[0]
    calibrated = read_tflite(call.calibrated)
    assert [op.name for op in calibrated.ops] == ["FULLY_CONNECTED", "FULLY_CONNECTED"]
    assert all(op.computes_in_float for op in calibrated.ops)  # the float model, carrying the calibrated ranges
    assert call.arguments["input_data_type"] == "float32" and call.arguments["output_data_type"] == "float32"
    assert call.arguments["disable_per_channel"] is False
    from tensorflow.lite.python.convert import mlir_quantize

    assert lite._mlir_quantize is mlir_quantize  # restored after the block
    assert not float_ops(read_tflite(converted))


def test_replaying_the_quantizer_makes_the_converted_model_and_keeps_denylisted_ops_float(captured):
    converted, calls = captured
    call = calls[0]
    replayed = quantize_calibrated(call.calibrated, call.arguments, [])
    samples = vectors(16, seed=5)
    assert np.array_equal(_outputs(replayed, samples), _outputs(converted, samples))
    dense = next(op.outputs[0].name for op in read_tflite(call.calibrated).ops if "dense" in op.outputs[0].name)
    partly = read_tflite(quantize_calibrated(call.calibrated, call.arguments, [dense]))
    assert [(op.name, op.outputs[0].name) for op in float_ops(partly)] == [("FULLY_CONNECTED", dense)]


def _outputs(model: bytes, samples: np.ndarray) -> np.ndarray:
    interpreter = Interpreter(model_content=model)
    interpreter.allocate_tensors()
    rows = []
    for row in samples:
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], row[None])
        interpreter.invoke()
        rows.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]))
    return np.concatenate(rows)
