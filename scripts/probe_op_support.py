"""Regenerate src/quantdoctor/preflight/op_support.json by probing the installed TFLite converter.

For every TensorFlow op type in `quantdoctor.devtools.op_probe.PROBES`, a one-op graph is
converted to full INT8 (Optimize.DEFAULT, TFLITE_BUILTINS, a representative dataset) and the
outcome recorded: a builtin kernel (and whether it runs in int8), a flex op, a custom op, or an
error. It takes well under a minute on two cores.

    python scripts/probe_op_support.py [--out PATH]

For a new TensorFlow release: bump the tensorflow-cpu (and ai-edge-litert) pins in
pyproject.toml, reinstall into the virtualenv, run this script, and review the diff of
op_support.json (`git diff --word-diff`): each changed entry is a change in the converter.
Entries of kind "error" mean a probe no longer traces or converts; fix the probe in
op_probe.py rather than commit them. tests/test_op_support.py fails until the table matches the
installed converter, and when its "tensorflow" version is not the installed one.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src" / "quantdoctor" / "preflight" / "op_support.json"


def main(argv: list[str] | None = None) -> int:
    """Probe every op, write the JSON table and print how many ops fell in each kernel class (and which erred)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the table (default: %(default)s)")
    args = parser.parse_args(argv)

    import tensorflow as tf

    from quantdoctor.devtools.op_probe import probe_all

    ops = probe_all()
    table = {
        "tensorflow": tf.__version__,
        "generated_by": "scripts/probe_op_support.py",
        "mode": "int8 (TFLITE_BUILTINS + representative dataset)",
        "ops": dict(sorted(ops.items())),
    }
    args.out.write_text(json.dumps(table, indent=2) + "\n")
    for kernel, names in sorted(_by_class(ops).items()):
        listed = f"  {' '.join(names)}" if kernel == "error" else ""
        print(f"{kernel:>13}: {len(names):3d}{listed}")
    print(f"wrote {len(ops)} ops to {args.out}")
    return 0


def _by_class(ops: dict[str, dict]) -> dict[str, list[str]]:
    """Op names by kernel class, builtin split into int8 and float."""
    classes = collections.defaultdict(list)
    for name, result in sorted(ops.items()):
        kernel = result["kernel"]
        if kernel == "builtin":
            kernel = "builtin-int8" if result["int8"] else "builtin-float"
        classes[kernel].append(name)
    return classes


if __name__ == "__main__":
    sys.exit(main())
