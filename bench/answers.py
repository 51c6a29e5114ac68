"""Fast answers: how soon quantdoctor names the root cause of a data failure, and what diagnose costs on a
model that converts, each against the plain converter, in the same run, with the cache off.

(a) Time to the first root-cause line on a data failure, against one plain failing conversion. Three
    failures: float64 samples (QD201) and samples of another image size (QD306) on MobileNetV2 (alpha 0.35,
    96x96x3, weights=None), and a sample dict missing an input's key (QD305) on a two-input model built on
    it. quantdoctor's side is `quantdoctor diagnose MODEL --data DATA --json-stream -`, timed from its start
    to its `predicted` event (then it is stopped); the plain side is a Python script that loads the .keras
    file, converts with the same samples, and fails, timed whole. Target: <= 0.25x.
(b) `quantdoctor diagnose` on MobileNetV2 with 100 good samples, whole process, against one plain conversion
    of the same. Target: <= 1.00x.

Every run is a fresh process with QUANTDOCTOR_NO_CACHE=1 (a user's first run); the sides alternate and
the medians of --repeats runs are compared. The machine's load (`uptime`) is recorded with the figures.
Results go to bench/results/answers.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import CACHE, PLAIN_CONVERT, QUANTDOCTOR, RESULTS, prepare  # noqa: E402  (bench/run.py builds the shared bench models)

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "QUANTDOCTOR_NO_CACHE": "1"}


def prepare_failures() -> list[tuple[str, str, Path, Path]]:
    """(case, expected code, model, data) for the three data failures."""
    import numpy as np

    model, _, float64 = prepare()
    images = np.load(CACHE / "digits96.npz")["image"]
    other_size = CACHE / "digits80.npz"
    if not other_size.exists():
        np.savez(other_size, image=images[:, :80, :80, :])
    two_inputs, missing_key = CACHE / "mobilenetv2_two_inputs.keras", CACHE / "digits96_missing_key.npz"
    if not two_inputs.exists():
        import keras

        image, meta = keras.Input((96, 96, 3), name="image"), keras.Input((4,), name="meta")
        backbone = keras.applications.MobileNetV2(alpha=0.35, input_shape=(96, 96, 3), include_top=False,
                                                  weights=None, pooling="avg")
        merged = keras.layers.Concatenate(name="merge")([backbone(image), keras.layers.Dense(4, name="meta_dense")(meta)])
        keras.Model([image, meta], keras.layers.Dense(10, name="head")(merged)).save(two_inputs)
    if not missing_key.exists():
        np.savez(missing_key, image=images, metadata=np.zeros((len(images), 4), np.float32))
    return [("float64 samples", "QD201", model, float64), ("samples of another image size", "QD306", model, other_size),
            ("a sample dict missing an input's key", "QD305", two_inputs, missing_key)]


def plain_seconds(model: Path, data: Path, expect_rc: int) -> float:
    """One plain conversion as a fresh process, timed whole."""
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", PLAIN_CONVERT, str(model), str(data)], capture_output=True,
                            text=True, env=ENV)
    seconds = time.perf_counter() - started
    if result.returncode != expect_rc:
        raise SystemExit(f"plain conversion exited {result.returncode}:\n{result.stdout[-1500:]}{result.stderr[-1500:]}")
    return seconds


def first_answer_seconds(model: Path, data: Path, code: str) -> tuple[float, str]:
    """Seconds from starting `quantdoctor diagnose` to its `predicted` event (it is stopped then), and the stage."""
    started = time.perf_counter()
    child = subprocess.Popen([QUANTDOCTOR, "diagnose", str(model), "--data", str(data), "--json-stream", "-"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=ENV)
    try:
        for line in child.stdout:
            event = json.loads(line)
            if event["event"] == "predicted":
                seconds = time.perf_counter() - started
                if event["finding"]["code"] != code:
                    raise SystemExit(f"predicted {event['finding']['code']}, expected {code}")
                return seconds, event["stage"]
            if event["event"] == "done":
                raise SystemExit(f"no early answer for {data.name}: root cause {event['root_cause']}")
        raise SystemExit(f"quantdoctor ended without an answer (exit {child.wait()})")
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)  # quantdoctor stops its worker and removes its files
        child.wait()


def diagnose_seconds(model: Path, data: Path) -> float:
    started = time.perf_counter()
    result = subprocess.run([QUANTDOCTOR, "diagnose", str(model), "--data", str(data)], capture_output=True,
                            text=True, env=ENV)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"diagnose exited {result.returncode}:\n{result.stdout[-1500:]}{result.stderr[-1500:]}")
    return seconds


def _summary(case: str, plain: list[float], ours: list[float], target: float, **extra) -> dict:
    ratio = statistics.median(ours) / statistics.median(plain)
    return {"case": case, "plain_median_s": round(statistics.median(plain), 2),
            "quantdoctor_median_s": round(statistics.median(ours), 2), "ratio": round(ratio, 3), "target": target,
            "plain_runs_s": [round(t, 2) for t in plain], "quantdoctor_runs_s": [round(t, 2) for t in ours], **extra}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    failures = prepare_failures()
    model, good, _ = prepare()
    load_before = os.getloadavg()
    times: dict[str, tuple[list[float], list[float]]] = {}
    stages: dict[str, set[str]] = {}
    for _ in range(args.repeats):  # alternating: each case's plain run, then quantdoctor's, round after round
        for case, code, failing_model, data in failures:
            plain, ours = times.setdefault(case, ([], []))
            plain.append(plain_seconds(failing_model, data, 1))
            seconds, stage = first_answer_seconds(failing_model, data, code)
            ours.append(seconds)
            stages.setdefault(case, set()).add(stage)
        plain, ours = times.setdefault("converts", ([], []))
        plain.append(plain_seconds(model, good, 0))
        ours.append(diagnose_seconds(model, good))
    results = [_summary(f"(a) time to the first root-cause line: {case} ({code})", *times[case], 0.25,
                        predicted_at=sorted(stages[case])) for case, code, _, _ in failures]
    results.append(_summary("(b) diagnose on a model that converts: MobileNetV2 0.35 96x96, 100 samples, INT8",
                            *times["converts"], 1.00))
    machine = {"cache": "off (QUANTDOCTOR_NO_CACHE=1)", "cpus": os.cpu_count(), "load_before": load_before,
               "load_after": os.getloadavg(), "repeats": args.repeats}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "answers.json").write_text(json.dumps({"machine": machine, "results": results}, indent=2))
    print(f"cache off; {machine['cpus']} CPUs; load average before {load_before[0]:.2f}, "
          f"after {machine['load_after'][0]:.2f}; medians of {args.repeats} alternating runs")
    for result in results:
        verdict = "meets" if result["ratio"] <= result["target"] else "MISSES"
        print(f"{result['case']}\n  plain {result['plain_median_s']} s, quantdoctor {result['quantdoctor_median_s']} s,"
              f" ratio {result['ratio']} ({verdict} target {result['target']})")


if __name__ == "__main__":
    main()
