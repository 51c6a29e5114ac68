"""QD408: Keras models whose input shapes the converter cannot tell, and fix's Inputs in front of them.

Subclassed models whose `call` takes several tensors (an image-captioning decoder,
https://github.com/tensorflow/tensorflow/issues/43292) and a TFSMLayer handed to the converter
(https://github.com/tensorflow/tensorflow/issues/76675) fail in `from_keras_model` with "cannot be saved
because the input shapes have not been set".
"""

from __future__ import annotations

from typing import Callable, Iterator

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_finding
from models import vectors

import quantdoctor as qd
from quantdoctor.errors import InputShapesUnknown
from quantdoctor.litert import new_interpreter

UNSET = "cannot be saved because the input shapes have not been set"


class Decoder(keras.Model):
    """A subclassed model whose call takes two tensors, as a captioning decoder takes tokens and a state."""

    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(4, kernel_initializer=keras.initializers.GlorotUniform(seed=1))  # default name
        self.mix = keras.layers.Dense(4, activation="relu", kernel_initializer=keras.initializers.GlorotUniform(seed=2))

    def call(self, features, state, training=False):
        return self.mix(self.dense(features) + state)


def decoder_and_samples() -> tuple[Decoder, Callable[[], Iterator[list[np.ndarray]]]]:
    """A Decoder built by its first call, as after a custom training loop, and its representative dataset."""
    features, states = vectors(80, 8, seed=1), vectors(80, 4, seed=2)
    model = Decoder()
    model(features[:1], states[:1])
    return model, lambda: ([f[None], s[None]] for f, s in zip(features, states))


@pytest.mark.code("QD408")
def test_a_subclassed_model_called_with_two_tensors_gets_an_input_per_argument():
    model, samples = decoder_and_samples()
    with pytest.raises(InputShapesUnknown, match="QD408"):  # diagnose stops at the converter's own export
        qd.diagnose(model, samples)

    result = qd.fix(model, samples)
    finding = result.before.root_cause
    assert_finding(finding, "QD408", "metadata", "error")
    assert UNSET in finding.evidence["converter_message"]
    assert finding.evidence["call_arguments"] == ["features", "state"] and finding.evidence["built"] is True
    assert [repair.code for repair in result.applied] == ["QD408"] and result.verified
    assert sorted(x["name"] for x in result.after.model["inputs"]) == ["features", "state"]  # the converter's order

    runner = new_interpreter(result.model).get_signature_runner()  # the same weights: outputs follow the model's
    features, state = vectors(8, 8, seed=7), vectors(8, 4, seed=8)
    got = np.concatenate([next(iter(runner(features=features[row:row + 1], state=state[row:row + 1]).values()))
                          for row in range(8)])
    expected = np.asarray(model(features, state))
    np.testing.assert_allclose(got, expected, atol=0.05 * float(np.abs(expected).max()))


@pytest.mark.code("QD408")
def test_dict_samples_keyed_by_argument_name_call_the_model_by_keyword():
    model, samples = decoder_and_samples()
    result = qd.fix(model, lambda: ({"state": state, "features": features} for features, state in samples()))
    assert [repair.code for repair in result.applied] == ["QD408"] and result.verified
    assert sorted(x["name"] for x in result.after.model["inputs"]) == ["features", "state"]


@pytest.mark.code("QD408")
def test_a_tfsmlayer_handed_to_the_converter_converts_behind_an_input(tmp_path):
    """tf#76675: an exported model reloaded as keras.layers.TFSMLayer, given to from_keras_model."""
    inner = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2)])
    inner.export(str(tmp_path / "exported"), verbose=False)
    layer = keras.layers.TFSMLayer(str(tmp_path / "exported"), call_endpoint="serve")
    samples = vectors(60, 8)
    converter = tf.lite.TFLiteConverter.from_keras_model(layer)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([row[None]] for row in samples)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.uint8
    with pytest.raises(ValueError, match=UNSET):  # what the user saw
        converter.convert()

    result = qd.fix(converter)
    assert result.before.root_cause.code == "QD408"
    assert [repair.code for repair in result.applied] == ["QD408"] and result.verified
    assert result.after.audit["fully_integer"]
    assert [t["dtype"] for t in result.after.audit["input_types"]] == ["uint8"]  # the user's settings kept


@pytest.mark.code("QD408")
def test_a_model_never_called_is_not_wrapped_it_has_no_weights():
    model = Decoder()
    result = qd.fix(model, vectors(40, 8))
    assert result.before.root_cause.code == "QD408" and result.before.root_cause.evidence["built"] is False
    assert result.model is None and not result.applied
    assert result.blocked[0].code == "QD408" and "random initial weights" in result.blocked[0].reason
