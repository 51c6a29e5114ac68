"""Ethos-U costs measured by the installed Vela: the ops an accuracy budget's variant pushes to the CPU
(`fix --target ethos-u55-128 --min-sqnr/--max-drop`), a model too big for the system's SRAM (QD123), and a
float op Vela leaves on the CPU reported as one problem (QD120 with QD105)."""

from __future__ import annotations

import keras
import pytest
import tensorflow as tf
from helpers import only, run
from models import dataset_from, int8_converter, smooth_images

import quantdoctor as qd
from quantdoctor.report.terminal import render_plain


def two_convs() -> keras.Model:
    """Conv2D -> Conv2D -> pooling -> Dense: every op on the NPU once quantized (seeded weights)."""
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((16, 16, 3), name="image"),
                             keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1"),
                             keras.layers.Conv2D(8, 3, padding="same", name="conv2"),
                             keras.layers.GlobalAveragePooling2D(name="pool"),
                             keras.layers.Dense(4, name="head")], name="two_convs")


def test_fix_with_a_budget_counts_the_ops_vela_leaves_on_the_cpu():
    result = qd.fix(two_convs(), smooth_images(8, 16), eval_data=smooth_images(8, 16, seed=1), min_sqnr=41.0,
                    io="int8", target="ethos-u55-128", max_samples=8)
    budget = result.budget
    npu = budget["npu"]
    # one op kept float: on the U55 it runs on the CPU with its two conversions, in a partition of its own
    assert budget["met_budget"] and budget["chosen"]["float_ops"] == 1 and budget["kept_float"][0]["layer"] == "conv1"
    assert [(op["op"], op["target"]) for op in npu["ops"][:3]] == [("DEQUANTIZE", "CPU"), ("CONV_2D", "CPU"),
                                                                    ("QUANTIZE", "CPU")]
    assert npu["cpu_ops"] == budget["chosen"]["cpu_ops"] == 3
    assert (npu["npu_partitions"], npu["cpu_partitions"]) == (1, 1) and 0 < npu["cpu_mac_share"] < 1
    assert result.after.audit["npu"] is npu  # the report describes the model returned, not the plain INT8 one
    findings = {f.code: f for f in result.after.findings}
    assert findings["QD120"].severity == "warning" and findings["QD120"].location.layer == "conv1"
    assert findings["QD120"].message.endswith("The accuracy budget keeps this op float.")
    assert findings["QD121"].message.startswith(
        "On ethos-u55-128 the model runs in 1 NPU partition(s) and 1 CPU partition(s): 3 op(s) on the CPU carry ")
    assert result.verification.details[1] == (
        f"on ethos-u55-128 (Vela): 3 op(s) on the CPU in 1 CPU partition(s) and 1 NPU partition(s), "
        f"{npu['cpu_mac_share']:.1%} of the MACs on the CPU")
    assert result.model is not None and result.verified


def wide_activations() -> keras.Model:
    """64x64x16 feature maps (64 KiB each at int8): more than a 16 KiB SRAM holds."""
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((64, 64, 3), batch_size=1, name="image"),
                             keras.layers.Conv2D(16, 3, padding="same", name="wide"),
                             keras.layers.Conv2D(16, 3, padding="same", name="wide2"),
                             keras.layers.GlobalAveragePooling2D(name="pool"),
                             keras.layers.Dense(2, name="head")], name="wide")


@pytest.fixture(scope="module")
def wide_tflite() -> bytes:
    return int8_converter(wide_activations(), dataset_from(smooth_images(4, 64)), int8_io=True).convert()


@pytest.mark.code("QD123")
def test_a_model_whose_feature_maps_exceed_the_systems_sram_is_a_finding(wide_tflite):
    report = qd.audit(wide_tflite, target="ethos-u55-128", sram_kib=16)
    finding = only(report, "QD123")
    performance = report.audit["npu"]["performance"]
    assert performance["sram_size_kib"] == 16 and performance["memory_mode"] == "Shared_Sram"
    used = performance["sram_used_kib"]
    assert used > 64 and report.audit["npu"]["cpu_ops"] == 0  # every op on the NPU, yet it does not fit
    assert finding.message == (
        f"On ethos-u55-128 the model needs {used:g} KiB of SRAM, above the 16 KiB it was compiled for (Shared_Sram "
        "memory mode, where the feature maps live in SRAM): Vela wrote the model, but its tensor arena does not fit "
        "that SRAM.")
    roomy = qd.audit(wide_tflite, target="ethos-u55-128", sram_kib=1024)
    assert [f.code for f in roomy.findings if f.code == "QD123"] == []
    assert roomy.audit["npu"]["performance"]["sram_size_kib"] == 1024


@pytest.mark.parametrize("args, message", [
    (["--target", "ethos-u55-128", "--sram", "0"],
     "quantdoctor: error: the SRAM size (--sram, sram_kib) in KiB must be a whole number of at least 1, not 0"),
    (["--target", "edgetpu", "--sram", "256"],
     "quantdoctor: error: the SRAM size (--sram, sram_kib) is an Ethos-U system's: give an Ethos-U target "
     "(ethos-u55-128, ethos-u55-256, ethos-u65-256, ethos-u85-256), not 'edgetpu'"),
])
def test_a_wrong_sram_size_is_one_line_before_vela_runs(args, message, wide_tflite, tmp_path):
    model = tmp_path / "wide.tflite"
    model.write_bytes(wide_tflite)
    done = run("audit", str(model), *args)
    assert (done.returncode, done.stderr.strip()) == (2, message)


def test_a_float_op_vela_leaves_on_the_cpu_is_one_problem_not_two():
    """QD120 (Vela: no kernel for CUMSUM) and QD105 (CUMSUM stayed float) name the same op: one entry."""
    inputs = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv")(inputs)
    x = keras.layers.Lambda(lambda t: tf.math.cumsum(t, axis=-1), name="running_total")(x)
    model = keras.Model(inputs, keras.layers.Dense(4, name="head")(keras.layers.GlobalAveragePooling2D(name="pool")(x)))
    report = qd.diagnose(model, smooth_images(6, 16), io="int8", target="ethos-u55-128", trust_model=True,
                         max_samples=6)
    pair = [(f.code, f.location.layer, f.location.op) for f in report.findings if f.code in ("QD105", "QD120")]
    assert pair == [("QD120", "running_total", "CUMSUM"), ("QD105", "running_total", "CUMSUM")]  # both in the JSON
    assert report.to_dict()["finding_groups"] == [
        {"code": "QD120", "severity": "error", "count": 1, "layers": ["running_total"],
         "same_op": [{"code": "QD105", "severity": "warning", "layer": "running_total"}]}]
    text = render_plain(report)
    assert not [line for line in text.splitlines() if line.strip().startswith("QD105")]  # not a problem of its own
    root = text.split("Root cause\n")[1].split("Also found")[0].splitlines()
    assert root[0].strip() == "QD120 error  An op runs on the CPU, not on the Ethos-U NPU"
    assert root[-1].strip() == "also QD105 warning  Ops stayed float in a model meant to be integer: the same op"
