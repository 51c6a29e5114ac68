"""Benchmark: quantdoctor fix over the catalog's failing example models (the tests' tiny models).

For each case it reports whether fix ends in a verified model, how many conversions it took, and
the time to the fixed model as a ratio to one plain conversion of that fixed model: a fresh
Python process that builds the same model, applies the same changes, configures the converter
with the fixed settings and converts (what a user pays for one attempt). Results go to
bench/results/fix.json.

    python bench/fix.py            # all cases
    python bench/fix.py -k QD201   # the cases whose name contains QD201
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "tests"), str(HERE.parent / "src")]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _cases() -> dict[str, Callable[[Path], tuple[Any, Any, dict[str, Any]]]]:
    """Case name -> builder(tmp dir) -> (model, data, fix options). Each fails to convert as given."""
    import keras
    import numpy as np
    import tensorflow as tf
    from models import (
        Float64Scale,
        Projection,
        dataset_from,
        image_model,
        int8_converter,
        lambda_layer,
        lstm_model,
        smooth_images,
        two_input_model,
        vectors,
        with_layer,
    )

    def samples(items):
        return lambda: iter(items)

    def random_float64(_):
        return int8_converter(image_model(), samples([[np.random.rand(1, 16, 16, 3)] for _ in range(10)])), None, {}

    def data_mix(_):
        images = smooth_images(120).astype(np.float64)
        images[7, 3, 3, 0] = np.nan
        return int8_converter(image_model(), samples(list(images))), None, {}

    def list_order(_):
        images, meta = smooth_images(120, size=8), vectors(120, 4)
        return int8_converter(two_input_model(), samples([[m[None], i[None]] for i, m in zip(images, meta)])), None, {}

    def dict_keys(_):
        images, meta = smooth_images(120, size=8), vectors(120, 4)
        return int8_converter(two_input_model(), samples([{"img": i[None], "metadata": m[None]}
                                                          for i, m in zip(images, meta)])), None, {}

    def signatures(tmp):
        module = Projection()
        tf.saved_model.save(module, str(tmp / "sm"), signatures={"encode": module.encode, "decode": module.decode})
        return str(tmp / "sm"), samples([[row[None]] for row in vectors(120, 4)]), {}

    def float16_int8(target):
        def build(_):
            converter = int8_converter(image_model(), dataset_from(smooth_images(120)), strict=True)
            converter.target_spec.supported_types = [tf.float16]
            return converter, None, {"target": target}
        return build

    def det(target):
        def build(_):
            layer = lambda_layer(lambda x: tf.reshape(tf.linalg.det(tf.reshape(x, (-1, 2, 2, 2))), (-1, 2)), "my_det")
            return int8_converter(with_layer(layer), dataset_from(vectors(120))), None, {"target": target}
        return build

    def cumsum(mode, target=None):
        def build(_):
            model = with_layer(lambda_layer(lambda x: tf.math.cumsum(x, axis=-1), "my_cumsum"))
            return model, vectors(120), {"mode": mode, "target": target}
        return build

    def lstm(batch_size):
        return lambda _: (lstm_model(batch_size=batch_size), vectors(120, 40).reshape(120, 10, 4), {})

    def mixed(_):
        keras.mixed_precision.set_global_policy("mixed_float16")
        try:
            model = keras.Sequential([keras.Input((8,), name="features"), keras.layers.Dense(8, name="dense_fp16"),
                                      keras.layers.Dense(2, name="head", dtype="float32")], name="mixed")
        finally:
            keras.mixed_precision.set_global_policy("float32")
        return model, vectors(120), {}

    def invalid_name(_):
        inputs = keras.Input((8,), name="my features")
        return keras.Model(inputs, keras.layers.Dense(2, name="head")(inputs)), vectors(120), {}

    def igamma(_):
        layer = lambda_layer(lambda x: tf.math.igamma(tf.abs(x) + 1.0, tf.abs(x) + 1.0), "my_igamma")
        return with_layer(layer), vectors(120), {"select_tf_ops": True}

    return {
        "QD201 seed example 3 (random float64)": random_float64,
        "QD303+QD201+QD306+QD307 data mistakes": data_mix,
        "QD313 list order, two inputs": list_order,
        "QD305 dict keys, two inputs": dict_keys,
        "QD315 two signatures": signatures,
        "QD203 seed example 2, int8 reading": float16_int8(None),
        "QD203 seed example 2, gpu reading": float16_int8("gpu"),
        "QD101 seed example 1, cpu (Flex)": det(None),
        "QD101 seed example 1, int8-accelerator": det("int8-accelerator"),
        "QD105 CUMSUM int8-strict on cpu": cumsum("int8-strict", "cpu"),
        "QD113 CUMSUM in 16x8": cumsum("int16x8"),
        "QD103 LSTM dynamic batch": lstm(None),
        "QD108 LSTM calibration crash": lstm(1),
        "QD207 mixed_float16": mixed,
        "QD405 invalid input name": invalid_name,
        "QD301 no data": lambda _: (image_model(), None, {"mode": "int8-strict"}),
        "QD202 float64 math in a layer": lambda _: (with_layer(Float64Scale(name="to_f64")), vectors(120), {}),
        "QD102 op with no kernel": igamma,
    }


def run_case(name: str, build: Callable, tmp: Path) -> dict[str, Any]:
    import quantdoctor as qd

    model, data, options = build(tmp)
    started = time.perf_counter()
    result = qd.fix(model, data, **options)
    seconds = time.perf_counter() - started
    row = {"case": name, "verified": result.verified, "conversions": result.conversions,
           "fix_seconds": round(seconds, 2), "applied": [r.code for r in result.applied],
           "blocked": [b.code for b in result.blocked]}
    if result.verified:
        plan_dir = tmp / "plan"
        plan_dir.mkdir()
        (plan_dir / "plan.json").write_text(json.dumps({
            "recipe": result.plan.recipe.to_dict(), "model_steps": [s.to_dict() for s in result.plan.model_steps]}))
        if result.calibration is not None and result.plan.recipe.calibrate:
            result.calibration.save(plan_dir / "calibration.npz")
        started = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--plain", name, str(plan_dir)], check=True, capture_output=True)
        row["plain_seconds"] = round(time.perf_counter() - started, 2)
        row["ratio"] = round(seconds / row["plain_seconds"], 2)
    return row


def plain_conversion(name: str, plan_dir: Path) -> None:
    """One plain conversion of the fixed model, in this fresh process (no quantdoctor worker)."""
    import tensorflow as tf

    from quantdoctor.edits.plan import edit_model
    from quantdoctor.intake.data import CalibrationSet
    from quantdoctor.intake.recipe import Recipe

    plan = json.loads((plan_dir / "plan.json").read_text())
    model, _, _ = _cases()[name](plan_dir)
    if isinstance(model, str):
        converter = tf.lite.TFLiteConverter.from_saved_model(model)
    else:
        keras_model = model._keras_model if hasattr(model, "target_spec") else model
        converter = tf.lite.TFLiteConverter.from_keras_model(edit_model(keras_model, plan["model_steps"]))
    Recipe.from_dict(plan["recipe"]).apply(converter)
    if (plan_dir / "calibration.npz").exists():
        converter.representative_dataset = CalibrationSet.load(plan_dir / "calibration.npz").replay
    converter.convert()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", default="", help="run only the cases whose name contains this")
    parser.add_argument("--plain", nargs=2, metavar=("CASE", "PLAN_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain:
        plain_conversion(args.plain[0], Path(args.plain[1]))
        return
    rows = []
    for name, build in _cases().items():
        if args.k in name:
            with tempfile.TemporaryDirectory() as tmp:
                rows.append(run_case(name, build, Path(tmp)))
            print(json.dumps(rows[-1]), flush=True)
    verified = [row for row in rows if row["verified"]]
    summary = {"cases": len(rows), "verified": len(verified),
               "share_verified": round(len(verified) / len(rows), 3) if rows else None,
               "median_conversions": statistics.median(row["conversions"] for row in rows) if rows else None,
               "median_ratio_to_plain_conversion": statistics.median(row["ratio"] for row in verified) if verified
               else None}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "fix.json").write_text(json.dumps({"summary": summary, "cases": rows}, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
