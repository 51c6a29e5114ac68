"""The Keras Applications zoo at tiny sizes: do the accuracy verdicts hold on popular architectures?

Each model is built at a small input size, in two states:
- `random`: untouched random weights (BatchNorm at its initial statistics);
- `bn-data`: BatchNorm statistics set from the data (one training-mode pass with momentum 0), so its
  activations look like a trained network's.

Each goes through `diagnose` (int8 and int8-strict), `compare` (int8) and, with `--fix`, `fix --target cpu`,
on smooth synthetic images. A reviewer's checks, from the measured outputs alone:
- a false error: an output error (QD504, QD507, QD519 as an error) whose outputs compare measured following
  the float model (SQNR of 12 dB or more and, for class scores, 90% top-1 agreement or more);
- an "OK" below the thresholds: a verdict `ok` while compare measured an SQNR under 12 dB or a top-1
  agreement under 90%;
- a contradiction: QD510 saying "quantization is not the problem" next to an output error;
- whether `diagnose` (int8) and `compare` give the same verdict class (`top-1` is compare's agreement on the eval
  images, `check top-1` the run check's on its calibration rows);
- findings per report after grouping (`report/grouping.py`), and the seconds per model.

Usage: `python bench/zoo.py [--models MobileNetV2,ResNet50] [--size 32] [--samples 100] [--fix] [--reports DIR]`.
The table goes to bench/results/zoo.md (and zoo.json), rewritten after each model; `--reports` also writes each
report's terminal text. The conversion cache is on unless `QUANTDOCTOR_NO_CACHE=1`: `diagnose` (int8) and `compare`
then share one conversion (the table says which).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

# name -> (constructor in keras.applications, keyword arguments besides the input shape, preprocess module)
ZOO = {
    "MobileNetV2": ("MobileNetV2", {"alpha": 0.35}, "mobilenet_v2"),
    "MobileNetV3Small": ("MobileNetV3Small", {"minimalistic": True}, None),
    "EfficientNetB0": ("EfficientNetB0", {}, None),
    "EfficientNetV2B0": ("EfficientNetV2B0", {}, None),
    "ResNet50": ("ResNet50", {}, "resnet50"),
    "DenseNet121": ("DenseNet121", {}, "densenet"),
    "ConvNeXtTiny": ("ConvNeXtTiny", {}, None),
    "Xception": ("Xception", {}, "xception"),
    "NASNetMobile": ("NASNetMobile", {}, "nasnet"),
    "RegNetX002": ("RegNetX002", {}, None),
}
MIN_SIZE = {"Xception": 71, "NASNetMobile": 32}
OUTPUT_ERRORS = ("QD504", "QD507", "QD519")
FOLLOWS_SQNR_DB, FOLLOWS_TOP1 = 12.0, 0.9


def smooth_images(count: int, size: int, seed: int) -> np.ndarray:
    """Smooth synthetic RGB images in 0..255: low-frequency random fields, upsampled."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (count, 4, 4, 3))
    steps = np.linspace(0, 3, size)
    low, frac = np.floor(steps).astype(int), steps - np.floor(steps)
    high = np.minimum(low + 1, 3)
    rows = coarse[:, low] * (1 - frac)[None, :, None, None] + coarse[:, high] * frac[None, :, None, None]
    return (rows[:, :, low] * (1 - frac)[None, None, :, None] + rows[:, :, high] * frac[None, None, :, None]).astype(
        np.float32)


def build(name: str, size: int, state: str, data: np.ndarray) -> Any:
    import keras

    constructor, kwargs, _ = ZOO[name]
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, constructor)(weights=None, input_shape=(size, size, 3), **kwargs)
    if state == "bn-data":
        norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
        for layer in norms:
            layer.momentum = 0.0
        model(data, training=True)  # moving statistics := this batch's
    return model


def preprocess(name: str, images: np.ndarray) -> np.ndarray:
    import keras

    module = ZOO[name][2]
    if module is None:  # the model rescales its own input
        return images
    return getattr(keras.applications, module).preprocess_input(images.copy()).astype(np.float32)


def review(diagnosed: Any, compared: Any) -> dict[str, Any]:
    """The reviewer's checks on one model's reports."""
    e2e = compared.comparison["end_to_end"]
    agreement = e2e.get("top1_agreement")
    follows = e2e["sqnr_db"] >= FOLLOWS_SQNR_DB and (agreement is None or agreement >= FOLLOWS_TOP1)
    errors = [f for f in compared.findings if f.code in OUTPUT_ERRORS and f.severity == "error"]
    contradiction = bool(errors) and any(f.code == "QD510" and "quantization is not the problem" in f.message
                                         for f in compared.findings)
    return {"false_errors": len(errors) if follows else 0,
            "ok_below_threshold": int(any(r.verdict == "ok" for r in (diagnosed, compared)) and not follows
                                      and _float_varies(diagnosed)),
            "contradictions": int(contradiction),
            "verdicts_agree": diagnosed.verdict == compared.verdict,
            "sqnr_db": e2e["sqnr_db"], "top1_agreement": agreement, "check_top1_agreement": _check_top1(diagnosed)}


def _codes(report: Any) -> str:
    """A report's codes with their severity's initial (QD504e, QD308w), once each."""
    return " ".join(sorted({f"{f.code}{f.severity[0]}" for f in report.findings}))


def _check_top1(diagnosed: Any) -> float | None:
    """The top-1 agreement `diagnose`'s run check measured on its calibration rows (first output); None without."""
    outputs = ((diagnosed.audit or {}).get("run_check") or {}).get("outputs") or []
    return outputs[0].get("top1_agreement") if outputs else None


def _float_varies(diagnosed: Any) -> bool:
    """Whether the float model's first output varies over the run check's rows (else OK is right: nothing to lose)."""
    from quantdoctor.runtime.measures import varies

    outputs = ((diagnosed.audit or {}).get("run_check") or {}).get("outputs") or []
    return bool(outputs) and varies(*outputs[0]["float_range"])


def run_one(name: str, state: str, size: int, samples: int, with_fix: bool,
            reports: Path | None = None) -> dict[str, Any]:
    import quantdoctor as qd
    from quantdoctor.report.grouping import group_findings

    size = max(size, MIN_SIZE.get(name, 32))
    calibration = preprocess(name, smooth_images(samples, size, seed=0))
    evaluation = preprocess(name, smooth_images(samples, size, seed=1))
    model = build(name, size, state, calibration)
    started = time.perf_counter()
    diagnosed = qd.diagnose(model, calibration, mode="int8")
    steps = {"diagnose_s": round(time.perf_counter() - started, 1)}
    strict = qd.diagnose(model, calibration, mode="int8-strict")
    steps["strict_s"] = round(time.perf_counter() - started - steps["diagnose_s"], 1)
    compared = qd.compare(model, calibration, eval_data=evaluation)
    steps["compare_s"] = round(time.perf_counter() - started - steps["diagnose_s"] - steps["strict_s"], 1)
    row = {"model": name, "state": state, "size": size, "samples": samples,
           "diagnose": diagnosed.verdict, "strict": strict.verdict, "compare": compared.verdict,
           "codes": sorted({f.code for f in compared.findings}),
           "diagnose_codes": _codes(diagnosed), "compare_codes": _codes(compared),
           "findings": len(compared.findings), "grouped": len(group_findings(compared.findings)),
           "strict_findings": len(strict.findings), "strict_grouped": len(group_findings(strict.findings)),
           "compare_cached": bool((compared.conversion or {}).get("cached")), **steps,
           **review(diagnosed, compared)}
    if with_fix:
        from quantdoctor.fix.fix_model import fix

        fixed = fix(model, calibration, target="cpu")
        row["fix"] = "fixed" if fixed.model is not None else "not fixed"
    row["seconds"] = round(time.perf_counter() - started, 1)
    if reports is not None:  # the findings' text, for a reviewer reading each message
        reports.mkdir(parents=True, exist_ok=True)
        for command, report in (("diagnose", diagnosed), ("strict", strict), ("compare", compared)):
            (reports / f"{name}-{state}-{command}.txt").write_text(str(report))
    return row


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| model | state | diagnose | strict | compare | SQNR dB | top-1 | check top-1 | false errors | OK below | "
            "contradictions | agree | findings (grouped) | s | diagnose codes | compare codes |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        top1, check = ("n/a" if r.get(key) is None else f"{r[key]:.2f}" for key in ("top1_agreement",
                                                                                  "check_top1_agreement"))
        lines.append(f"| {r['model']} {r['size']}px | {r['state']} | {r['diagnose']} | {r['strict']} | {r['compare']} "
                     f"| {r['sqnr_db']:.1f} | {top1} | {check} | {r['false_errors']} | {r['ok_below_threshold']} | "
                     f"{r['contradictions']} | {'yes' if r['verdicts_agree'] else 'NO'} | {r['findings']} "
                     f"({r['grouped']}) | {r['seconds']} | {r.get('diagnose_codes', '')} | {r.get('compare_codes', '')} |")
    totals = {key: sum(r[key] for r in rows) for key in ("false_errors", "ok_below_threshold", "contradictions")}
    agree = sum(r["verdicts_agree"] for r in rows)
    lines.append("")
    lines.append(f"Totals: {totals['false_errors']} false errors, {totals['ok_below_threshold']} OK below the "
                 f"thresholds, {totals['contradictions']} contradictions, verdicts agreeing on {agree}/{len(rows)}.")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="MobileNetV2,ResNet50")
    parser.add_argument("--states", default="random,bn-data")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--fix", action="store_true")
    parser.add_argument("--reports", type=Path, help="write each report's terminal text to this directory")
    parser.add_argument("--name", default="zoo", help="the results' file name: bench/results/NAME.md and NAME.json")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True).stdout
    started = f"{machine_state()}, quantdoctor at commit {commit.strip() or 'unknown'}"
    import keras

    for name in args.models.split(","):
        if not hasattr(keras.applications, ZOO[name][0]):
            print(f"{name}: not in keras.applications {keras.__version__}, skipped", flush=True)
            continue
        for state in args.states.split(","):
            rows.append(run_one(name, state, args.size, args.samples, args.fix, args.reports))
            print(json.dumps(rows[-1]), flush=True)
            write_results(rows, started, args.name)  # after each row: a long run interrupted still leaves its table
    print(table(rows))
    return 0


def machine_state() -> str:
    """The date, the load average and whether the conversion cache is on: the conditions a table was measured in."""
    import datetime
    import os

    cache = "off" if os.environ.get("QUANTDOCTOR_NO_CACHE") == "1" else "on"
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return (f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, load average {load} "
            f"on {os.cpu_count()} cores, conversion cache {cache}")


def write_results(rows: list[dict[str, Any]], started: str, name: str = "zoo") -> None:
    """bench/results/NAME.json and NAME.md from the rows measured so far."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(rows, indent=1))
    (RESULTS / f"{name}.md").write_text(f"# bench/zoo.py: {' '.join(sys.argv[1:]) or 'defaults'}\n\n"
                                    f"Started {started}; after the last row {machine_state()}.\n\n"
                                    f"{table(rows)}\n")


if __name__ == "__main__":
    sys.exit(main())
