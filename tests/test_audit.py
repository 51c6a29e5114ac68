"""Audit of produced .tflite files: fully integer, float islands, Flex ops, float and uint8 I/O, targets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import tensorflow as tf
from helpers import assert_finding, only
from models import dataset_from, image_model, int8_converter, lambda_layer, smooth_images, vectors, with_layer

import quantdoctor as qd

QUANTDOCTOR = str(Path(sys.executable).with_name("quantdoctor"))


def cumsum_model():
    return with_layer(lambda_layer(lambda x: tf.math.cumsum(x, axis=-1), "my_cumsum"))


@pytest.fixture(scope="module")
def tflite_files(tmp_path_factory) -> dict[str, Path]:
    """Models converted by the real converter, written to disk as users have them."""
    folder = tmp_path_factory.mktemp("tflite")
    images = dataset_from(smooth_images(120))
    converters = {
        "integer": int8_converter(image_model(), images, strict=True, int8_io=True),
        "float_io": int8_converter(image_model(), images, strict=True),
        "uint8_io": int8_converter(image_model(), images, strict=True),
        "island": int8_converter(cumsum_model(), dataset_from(vectors(120)), strict=True, int8_io=True),
        "float": tf.lite.TFLiteConverter.from_keras_model(image_model()),
    }
    converters["per_tensor_dense"] = int8_converter(image_model(), images, strict=True, int8_io=True)
    converters["per_tensor_dense"]._experimental_disable_per_channel_quantization_for_dense_layers = True
    converters["uint8_io"].inference_input_type = tf.uint8
    converters["uint8_io"].inference_output_type = tf.uint8
    converters["float16"] = tf.lite.TFLiteConverter.from_keras_model(image_model())
    converters["float16"].optimizations = [tf.lite.Optimize.DEFAULT]
    converters["float16"].target_spec.supported_types = [tf.float16]
    flex = tf.lite.TFLiteConverter.from_keras_model(with_layer(lambda_layer(
        lambda x: tf.reshape(tf.linalg.det(tf.reshape(x, (-1, 2, 2, 2))), (-1, 2)), "my_det")))
    flex.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    converters["flex"] = flex
    paths = {}
    for name, converter in converters.items():
        paths[name] = folder / f"{name}.tflite"
        paths[name].write_bytes(converter.convert())
    return paths


def test_fully_integer_model(tflite_files):
    report = qd.audit(tflite_files["integer"], target="int8-accelerator")
    assert report.findings == [] and report.verdict == "ok"
    audit = report.audit
    assert audit["fully_integer"] is True and audit["integer_partitions"] == 1 and audit["float_islands"] == []
    (image,) = audit["input_types"]
    assert image["dtype"] == "int8" and image["shape"] == [1, 16, 16, 3]
    assert image["scale"] == pytest.approx(1 / 255, rel=0.01) and image["zero_point"] == -128


@pytest.mark.code("QD105", "QD110")
def test_float_island_is_named_with_its_converters_and_partitions(tflite_files):
    report = qd.audit(tflite_files["island"])
    finding = only(report, "QD105")
    assert_finding(finding, "QD105", "unsupported_op", "warning", layer="my_cumsum", op="CUMSUM")
    (island,) = report.audit["float_islands"]
    assert island == {"ops": ["CUMSUM"], "subgraph": 0, "layers": ["my_cumsum"], "dequantize_in": 1,
                      "quantize_out": 1}

    strict = qd.audit(tflite_files["island"], target="int8-accelerator")
    assert only(strict, "QD105").severity == "error"
    partitions = only(strict, "QD110")
    assert_finding(partitions, "QD110", "unsupported_op", "error")
    assert partitions.evidence["integer_partitions"] == 2


def test_flex_ops_are_reported_and_cut_the_graph(tflite_files):
    report = qd.audit(tflite_files["flex"], target="int8-accelerator")
    assert only(report, "QD106").evidence["flex_ops"] == ["FlexMatrixDeterminant"]
    assert "FlexMatrixDeterminant" in only(report, "QD110").message
    assert report.audit["flex_ops"] == ["FlexMatrixDeterminant"]


def test_float_io_around_an_integer_graph_is_still_fully_integer(tflite_files):
    audit = qd.audit(tflite_files["float_io"]).audit
    assert audit["fully_integer"] is True
    assert [t["dtype"] for t in audit["input_types"]] == ["float32"]
    assert [t["dtype"] for t in audit["output_types"]] == ["float32"]


def test_uint8_io_reports_how_to_feed_the_model(tflite_files):
    audit = qd.audit(tflite_files["uint8_io"]).audit
    (image,) = audit["input_types"]
    assert image["dtype"] == "uint8" and image["zero_point"] == 0
    assert image["scale"] == pytest.approx(1 / 255, rel=0.01)


def test_plain_float_model_is_not_called_integer_but_is_not_an_error_without_a_target(tflite_files):
    report = qd.audit(tflite_files["float"])
    assert report.audit["fully_integer"] is False
    assert not [f for f in report.findings if f.severity == "error"]
    accelerator = qd.audit(tflite_files["float"], target="int8-accelerator")
    assert accelerator.root_cause is not None


@pytest.mark.code("QD111")
def test_microcontroller_target_names_ops_without_int8_kernels(tflite_files):
    assert qd.audit(tflite_files["per_tensor_dense"], target="microcontroller").findings == []
    finding = only(qd.audit(tflite_files["island"], target="microcontroller"), "QD111")
    assert_finding(finding, "QD111", "unsupported_op", "error")
    assert "CUMSUM" in finding.evidence["ops"]


def fully_connected_weight_scales(path: Path) -> list[int]:
    """The number of scales of each FULLY_CONNECTED weight tensor, read with LiteRT's own schema (TensorFlow's
    where ai-edge-litert is not installed)."""
    from quantdoctor.litert import schema_module

    schema = schema_module()
    model = schema.ModelT.InitFromPackedBuf(path.read_bytes(), 0)
    graph = model.subgraphs[0]
    return [len(graph.tensors[op.inputs[1]].quantization.scale) for op in graph.operators
            if model.operatorCodes[op.opcodeIndex].builtinCode == schema.BuiltinOperator.FULLY_CONNECTED]


@pytest.mark.code("QD114")
def test_per_channel_dense_weights_warn_on_a_microcontroller_only_when_the_model_has_them(tflite_files):
    assert fully_connected_weight_scales(tflite_files["integer"]) == [2]  # the converter's default: per channel
    finding = only(qd.audit(tflite_files["integer"], target="microcontroller"), "QD114")
    assert_finding(finding, "QD114", "unsupported_op", "warning", op="FULLY_CONNECTED")
    assert finding.evidence["channels"] == [2] and len(finding.evidence["layers"]) == 1
    assert finding.fix.code == "converter._experimental_disable_per_channel_quantization_for_dense_layers = True"
    assert fully_connected_weight_scales(tflite_files["per_tensor_dense"]) == [1]
    per_tensor = qd.audit(tflite_files["per_tensor_dense"], target="microcontroller")
    assert "QD114" not in [f.code for f in per_tensor.findings]
    assert "QD114" not in [f.code for f in qd.audit(tflite_files["integer"], target="int8-accelerator").findings]


@pytest.mark.code("QD403")
def test_integer_tensors_without_quantization_parameters(tflite_files, tmp_path):
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(tflite_files["integer"].read_bytes(), 0)
    graph = model.subgraphs[0]
    stripped = graph.tensors[graph.outputs[0]]
    stripped.quantization = None  # what a tool that drops metadata leaves behind
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    edited = tmp_path / "edited.tflite"
    edited.write_bytes(bytes(builder.Output()))
    finding = only(qd.audit(edited), "QD403")
    assert_finding(finding, "QD403", "metadata", "warning")
    assert finding.evidence["tensors"] == [stripped.name.decode()]


def test_cli_audit_of_corrupt_and_foreign_files_is_one_clear_line(tmp_path, tflite_files):
    corrupt = tmp_path / "corrupt.tflite"
    corrupt.write_bytes(tflite_files["integer"].read_bytes()[:200])
    foreign = tmp_path / "weights.h5"
    foreign.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    for path, message in ((corrupt, "corrupt.tflite"), (foreign, "not a .tflite model"), (tmp_path / "no.tflite", "not found")):
        result = subprocess.run([QUANTDOCTOR, "audit", str(path)], capture_output=True, text=True, timeout=120)
        assert result.returncode == 2, result.stderr
        assert message in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_cli_audit_exit_codes_follow_the_target(tflite_files):
    ok = subprocess.run([QUANTDOCTOR, "audit", str(tflite_files["island"])], capture_output=True, text=True)
    assert ok.returncode == 0 and "float island 1: CUMSUM in my_cumsum" in ok.stdout
    strict = subprocess.run([QUANTDOCTOR, "audit", str(tflite_files["island"]), "--target", "int8-accelerator"],
                            capture_output=True, text=True)
    assert strict.returncode == 1 and "QD110" in strict.stdout
    bad = subprocess.run([QUANTDOCTOR, "audit", str(tflite_files["island"]), "--target", "npu"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown target 'npu'" in bad.stderr


@pytest.mark.code("QD209")
def test_float16_model_on_a_microcontroller_is_not_integer_at_all(tflite_files):
    report = qd.audit(tflite_files["float16"], target="microcontroller")
    finding = report.root_cause
    assert_finding(finding, "QD209", "dtype_mismatch", "error")
    assert finding.evidence["model_kind"] == "float with float16 weights"
    assert finding.evidence["float16_dequantize_ops"] >= 2
    assert "LiteRT for Microcontrollers cannot dequantize float16" in finding.message
    assert "TFLITE_BUILTINS_INT8" in finding.fix.code and "tf.int8" in finding.fix.code
    assert "QD111" not in [f.code for f in report.findings]  # CONV_2D and co. do have INT8 kernels
    plain = only(qd.audit(tflite_files["float"], target="microcontroller"), "QD209")
    assert plain.evidence["model_kind"] == "float" and plain.evidence["float_ops"] == ["CONV_2D", "FULLY_CONNECTED", "MEAN"]


@pytest.mark.code("QD210")
def test_uint8_io_on_a_microcontroller_is_flagged_with_the_int8_fix(tflite_files):
    report = qd.audit(tflite_files["uint8_io"], target="microcontroller")
    findings = [f for f in report.findings if f.code == "QD210"]
    assert [f.evidence["role"] for f in findings] == ["input", "output"]
    for finding in findings:
        assert_finding(finding, "QD210", "dtype_mismatch", "warning")
        assert finding.evidence["boundary_ops"] == ["QUANTIZE"]
        assert "converter.inference_input_type = tf.int8" in finding.fix.code
    assert findings[0].location.tensor == report.audit["input_types"][0]["name"]
    assert qd.audit(tflite_files["uint8_io"]).findings == []  # uint8 I/O is fine for LiteRT itself


def test_microcontroller_kernel_table_names_real_builtin_ops():
    import json
    from importlib import resources

    from ai_edge_litert import schema_py_generated as schema

    table = json.loads(resources.files("quantdoctor.audit").joinpath("tflm_int8_ops.json").read_text())
    builtins = {name for name in vars(schema.BuiltinOperator) if not name.startswith("_")}
    int8_ops, other_ops = set(table["int8_ops"]), set(table["registered_without_int8"])
    assert int8_ops <= builtins and other_ops <= builtins and not int8_ops & other_ops
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "QUANTIZE", "DEQUANTIZE"} <= int8_ops
    assert set(table["evidence"]) == int8_ops | other_ops
