"""Ethos-U targets: real tiny models converted by the real converter, compiled by the installed Vela."""

from __future__ import annotations

import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_finding, only
from models import smooth_images

import quantdoctor as qd
from quantdoctor.audit.tflite_model import read_tflite
from quantdoctor.audit.vela_worker import read_csv
from quantdoctor.report.terminal import render_plain


def images(count: int = 6, size: int = 16) -> np.ndarray:
    return smooth_images(count, size)


def conv_net(name: str) -> keras.Model:
    """Sequential Conv2D -> hard_swish -> pooling -> Dense: every op has an Ethos-U kernel (Keras' hard_swish
    divides by 6, which the converter turns into HARD_SWISH)."""
    return keras.Sequential([keras.Input((16, 16, 3), name="image"),
                             keras.layers.Conv2D(8, 3, padding="same", activation="hard_swish", name="conv"),
                             keras.layers.GlobalAveragePooling2D(name="pool"),
                             keras.layers.Dense(4, name="head")], name=name)


def strided_depthwise() -> keras.Model:
    """Functional, default layer names: a DepthwiseConv2D with stride 4 (Vela's limit is 3)."""
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same")(inputs)
    x = keras.layers.DepthwiseConv2D(3, strides=4)(x)
    return keras.Model(inputs, keras.layers.Dense(4)(keras.layers.Flatten()(x)))


def float_cumsum() -> keras.Model:
    """A layer whose op (CUMSUM) has no integer kernel: it stays float between DEQUANTIZE/QUANTIZE."""
    inputs = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv")(inputs)
    x = keras.layers.Lambda(lambda t: tf.math.cumsum(t, axis=-1), name="running_total")(x)
    return keras.Model(inputs, keras.layers.Dense(4, name="head")(keras.layers.GlobalAveragePooling2D(name="pool")(x)))


def attention_scores() -> keras.Model:
    """Batch 1: a product of two activations (BATCH_MATMUL), which Vela runs with 8-bit inputs only."""
    inputs = keras.Input((6, 8), batch_size=1, name="tokens")
    keys = keras.layers.Dense(8, name="project")(inputs)
    scores = keras.layers.Dot(axes=2, name="scores")([keys, keys])
    return keras.Model(inputs, keras.layers.Dense(4, name="head")(scores))


class Attention(keras.Model):
    """Subclassed, dynamic batch: the same product, on a graph Vela's reader cannot take."""

    def __init__(self):
        super().__init__(name="attention")
        self.project = keras.layers.Dense(8, name="project")
        self.head = keras.layers.Dense(4, name="head")

    def call(self, x):
        keys = self.project(x)
        scores = tf.matmul(keys, keys, transpose_b=True)
        return self.head(scores)


@pytest.fixture(scope="module")
def reports() -> dict[str, qd.Report]:
    """Each model diagnosed once for ethos-u55-128 (the real converter, then the real Vela), on first use."""
    attention = Attention()
    attention(np.zeros((1, 6, 8), np.float32))
    sequences = np.random.default_rng(0).normal(size=(6, 6, 8)).astype(np.float32)
    cases = {"npu": (conv_net("all_on_npu"), images(), {"io": "int8"}),
             "float_io": (conv_net("float_io"), images(), {}),
             "stride": (strided_depthwise(), images(), {"io": "int8"}),
             "float_op": (float_cumsum(), images(), {"io": "int8"}),
             "int16": (attention_scores(), sequences, {"mode": "int16x8"}),
             "dynamic": (attention, sequences, {"io": "int8"})}
    return LazyReports(cases)


class LazyReports(dict):
    """Each case diagnosed when a test first asks for it: the catalog-coverage plugin sees a marked
    test's finding made while that test runs (tests/coverage_markers.py), and each is made once."""

    def __init__(self, cases: dict[str, tuple]) -> None:
        super().__init__()
        self.cases = cases

    def __missing__(self, name: str) -> qd.Report:
        model, data, options = self.cases[name]
        self[name] = qd.diagnose(model, data, target="ethos-u55-128", trust_model=True, max_samples=6, **options)
        return self[name]


def npu(report: qd.Report) -> dict:
    return report.audit["npu"]


def depthwise_layer(report: qd.Report) -> str:
    """The default name Keras gave the DepthwiseConv2D (depthwise_conv2d, depthwise_conv2d_1, ...)."""
    return next(name for name, kind in report.model["layer_classes"].items() if kind == "DepthwiseConv2D")


def test_model_fully_on_the_npu(reports):
    report = reports["npu"]
    assert not [f for f in report.findings if f.code in ("QD120", "QD121", "QD920")]
    placed = npu(report)
    assert placed["outcome"] == "ok" and placed["compiler_version"]
    assert (placed["npu_partitions"], placed["cpu_partitions"], placed["cpu_ops"]) == (1, 0, 0)
    # Vela runs the convolution and its hard_swish as one op: the row of the layer that carries the MACs.
    conv = next(op for op in placed["ops"] if op["layer"] == "conv" and op["macs"])
    assert conv["target"] == "NPU" and conv["op"] in ("CONV_2D", "HARD_SWISH")
    assert conv["macs"] == 16 * 16 * 8 * 3 * 3 * 3  # Vela's own count, read from its per-layer CSV
    perf = placed["performance"]
    assert perf["cycles"] > 0 and perf["inferences_per_second"] > 0 and perf["sram_used_kib"] > 0
    assert perf["flash_used_kib"] > 0 and perf["system_config"].startswith("Ethos_U55")
    header = render_plain(report).splitlines()[1]
    assert header.startswith("NPU ethos-u55-128 (Vela ") and "1 NPU partition(s), 0 op(s) on the CPU" in header
    assert f"{perf['cycles']} cycles" in header and "inferences/s" in header
    assert report.to_dict()["audit"]["npu"]["performance"]["cycles"] == perf["cycles"]


@pytest.mark.code("QD120")
def test_float_op_left_on_the_cpu(reports):
    report = reports["float_op"]
    finding = next(f for f in report.findings if f.code == "QD120" and f.location.op == "CUMSUM")
    assert_finding(finding, "QD120", "unsupported_op", "error", layer="running_total", op="CUMSUM")
    assert finding.message.startswith("CUMSUM in layer 'running_total' runs on the CPU, not on the ethos-u55-128 NPU.")
    assert "Vela has no EthosU55 kernel for CUMSUM" in finding.message
    # The DEQUANTIZE/QUANTIZE around the float op are counted, not reported on their own.
    assert [f.location.op for f in report.findings if f.code == "QD120"] == ["CUMSUM"]
    assert report.root_cause is finding


@pytest.mark.code("QD121")
def test_partitions_and_cpu_macs(reports):
    placed = npu(reports["stride"])
    assert (placed["npu_partitions"], placed["cpu_partitions"]) == (2, 1)
    depthwise = next(op for op in placed["ops"] if op["target"] == "CPU")
    # Vela counts no MACs on the CPU: quantdoctor counts them (4x4 output, 8 channels, 3x3 kernel).
    assert depthwise["macs"] == 4 * 4 * 8 * 3 * 3 and placed["cpu_macs"] == depthwise["macs"]
    finding = only(reports["stride"], "QD121")
    assert finding.message == (
        f"On ethos-u55-128 the model runs in 2 NPU partition(s) and 1 CPU partition(s): 1 op(s) on the CPU carry "
        f"{placed['cpu_mac_share']:.1%} of the MACs ({depthwise['macs']} of {placed['macs']}).")
    assert 0 < placed["cpu_mac_share"] < 1 and finding.evidence["cpu_ops"] == ["DEPTHWISE_CONV_2D"]


@pytest.mark.code("QD120")
def test_op_refused_for_its_stride(reports):
    finding = only(reports["stride"], "QD120")
    layer = depthwise_layer(reports["stride"])
    assert layer.startswith("depthwise_conv2d")
    assert_finding(finding, "QD120", "unsupported_op", "error", layer=layer, op="DEPTHWISE_CONV_2D")
    assert "Vela: Stride values for both width and height must be between 1 and 3 (Op has stride WxH as: 4x4)" \
        in finding.message


@pytest.mark.code("QD120")
def test_op_refused_for_16_bit_activations(reports):
    report = reports["int16"]
    finding = next(f for f in report.findings if f.code == "QD120" and f.location.op == "BATCH_MATMUL")
    assert finding.severity == "error" and finding.location.layer == "scores"
    assert "Vela: IF Matmul or (FC with dynamic weights): IFM precision must be Int8 (16-bit tensor(s):" \
        in finding.message


@pytest.mark.code("QD920")
def test_vela_failure_is_a_finding(reports):
    report = reports["dynamic"]
    finding = report.root_cause
    assert_finding(finding, "QD920", "environment", "error")
    assert finding.message.startswith("Vela failed compiling the model for ethos-u55-128: RuntimeError: ")
    assert "Input and output number of elements must match" in finding.evidence["error"]
    assert npu(report)["outcome"] == "error" and npu(report)["ops"] == []
    assert render_plain(report).splitlines()[1].endswith("compilation error")


def test_float_io_conversions_are_named_with_their_fix(reports):
    edges = [f for f in reports["float_io"].findings if f.code == "QD120"]
    assert sorted(f.location.op for f in edges) == ["DEQUANTIZE", "QUANTIZE"]
    assert all(f.severity == "warning" and "--io int8" in f.fix.summary for f in edges)
    dequantize = next(f for f in edges if f.location.op == "DEQUANTIZE")
    assert dequantize.location.layer == "head" and "Vela has no EthosU55 kernel for DEQUANTIZE" in dequantize.message


def test_second_accelerator_config(reports):
    """The produced models again, audited for the Ethos-U85: its own Vela core and performance figures."""
    placed = npu(qd.audit(reports["npu"].tflite_model, target="ethos-u85-256"))
    assert placed["accelerator"] == "ethos-u85-256" and placed["performance"]["system_config"].startswith("Ethos_U85")
    assert (placed["npu_partitions"], placed["cpu_ops"]) == (1, 0) and placed["performance"]["cycles"] > 0
    stride = qd.audit(reports["stride"].tflite_model, target="ethos-u85-256")
    assert npu(stride)["cpu_ops"] == 0  # the U85 runs a stride of 4: the U55's limit is not the U85's


def test_compare_audits_the_quantized_model_for_the_target(reports, tmp_path):
    """compare --tflite with an Ethos-U target: the same Vela audit beside the comparison."""
    report = qd.compare(conv_net("all_on_npu"), eval_data=images(4), tflite=reports["npu"].tflite_model,
                        target="ethos-u55-128")
    assert report.comparison["samples"] == 4
    assert npu(report)["npu_partitions"] == 1 and npu(report)["cpu_ops"] == 0


def test_preflight_predicts_vela_placement_from_the_graph(reports):
    """Prediction from the TF graph and Vela's own tables, shown against Vela's actual placement."""
    layer = depthwise_layer(reports["stride"])
    expected = {"npu": [], "stride": [layer], "float_op": ["running_total"], "int16": ["scores"]}
    for name, layers in expected.items():
        preflight = reports[name].preflight["npu"]
        assert preflight["predicted_cpu_layers"] == layers and preflight["actual_cpu_layers"] == layers, name
        assert preflight["agrees"] is True
    (stride,) = reports["stride"].preflight["npu"]["predicted_cpu"]
    assert stride == {"layer": layer, "tf_op": "DepthwiseConv2dNative", "op": "DEPTHWISE_CONV_2D",
                      "reason": "stride 4 is above Vela's limit of 3"}
    (matmul,) = reports["int16"].preflight["npu"]["predicted_cpu"]
    assert matmul["op"] == "BATCH_MATMUL" and matmul["reason"] == "16-bit activations: Vela's BATCH_MATMUL takes 8-bit inputs only"
    assert render_plain(reports["stride"]).splitlines()[1].endswith(
        f"preflight: 1 CPU layer(s) ({layer}), as compiled")


def test_preflight_alone_follows_the_accelerators_own_limits():
    """Without converting: the U85's op table has no depthwise stride limit, the U55's has."""
    u85 = qd.diagnose(strided_depthwise(), images(), target="ethos-u85-256", convert=False, max_samples=6)
    assert u85.preflight["npu"]["predicted_cpu_layers"] == [] and u85.preflight["npu"]["actual_cpu_layers"] is None
    u55 = qd.diagnose(strided_depthwise(), images(), target="ethos-u55-256", convert=False, max_samples=6)
    layer = depthwise_layer(u55)
    assert u55.preflight["npu"]["predicted_cpu_layers"] == [layer]
    assert render_plain(u55).splitlines()[1] == f"NPU ethos-u55-256: not compiled; preflight predicts 1 CPU layer(s) ({layer})"


def test_parsing_matches_the_installed_vela(reports, tmp_path):
    """quantdoctor's reading of Vela's outputs against Vela's compiled model, compiled here by Vela's own CLI."""
    model = tmp_path / "stride.tflite"
    model.write_bytes(reports["stride"].tflite_model)
    subprocess.run([sys.executable, "-m", "ethosu.vela", str(model), "--accelerator-config", "ethos-u55-128",
                    "--output-dir", str(tmp_path), "--verbose-performance"], check=True, capture_output=True)
    compiled = read_tflite((tmp_path / "stride_vela.tflite").read_bytes())
    cpu_ops = [op.name for op in compiled.ops if op.custom_name != "ethos-u"]
    rows = read_csv(tmp_path / "stride_per-layer.csv")
    assert {"Target", "Name", "MAC Count", "Op Cycles"} <= set(rows[0])
    placed = npu(reports["stride"])
    assert [op["op"] for op in placed["ops"] if op["target"] == "CPU"] == cpu_ops == ["DEPTHWISE_CONV_2D"]
    (summary,) = read_csv(next(tmp_path.glob("stride_summary_*.csv")))
    assert int(float(summary["cycles_total"])) == placed["performance"]["cycles"]


@pytest.mark.parametrize("command", ["diagnose", "audit", "fix", "compare"])
def test_missing_vela_is_one_line_before_converting(tmp_path, command):
    model = tmp_path / ("model.tflite" if command == "audit" else "model.keras")
    model.write_bytes(b"never read")
    data = tmp_path / "calib.npy"
    np.save(data, images())
    hide_vela = ("import sys; sys.modules['ethosu'] = None; sys.argv[0] = 'quantdoctor'; "
                 "from quantdoctor.cli import main; main()")
    args = [command, str(model), "--target", "ethos-u55-128"] + {
        "fix": ["--data", str(data)], "compare": ["--data", str(data), "--eval-data", str(data)]}.get(command, [])
    done = subprocess.run([sys.executable, "-c", hide_vela, *args], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.strip().splitlines() == [
        "quantdoctor: error: target ethos-u55-128 needs Arm's Vela compiler, which is not installed: "
        "pip install 'quantdoctor[ethos-u]'"]


def sequence_model() -> keras.Model:
    """Functional, dynamic batch: a Dense over a sequence (a Tensordot reshape of unknown batch)."""
    inputs = keras.Input((6, 8), name="tokens")
    return keras.Model(inputs, keras.layers.Dense(4, name="head")(keras.layers.Dense(8, name="project")(inputs)))


def test_fix_switches_16x8_to_int8_where_vela_has_no_16_bit_kernel():
    sequences = np.random.default_rng(0).normal(size=(6, 6, 8)).astype(np.float32)
    result = qd.fix(attention_scores(), sequences, mode="int16x8", target="ethos-u55-128", max_samples=6)
    root = result.before.root_cause
    assert (root.code, root.location.op, root.location.layer) == ("QD120", "BATCH_MATMUL", "scores")
    assert [r.code for r in result.applied] == ["QD120"]
    assert result.applied[0].change == "16x8 quantization switched to int8: BATCH_MATMUL has no working 16x8 kernel"
    # Verified by Vela (no error finding: every op on the NPU) and by a LiteRT run of the model before Vela.
    assert result.verified and result.verification.runs and result.after.settings["mode"] == "int8-strict"
    placed = npu(result.after)  # on the CPU: only the conversions of the float input and output
    assert placed["npu_partitions"] == 1
    assert sorted(op["op"] for op in placed["ops"] if op["target"] == "CPU") == ["DEQUANTIZE", "QUANTIZE"]


def test_fix_gives_a_dynamic_batch_model_a_static_batch_of_one_for_vela():
    data = np.random.default_rng(0).normal(size=(6, 6, 8)).astype(np.float32)
    result = qd.fix(sequence_model(), data, io="int8", target="ethos-u55-128", max_samples=6)
    assert result.before.root_cause.code == "QD920"
    assert [r.code for r in result.applied] == ["QD920"] and "static batch of 1" in result.applied[0].change
    assert result.verified and npu(result.after)["cpu_ops"] == 0
    assert result.after.model["inputs"][0]["shape"][0] == 1


def test_fix_says_what_a_cpu_op_costs_and_never_falls_back_to_float():
    result = qd.fix(float_cumsum(), images(), io="int8", target="ethos-u55-128", max_samples=6)
    assert result.model is None and result.applied == []
    blocked = {b.code: b for b in result.blocked}
    placed = npu(result.before)
    assert blocked["QD120"].reason.endswith(
        f"It stays on the CPU: {placed['cpu_ops']} op(s) there cut the model into {placed['npu_partitions']} NPU and "
        f"{placed['cpu_partitions']} CPU partition(s), with {placed['cpu_macs']} of {placed['macs']} MACs "
        f"({placed['cpu_mac_share']:.1%}) on the CPU.")
    assert "Vela has no EthosU55 kernel for CUMSUM" in blocked["QD120"].reason
