"""Preflight benchmarks: its time on MobileNetV2, and how well it predicts the real converter.

- Time: `diagnose(..., convert=False)` on MobileNetV2 (alpha 0.35, 96x96, ~150 layers); the
  figure is the worker's preflight time after model loading (tracing + inventory + prediction
  inputs), median of --repeats runs. Target: under 2 s.
- Agreement: every model the test suite converts (run with QUANTDOCTOR_PREFLIGHT_LOG) plus the
  bench models: the share where the preflight verdict (will_fail / converts_with_float_ops /
  fully_integer) equals what the conversion delivered. Target: 95% or more.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import RESULTS, prepare  # noqa: E402  (bench/run.py builds the shared bench models)


def preflight_seconds(model: Path, data: Path, repeats: int) -> list[float]:
    import quantdoctor as qd

    return [qd.diagnose(model, data, convert=False).preflight["seconds"] for _ in range(repeats)]


def agreement_rows(model: Path, good: Path, bad: Path) -> list[dict]:
    with tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False) as log:
        log_path = log.name
    env = {**os.environ, "QUANTDOCTOR_PREFLIGHT_LOG": log_path, "TF_CPP_MIN_LOG_LEVEL": "2"}
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=HERE.parent, env=env,
                   check=False, stdout=subprocess.DEVNULL)
    rows = [json.loads(line) for line in Path(log_path).read_text().splitlines()]
    import quantdoctor as qd

    for data in (good, bad):
        report = qd.diagnose(model, data)
        rows.append({"model": f"{model.name} + {data.name}", "predicted": report.preflight["verdict"],
                     "actual": report.preflight["actual"]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    model, good, bad = prepare()
    times = preflight_seconds(model, good, args.repeats)
    rows = agreement_rows(model, good, bad)
    agree = sum(row["predicted"] == row["actual"] for row in rows)
    result = {"preflight_seconds_median": round(statistics.median(times), 3), "preflight_runs_s": times,
              "agreement": round(agree / len(rows), 3), "models": len(rows),
              "disagreements": [row for row in rows if row["predicted"] != row["actual"]]}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "preflight.json").write_text(json.dumps(result, indent=2))
    print(f"preflight on MobileNetV2 0.35 96x96: {result['preflight_seconds_median']} s after loading (target < 2 s)")
    print(f"prediction agreement: {agree}/{len(rows)} = {result['agreement']:.1%} (target >= 95%)")
    for row in result["disagreements"]:
        print(f"  predicted {row['predicted']}, got {row['actual']}: {row['model']}")


if __name__ == "__main__":
    main()
