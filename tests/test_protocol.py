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
from quantdoctor.compare.joint_worker import ComparisonPhase, ComparisonResponse, JointRequest
from quantdoctor.compare.worker import CompareRequest, CompareResponse
from quantdoctor.convert.aeq_worker import AeqRequest, AeqResponse
from quantdoctor.convert.worker import ConversionRequest, ConversionResponse, ModelDescription, RunCheckFiles
from quantdoctor.errors import InternalError
from quantdoctor.fix.verify import RunRequest, RunResponse
from quantdoctor.intake import model as model_intake
from quantdoctor.intake.recipe import Recipe
from quantdoctor.isolation.protocol import Message, StagedResponse, StateFile, read_json, read_message, write_message
from quantdoctor.isolation.runner import response_path, run_isolated, run_worker
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


CONVERSION_REQUEST = ConversionRequest(
    model={"loader": "keras_file", "path": "m.keras", "edits": []}, recipe={"mode": "int8"}, data="c.npz",
    response="r.json", output="m.tflite", eval_shapes=[[[1, 8]]], float_twin_output="twin.tflite",
    model_identity="files", run_check=RunCheckFiles(float_model="float.tflite", state="state.json"))
CONVERSION_RESPONSE = ConversionResponse(
    stage="done", outcome="ok", seconds=1.5, model_bytes=1024, float_twin="ok", model_digest="ab",
    model=ModelDescription(inputs=[{"name": "x", "shape": [None, 8], "dtype": "float32"}],
                           layers=[{"name": "dense", "class": "Dense"}], layer_scopes={"dense": "model/dense"},
                           output_layers=["dense"]),
    preflight={"nodes": []}, run_check={"stage": "done", "outcome": "ok"}, after_conversion_seconds=0.25)
PHASE = ComparisonPhase(data="e.npz", response="c.json", outputs="o.npz", progress="p.json", probed="v.npz",
                        probe=True, labels="l.npy")


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
    CONVERSION_REQUEST,
    CONVERSION_RESPONSE,
    AeqRequest(model={"loader": "aeq", "path": "m.tflite"}, recipe={"mode": "int8"}, data="d.npz",
               aeq_recipe=[{"regex": ".*", "operation": "*", "algorithm_key": "min_max_uniform_quantize"}]),
    AeqResponse(stage="done", outcome="error", error_message="Missing QSVs", model=ModelDescription(),
                aeq_recipe=[{"regex": ".*"}], aeq_skipped=[{"op": "FULLY_CONNECTED"}], quantizer_messages=["w"]),
    CompareRequest(float_model="f.tflite", quant_model="q.tflite", data="e.npz", response="r.json",
                   progress="p.json", outputs="o.npz"),
    CompareResponse(samples=4, lanes=2, analysis_seconds=0.1, tensors=[{"tensor": "a", "sqnr_db": 30.0}],
                    outputs=[{"tensor": "out"}], ops=[{"tensor": "a", "inputs": []}]),
    CompareResponse(model_error="RuntimeError: failed to prepare"),
    JointRequest.from_json({**CONVERSION_REQUEST.to_json(), "after_conversion": PHASE.to_json()}),
    ComparisonResponse(samples=4, lanes=1, seconds=0.5, probed_variants=[{"reverse_channels": True}]),
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


@pytest.mark.parametrize(("kind", "written"), [
    (ConversionRequest, {**CONVERSION_REQUEST.to_json(), "max_samples": 8}),
    (ConversionResponse, {"stage": "done", "outcome": "ok", "worker_seconds": 2.0}),
    (ConversionResponse, {"stage": "converting", "model": {"inputs": [], "layer_scope": {}}}),  # nested record
    (AeqRequest, {"model": {}, "recipe": {}, "aeq_recipe": "static_wi8_ai8", "aeq": {"recipe": "x"}}),
    (AeqResponse, {"stage": "done", "aeq_entries": []}),
    (CompareRequest, {**CompareRequest("f", "q", "d", "r", "p", "o").to_json(), "labels": "l.npy"}),
    (CompareResponse, {"samples": 3, "probed_variants": []}),  # the joint worker's field, not the compare worker's
    (JointRequest, {**CONVERSION_REQUEST.to_json(), "after_conversion": {**PHASE.to_json(), "probe_labels": "l"}}),
    (ComparisonResponse, {"samples": 3, "secs": 1.0}),
], ids=lambda value: value.__qualname__ if isinstance(value, type) else "")
def test_a_field_of_the_four_workers_messages_the_reader_does_not_know_is_a_bug(kind, written):
    with pytest.raises(InternalError, match="has no field"):
        kind.from_json(written)


def test_a_staged_response_holds_only_what_the_worker_got_to():
    """A response rewritten at each stage leaves out what is not known yet (None by default), and reads back
    the same: a worker that died converting is seen with the stage it reached and no outcome."""
    loading = ConversionResponse(stage="converting", model=ModelDescription(inputs=[{"name": "x"}]))
    assert "outcome" not in loading.to_json() and "seconds" not in loading.to_json()
    assert ConversionResponse.from_json(loading.to_json()) == loading
    assert StagedResponse.from_json({}).stage == "starting"  # no response written at all


def test_the_joint_request_hands_each_conversion_worker_its_own_request():
    joint = JointRequest.from_json({**CONVERSION_REQUEST.to_json(), "after_conversion": PHASE.to_json()})
    assert joint.conversion() == CONVERSION_REQUEST and joint.after_conversion == PHASE
    aeq = AeqRequest(model={"loader": "aeq", "path": "m.tflite"}, recipe={}, aeq_recipe="static_wi8_ai8")
    joint = JointRequest.from_json({**aeq.to_json(), "after_conversion": PHASE.to_json()})
    assert joint.conversion() == aeq


def test_the_conversion_worker_answers_a_typed_request_with_a_typed_response(tmp_path):
    """A real conversion of a tiny SavedModel: the worker serves its `ConversionRequest`, and the parent reads
    what it wrote as a `ConversionResponse`, the model it loaded as a `ModelDescription`, and the run check."""
    import keras
    from models import with_layer

    keras.utils.set_random_seed(0)
    with_layer(keras.layers.ReLU(name="relu")).export(str(tmp_path / "exported"), verbose=False)
    source = model_intake.from_path(tmp_path / "exported")
    workdir = tmp_path / "work"
    workdir.mkdir()
    request = ConversionRequest(model=source.request(), recipe=Recipe.for_mode("float").to_dict(),
                                run_check=RunCheckFiles(float_model=str(workdir / "float.tflite"),
                                                        state=str(workdir / "run_check.json")))
    run = run_worker(request, workdir, response_type=ConversionResponse)
    response = run.response
    assert run.outcome == "ok" and response.stage == "done" and response.error_message is None
    assert [spec["name"] for spec in response.model.inputs] == ["features"]
    assert "serving_default" in response.model.signature_keys and response.model.layers == []
    assert response.model_bytes == run.tflite_path.stat().st_size
    assert response.preflight["nodes"] and response.run_check["stage"] == "done"
    assert read_message(response_path(workdir), ConversionResponse) == response


def test_a_state_file_reads_as_its_last_state_whatever_came_before(tmp_path):
    """Rewritten in place: a shorter state after a longer one, and one too long for a write in place."""
    path = tmp_path / "state.json"
    states = StateFile(path)
    states.write({"stage": "allocating", "row": 10, "sample": "calibration"})
    states.write({"stage": "invoking", "row": 1})
    assert read_json(path) == {"stage": "invoking", "row": 1}
    states.write({"stage": "done", "error": "x" * 10_000})
    states.write({"stage": "done"})
    states.close()
    assert read_json(path) == {"stage": "done"}
