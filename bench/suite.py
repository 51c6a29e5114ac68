"""Benchmark: what a worker run costs quantdoctor before it does any work, forked against cold, and where
the test suite's worker runs go.

(a) Per-run overhead. One process diagnoses a tiny Keras model --repeats times with `convert=False`
    (load and preflight only: the run is almost all start-up), first with every worker started cold
    (`QUANTDOCTOR_PREFORK=0`: a fresh `python -I` that imports TensorFlow), then forked from a zygote
    (`quantdoctor.isolation.prefork`). The zygote's first run includes starting it. Figures: the median
    of the runs after the first, and the first, in seconds, as the runner timed them.
(b) With --log FILE, a summary of a `QUANTDOCTOR_WORKER_LOG` written by a test run
    (`QUANTDOCTOR_WORKER_LOG=FILE pytest ...`): per test file, the worker runs, how they started
    (spawn or fork) and their seconds.

Results go to bench/results/suite.json (and the terminal). The machine's load (`os.getloadavg`) is
recorded next to the figures: on a shared machine they move with it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def overhead(repeats: int) -> dict[str, dict[str, float]]:
    """(a): the seconds of `convert=False` runs, cold and forked, as the worker log has them."""
    import keras
    import numpy as np

    import quantdoctor as qd

    figures = {}
    with tempfile.TemporaryDirectory() as folder:
        model = Path(folder) / "tiny.keras"
        keras.Sequential([keras.Input((8,), name="features"), keras.layers.Dense(2, name="head")]).save(model)
        data = np.random.default_rng(0).normal(size=(8, 8)).astype(np.float32)
        for switch, name in (("0", "spawn"), ("1", "fork")):
            log = Path(folder) / f"{name}.jsonl"
            os.environ.update(QUANTDOCTOR_PREFORK=switch, QUANTDOCTOR_WORKER_LOG=str(log), QUANTDOCTOR_NO_CACHE="1")
            for _ in range(repeats):
                qd.diagnose(model, data, convert=False)
            runs = [json.loads(line) for line in log.read_text().splitlines()]
            assert [run["started_by"] for run in runs] == [name] * repeats, runs
            seconds = [run["seconds"] for run in runs]
            figures[name] = {"first": seconds[0], "median_after_first": statistics.median(seconds[1:]),
                             "runs": repeats}
    return figures


def summary(log: Path) -> dict[str, dict[str, float]]:
    """(b): worker runs per test file, by how they started, and their seconds."""
    files: dict[str, Counter] = defaultdict(Counter)
    for line in log.read_text().splitlines():
        run = json.loads(line)
        test_file = run["test"].split("::", 1)[0] or "(outside a test)"
        files[test_file][run["started_by"]] += 1
        files[test_file]["seconds"] += run["seconds"]
    return {name: {key: round(value, 1) for key, value in counts.items()}
            for name, counts in sorted(files.items(), key=lambda item: -item[1]["seconds"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--log", type=Path, help="a QUANTDOCTOR_WORKER_LOG to summarise")
    args = parser.parse_args()
    result: dict = {"load_before": os.getloadavg()}
    if args.log:
        result["worker_runs"] = summary(args.log)
        for name, counts in result["worker_runs"].items():
            print(f"{name:50} {counts}")
    result["overhead"] = overhead(args.repeats)
    result["load_after"] = os.getloadavg()
    for name, figures in result["overhead"].items():
        print(f"{name:6} first run {figures['first']:6.2f} s, then median {figures['median_after_first']:6.2f} s "
              f"({figures['runs']} runs)")
    print(f"load average before {result['load_before'][0]:.2f}, after {result['load_after'][0]:.2f}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "suite.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
