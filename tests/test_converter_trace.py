"""A Keras model that converts is traced once, by the converter: the worker's preflight reads that trace
(`convert/converter_trace.py`, issue 19) and finds what quantdoctor's own trace finds (`--no-convert`)."""

from __future__ import annotations

import json

import keras
import pytest
import tensorflow as tf

from quantdoctor.convert import worker
from quantdoctor.intake.recipe import Recipe


@keras.saving.register_keras_serializable(package="onetrace")
class CountedConv(keras.layers.Conv2D):
    """A Conv2D that counts the times TensorFlow traces it (Python runs only while tracing)."""

    traces = 0

    def call(self, inputs):
        CountedConv.traces += 1
        return super().call(inputs)


def saved_model_file(tmp_path):
    model = keras.Sequential([keras.Input((8, 8, 3), name="image"), CountedConv(4, 3, name="conv"),
                              keras.layers.GlobalAveragePooling2D(name="pool"), keras.layers.Dense(2, name="head")])
    path = tmp_path / "counted.keras"
    model.save(path)
    return path


def worker_response(tmp_path, model_path, convert: bool) -> dict:
    """The worker's response for the model, run in this process (so its traces are counted here)."""
    response = tmp_path / f"response_{convert}.json"
    request = {"response": str(response), "model": {"loader": "keras_file", "path": str(model_path), "edits": []},
               "recipe": Recipe.for_mode("float").to_dict(), "data": None, "convert": convert,
               "output": str(tmp_path / "model.tflite")}
    assert worker.main(worker.ConversionRequest.from_json(request)) == 0
    return json.loads(response.read_text())


def without_seconds(preflight: dict) -> dict:
    return {key: value for key, value in preflight.items() if key != "seconds"}


def test_a_keras_model_that_converts_is_traced_by_the_converter_alone_with_the_same_preflight(tmp_path):
    path = saved_model_file(tmp_path)
    CountedConv.traces = 0
    tf.lite.TFLiteConverter.from_keras_model(keras.saving.load_model(path)).convert()
    plain, CountedConv.traces = CountedConv.traces, 0  # one plain conversion's traces

    converted = worker_response(tmp_path, path, convert=True)
    assert converted["outcome"] == "ok" and converted["stage"] == "done"
    assert CountedConv.traces == plain  # no trace of quantdoctor's own besides the converter's

    CountedConv.traces = 0
    own = worker_response(tmp_path, path, convert=False)  # --no-convert: quantdoctor traces the model itself
    assert own["outcome"] == "skipped" and CountedConv.traces == 1
    assert without_seconds(converted["preflight"]) == without_seconds(own["preflight"])
    assert {node["op"] for node in converted["preflight"]["nodes"]} >= {"Conv2D", "MatMul"}
    assert converted["model"] == own["model"] and converted["model"]["layer_scopes"]


def test_a_failure_reading_the_converters_trace_is_quantdoctors_not_the_conversions(tmp_path, monkeypatch):
    from quantdoctor.convert import converter_trace

    def broken(function, loaded_at):
        raise KeyError("quantdoctor's own reading")

    monkeypatch.setattr(converter_trace, "preflight_inventory", broken)
    with pytest.raises(KeyError, match="quantdoctor's own reading"):  # `protocol.serve` reports it as a bug
        worker_response(tmp_path, saved_model_file(tmp_path), convert=True)
    response = json.loads((tmp_path / "response_True.json").read_text())
    assert response["stage"] == "loading" and "outcome" not in response  # never written as the conversion's


def test_a_converter_that_refuses_the_settings_before_tracing_leaves_the_preflight_to_quantdoctors_trace():
    """Integer-only ops without samples: TensorFlow's converter refuses before it exports (traces) the model.
    That is the user's error (QD301), never a TensorFlow that changed, and the preflight still has its graph."""
    from models import image_model

    import quantdoctor as qd

    report = qd.diagnose(image_model(), mode="int8-strict")
    assert report.conversion["outcome"] == "error" and report.root_cause.code == "QD301"
    assert report.preflight["verdict"] == "will_fail" and report.model["layer_scopes"]
