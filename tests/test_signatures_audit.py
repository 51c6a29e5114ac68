"""Every signature of a multi-signature model is audited: float islands and I/O types beyond subgraph 0."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_finding, only
from models import Projection

import quantdoctor as qd


@pytest.mark.code("QD105", "QD206")
def test_a_second_signature_that_stays_float_is_reported_with_its_io_types(tmp_path):
    module = Projection()
    tf.saved_model.save(module, str(tmp_path / "model"), signatures={"encode": module.encode, "decode": module.decode})
    rows = np.random.default_rng(0).normal(size=(60, 4)).astype(np.float32)

    def decode_only():
        for row in rows:
            yield "decode", {"x": row[None]}

    converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "model"))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = decode_only
    converter.inference_input_type = converter.inference_output_type = tf.int8
    report = qd.diagnose(converter)
    assert report.conversion["outcome"] == "ok"
    signatures = {s["key"]: s for s in report.audit["signatures"]}
    assert signatures["decode"]["subgraph"] == 0 and signatures["encode"]["subgraph"] == 1
    assert signatures["encode"]["float_ops"] == 1 and signatures["decode"]["float_ops"] == 0

    stays_float = next(f for f in report.findings if f.code == "QD105")
    assert_finding(stays_float, "QD105", "unsupported_op", "warning", op="FULLY_CONNECTED")
    assert stays_float.message == ("Signature 'encode' stays float: its 1 op(s) (FULLY_CONNECTED) compute in float "
                                   "while signature(s) 'decode' are integer: no calibration sample reached it.")
    assert "yield 'encode', {'x': sample['x']}" in stays_float.fix.code
    io = sorted(f.message for f in report.findings if f.code == "QD206")
    assert io == ["Model input 'encode_x:0' of signature 'encode' is float32; int8 was requested.",
                  "Model output 'StatefulPartitionedCall_1:0' of signature 'encode' is float32; int8 was requested."]

    (tmp_path / "model.tflite").write_bytes(report.tflite_model)
    alone = qd.audit(tmp_path / "model.tflite", target="int8-accelerator")  # the .tflite alone, every subgraph
    assert only(alone, "QD105").evidence["signature"] == "encode"
    (island,) = alone.audit["float_islands"]
    assert island["subgraph"] == 1 and island["ops"] == ["FULLY_CONNECTED"]
