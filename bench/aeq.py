"""compare on a float .tflite vs ai-edge-quantizer's own `validate()`: whole-process time, same model and data.

Model: a small float .tflite exported from a Keras CNN (Conv2D, Conv2D, pooling, Dense, EXP) with
the real converter; 100 calibration and 50 eval samples. Each side runs as a fresh process, as a
user runs it:

- AEQ: `python -c` that imports AEQ, quantizes with static_wi8_ai8 calibrated on the samples, and
  calls `validate()` on the eval samples (per-tensor MSE and SNR, no causes).
- quantdoctor: `quantdoctor compare model.tflite --data --eval-data --json`: AEQ in its isolated
  worker, then per-layer SQNR, causes (clipping, float fallback), run check and audit.

Ratio = quantdoctor / AEQ; goal <= 1.0x. Run once: `python bench/aeq.py` (writes results/aeq.json).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
AEQ_VALIDATE = """
import sys, numpy as np
from ai_edge_quantizer import quantizer, recipe
model, data, evaluation = sys.argv[1:4]
calib = np.load(data)["image"]; test = np.load(evaluation)["image"]
q = quantizer.Quantizer(model, recipe.static_wi8_ai8())
qsvs = q.calibrate({"serving_default": [{"image": row[None]} for row in calib]})
q.quantize(qsvs)
result = q.validate({"serving_default": [{"image": row[None]} for row in test]})
print(len(result.get_all_tensor_results()))
"""


def build(folder: Path) -> tuple[Path, Path, Path]:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((32, 32, 3), name="image"),
        keras.layers.Conv2D(8, 3, activation="relu", name="conv1"),
        keras.layers.Conv2D(8, 3, activation="relu", name="conv2"),
        keras.layers.GlobalAveragePooling2D(name="pool"),
        keras.layers.Dense(10, name="logits"),
        keras.layers.Activation("exponential", name="scores"),
    ])
    path = folder / "model_float.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    rng = np.random.default_rng(0)
    grid = np.linspace(0, 1, 32, dtype=np.float32)
    base = (grid[:, None] * grid[None, :])[None, :, :, None]
    images = np.clip(base + 0.1 * rng.normal(size=(150, 32, 32, 3)), 0, 1).astype(np.float32)
    np.savez(folder / "calib.npz", image=images[:100])
    np.savez(folder / "eval.npz", image=images[100:])
    return path, folder / "calib.npz", folder / "eval.npz"


def timed(command: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    return time.perf_counter() - started, done


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model, calib, evaluation = build(folder)
        aeq_seconds, aeq = timed([sys.executable, "-c", AEQ_VALIDATE, str(model), str(calib), str(evaluation)])
        assert aeq.returncode == 0, aeq.stderr[-2000:]
        quantdoctor = str(Path(sys.executable).with_name("quantdoctor"))
        qd_seconds, qd = timed([quantdoctor, "compare", str(model), "--data", str(calib), "--eval-data",
                                str(evaluation), "--json", str(folder / "report.json")])
        report = json.loads((folder / "report.json").read_text())
        results = {"aeq_validate_seconds": round(aeq_seconds, 2), "quantdoctor_compare_seconds": round(qd_seconds, 2),
                   "ratio": round(qd_seconds / aeq_seconds, 2), "layers": len(report["comparison"]["layers"]),
                   "codes": [f["code"] for f in report["findings"]], "exit_code": qd.returncode}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "aeq.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
