"""Typed messages between quantdoctor's processes (`isolation.protocol.Message`): what one side writes,
the other reads back as the same record, and a field the reader does not know is a bug of quantdoctor's,
never data silently dropped."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from quantdoctor.audit.vela_worker import VelaRequest, VelaResponse
from quantdoctor.budget.aeq_worker import BudgetRequest, BudgetResponse
from quantdoctor.compare.float_probe import ProbeRequest as VariantsRequest
from quantdoctor.errors import InternalError
from quantdoctor.fix.verify import RunRequest, RunResponse
from quantdoctor.isolation.protocol import Message, read_message, write_message
from quantdoctor.isolation.runner import run_isolated
from quantdoctor.runtime.probe import ProbeRequest


@dataclass
class Reply(Message):
    stage: str
    rows: list[dict[str, int]] = field(default_factory=list)
    seconds: float | None = None


def test_a_message_reads_back_as_the_same_record(tmp_path):
    sent = Reply(stage="done", rows=[{"a": 1}], seconds=0.5)
    write_message(tmp_path / "reply.json", sent)
    assert read_message(tmp_path / "reply.json", Reply) == sent
    assert not list(tmp_path.glob("*.partial"))


def test_a_field_the_reader_does_not_know_is_a_bug_not_missing_data():
    with pytest.raises(InternalError, match="Reply has no field renamed_stage"):
        Reply.from_json({"stage": "done", "renamed_stage": "x"})
    with pytest.raises(TypeError):  # a field the writer left out that has no default
        Reply.from_json({"rows": []})


def test_the_runner_s_failure_keys_are_not_the_worker_s_fields():
    reply = Reply.from_json({"stage": "loading", "internal_error": "Traceback ...", "tensorflow_changed": "x"})
    assert reply == Reply(stage="loading")


@pytest.mark.parametrize("message", [
    VelaRequest(model="m.tflite", accelerator="ethos-u55-128", output_dir="out", response="r.json"),
    VelaResponse(vela_version="4.4", accelerator="ethos-u55-128", stage="done", outcome="ok",
                 per_layer=[{"Name": "x"}], summary={"cycles": "1"}, compiled_model="c.tflite",
                 reasons={"t": {"op": "EXP", "rule": "r", "detail": "d"}}),
    BudgetRequest(model="m.tflite", recipe="static_wi8_ai8", data="d.npz", eval_data="e.npz", response="r.json",
                  output="o.tflite", max_drop=0.01),
    BudgetResponse(stage="done", kept=[{"scope": "a;"}], entries=[{"regex": ".*"}], evaluations=3),
    RunRequest(model="m.tflite", data="d.npz", response="r.json"),
    RunResponse(outcome="ok", samples=2, outputs=[{"name": "out", "shape": [1, 10], "finite": True}]),
    VariantsRequest(model="m.tflite", data="d.npz", variants=[{"reverse_channels": True}], response="r.json",
                    outputs="o.npz"),
    ProbeRequest(model="m.tflite", sample="s.npz", response="r.json", invoke=True),
], ids=lambda message: type(message).__qualname__)
def test_every_typed_worker_message_survives_the_trip_through_json(message, tmp_path):
    write_message(tmp_path / "message.json", message)
    assert read_message(tmp_path / "message.json", type(message)) == message


def test_a_worker_reads_its_request_as_its_own_type(tmp_path):
    """The runner writes the typed request, `serve` hands the worker that type: a real probe worker run on
    a model file that is no model reports the interpreter's refusal, not a KeyError on a dict."""
    (tmp_path / "model.tflite").write_bytes(b"not a flatbuffer")
    import numpy as np

    np.savez(tmp_path / "sample.npz", x=np.zeros((1, 4), np.float32))
    request = ProbeRequest(model=str(tmp_path / "model.tflite"), sample=str(tmp_path / "sample.npz"),
                           response=str(tmp_path / "response.json"), invoke=False)
    run = run_isolated("quantdoctor.runtime.probe", request, tmp_path, timeout=120)
    assert run.outcome == "done", run.stderr[-2000:]
    assert run.response["outcome"] == "error" and "internal_error" not in run.response


def test_python_imports_the_worker_modules_without_their_optional_extras():
    """Callers import the message types from the worker modules: those must not import Vela or AEQ at
    module level (they are optional extras)."""
    code = ("import sys; import quantdoctor.audit.vela_worker, quantdoctor.budget.aeq_worker; "
            "print(sorted(m for m in ('ethosu', 'ai_edge_quantizer') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=Path(__file__).parent)
    assert result.stdout.strip() == "[]"
