"""The seam between quantdoctor and the TensorFlow it runs: what fails on quantdoctor's side of it is
never reported as the user's error.

- A private hook that breaks inside `converter.convert()` (TensorFlow changed) raises
  `TensorFlowChanged`, not the user's QD904 "the converter raised ...".
- A model edit of quantdoctor's own (a `fix` repair) that fails is `EditFailed`, not the user's
  load error (exit 2).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from models import with_layer

from quantdoctor import tf_private
from quantdoctor.errors import EditFailed, UsageError
from quantdoctor.tf_private import TensorFlowChanged


def _tiny_converter():
    import tensorflow as tf

    model = with_layer(__import__("keras").layers.Dense(4, name="middle"))
    return tf.lite.TFLiteConverter.from_keras_model(model)


def _failing(converter, error: BaseException):
    def convert():
        raise error

    converter.convert = convert
    return converter


def test_a_broken_hook_inside_the_converter_is_tensorflow_changed_and_not_the_users_error():
    from quantdoctor.convert import worker
    from quantdoctor.intake.recipe import Recipe

    broken = ValueError("the converter wrapped it")
    broken.__cause__ = TensorFlowChanged("TFLiteConverterV2 has no attribute '_optimize_tflite_model'")
    with pytest.raises(TensorFlowChanged, match="_optimize_tflite_model"):
        worker._convert(lambda: _failing(_tiny_converter(), broken), Recipe.for_mode("float"), None, None)
    # The user's own converter error stays the user's: the pipeline diagnoses it (QD904 and the rest).
    with pytest.raises(worker._ConverterFailed):
        worker._convert(lambda: _failing(_tiny_converter(), ValueError("a real conversion error")),
                        Recipe.for_mode("float"), None, None)


def test_tensorflow_changed_is_found_anywhere_in_the_chain_of_causes():
    root = TensorFlowChanged("gone")
    try:
        try:
            raise root
        except TensorFlowChanged:
            raise RuntimeError("while converting")  # implicit __context__
    except RuntimeError as wrapped:
        assert tf_private.changed_in(wrapped) is root
    assert tf_private.changed_in(RuntimeError("plain")) is None


def test_a_worker_ended_by_tensorflow_changed_says_so_in_its_response(tmp_path):
    from quantdoctor.isolation.protocol import INTERNAL_ERROR_EXIT, serve

    response = tmp_path / "response.json"
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"response": str(response)}))

    def main(_request):
        raise RuntimeError("converting") from TensorFlowChanged("Interpreter has no attribute '_interpreter'")

    assert serve(main, str(request)) == INTERNAL_ERROR_EXIT
    written = json.loads(response.read_text())
    assert written["tensorflow_changed"] == "Interpreter has no attribute '_interpreter'"
    assert "internal_error" in written


def test_a_failing_edit_of_quantdoctors_is_edit_failed_and_not_the_users_load_error(tmp_path):
    import keras

    from quantdoctor.diagnosis.pipeline import diagnose_prepared
    from quantdoctor.edits.plan import Step
    from quantdoctor.intake import model as model_intake
    from quantdoctor.intake.data import from_arrays
    from quantdoctor.intake.recipe import Recipe

    path = tmp_path / "model.keras"
    with_layer(keras.layers.Dense(4, name="middle")).save(path)
    source = model_intake.from_path(path)
    # A step naming a transform that does not exist: a bug in quantdoctor's repair, by construction.
    source.edits = [Step("QD103", "model", "with_no_such_transform", (1,)).to_dict()]
    calibration = from_arrays({"arr_0": np.zeros((2, 8), np.float32)}, max_samples=2)
    workdir = tmp_path / "work"
    workdir.mkdir()
    with pytest.raises(EditFailed, match="quantdoctor's edit of the model failed: .*with_no_such_transform") as caught:
        diagnose_prepared(source, Recipe.for_mode("int8"), calibration, workdir)
    assert not isinstance(caught.value, UsageError)


def test_the_tfmot_explanation_says_when_its_own_hook_broke(monkeypatch, capsys):
    """tfmot's registry moved: the QAT explanation cannot list the other unsupported layers, and says
    so as quantdoctor's internal error instead of silently listing none."""
    from types import SimpleNamespace

    from quantdoctor.watch import session, tfmot

    def moved(layer):
        raise TensorFlowChanged("tfmot has no default_8bit_quantize_registry")

    monkeypatch.setattr(tf_private, "tfmot_supports", moved)
    monkeypatch.setattr(session, "_reported_bugs", set())
    model = SimpleNamespace(layers=[SimpleNamespace(name="norm"), SimpleNamespace(name="dense")])
    error = RuntimeError("Layer norm:<class 'tf_keras.src.layers.LayerNormalization'> is not supported.")
    assert session.guarded("explaining a tfmot error", tfmot._explain)("quantize_model", model, error) is None
    said = capsys.readouterr().err
    assert "internal error in explaining a tfmot error" in said and "default_8bit_quantize_registry" in said
