"""The report: JSON contract, ordering, verdicts, rendering; MLIR and location parsing."""

from __future__ import annotations

import json
from dataclasses import replace
from importlib import metadata

from quantdoctor import catalog
from quantdoctor.catalog.locations import layer_for_location, layer_for_path
from quantdoctor.diagnosis.mlir import parse_diagnostics
from quantdoctor.report.model import Location, Report, rank_findings

# Two diagnostics as TF 2.21 prints them (shortened locations, same shape).
MLIR_TEXT = '''<unknown>:0: error: loc(callsite(fused["Mul:", "tiny_1/my_f64_1/mul@__inference_function_592"] at callsite(fused["StatefulPartitionedCall:", "StatefulPartitionedCall@__inference_signature_wrapper_619"] at fused["StatefulPartitionedCall:", "StatefulPartitionedCall_1"]))): 'tf.Mul' op is neither a custom op nor a flex op
<unknown>:0: note: loc(callsite(fused["Mul:", "tiny_1/my_f64_1/mul@__inference_function_592"] at callsite(fused["StatefulPartitionedCall:", "StatefulPartitionedCall@__inference_signature_wrapper_619"] at fused["StatefulPartitionedCall:", "StatefulPartitionedCall_1"]))): see current operation: %7 = "tf.Mul"(%6, %2) {device = ""} : (tensor<?x8xf64>, tensor<f64>) -> tensor<?x8xf64>
<unknown>:0: note: loc(callsite(fused["Mul:", "tiny_1/my_f64_1/mul@__inference_function_592"] at callsite(fused["StatefulPartitionedCall:", "StatefulPartitionedCall@__inference_signature_wrapper_619"] at fused["StatefulPartitionedCall:", "StatefulPartitionedCall_1"]))): Error code: ERROR_NEEDS_FLEX_OPS
<unknown>:0: error: failed while converting: 'main':'''


def test_mlir_diagnostics_merge_notes_into_their_error():
    first, second = parse_diagnostics(MLIR_TEXT + "\n" + MLIR_TEXT)  # repeated text is reported once
    assert first.op == "tf.Mul" and first.error_code == "ERROR_NEEDS_FLEX_OPS"
    assert first.types == "(tensor<?x8xf64>, tensor<f64>) -> tensor<?x8xf64>"
    assert layer_for_location(first.location, ["dense", "my_f64", "head"]) == "my_f64"
    assert second.message.startswith("failed while converting")


def test_layer_names_with_trace_suffixes_and_nesting():
    layers = ["backbone", "conv", "dense_1", "lstm"]
    assert layer_for_path("functional_1/lstm_1/while/body/MatMul", layers) == "lstm"
    assert layer_for_path("functional_1/dense_1_1/MatMul", layers) == "dense_1"
    assert layer_for_path("model_1/backbone_1/conv_1/Conv2D", layers) == "conv"
    assert layer_for_path("StatefulPartitionedCall_1", layers) is None


def finding(code: str, **location: str):
    return catalog.get(code).finding("message", location=Location(**location))


def test_root_causes_rank_before_symptoms_and_duplicates_collapse():
    ranked = rank_findings([finding("QD308"), finding("QD901"), finding("QD201", input="x"),
                            finding("QD201", input="x"), finding("QD309", input="x")])
    assert [f.code for f in ranked] == ["QD201", "QD901", "QD309", "QD308"]


def report_with(findings, outcome="ok") -> Report:
    return Report(model={"source": "m.keras", "format": "keras", "inputs": []}, settings={"mode": "int8"},
                  findings=rank_findings(findings), conversion={"attempted": True, "outcome": outcome, "seconds": 1.0})


def test_verdicts():
    assert report_with([]).verdict == "ok"
    assert report_with([finding("QD308")]).verdict == "converted_with_problems"
    assert report_with([finding("QD201")], outcome="error").verdict == "failed"


def test_json_contract_fields():
    data = json.loads(json.dumps(report_with([finding("QD201", input="image")], outcome="error").to_dict()))
    assert set(data) == {"schema_version", "tool", "environment", "model", "settings", "verdict", "findings", "finding_groups",
                         "conversion", "audit", "preflight"}
    assert data["tool"]["name"] == "quantdoctor"
    tensorflow = data["environment"]["tensorflow"]
    assert tensorflow["version"] == metadata.version(tensorflow["distribution"])
    entry = data["findings"][0]
    assert set(entry) == {"code", "category", "severity", "title", "message", "location", "evidence", "fix",
                          "verification"}
    assert entry["verification"] == {"verified_on": ["2.18", "2.21"], "verified": True, "note": None}
    assert set(entry["location"]) == {"layer", "op", "tensor", "input", "setting"}
    assert set(entry["fix"]) == {"summary", "code", "automatic"}
    assert (entry["code"], entry["category"], entry["severity"]) == ("QD201", "dtype_mismatch", "error")


def test_plain_rendering_puts_the_root_cause_first():
    text = str(report_with([finding("QD308"), finding("QD201", input="image")], outcome="error"))
    assert text.index("Root cause") < text.index("QD201") < text.index("Also found") < text.index("QD308")
    assert ".astype(np.float32)" in text


def test_every_check_is_documented_and_in_its_range():
    for code, check in catalog.CHECKS.items():
        assert code == check.code and len(code) == 5 and check.severity in ("error", "warning", "info")
        assert check.category == catalog.check.CATEGORIES[code[2]]
        assert all([check.title, check.detects, check.why, check.example, check.fix])
    assert len(catalog.CHECKS) >= 25


def test_a_prediction_the_conversion_contradicted_is_explained_under_the_headline():
    report = replace(report_with([finding("QD308")]),
                     preflight={"verdict": "will_fail", "ops": [], "actual": "fully_integer"})
    lines = str(report).splitlines()
    assert "preflight: will fail" in lines[0]
    assert lines[1].strip().startswith("The preflight judged the ops one by one from its table and predicted a "
                                       "failure; the converter got through")
    agreed = replace(report, preflight={**report.preflight, "verdict": "fully_integer"})
    assert "The preflight judged" not in str(agreed)
