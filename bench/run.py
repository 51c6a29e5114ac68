"""Benchmarks: quantdoctor diagnose against the plain converter, same machine, same run, same data.

(a) A model that converts fine: MobileNetV2(alpha=0.35, 96x96x3, weights=None), 100 calibration
    samples (scikit-learn digits upscaled to 96x96x3), full INT8. Target: diagnose <= 1.10x.
(b) Time to root cause on a failing model: the same model calibrated with float64 samples (the
    classic `np.random.rand` mistake). Target: diagnose <= 1.5x one plain failing conversion.

Both sides run as fresh processes, as a user runs them: the plain side is a Python script that
loads the .keras file and calls `converter.convert()`; the quantdoctor side is
`quantdoctor diagnose model.keras --data calib.npz`. Each measurement is the median of --repeats
runs, alternating sides so machine noise hits both alike. Results go to bench/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
RESULTS = HERE / "results"
QUANTDOCTOR = str(Path(sys.executable).with_name("quantdoctor"))

# One plain conversion of a .keras model calibrated on an .npz: one input per member (a lone member as a
# list of one array, several as a dict keyed by member name, as a user's representative dataset yields).
PLAIN_CONVERT = """
import sys, numpy as np, tensorflow as tf, keras
model = keras.saving.load_model(sys.argv[1], compile=False)
with np.load(sys.argv[2]) as archive:
    members = {name: archive[name] for name in archive.files}
def representative_dataset():
    for index in range(len(next(iter(members.values())))):
        rows = {name: values[index][None] for name, values in members.items()}
        yield rows if len(rows) > 1 else list(rows.values())
converter = tf.lite.TFLiteConverter.from_keras_model(model)
converter.optimizations = [tf.lite.Optimize.DEFAULT]
converter.representative_dataset = representative_dataset
try:
    converter.convert()
except Exception as exc:
    print(type(exc).__name__, str(exc)[:200])
    sys.exit(1)
"""


def prepare() -> tuple[Path, Path, Path]:
    """The MobileNetV2 .keras file and two calibration files (float32 digits, float64 digits)."""
    CACHE.mkdir(exist_ok=True)
    model_path, good, bad = CACHE / "mobilenetv2_035_96.keras", CACHE / "digits96.npz", CACHE / "digits96_f64.npz"
    if not model_path.exists():
        import keras

        keras.applications.MobileNetV2(alpha=0.35, input_shape=(96, 96, 3), weights=None).save(model_path)
    if not good.exists():
        import numpy as np
        from sklearn.datasets import load_digits

        digits = (load_digits().images[:100] / 16.0).astype(np.float32)
        upscaled = np.repeat(np.repeat(digits, 12, axis=1), 12, axis=2)  # 8x8 -> 96x96
        images = np.repeat(upscaled[..., None], 3, axis=-1) * 2.0 - 1.0  # MobileNetV2 takes [-1, 1]
        np.savez(good, image=images)
        np.savez(bad, image=images.astype(np.float64))
    return model_path, good, bad


def timed(command: list[str], expect_rc: int | None) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    seconds = time.perf_counter() - started
    if expect_rc is not None and result.returncode != expect_rc:
        raise SystemExit(f"unexpected exit {result.returncode} from {command}:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return seconds


def compare(name: str, plain: list[str], plain_rc: int, doctor: list[str], doctor_rc: int, repeats: int) -> dict:
    plain_times, doctor_times = [], []
    for _ in range(repeats):
        plain_times.append(timed(plain, plain_rc))
        doctor_times.append(timed(doctor, doctor_rc))
    result = {"case": name, "plain_median_s": round(statistics.median(plain_times), 2),
              "quantdoctor_median_s": round(statistics.median(doctor_times), 2),
              "plain_runs_s": [round(t, 2) for t in plain_times],
              "quantdoctor_runs_s": [round(t, 2) for t in doctor_times]}
    result["ratio"] = round(result["quantdoctor_median_s"] / result["plain_median_s"], 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    model, good, bad = prepare()
    plain = [sys.executable, "-c", PLAIN_CONVERT, str(model)]
    doctor = [QUANTDOCTOR, "diagnose", str(model), "--mode", "int8", "--data"]
    results = [
        compare("(a) converts fine: MobileNetV2 0.35 96x96, 100 samples, INT8", plain + [str(good)], 0,
                doctor + [str(good)], 0, args.repeats) | {"target": 1.10},
        compare("(b) time to root cause: float64 samples (QD201)", plain + [str(bad)], 1,
                doctor + [str(bad)], 1, args.repeats) | {"target": 1.5},
    ]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2))
    for r in results:
        verdict = "meets" if r["ratio"] <= r["target"] else "MISSES"
        print(f"{r['case']}\n  plain {r['plain_median_s']} s, quantdoctor {r['quantdoctor_median_s']} s, "
              f"ratio {r['ratio']} ({verdict} target {r['target']})")


if __name__ == "__main__":
    main()
