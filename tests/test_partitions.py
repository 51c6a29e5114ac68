"""Integer partitions counted as a delegate counts them: in execution order, a new partition after each float
island an integer op waits on, even where a residual path connects the integer ops around it."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from helpers import only

import quantdoctor as qd


class Cumsum(keras.layers.Layer):
    """A float op under int8 (CUMSUM stays float between DEQUANTIZE and QUANTIZE)."""

    def call(self, x):
        return tf.math.cumsum(x, axis=-1)


def residual_islands(blocks: int) -> keras.Model:
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,), batch_size=1)
    x = keras.layers.Dense(16)(inputs)
    for _ in range(blocks):
        x = keras.layers.Add()([x, keras.layers.Dense(16)(Cumsum()(x))])
    return keras.Model(inputs, keras.layers.Dense(4)(x))


def test_each_float_island_on_a_residual_branch_starts_a_new_partition_and_the_islands_print_as_one_group():
    report = qd.diagnose(residual_islands(3), np.random.default_rng(0).normal(size=(100, 8)).astype(np.float32),
                         mode="int8", target="int8-accelerator")
    assert len(report.audit["float_islands"]) == 3
    # the integer ops form one connected group through the skip paths, but each ADD waits on an island
    assert report.audit["integer_partitions"] == 4
    assert only(report, "QD110").evidence["integer_partitions"] == 4
    # the three islands are one problem: printed once with the count and the layers, every one in the JSON
    islands = [f for f in report.findings if f.code == "QD105"]
    assert [f.location.layer for f in islands] == ["cumsum", "cumsum_1", "cumsum_2"]
    group = next(g for g in report.to_dict()["finding_groups"] if g["code"] == "QD105")
    assert group == {"code": "QD105", "severity": islands[0].severity, "count": 3,
                     "layers": ["cumsum", "cumsum_1", "cumsum_2"]}
    text = str(report)
    assert text.count("QD105 ") == 1 and "×3: the same at cumsum, cumsum_1, cumsum_2 (every one in the JSON report)" in text
