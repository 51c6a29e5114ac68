"""`qd.watch()` in the test's own process: real converters and interpreters, patches undone on exit."""

from __future__ import annotations

import json
import pickle
import sys

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.lite.python import lite
from tensorflow.lite.python.convert_phase import ConverterError

import quantdoctor as qd
from helpers import assert_finding
from models import dataset_from, image_model, int8_converter, lambda_layer, smooth_images, vectors, with_layer
from quantdoctor.watch.patches import ImportHook
from quantdoctor.litert import interpreter_module

Interpreter = interpreter_module().Interpreter  # LiteRT's, or tf.lite.Interpreter without it


@pytest.fixture(scope="module")
def int8_model() -> bytes:
    """A tiny full-integer model with int8 input and output, calibrated on images in [0, 1]."""
    return int8_converter(image_model(), dataset_from(smooth_images(100)), int8_io=True).convert()


@pytest.fixture
def interpreter(int8_model) -> Interpreter:
    interpreter = Interpreter(model_content=int8_model)
    interpreter.allocate_tensors()
    return interpreter


def invoke(interpreter: Interpreter) -> tuple[np.ndarray, dict]:
    details = interpreter.get_input_details()[0]
    scale, zero_point = details["quantization"]
    image = smooth_images(1, seed=3)
    interpreter.set_tensor(details["index"], np.round(image / scale + zero_point).astype(np.int8))
    interpreter.invoke()
    output = interpreter.get_output_details()[0]
    return interpreter.get_tensor(output["index"]), output


def test_every_patch_is_undone_when_the_block_ends(interpreter):
    patched = [(cls, "convert") for cls in (tf.lite.TFLiteConverter, lite.TFLiteKerasModelConverterV2,
                                            lite.TFLiteSavedModelConverterV2)]
    patched += [(lite.TFLiteConverterBaseV2, "__init__"), (Interpreter, "set_tensor"), (Interpreter, "get_tensor"),
                (Interpreter, "invoke"), (tf.lite.Interpreter, "set_tensor")]
    before = {(cls, name): vars(cls)[name] for cls, name in patched}
    with qd.watch(echo=False):
        assert all(vars(cls)[name] is not before[(cls, name)] for cls, name in patched)
        assert any(isinstance(finder, ImportHook) for finder in sys.meta_path)
    assert {(cls, name): vars(cls)[name] for cls, name in patched} == before
    assert not any(isinstance(finder, ImportHook) for finder in sys.meta_path)
    scores, _ = invoke(interpreter)
    assert type(scores) is np.ndarray


@pytest.mark.code("QD215")
def test_a_raw_output_behaves_like_the_plain_array_and_is_reported_once(interpreter):
    with qd.watch(echo=False) as session:
        scores, details = invoke(interpreter)
        plain = scores.view(np.ndarray)
        assert repr(scores) == repr(plain) and str(scores) == str(plain)
        assert type(pickle.loads(pickle.dumps(scores))) is np.ndarray
        assert type(scores - details["quantization"][1]) is np.ndarray
        assert int(np.argmax(scores)) == int(np.argmax(plain))
        assert (scores > details["quantization"][1]).shape == (1, 2)  # integer comparisons are fine
        dequantized = scores.astype(np.float32)
        dequantized -= details["quantization"][1]
        dequantized *= details["quantization"][0]
        assert (dequantized > 0.5).dtype == bool  # dequantized in place: not reported
        assert session.findings == []
        for _ in range(50):
            scores[0][0] >= 0.5
        assert [f.code for f in session.findings] == ["QD215"]
    scores > 0.5  # outside the block nothing is watched
    assert len(session.findings) == 1
    assert_finding(session.findings[0], "QD215", "dtype_mismatch", "error", tensor="StatefulPartitionedCall_1:0")
    assert session.findings[0].evidence["source"]["file"] == __file__


@pytest.mark.code("QD213", "QD214")
def test_floats_and_cast_floats_fed_to_the_integer_input(interpreter):
    details = interpreter.get_input_details()[0]
    image = smooth_images(1, seed=4)
    with qd.watch(echo=False) as session:
        with pytest.raises(ValueError, match="Cannot set tensor: Got value of type FLOAT32 but expected type INT8"):
            interpreter.set_tensor(details["index"], image)
        interpreter.set_tensor(details["index"], np.round(image).astype(np.int8))
        interpreter.invoke()
    floats, cast = session.findings
    assert_finding(floats, "QD213", "dtype_mismatch", "error", input="serving_default_image:0")
    assert_finding(cast, "QD214", "dtype_mismatch", "error", input="serving_default_image:0")
    assert floats.evidence["fed_dtype"] == "float32" and cast.evidence["fed_range"] == [0, 1]


@pytest.mark.code("QD516", "QD517")
def test_a_resize_without_allocation_and_a_runner_fed_the_wrong_key(interpreter):
    details = interpreter.get_input_details()[0]
    with qd.watch(echo=False) as session:
        interpreter.resize_tensor_input(details["index"], [2, 16, 16, 3])
        with pytest.raises(ValueError, match="Tensor is unallocated"):
            interpreter.set_tensor(details["index"], np.zeros((2, 16, 16, 3), np.int8))
        interpreter.allocate_tensors()
        interpreter.set_tensor(details["index"], np.zeros((2, 16, 16, 3), np.int8))  # allocated: fine
        runner = interpreter.get_signature_runner()
        with pytest.raises(ValueError, match=r"Invalid Input name \(input_1\) for SignatureDef"):
            runner(input_1=np.zeros((1, 16, 16, 3), np.int8))
    unallocated, keys = session.findings
    assert_finding(unallocated, "QD516", "accuracy", "error", input="serving_default_image:0")
    assert_finding(keys, "QD517", "accuracy", "error", input="input_1, image")


@pytest.mark.code("QD101")
def test_a_failing_conversion_raises_the_converters_own_class_carrying_the_diagnosis(tmp_path):
    model = with_layer(lambda_layer(lambda x: tf.reshape(tf.linalg.det(tf.reshape(x, (-1, 2, 2, 2))), (-1, 2)),
                                    "my_det"))
    with qd.watch(tmp_path / "watch.json", echo=False) as session:
        converter = int8_converter(model, dataset_from(vectors(20)))
        with pytest.raises(ConverterError) as raised:
            converter.convert()
    error = raised.value
    assert isinstance(error, qd.QuantizationError) and error.report is session.conversions[0]
    assert str(error).startswith("quantization failed — QD101 Op has no TFLite builtin kernel")
    assert "MatrixDeterminant" in error.converter_message
    document = json.loads((tmp_path / "watch.json").read_text())
    [conversion] = document["conversions"]
    assert conversion["findings"][0]["code"] == "QD101"
    assert conversion["conversion"]["exception"] == "tensorflow.lite.python.convert_phase:ConverterError"
    assert conversion["call_site"]["converter"]["file"].endswith("models.py")  # built in int8_converter
    assert conversion["call_site"]["convert"]["file"] == __file__


def test_the_run_bootstrap_imported_by_its_package_name_does_nothing():
    """Only Python's start-up import (as `sitecustomize`, in a process `quantdoctor run` started) may
    install the trigger: a tool importing every module of the package must not start a run session."""
    import importlib
    from pathlib import Path

    from quantdoctor.watch import session

    before = list(sys.meta_path)
    module = importlib.import_module("quantdoctor.watch.bootstrap.sitecustomize")
    assert sys.meta_path == before and session.active() is None  # no import trigger, no session
    assert f'"{session.RUN_OPTIONS_VARIABLE}"' in Path(module.__file__).read_text()  # the same variable
