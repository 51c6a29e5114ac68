"""Benchmark: what `quantdoctor run` costs a script that neither converts nor runs a TFLite model.

(a) A script that imports TensorFlow, builds a small Keras model and runs `model.predict` on
    1000 rows: `python script.py` against `quantdoctor run python script.py`. With TensorFlow
    imported, the converter and interpreter patches are installed (quantdoctor is loaded), but
    nothing is diagnosed. Target: ratio <= 1.05.
(b) quantdoctor's own work inside the script's process, timed there: loading quantdoctor and
    installing its hooks on a TensorFlow already imported (what the bootstrap does while the
    script imports TensorFlow), too small to see against TensorFlow's own import time in (a).
(c) A script that imports nothing: the fixed cost of the `quantdoctor` command itself (it starts,
    then execs the script), in seconds.

Each side runs as a fresh process, alternating, and each figure is the median of --repeats runs.
Results go to bench/results/run_overhead.json.
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

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
QUANTDOCTOR = str(Path(sys.executable).with_name("quantdoctor"))

KERAS_PREDICT = """
import numpy as np
import tensorflow as tf
import keras

model = keras.Sequential([keras.Input((32,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10)])
rows = np.random.default_rng(0).random((1000, 32), dtype=np.float32)
print(model.predict(rows, verbose=0).shape)
"""
NOTHING = "print('ok')\n"
IN_PROCESS = """
import time
import tensorflow
started = time.perf_counter()
from quantdoctor.watch.session import WatchSession
WatchSession(echo=False).start()
print(time.perf_counter() - started)
"""


def timed(command: list[str], folder: str) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=folder,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    seconds = time.perf_counter() - started
    if result.returncode != 0 or "quantdoctor" in result.stderr:
        raise SystemExit(f"unexpected result from {command}:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return seconds


def measure(name: str, script: str, repeats: int) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "script.py").write_text(script)
        plain_command = [sys.executable, "script.py"]
        watched_command = [QUANTDOCTOR, "run", *plain_command]
        plain, watched = [], []
        for _ in range(repeats):
            plain.append(timed(plain_command, folder))
            watched.append(timed(watched_command, folder))
    result = {"case": name, "plain_median_s": round(statistics.median(plain), 3),
              "run_median_s": round(statistics.median(watched), 3),
              "plain_runs_s": [round(t, 3) for t in plain], "run_runs_s": [round(t, 3) for t in watched]}
    result["ratio"] = round(result["run_median_s"] / result["plain_median_s"], 3)
    result["added_s"] = round(result["run_median_s"] - result["plain_median_s"], 3)
    return result


def in_process(name: str, repeats: int) -> dict:
    seconds = []
    for _ in range(repeats):
        result = subprocess.run([sys.executable, "-c", IN_PROCESS], capture_output=True, text=True, check=True,
                                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        seconds.append(float(result.stdout.split()[-1]))
    return {"case": name, "median_s": round(statistics.median(seconds), 3), "runs_s": [round(t, 3) for t in seconds]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    results = [measure("(a) import TensorFlow, Keras predict on 1000 rows", KERAS_PREDICT, args.repeats)
               | {"target_ratio": 1.05},
               in_process("(b) inside the script: load quantdoctor, install the hooks", args.repeats),
               measure("(c) a script that imports nothing", NOTHING, args.repeats)]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "run_overhead.json").write_text(json.dumps(results, indent=2))
    for r in results:
        if "median_s" in r:
            print(f"{r['case']}\n  {r['median_s']} s")
            continue
        target = r.get("target_ratio")
        verdict = "" if target is None else f" ({'meets' if r['ratio'] <= target else 'MISSES'} target {target})"
        print(f"{r['case']}\n  plain {r['plain_median_s']} s, quantdoctor run {r['run_median_s']} s, "
              f"ratio {r['ratio']}, +{r['added_s']} s{verdict}")


if __name__ == "__main__":
    main()
