"""reduce's cost: conversions against its bound, 2·log2(N) + 4, on models of 10, 50 and 200 layer calls.

Each model is a chain of Dense layers with one recurrent layer whose INT8 calibration crashes
(QD108, a static batch), placed a third of the way in. `qd.reduce` must name that layer and stay
within the bound. Also reported: seconds per conversion (the machine's speed) and in total.

    python bench/reduce.py                  # 10, 50 and 200 layer calls
    python bench/reduce.py --sizes 10       # one size
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import RESULTS  # noqa: E402  (bench/run.py: where the figures are written)


def crashing_chain(layers: int, directory: Path) -> Path:
    """A .keras model of `layers` calls: Dense layers, and an LSTM a third of the way in."""
    import keras

    inputs = keras.Input((6, 4), batch_size=1, name="sequence")
    hidden = inputs
    culprit_at = layers // 3
    for index in range(layers - 1):
        if index == culprit_at:
            hidden = keras.layers.LSTM(4, return_sequences=True, name="culprit_lstm")(hidden)
        hidden = keras.layers.Dense(4, name=f"dense_{index}")(hidden)
    path = directory / f"chain{layers}.keras"
    keras.Model(inputs, hidden, name=f"chain{layers}").save(path)
    return path


def measure(layers: int, directory: Path) -> dict:
    import numpy as np

    import quantdoctor as qd

    model = crashing_chain(layers, directory)
    data = np.random.default_rng(0).normal(size=(8, 6, 4)).astype("float32")
    result = qd.reduce(model, data, max_samples=8)
    bound = 2 * math.log2(result.layer_count) + 4
    return {"layers": result.layer_count, "culprits": [c["name"] for c in result.culprits],
            "conversions": result.conversions, "bound": round(bound, 1), "within_bound": result.conversions <= bound,
            "seconds": round(result.seconds, 1), "seconds_per_conversion": round(result.seconds / result.conversions, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 50, 200])
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        for layers in args.sizes:
            row = measure(layers, Path(directory))
            rows.append(row)
            print(f"{row['layers']:>4} layer calls: {row['conversions']} conversions (bound {row['bound']}), "
                  f"culprit {row['culprits']}, {row['seconds']} s ({row['seconds_per_conversion']} s each)")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "reduce.json").write_text(json.dumps(rows, indent=2))
    if not all(row["within_bound"] and row["culprits"] == ["culprit_lstm"] for row in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
