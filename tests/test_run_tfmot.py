"""`quantdoctor run` on quantization-aware training scripts whose tfmot calls fail.

tfmot and tf_keras are test dependencies only: without them these tests skip.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("tensorflow_model_optimization")
pytest.importorskip("tf_keras")

from helpers import assert_finding  # noqa: E402
from test_run import PYTHON, findings_in, line_of, quantdoctor_run, write_script  # noqa: E402

import quantdoctor as qd  # noqa: E402


@pytest.mark.code("QD216", "QD415")
def test_tfmot_errors_are_explained_in_process_and_reach_the_script_unchanged():
    import keras
    import tensorflow_model_optimization as tfmot
    import tf_keras

    quantize_model = tfmot.quantization.keras.quantize_model
    unsupported = tf_keras.Sequential([tf_keras.Input((8,)), tf_keras.layers.Dense(4),
                                       tf_keras.layers.LayerNormalization()])
    with qd.watch(echo=False) as session:
        with pytest.raises(RuntimeError, match="Layer layer_normalization:<class"):
            tfmot.quantization.keras.quantize_model(unsupported)
        with pytest.raises(ValueError, match="can only be a `keras.Model` instance"):
            tfmot.quantization.keras.quantize_apply(keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)]))
    layer, keras3 = session.findings
    assert_finding(layer, "QD415", "metadata", "error", layer="layer_normalization")
    assert_finding(keras3, "QD216", "dtype_mismatch", "error")
    assert keras3.evidence["function"] == "quantize_apply"
    assert tfmot.quantization.keras.quantize_model is quantize_model  # the patch is undone


def test_an_unsupported_layer_is_named_with_every_other_one_and_the_annotation_that_works(tmp_path):
    script = write_script(tmp_path, "qat.py", """
        import tensorflow_model_optimization as tfmot
        import tf_keras

        model = tf_keras.Sequential([tf_keras.Input((8,)), tf_keras.layers.Dense(4),
                                     tf_keras.layers.LayerNormalization(), tf_keras.layers.Dense(2),
                                     tf_keras.layers.UnitNormalization()])
        try:
            tfmot.quantization.keras.quantize_model(model)  # QUANTIZE
        except RuntimeError as error:
            print("tfmot:", str(error).split(":")[0], "| noted:", any("QD415" in n for n in error.__notes__))

        def annotate(layer):  # what quantdoctor proposes
            if isinstance(layer, (tf_keras.layers.LayerNormalization, tf_keras.layers.UnitNormalization,)):
                return layer
            return tfmot.quantization.keras.quantize_annotate_layer(layer)

        annotated = tf_keras.models.clone_model(model, clone_function=annotate)
        print(type(tfmot.quantization.keras.quantize_apply(annotated)).__name__)
    """)
    result = quantdoctor_run(tmp_path, "--json", "run.json", PYTHON, "qat.py")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "tfmot: Layer layer_normalization | noted: True\nSequential\n"
    document = json.loads((tmp_path / "run.json").read_text())
    [finding] = findings_in(document, "QD415")
    assert_finding(finding, "QD415", "metadata", "error", layer="layer_normalization")
    assert finding.evidence["other_unsupported_layers"] == ["unit_normalization (UnitNormalization)"]
    assert finding.evidence["source"]["where"] == f"qat.py:{line_of(script, 'QUANTIZE')}"
    assert "(tf_keras.layers.LayerNormalization, tf_keras.layers.UnitNormalization,)" in finding.fix.code
    assert [f["code"] for f in document["findings"]] == ["QD415"]  # the working annotation is not reported


def test_a_keras_3_model_given_to_tfmot_says_tf_keras_is_needed(tmp_path):
    script = write_script(tmp_path, "qat.py", """
        import keras
        import tensorflow_model_optimization as tfmot

        model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
        tfmot.quantization.keras.quantize_model(model)  # KERAS 3
    """)
    result = quantdoctor_run(tmp_path, "--json", "run.json", PYTHON, "qat.py")
    assert result.returncode == 1 and result.stdout == ""
    assert "ValueError: `to_quantize` can only either be a keras Sequential or Functional model." in result.stderr
    assert "quantdoctor: QD216" in result.stderr.split("Traceback")[1]  # the note under the traceback
    [finding] = findings_in(json.loads((tmp_path / "run.json").read_text()), "QD216")
    assert_finding(finding, "QD216", "dtype_mismatch", "error")
    assert finding.evidence["class"] == "keras.src.models.sequential.Sequential"
    assert finding.evidence["source"]["where"] == f"qat.py:{line_of(script, 'KERAS 3')}"
    assert "import tf_keras as keras" in finding.fix.code
