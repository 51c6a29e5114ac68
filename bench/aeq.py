"""compare on a float .tflite vs ai-edge-quantizer's own `validate()`: whole-process time, same model and data.

Model: a small float .tflite exported from a Keras CNN (Conv2D, Conv2D, pooling, Dense, EXP) with
the real converter; 100 calibration and 50 eval samples. Each side runs as a fresh process, as a
user runs it:

- AEQ: `python -c` that imports AEQ, quantizes with static_wi8_ai8 calibrated on the samples, and
  calls `validate()` on the eval samples (per-tensor MSE and SNR, no causes).
- quantdoctor: `quantdoctor compare model.tflite --data --eval-data --json`: AEQ in its isolated
  worker (forked from the zygote the console script starts before its own imports), then per-layer SQNR,
  causes (clipping, float fallback), run check and audit.

Ratio = quantdoctor / AEQ on the medians of `--repeats` rounds, the sides alternating, the conversion cache
off; goal <= 1.0x. Each side's CPU time (user + system, its processes and their children) is recorded too: on a
machine shared with other jobs, wall times stretch with the load, CPU times much less. `--baseline SRC` adds
the quantdoctor of another source tree (its `src`) as a third side, for a before/after in the same run. The
machine's load is recorded with the figures (results/aeq.json).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
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
# quantdoctor's command line from another source tree (`--baseline`), through its console entry point (`launch`,
# which starts the worker's zygote first; `cli` in trees before it): its workers follow its own package.
BASELINE = """import sys; sys.path.insert(0, sys.argv.pop(1)); sys.argv[0] = 'quantdoctor'
try:
    from quantdoctor.launch import main
except ModuleNotFoundError:
    from quantdoctor.cli import main
main()"""


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


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float, subprocess.CompletedProcess]:
    """The command's wall time, its CPU time (with its children's), and how it ended."""
    started, used = time.perf_counter(), _children_cpu()
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
    return time.perf_counter() - started, _children_cpu() - used, done


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", help="the src directory of another quantdoctor, as a third side")
    options = parser.parse_args()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "QUANTDOCTOR_NO_CACHE": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model, calib, evaluation = build(folder)
        arguments = ["compare", str(model), "--data", str(calib), "--eval-data", str(evaluation), "--json",
                     str(folder / "report.json")]
        sides = {"aeq validate script": [sys.executable, "-c", AEQ_VALIDATE, str(model), str(calib), str(evaluation)],
                 "quantdoctor compare": [str(Path(sys.executable).with_name("quantdoctor")), *arguments]}
        if options.baseline:
            sides["baseline compare"] = [sys.executable, "-c", BASELINE, options.baseline, *arguments]
        load_before = os.getloadavg()
        times: dict[str, list[float]] = {name: [] for name in sides}
        cpu: dict[str, list[float]] = {name: [] for name in sides}
        for _ in range(options.repeats):  # alternating: each side once per round
            for name, command in sides.items():
                seconds, cpu_seconds, done = timed(command, env)
                if done.returncode not in ((0,) if name.startswith("aeq") else (0, 1)):
                    raise SystemExit(f"{name} exited {done.returncode}: {done.stderr[-2000:]}")
                times[name].append(seconds)
                cpu[name].append(cpu_seconds)
        report = json.loads((folder / "report.json").read_text())
    medians = {name: statistics.median(values) for name, values in times.items()}
    cpu_medians = {name: statistics.median(values) for name, values in cpu.items()}
    script, script_cpu = medians["aeq validate script"], cpu_medians["aeq validate script"]
    results = {"cache": "off (QUANTDOCTOR_NO_CACHE=1)", "repeats": options.repeats, "cpus": os.cpu_count(),
               "load_before": load_before, "load_after": os.getloadavg(),
               "sides": {name: {"median_s": round(medians[name], 2), "ratio_to_aeq_validate": round(medians[name] / script, 3),
                                "runs_s": [round(t, 2) for t in times[name]],
                                "median_cpu_s": round(cpu_medians[name], 2),
                                "cpu_ratio_to_aeq_validate": round(cpu_medians[name] / script_cpu, 3),
                                "runs_cpu_s": [round(t, 2) for t in cpu[name]]} for name in sides},
               "ratio": round(medians["quantdoctor compare"] / script, 3),
               "cpu_ratio": round(cpu_medians["quantdoctor compare"] / script_cpu, 3), "goal": 1.0,
               "layers": len(report["comparison"]["layers"]), "codes": [f["code"] for f in report["findings"]]}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "aeq.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
