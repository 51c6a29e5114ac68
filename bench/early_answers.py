"""Early answers against the converter: how often a failure predicted with certainty before converting is
confirmed by the converter, on the failing models of the test files named (the whole suite by default).

Runs pytest on them with QUANTDOCTOR_EARLY_ANSWER_LOG (tests/conftest.py records every diagnosis that made
an early answer or whose conversion failed), then reports:
- agreement: the share of early answers the converter confirmed (target: all of them; a "certain" prediction
  the converter contradicts is a bug), counting those the traced graph withdrew as wrong (they were shown);
- coverage: the share of failed conversions that had an early answer (most failures are not knowable
  before converting: ops, crashes, converter bugs).
The cache is off (the suite turns it off).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tests", nargs="*", help="test files or node ids (default: the whole suite)")
    parser.add_argument("--log", help="read this log of an earlier run instead of running pytest")
    args = parser.parse_args()
    if args.log:
        log = Path(args.log)
    else:
        log = Path(tempfile.mkdtemp(prefix="early-answers-")) / "log.jsonl"
        env = {**os.environ, "QUANTDOCTOR_EARLY_ANSWER_LOG": str(log), "TF_CPP_MIN_LOG_LEVEL": "2"}
        subprocess.run([sys.executable, "-m", "pytest", "-p", "no:xdist", "-q", "-p", "no:cacheprovider", *args.tests],
                       cwd=HERE.parent, env=env, check=False, stdout=subprocess.DEVNULL)
    rows = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    early = [row for row in rows if row["predicted"]]
    judged = [row for row in early if row["confirmed"] is not None]
    withdrawn = [row for row in early if row.get("withdrawn")]
    confirmed = [row for row in judged if row["confirmed"] and not row.get("withdrawn")]
    failed = [row for row in rows if row["outcome"] not in (None, "ok", "skipped", "not_attempted")]
    answered = [row for row in failed if row["predicted"]]
    result = {"tests": args.tests or ["(whole suite)"], "diagnoses_logged": len(rows), "early_answers": len(early),
              "judged_by_converter": len(judged), "confirmed": len(confirmed), "withdrawn": len(withdrawn),
              "agreement": round(len(confirmed) / len(judged), 3) if judged else None,
              "failed_conversions": len(failed), "failed_with_early_answer": len(answered),
              "coverage": round(len(answered) / len(failed), 3) if failed else None,
              "by_code": _by_code(judged),
              "wrong": [row for row in judged if not row["confirmed"] or row.get("withdrawn")]}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "early_answers.json").write_text(json.dumps(result, indent=2))
    print(f"early answers confirmed by the converter: {len(confirmed)}/{len(judged)}"
          + (f" = {result['agreement']:.1%}" if judged else "") + " (target: all)")
    print(f"withdrawn by the traced graph (shown, then taken back): {len(withdrawn)}")
    print(f"failed conversions with an early answer: {len(answered)}/{len(failed)}")
    for code, counts in sorted(result["by_code"].items()):
        print(f"  {code}: {counts['confirmed']}/{counts['judged']} confirmed")
    for row in result["wrong"]:
        what = "WITHDRAWN" if row.get("withdrawn") else "NOT CONFIRMED"
        print(f"  {what} {row['predicted']} ({row['stage']}): converter outcome {row['outcome']}, "
              f"root cause {row['root_cause']}: {row['test']}")


def _by_code(rows: list[dict]) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for row in rows:
        entry = counts.setdefault(row["predicted"], {"judged": 0, "confirmed": 0})
        entry["judged"] += 1
        entry["confirmed"] += bool(row["confirmed"]) and not row.get("withdrawn")
    return counts


if __name__ == "__main__":
    main()
