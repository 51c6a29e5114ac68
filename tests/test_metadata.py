"""QD4xx: SavedModels whose signatures the converter cannot use."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_finding, root
from models import Projection

import quantdoctor as qd
from quantdoctor.errors import ModelLoadError


def features() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(120, 4)).astype(np.float32)


@pytest.mark.code("QD401")
@pytest.mark.matcher("no-signature")
def test_savedmodel_without_signatures(tmp_path):
    tf.saved_model.save(Projection(), str(tmp_path / "model"))
    report = qd.diagnose(tmp_path / "model", features())
    finding = root(report)
    assert_finding(finding, "QD401", "metadata", "error")
    assert finding.evidence["converter_message"] == "Only support at least one signature key."
    assert report.model["format"] == "savedmodel"


@pytest.mark.code("QD402")
@pytest.mark.matcher("unknown-signature-key")
def test_unknown_signature_key_lists_the_valid_ones(tmp_path):
    module = Projection()
    tf.saved_model.save(module, str(tmp_path / "model"), signatures={"encode": module.encode, "decode": module.decode})
    finding = root(qd.diagnose(tmp_path / "model", features(), signature_keys=["serve"]))
    assert_finding(finding, "QD402", "metadata", "error")
    assert sorted(finding.evidence["valid_keys"]) == ["decode", "encode"]
    assert finding.evidence["converter_message"].startswith("Invalid signature key 'serve' found.")


def test_savedmodel_with_a_signature_converts_from_its_directory(tmp_path):
    module = Projection()
    tf.saved_model.save(module, str(tmp_path / "model"), signatures={"serving_default": module.encode})
    report = qd.diagnose(str(tmp_path / "model"), features(), mode="int8-strict", io="int8")
    assert report.conversion["outcome"] == "ok"
    assert report.model["inputs"] == [{"name": "x", "shape": [None, 4], "dtype": "float32"}]
    assert report.audit["fully_integer"] is True
    assert [t["dtype"] for t in report.audit["input_types"]] == ["int8"]


@pytest.mark.tensorflow("2.18", "2.21")  # TF 2.16 aborts on the Keras 3 model first (QD909)
@pytest.mark.code("QD405")
@pytest.mark.matcher("keras-export-none-callable")
def test_input_name_that_is_not_a_valid_tensorflow_name(tmp_path):
    """A space in a Keras input name: the converter says only "'NoneType' object is not callable"."""
    inputs = keras.Input((4,), name="my features")
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(inputs), name="spaced")
    path = tmp_path / "spaced.keras"
    model.save(path)
    report = qd.diagnose(path, features())
    assert report.conversion["outcome"] == "error" and "NoneType" in report.conversion["error_excerpt"]
    assert_finding(root(report), "QD405", "metadata", "error", input="my features")
    assert root(report).evidence["converter_message"] == "TypeError: 'NoneType' object is not callable"
    assert "QD904" not in [f.code for f in report.findings]  # the bare TypeError is recognised, not unexplained
    assert qd.diagnose(path, features(), convert=False).preflight["verdict"] == "will_fail"

    with pytest.raises(ModelLoadError, match="QD405"):  # a Keras object fails at its export, before converting
        qd.diagnose(model, features())

    renamed_input = keras.Input((4,), name="my_features")  # the catalog's fix: the same layers, a valid name
    renamed = keras.Model(renamed_input, model(renamed_input))
    assert qd.diagnose(renamed, features()).audit["fully_integer"]


@pytest.mark.tensorflow("2.18", "2.21")  # TF 2.16 aborts on the Keras 3 model first (QD909)
@pytest.mark.code("QD407")
@pytest.mark.matcher("keras-export-none-callable")
def test_layer_name_that_is_not_a_valid_tensorflow_name(tmp_path):
    """A space in a nested layer's name, the input named validly: the converter's words are QD405's, the cause
    is the layer (it was reported as an invalid input name, whose fix changes nothing)."""
    inputs = keras.Input((4,), name="features")
    inner = keras.Sequential([keras.layers.Dense(3, name="inner dense")], name="block")
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(inner(inputs)), name="spaced")
    path = tmp_path / "spaced.keras"
    model.save(path)
    report = qd.diagnose(path, features())
    assert report.conversion["outcome"] == "error" and "NoneType" in report.conversion["error_excerpt"]
    finding = root(report)
    assert_finding(finding, "QD407", "metadata", "error", layer="inner dense")
    assert finding.evidence["layers"] == ["inner dense"]
    assert "QD405" not in [f.code for f in report.findings]

    with pytest.raises(ModelLoadError, match="layer 'inner dense' .*QD407"):  # a Keras object: before converting
        qd.diagnose(model, features())

    namespace = {"model": model, "tf": tf}  # the catalog's fix, run as written: the same weights, valid names
    exec(finding.fix.code, namespace)
    fixed = namespace["fixed"]
    assert [layer.name for layer in fixed.get_layer("block").layers] == ["inner_dense"]
    np.testing.assert_allclose(fixed(features()[:3]), model(features()[:3]), rtol=1e-6)
    assert qd.diagnose(fixed, features()).audit["fully_integer"]


@pytest.mark.code("QD402")
@pytest.mark.matcher("unknown-signature-key")
def test_an_unknown_signature_key_holding_a_quote_and_a_newline_is_still_named(tmp_path):
    """The key is the user's own text, quoted by the converter without escaping: `--signature "it's"` was QD904."""
    module = Projection()
    tf.saved_model.save(module, str(tmp_path / "model"), signatures={"encode": module.encode})
    finding = root(qd.diagnose(tmp_path / "model", features(), signature_keys=["it's\nmine"]))
    assert_finding(finding, "QD402", "metadata", "error")
    assert finding.message.startswith("Signature 'it's\nmine' was requested") and finding.evidence["valid_keys"] == ["encode"]


@pytest.mark.code("QD402")
@pytest.mark.matcher("unknown-signature-key")
def test_valid_signature_keys_holding_a_newline_and_markup_are_listed_as_they_are(tmp_path):
    """The SavedModel's own signature names are listed by the converter unescaped: one with a newline was QD904."""
    module = Projection()
    hostile = "enc</script>\n\x1b[31m'"
    tf.saved_model.save(module, str(tmp_path / "model"), signatures={hostile: module.encode})
    finding = root(qd.diagnose(tmp_path / "model", features(), signature_keys=["serve"]))
    assert_finding(finding, "QD402", "metadata", "error")
    assert finding.evidence["valid_keys"] == [hostile]
