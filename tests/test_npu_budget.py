"""`fix --target ethos-u55-128` with an accuracy budget: the ops the chosen variant pushes to the CPU, counted
by a real Vela compile of the model returned."""

from __future__ import annotations

import keras

import quantdoctor as qd
from models import smooth_images


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
