"""fix's model repairs on tf_keras (Keras 2) models: each edit uses the Keras that built the model
(Keras 3's clone_model does not take a tf_keras model)."""

from __future__ import annotations

import numpy as np
import pytest

import quantdoctor as qd
from quantdoctor.edits.plan import Step, edit_model

tf_keras = pytest.importorskip("tf_keras")

SEQUENCE = np.random.default_rng(0).normal(size=(1, 10, 4)).astype(np.float32)


def recurrent_model(style: str, batch_size: int | None = None):
    """A tf_keras GRU model in the style users write it, with Keras' default input name in Sequential."""
    tf_keras.backend.clear_session()
    tf_keras.utils.set_random_seed(0)
    if style == "sequential":
        return tf_keras.Sequential([tf_keras.Input((10, 4), batch_size=batch_size),
                                    tf_keras.layers.GRU(8, name="my_gru"), tf_keras.layers.Dense(2, name="head")])
    inputs = tf_keras.Input((10, 4), batch_size=batch_size, name="sequence")
    return tf_keras.Model(inputs, tf_keras.layers.Dense(2, name="head")(tf_keras.layers.GRU(8, name="my_gru")(inputs)))


@pytest.mark.parametrize("style", ["functional", "sequential"])
@pytest.mark.parametrize("code, function, args, edited", [
    ("QD108", "with_unrolled_recurrence", (), lambda model: model.get_layer("my_gru").unroll),
    ("QD103", "with_static_batch", (1,), lambda model: model.inputs[0].shape[0] == 1),
    ("QD207", "in_float32", (), lambda model: all(layer.dtype == "float32" for layer in model.layers)),
    ("QD405", "with_input_names", None, lambda model: model.inputs[0].name == "renamed"),
])
def test_every_model_repair_edits_a_tf_keras_model_with_tf_keras(style, code, function, args, edited):
    model = recurrent_model(style)
    args = args if args is not None else ({model.inputs[0].name: "renamed"},)  # Sequential's default name
    changed = edit_model(model, [Step(code, "model", function, args, "under test")])
    assert isinstance(changed, tf_keras.Model) and changed is not model
    assert edited(changed)
    np.testing.assert_allclose(changed(SEQUENCE), model(SEQUENCE), atol=1e-5)  # same weights, same function


def test_a_tf_keras_recurrent_model_whose_calibration_crashes_is_unrolled_and_verified():
    sequences = np.random.default_rng(1).normal(size=(120, 10, 4)).astype(np.float32)
    tf_keras.backend.clear_session()
    inputs = tf_keras.Input((10, 4), batch_size=1, name="sequence")
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(2)(tf_keras.layers.SimpleRNN(8, name="my_rnn")(inputs)))
    result = qd.fix(model, sequences)
    assert result.before.root_cause.code == "QD108" and result.before.conversion["outcome"] == "crash"
    assert [repair.code for repair in result.applied] == ["QD108"]
    assert "unroll=True" in result.applied[0].change
    assert result.verified and result.after.audit["fully_integer"]


def test_the_scripts_copy_of_the_model_repairs_edits_a_tf_keras_model_standalone():
    from quantdoctor.edits.plan import Plan
    from quantdoctor.fix.script import write_script
    from quantdoctor.intake.recipe import Recipe

    steps = [Step("QD207", "model", "in_float32", (), "float32"), Step("QD108", "model", "with_unrolled_recurrence")]
    source = write_script(Plan(Recipe.for_mode("int8"), None, model_steps=steps), [], model_path=None,
                          keras_model=True, data_path=None, output="model.tflite", max_samples=100)
    helpers = source[source.index("# The changes, exactly as quantdoctor made them."):
                     source.index("model = keras.saving.load_model")]
    namespace: dict = {"np": np}
    exec(compile(helpers, "convert_fixed.py", "exec"), namespace)  # the script's own definitions, nothing else
    changed = namespace["with_unrolled_recurrence"](namespace["in_float32"](recurrent_model("functional")))
    assert isinstance(changed, tf_keras.Model) and changed.get_layer("my_gru").unroll
