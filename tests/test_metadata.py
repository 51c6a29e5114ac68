"""QD4xx: SavedModels whose signatures the converter cannot use."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

import quantdoctor as qd
from helpers import assert_finding, root


class Projection(tf.Module):
    def __init__(self):
        self.weights = tf.Variable(tf.random.normal((4, 2), seed=1))

    @tf.function(input_signature=[tf.TensorSpec((None, 4), tf.float32, name="x")])
    def encode(self, x):
        return tf.matmul(x, self.weights)

    @tf.function(input_signature=[tf.TensorSpec((None, 4), tf.float32, name="x")])
    def decode(self, x):
        return tf.matmul(x, self.weights) * 2.0


def features() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(120, 4)).astype(np.float32)


def test_savedmodel_without_signatures(tmp_path):
    tf.saved_model.save(Projection(), str(tmp_path / "model"))
    report = qd.diagnose(tmp_path / "model", features())
    finding = root(report)
    assert_finding(finding, "QD401", "metadata", "error")
    assert report.model["format"] == "savedmodel"


def test_unknown_signature_key_lists_the_valid_ones(tmp_path):
    module = Projection()
    tf.saved_model.save(module, str(tmp_path / "model"), signatures={"encode": module.encode, "decode": module.decode})
    finding = root(qd.diagnose(tmp_path / "model", features(), signature_keys=["serve"]))
    assert_finding(finding, "QD402", "metadata", "error")
    assert sorted(finding.evidence["valid_keys"]) == ["decode", "encode"]


def test_savedmodel_with_a_signature_converts_from_its_directory(tmp_path):
    module = Projection()
    tf.saved_model.save(module, str(tmp_path / "model"), signatures={"serving_default": module.encode})
    report = qd.diagnose(str(tmp_path / "model"), features(), mode="int8-strict", io="int8")
    assert report.conversion["outcome"] == "ok"
    assert report.model["inputs"] == [{"name": "x", "shape": [None, 4], "dtype": "float32"}]
    assert report.audit["fully_integer"] is True
    assert [t["dtype"] for t in report.audit["input_types"]] == ["int8"]
