"""compare vs TensorFlow's QuantizationDebugger: per-layer analysis on the same model and samples.

Model: MobileNetV2 (alpha 0.35, 96x96, the bench model of bench/run.py); 100 calibration samples
and 50 eval samples (scikit-learn digits upscaled). In one process, one after the other:

- QuantizationDebugger: the constructor calibrates and quantizes (with numeric-verify ops), `run()`
  computes its per-layer statistics. Per-layer analysis time = `run()`.
- quantdoctor compare: converts float and INT8 models in isolated processes, then the compare
  worker runs both on the eval samples. Per-layer analysis time = the worker's loop over the
  samples (like `run()`: after interpreter set-up, first invocation included), and the whole
  worker with its process start (Python, NumPy, Numba's cached kernel, LiteRT, interpreters).
- The floor: one float and one quantized forward pass per sample, nothing recorded, on fresh
  interpreters: one after the other, and side by side in two threads as the worker runs them.

Each tool runs `ROUNDS` times; medians are reported. Target: quantdoctor's per-layer analysis at
least 2x faster than the debugger's.

`--whole-process` measures what a user waits for instead (issue 19's figure): `quantdoctor compare
MODEL --data --eval-data --json` as a fresh process against a fresh-process QuantizationDebugger
script (load the .keras file, calibrate on the same 100 samples, `run()` on the same 50), the sides
alternating for `--repeats` rounds, medians compared. Cold: the conversion cache off
(QUANTDOCTOR_NO_CACHE=1), a user's first run; warm: the cache on in a private directory, filled once
before the rounds. `--baseline SRC` adds a third side, the quantdoctor of another source tree (its
`src` directory, run with this environment), for a before/after in the same run. The machine's load
(`os.getloadavg`) is recorded with the figures; the ratio is the figure to read on a shared machine.
Results go to results/compare_process.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import QUANTDOCTOR, RESULTS, prepare  # noqa: E402

ROUNDS = 3  # medians over this many rounds, each running both tools


def _one_round(model, model_path, dataset, calibration, evaluation) -> tuple[dict, object, object]:
    """Both tools once, one after the other: their times, the debugger and quantdoctor's report."""
    import tensorflow as tf

    import quantdoctor as qd

    started = time.perf_counter()
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = dataset(calibration)
    debugger = tf.lite.experimental.QuantizationDebugger(converter=converter, debug_dataset=dataset(evaluation))
    constructed = time.perf_counter()
    debugger.run()
    debugger_done = time.perf_counter()
    report = qd.compare(model_path, calibration, eval_data=evaluation)
    timing = {"debugger_setup_s": constructed - started, "debugger_run_s": debugger_done - constructed,
              "quantdoctor_total_s": time.perf_counter() - debugger_done,
              "quantdoctor_per_layer_s": report.comparison["seconds"],
              "quantdoctor_per_layer_in_worker_s": report.comparison["analysis_seconds"]}
    return timing, debugger, report


def _floor(models: list[bytes], evaluation: np.ndarray, side_by_side: bool) -> float:
    """Seconds for one forward pass of each model per sample on fresh interpreters, recording nothing."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from quantdoctor.runtime.feed import Feeder

    options = {"experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
    interpreters = [Interpreter(model_content=m, **options) for m in models]
    feeders = [Feeder(interpreter) for interpreter in interpreters]
    for feed in feeders:
        feed({"image": evaluation[:1]})  # allocated before the clock starts

    def run(interpreter, feed) -> None:
        for row in evaluation:
            feed({"image": row[None]})  # quantized for an integer input, as compare's lanes do
            interpreter.invoke()

    started = time.perf_counter()
    with ThreadPoolExecutor(2 if side_by_side else 1) as pool:
        list(pool.map(run, interpreters, feeders))
    return time.perf_counter() - started


def main() -> None:
    import keras

    from quantdoctor.diagnosis.pipeline import diagnose_with_float_twin

    model_path, good, _ = prepare()
    images = np.load(good)["image"]
    calibration, evaluation = images[:100], images[50:100]
    model = keras.saving.load_model(model_path, compile=False)

    def dataset(rows):
        return lambda: ([row[None]] for row in rows)

    rounds = [_one_round(model, model_path, dataset, calibration, evaluation) for _ in range(ROUNDS)]
    debugger, report = rounds[-1][1], rounds[-1][2]
    timing = {key: statistics.median(r[0][key] for r in rounds) for key in rounds[0][0]}

    floor_report, float_model = diagnose_with_float_twin(model_path, calibration)  # compare's own two models
    models = [float_model, floor_report.tflite_model]
    floors = {side_by_side: statistics.median(_floor(models, evaluation, side_by_side) for _ in range(ROUNDS))
              for side_by_side in (False, True)}

    result = {
        "model": "MobileNetV2 alpha 0.35, 96x96x3", "calibration_samples": 100, "eval_samples": len(evaluation),
        "rounds": ROUNDS, **{key: round(value, 3) for key, value in timing.items()},
        "debugger_layers": len(debugger.layer_statistics), "quantdoctor_layers": len(report.comparison["layers"]),
        "floor_forward_passes_s": round(floors[False], 3),
        "floor_forward_passes_side_by_side_s": round(floors[True], 3),
    }
    result["per_layer_speedup"] = round(result["debugger_run_s"] / result["quantdoctor_per_layer_s"], 2)
    result["per_layer_speedup_in_worker"] = round(result["debugger_run_s"] / result["quantdoctor_per_layer_in_worker_s"], 2)
    result["total_speedup"] = round((result["debugger_setup_s"] + result["debugger_run_s"])
                                    / result["quantdoctor_total_s"], 2)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "compare.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


# The QuantizationDebugger script of a user: calibrate, quantize with numeric-verify ops, run() per layer.
DEBUGGER_SCRIPT = """
import sys, numpy as np, tensorflow as tf, keras
model = keras.saving.load_model(sys.argv[1], compile=False)
calibration, evaluation = np.load(sys.argv[2])["image"], np.load(sys.argv[3])["image"]
converter = tf.lite.TFLiteConverter.from_keras_model(model)
converter.optimizations = [tf.lite.Optimize.DEFAULT]
converter.representative_dataset = lambda: ([row[None]] for row in calibration)
debugger = tf.lite.experimental.QuantizationDebugger(
    converter=converter, debug_dataset=lambda: ([row[None]] for row in evaluation))
debugger.run()
print(len(debugger.layer_statistics))
"""
# quantdoctor's command line from another source tree (`--baseline`): its workers follow its own package.
BASELINE = "import sys; sys.path.insert(0, sys.argv.pop(1)); from quantdoctor.cli import main; sys.argv[0] = 'quantdoctor'; main()"


def _timed(command: list[str], env: dict[str, str], expect: tuple[int, ...]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if done.returncode not in expect:
        raise SystemExit(f"{command[:3]} exited {done.returncode}:\n{done.stdout[-1500:]}{done.stderr[-1500:]}")
    return seconds


def whole_process(repeats: int, baseline: str | None) -> dict:
    """The sides of `--whole-process` (see the module docstring), alternating, with their medians."""
    model, good, _ = prepare()
    folder = Path(tempfile.mkdtemp(prefix="bench-compare-"))
    images = np.load(good)["image"]
    calibration, evaluation = folder / "calibration.npz", folder / "eval.npz"
    np.savez(calibration, image=images[:100])
    np.savez(evaluation, image=images[50:100])
    base = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    cold = {**base, "QUANTDOCTOR_NO_CACHE": "1"}
    warm = {**base, "QUANTDOCTOR_CACHE_DIR": str(folder / "cache")}
    warm.pop("QUANTDOCTOR_NO_CACHE", None)
    arguments = [str(model), "--data", str(calibration), "--eval-data", str(evaluation), "--json",
                 str(folder / "report.json")]
    sides = {"debugger script": ([sys.executable, "-c", DEBUGGER_SCRIPT, str(model), str(calibration),
                                  str(evaluation)], base, (0,)),
             "quantdoctor compare, cold": ([QUANTDOCTOR, "compare", *arguments], cold, (0, 1)),
             "quantdoctor compare, warm cache": ([QUANTDOCTOR, "compare", *arguments], warm, (0, 1))}
    if baseline:
        sides["baseline compare, cold"] = ([sys.executable, "-c", BASELINE, baseline, "compare", *arguments], cold,
                                           (0, 1))
    _timed(*sides["quantdoctor compare, warm cache"])  # fills the cache
    load_before = os.getloadavg()
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(repeats):
        for name, side in sides.items():
            times[name].append(_timed(*side))
    report = json.loads((folder / "report.json").read_text())
    medians = {name: statistics.median(values) for name, values in times.items()}
    script = medians["debugger script"]
    result = {
        "model": "MobileNetV2 alpha 0.35, 96x96x3 (bench/run.py)", "calibration_samples": 100, "eval_samples": 50,
        "repeats": repeats, "cpus": os.cpu_count(), "load_before": load_before, "load_after": os.getloadavg(),
        "layers_compared": len(report["comparison"]["layers"]),
        "sides": {name: {"median_s": round(medians[name], 2), "ratio_to_debugger_script": round(medians[name] / script, 3),
                         "runs_s": [round(t, 2) for t in times[name]]} for name in sides},
        "targets": {"quantdoctor compare, cold": 0.90, "quantdoctor compare, warm cache": 0.15},
    }
    shutil.rmtree(folder, ignore_errors=True)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--whole-process", action="store_true", help="whole processes against a debugger script")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", help="the src directory of another quantdoctor, as a third side")
    options = parser.parse_args()
    if not options.whole_process:
        main()
    else:
        figures = whole_process(options.repeats, options.baseline)
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "compare_process.json").write_text(json.dumps(figures, indent=2))
        print(json.dumps(figures, indent=2))
