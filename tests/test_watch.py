"""`qd.watch()` in the test's own process: real converters and interpreters, patches undone on exit."""

from __future__ import annotations

import json
import os
import pickle
import re
import sys
import threading
import time

import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_finding
from models import dataset_from, image_model, int8_converter, lambda_layer, smooth_images, vectors, with_layer
from tensorflow.lite.python import lite
from tensorflow.lite.python.convert_phase import ConverterError

import quantdoctor as qd
from quantdoctor.litert import interpreter_module
from quantdoctor.watch.patches import ImportHook

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


def test_a_thread_printing_while_the_block_converts_loses_no_line(capsys):
    """The diagnosis never swaps the process's stdout: the script's other threads print as usual."""
    stop = threading.Event()
    printed = []

    def printer() -> None:
        number = 0
        while not stop.is_set():
            sys.stdout.write(f"line {number}\n")
            number += 1
            time.sleep(0.002)
        printed.append(number)

    thread = threading.Thread(target=printer)
    thread.start()
    try:
        with qd.watch(echo=False) as session:
            int8_converter(image_model(), dataset_from(smooth_images(4))).convert()
    finally:
        stop.set()
        thread.join()
    numbers = [int(n) for n in re.findall(r"^line (\d+)$", capsys.readouterr().out, re.M)]
    assert numbers == list(range(printed[0])) and printed[0] > 100
    assert [f.code for f in session.conversions[0].findings] == ["QD308"]  # four samples: too few


def test_the_json_path_is_resolved_once_when_the_session_starts(interpreter, tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    users_own = tmp_path / "sub" / "outer.json"
    users_own.write_text('{"tool": {"name": "quantdoctor"}, "conversions": []}')  # even one that looks like ours
    monkeypatch.chdir(tmp_path)
    details = interpreter.get_input_details()[0]
    with qd.watch("outer.json", echo=False):
        os.chdir("sub")
        with pytest.raises(ValueError, match="Cannot set tensor"):
            interpreter.set_tensor(details["index"], smooth_images(1))
    assert users_own.read_text() == '{"tool": {"name": "quantdoctor"}, "conversions": []}'
    [finding] = json.loads((tmp_path / "outer.json").read_text())["findings"]
    assert finding["code"] == "QD213"


@pytest.mark.parametrize("name, message", [
    ("nodir/x.json", "json_path {path}: the directory {parent} does not exist"),
    (".", "json_path {path} is a directory: give a file name"),
])
def test_a_json_path_that_cannot_be_written_is_a_usage_error_before_the_block(tmp_path, monkeypatch, name, message):
    monkeypatch.chdir(tmp_path)
    path = (tmp_path / name).absolute()
    with pytest.raises(qd.UsageError) as raised:
        qd.watch(name)
    assert str(raised.value) == message.format(path=path, parent=path.parent)
    assert not any(isinstance(finder, ImportHook) for finder in sys.meta_path)


@pytest.fixture(scope="module")
def normalised_models() -> dict[str, bytes]:
    """Tiny full-integer models with uint8 and with int8 I/O, calibrated on images normalised to [-1, 1]."""
    models = {}
    for dtype in (tf.uint8, tf.int8):
        converter = int8_converter(image_model(), dataset_from(smooth_images(30) * 2 - 1))
        converter.inference_input_type = converter.inference_output_type = dtype
        models[dtype.name] = converter.convert()
    return models


def feed_each(tflite: bytes, batches: list[np.ndarray]) -> tuple[list, dict]:
    """Set and invoke each batch in turn, watched: the findings and the input's details."""
    interpreter = Interpreter(model_content=tflite)
    interpreter.allocate_tensors()
    details = interpreter.get_input_details()[0]
    with qd.watch(echo=False) as session:
        for batch in batches:
            interpreter.set_tensor(details["index"], batch)  # FEED
            interpreter.invoke()
    return session.findings, details


def pixels(count: int, low: int = 0, high: int = 255) -> list[np.ndarray]:
    """8-bit photos as a script loads them (float64 after arithmetic), pixels from `low` to `high`."""
    return [np.round(low + image[None] / image.max() * (high - low)) for image in smooth_images(count, seed=7)]


@pytest.mark.code("QD214")
@pytest.mark.parametrize("dtype, cast, levels, constant", [
    # Photos without pure black or white: every pixel casts to 0, on every invocation.
    ("uint8", lambda: [((p / 127.5) - 1.0).astype(np.uint8) for p in pixels(5, 20, 220)], [0], True),
    # 0..16 digits on a 0 background: the background (-1.0) wraps to 255, the strokes give 0 and 1.
    ("uint8", lambda: [(np.round(p / 255 * 16) / 8.0 - 1.0).astype(np.uint8) for p in pixels(1)], [0, 1, 255],
     False),
    ("int8", lambda: [((p / 127.5) - 1.0).astype(np.int8) for p in pixels(2)], [-1, 0, 1], False),
])
def test_a_raw_cast_of_floats_normalised_to_minus_one_one_is_judged_by_its_levels(normalised_models, dtype, cast,
                                                                                  levels, constant):
    findings, details = feed_each(normalised_models[dtype], cast())
    [finding] = findings
    assert_finding(finding, "QD214", "dtype_mismatch", "error", input="serving_default_image:0")
    scale, zero_point = details["quantization"]
    expected_cast = [255, 0, 1] if dtype == "uint8" else [-1, 0, 1]
    assert (finding.evidence["fed_levels"], finding.evidence["cast_levels"]) == (levels, sorted(expected_cast))
    assert finding.evidence["constant_feeds"] is constant
    assert finding.evidence["source"]["line"] == next(
        number for number, line in enumerate(open(__file__), 1) if line.rstrip().endswith("# FEED"))
    low, high = finding.evidence["calibrated_range"]
    assert low == pytest.approx(-1.0, abs=scale) and high == pytest.approx(1.0, abs=scale)
    cast_set = "{" + ", ".join(map(str, sorted(expected_cast))) + "}"
    assert (f"`.astype(np.{dtype})` makes the levels {cast_set} of floats in its calibrated range "
            f"[{low:.4g}, {high:.4g}] (it truncates toward zero{' and wraps negatives around to 255' * (dtype == 'uint8')})"
            ) in finding.message
    fed = "{" + ", ".join(map(str, levels)) + "}"
    assert (f"is fed a constant (level {fed}) on each of its first 3 invocations at" if constant
            else f"is fed only the levels {fed} at") in finding.message
    assert f"np.round(x / scale + zero_point), {np.iinfo(dtype).min}, {np.iinfo(dtype).max}" in finding.fix.code


def test_correctly_quantized_inputs_after_a_zero_warm_up_are_not_a_raw_cast(normalised_models):
    details = Interpreter(model_content=normalised_models["uint8"]).get_input_details()[0]
    scale, zero_point = details["quantization"]
    quantized = [np.clip(np.round((p / 127.5 - 1.0) / scale + zero_point), 0, 255).astype(np.uint8)
                 for p in pixels(4)]
    black_and_white = np.where(quantized[0] > 127, 255, 0).astype(np.uint8)  # the two ends of the range
    warm_up = np.zeros((1, 16, 16, 3), np.uint8)
    for batches in (quantized, [warm_up, *quantized], [warm_up, black_and_white, black_and_white, warm_up]):
        findings, _ = feed_each(normalised_models["uint8"], batches)
        assert findings == []


@pytest.mark.code("QD214")
def test_a_signature_runner_fed_a_raw_cast_is_judged_by_its_levels_too(normalised_models):
    interpreter = Interpreter(model_content=normalised_models["int8"])
    runner = interpreter.get_signature_runner()
    with qd.watch(echo=False) as session:
        for photo in pixels(2):
            runner(image=((photo / 127.5) - 1.0).astype(np.int8))
    [finding] = session.findings
    assert_finding(finding, "QD214", "dtype_mismatch", "error", input="image")
    assert finding.evidence["fed_levels"] == [-1, 0, 1]
