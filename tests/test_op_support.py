"""The committed op-support table says what the pinned converter does, op by op, and nothing else."""

from __future__ import annotations

import json
from importlib import resources

import pytest
import tensorflow as tf

from quantdoctor.devtools import op_probe

REGENERATE = "regenerate it: python scripts/probe_op_support.py"


@pytest.fixture(scope="module")
def table() -> dict:
    return json.loads(resources.files("quantdoctor.preflight").joinpath("op_support.json").read_text())


def test_table_was_generated_with_the_installed_tensorflow(table):
    assert table["tensorflow"] == tf.__version__, REGENERATE


def test_table_covers_exactly_the_probes(table):
    assert sorted(table["ops"]) == sorted(op_probe.PROBES), REGENERATE


@pytest.mark.slow
def test_table_matches_the_live_converter(table):
    """Re-probe every op (about 20 s on two cores): the table can never drift from the converter."""
    live = op_probe.probe_all()
    drift = {op: {"committed": table["ops"].get(op), "live": live.get(op)}
             for op in sorted(set(table["ops"]) | set(live)) if table["ops"].get(op) != live.get(op)}
    assert not drift, f"{len(drift)} ops differ; {REGENERATE}\n{json.dumps(drift, indent=1)}"


def test_no_probe_errs(table):
    erring = [op for op, result in table["ops"].items() if result["kernel"] == "error"]
    assert not erring, f"fix these probes in op_probe.py: {erring}"
