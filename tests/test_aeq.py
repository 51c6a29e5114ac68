"""Float .tflite models quantized with ai-edge-quantizer (AEQ): the input, the extra, and AEQ's failures,
each produced by a real AEQ run on a tiny float model exported with the real converter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from float_tflite import float_tflite, onnx_style, renamed, tensor_names, torch_style, write
from helpers import assert_finding, only, run_in_process
from models import dataset_from, int8_converter, lambda_layer, vectors, with_layer

import quantdoctor as qd
from quantdoctor.audit.tflite_model import read_tflite
from quantdoctor.report.literal import printable


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """Float .tflite files as exporters hand them over, and their calibration data."""
    folder = tmp_path_factory.mktemp("aeq")
    keras.utils.set_random_seed(0)  # the same weights in every run: the budget test's numbers depend on them
    exp = float_tflite(with_layer(keras.layers.Activation("exponential", name="my_exp")))
    files = {
        "exp": write(folder / "exp_float.tflite", exp),
        "exp_torch": write(folder / "exp_torch.tflite", renamed(exp, torch_style)),
        "exp_onnx": write(folder / "exp_onnx.tflite", renamed(exp, onnx_style)),
        "sqdiff": write(folder / "sqdiff_float.tflite", float_tflite(with_layer(
            lambda_layer(lambda x: tf.math.squared_difference(x, 0.5), "my_sqdiff")))),
        "vectors": folder / "vectors.npz",
    }
    np.savez(files["vectors"], features=vectors(24))
    return files


def test_without_aeq_a_float_tflite_is_one_line_saying_what_to_install(models):
    """ai-edge-quantizer made unimportable in a fresh interpreter, as on a machine without the extra."""
    blocker = ("import sys\n"
               "sys.modules['ai_edge_quantizer'] = None  # import ai_edge_quantizer now raises ImportError\n"
               "from quantdoctor.cli import main\n"
               "sys.argv = ['quantdoctor', 'diagnose', sys.argv[1], '--data', sys.argv[2]]\n"
               "main()\n")
    done = subprocess.run([sys.executable, "-c", blocker, str(models["exp"]), str(models["vectors"])],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "quantdoctor: error: exp_float.tflite is a float .tflite model: quantizing it needs LiteRT's quantizer "
        "(ai-edge-quantizer), which is not installed; install it with: pip install 'quantdoctor[aeq]'"]


def test_modes_without_an_aeq_recipe_are_refused_before_any_work(models):
    done = run_in_process("diagnose", str(models["exp"]), "--data", str(models["vectors"]), "--mode", "float16")
    assert done.returncode == 2
    assert done.stderr.strip() == ("quantdoctor: error: mode 'float16' has no ai-edge-quantizer recipe for a float "
                                   ".tflite model: choose one of int8, int8-strict, int16x8, dynamic, weight-only")


@pytest.mark.code("QD130")
@pytest.mark.parametrize("style, layer", [("exp", "my_exp"), ("exp_torch", "my_exp"), ("exp_onnx", "my_exp")])
def test_aeq_silently_leaves_exp_float_under_static_int8(models, style, layer):
    report = qd.diagnose(models[style], models["vectors"], mode="int8")
    assert report.settings["quantizer"]["recipe"] == "static_wi8_ai8"
    assert isinstance(report.conversion["quantizer_messages"], list)  # AEQ said nothing about the EXP it skipped
    assert not any("EXP" in message for message in report.conversion["quantizer_messages"])
    finding = only(report, "QD130")
    assert_finding(finding, "QD130", "unsupported_op", "warning", layer=layer, op="EXP")
    assert finding.message.startswith(f"EXP at layer '{layer}' stays float between DEQUANTIZE and QUANTIZE")
    # checked against the model AEQ produced: the EXP really computes in float there, between integer ops
    produced = read_tflite(report.tflite_model)
    assert [op.name for op in produced.ops if op.computes_in_float and op.name not in ("QUANTIZE", "DEQUANTIZE")] \
        == ["EXP"]
    assert finding.location.tensor in {t.name for op in produced.ops if op.name == "EXP" for t in op.outputs}
    assert report.audit["input_types"][0]["dtype"] == "int8" and report.audit["run_check"]["outcome"] == "ok"
    assert [f.code for f in report.findings if f.code in ("QD105", "QD206")] == []


def test_dynamic_and_weight_only_recipes_leave_activations_float_without_a_finding(models):
    for mode, recipe in (("dynamic", "dynamic_wi8_afp32"), ("weight-only", "weight_only_wi8_afp32")):
        report = qd.diagnose(models["exp"], mode=mode)
        assert report.settings["quantizer"]["recipe"] == recipe and report.settings["mode"] == mode
        assert report.verdict == "ok", [f.code for f in report.findings]
        produced = read_tflite(report.tflite_model)
        assert any(t.dtype == "INT8" for op in produced.ops for t in op.inputs), "weights are quantized"


@pytest.mark.code("QD131")
def test_16_bit_recipe_leaves_ops_without_a_16_bit_kernel_float(models):
    report = qd.diagnose(models["sqdiff"], models["vectors"], mode="int16x8")
    assert report.settings["quantizer"]["recipe"] == "static_wi8_ai16"
    finding = only(report, "QD131")
    assert_finding(finding, "QD131", "unsupported_op", "warning", layer="my_sqdiff", op="SQUARED_DIFFERENCE")
    assert finding.message == ("SQUARED_DIFFERENCE at layer 'my_sqdiff' stays float under the 16-bit recipe: AEQ "
                               "quantizes it only with 8-bit activations.")
    fix = json.loads(finding.fix.code)
    assert fix[0]["operation"] == "SQUARED_DIFFERENCE" and fix[0]["op_config"]["activation_tensor_config"]["num_bits"] == 8
    assert report.audit["input_types"][0]["dtype"] == "int16"
    # the same op quantizes under the 8-bit recipe: no fallback there
    assert "QD130" not in [f.code for f in qd.diagnose(models["sqdiff"], models["vectors"], mode="int8").findings]


class TwoSignatures(tf.Module):
    """A model with two signatures, as an encoder/decoder pair is exported."""

    def __init__(self):
        super().__init__()
        self.weights = tf.Variable(np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([1, 8], tf.float32, name="x")])
    def encode(self, x):
        return {"code": tf.nn.relu(tf.matmul(x, self.weights))}

    @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32, name="z")])
    def decode(self, z):
        return {"out": tf.tanh(tf.matmul(z, self.weights, transpose_b=True))}


@pytest.fixture(scope="module")
def two_signatures(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("signatures")
    module = TwoSignatures()
    tf.saved_model.save(module, str(folder / "saved"), signatures={"encode": module.encode, "decode": module.decode})
    converter = tf.lite.TFLiteConverter.from_saved_model(str(folder / "saved"), signature_keys=["encode", "decode"])
    return write(folder / "codec_float.tflite", converter.convert())


@pytest.mark.code("QD330")
def test_a_signature_without_samples_is_never_calibrated(two_signatures):
    rows = vectors(12)

    def encode_only():
        for row in rows:
            yield "encode", {"x": row[None]}

    report = qd.diagnose(two_signatures, encode_only, mode="int8")
    finding = report.root_cause
    assert_finding(finding, "QD330", "calibration", "error")
    assert finding.evidence["signature"] == "decode"
    assert finding.message == "Signature 'decode' was never calibrated: AEQ has no range for its tensor 'decode_z:0'."
    assert finding.location.tensor == "decode_z:0"
    assert finding.evidence["quantizer_message"].startswith(
        "Failed to get quantization parameters for tensor: decode_z:0. Error: TFLOperationName.FULLY_CONNECTED")
    assert report.verdict == "failed" and "QD904" not in [f.code for f in report.findings]

    def both():
        yield from encode_only()
        for row in vectors(12, features=4):
            yield "decode", {"z": row[None]}

    calibrated = qd.diagnose(two_signatures, both, mode="int8")
    assert calibrated.conversion["outcome"] == "ok" and "QD330" not in [f.code for f in calibrated.findings]


@pytest.mark.code("QD430")
def test_tensor_names_that_are_not_unique_stop_aeq(models, tmp_path):
    exp = models["exp"].read_bytes()
    names = tensor_names(exp)
    duplicated = write(tmp_path / "dup_float.tflite", renamed(exp, lambda i, n: names[1] if i == 2 else n))
    report = qd.diagnose(duplicated, models["vectors"], mode="int8")
    assert_finding(report.root_cause, "QD430", "metadata", "error", tensor=names[1])
    assert report.root_cause.message == f"Two or more tensors of the model are named '{names[1]}'."
    assert "is not unique in the model" in report.root_cause.evidence["quantizer_message"]


@pytest.mark.code("QD331")
def test_a_static_recipe_without_calibration_samples(models, tmp_path):
    report = qd.diagnose(models["exp"], mode="int8")  # no data: nothing to calibrate on
    assert_finding(report.root_cause, "QD331", "calibration", "error")
    assert report.root_cause.evidence["quantizer_message"].startswith(
        "Model quantization statistics values (QSVs) are required for the input recipe.")
    # samples shaped for no signature of the model never reach AEQ's calibrator either
    np.savez(tmp_path / "wrong.npz", features=vectors(8, features=5))
    wrong = qd.diagnose(models["exp"], tmp_path / "wrong.npz", mode="int8")
    assert wrong.root_cause.code == "QD306" and wrong.root_cause.evidence["sample_shape"] == [1, 5]
    assert "QSVs) are required" in only(wrong, "QD331").evidence["quantizer_message"]


@pytest.mark.code("QD332")
def test_a_model_without_signatures_cannot_be_calibrated_and_the_fix_code_adds_one(tmp_path):
    """A float .tflite from from_concrete_functions without its trackable object has no SignatureDef. quantdoctor
    said QD331 ("no calibration sample reached AEQ"), with samples given. AEQ's own call fails, and the catalog's
    code gives the model a signature AEQ then calibrates through."""
    @tf.function(input_signature=[tf.TensorSpec([1, 8], tf.float32, name="features")])
    def head(features):
        return tf.nn.relu(tf.matmul(features, tf.constant(np.eye(8, 3, dtype=np.float32))))

    unsigned = write(tmp_path / "model_float.tflite",
                     tf.lite.TFLiteConverter.from_concrete_functions([head.get_concrete_function()]).convert())
    np.savez(tmp_path / "data.npz", features=vectors(16))
    report = qd.diagnose(str(unsigned), str(tmp_path / "data.npz"), mode="int8")
    assert_finding(report.root_cause, "QD332", "calibration", "error")
    assert report.root_cause.evidence["quantizer_message"].startswith(
        "SignatureDef signature_key is None and model has 0 Signatures.")
    assert "QD331" not in [f.code for f in report.findings]

    done = subprocess.run([sys.executable, "-c", report.root_cause.fix.code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    signed = qd.diagnose(str(tmp_path / "model_float_signed.tflite"), str(tmp_path / "data.npz"), mode="int8")
    assert signed.conversion["outcome"] == "ok" and signed.root_cause is None, [f.code for f in signed.findings]
    assert read_tflite(signed.tflite_model).signature_of(0).key == "serving_default"


@pytest.mark.code("QD431")
def test_a_recipe_regex_that_matches_no_tensor(models, tmp_path):
    """The user's recipe keeps 'conv1' float, but the exporter named no tensor so: AEQ quantizes it all."""
    recipe = [{"regex": ".*", "operation": "*", "algorithm_key": "min_max_uniform_quantize",
               "op_config": {"activation_tensor_config": {"num_bits": 8, "symmetric": False,
                                                          "granularity": "TENSORWISE", "dtype": "INT"},
                             "weight_tensor_config": {"num_bits": 8, "symmetric": True,
                                                      "granularity": "CHANNELWISE", "dtype": "INT"},
                             "compute_precision": "INTEGER", "explicit_dequantize": False}},
              {"regex": "conv1", "operation": "*", "algorithm_key": "no_quantize"},
              {"regex": "my_exp", "operation": "*", "algorithm_key": "no_quantize"}]
    (tmp_path / "recipe.json").write_text(json.dumps(recipe))
    # In this process (the catalog-coverage plugin sees the finding made): the CLI takes the same path.
    report = qd.diagnose(str(models["exp"]), str(models["vectors"]), aeq_recipe=str(tmp_path / "recipe.json"))
    assert report.verdict != "not_converted"
    report = json.loads(json.dumps(report.to_dict()))
    (unmatched,) = [f for f in report["findings"] if f["code"] == "QD431"]
    assert unmatched["message"] == ("Recipe entry #1 (regex 'conv1', no_quantize) matches no tensor of the model: "
                                    "it changes nothing.")
    # the entry that does match keeps EXP float on purpose: no silent-fallback finding
    assert report["settings"]["quantizer"]["recipe"] == "custom"
    assert "QD130" not in [f["code"] for f in report["findings"]]


def test_compare_on_a_float_tflite_measures_each_layer_against_the_float_model(models, tmp_path):
    np.savez(tmp_path / "eval.npz", features=vectors(16, seed=1))
    result = qd.compare(str(models["exp_torch"]), str(models["vectors"]), eval_data=str(tmp_path / "eval.npz"))
    comparison = result.comparison
    assert comparison["samples"] == 16 and comparison["end_to_end"]["sqnr_db"] < 60
    by_op = {layer["op"]: layer for layer in comparison["layers"]}
    assert {"EXP", "FULLY_CONNECTED"} <= set(by_op)
    # litert-torch style tensor names map back to the module name
    assert by_op["EXP"]["layer"] == "my_exp" and by_op["EXP"]["tensor"].startswith("MyNet/torch.nn.modules")
    assert "QD130" in [f.code for f in result.findings]


class DynamicBatch(tf.Module):
    """A conv whose output is flattened to the batch size read at run time: SHAPE, STRIDED_SLICE and PACK compute
    the new shape in int32 in the float .tflite."""

    def __init__(self):
        super().__init__()
        rng = np.random.default_rng(0)
        self.kernel = tf.constant(rng.normal(size=(3, 3, 2, 4)).astype(np.float32))
        self.dense = tf.constant(rng.normal(size=(64, 3)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, 6, 6, 2], tf.float32)])
    def serve(self, image):
        features = tf.nn.relu(tf.nn.conv2d(image, self.kernel, 1, "VALID"))
        return {"scores": tf.matmul(tf.reshape(features, tf.stack([tf.shape(features)[0], 64])), self.dense)}


def test_compare_on_a_float_tflite_ranks_the_value_layers_and_keeps_layers_float_in_aeqs_terms(tmp_path):
    """The int32 shape tensors were ranked as layers: SHAPE with an "own drop" of -99 dB, PACK and STRIDED_SLICE at
    120 dB. They hold no quantization error; the ranked layers are the conv, the reshape and the matmul. And the
    keep-float fix was the converter's QuantizationDebugger code, which a float .tflite cannot use."""
    module = DynamicBatch()
    tf.saved_model.save(module, str(tmp_path / "saved"), signatures={"serving_default": module.serve})
    model = write(tmp_path / "dynamic_float.tflite",
                  tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "saved")).convert())
    assert {"SHAPE", "PACK"} <= {op.name for op in read_tflite(model.read_bytes()).all_ops}
    rows = np.random.default_rng(0).normal(size=(30, 6, 6, 2)).astype(np.float32)
    np.savez(tmp_path / "data.npz", image=rows)
    compared = qd.compare(str(model), str(tmp_path / "data.npz"), eval_data=str(tmp_path / "data.npz"))
    assert sorted(layer["op"] for layer in compared.comparison["layers"]) == ["CONV_2D", "FULLY_CONNECTED", "RESHAPE"]

    # A float .tflite is quantized by AEQ: keeping a layer float is a recipe entry, not the converter's
    # QuantizationDebugger. The entries a finding gives keep exactly that op float when AEQ runs with them.
    drift = only(compared, "QD519")
    assert "QuantizationDebug" not in json.dumps([f.to_dict() for f in compared.findings])
    entries = json.loads(drift.fix.code)
    assert entries == [{"regex": "^PartitionedCall:0;$", "operation": "*", "algorithm_key": "no_quantize"}]
    from ai_edge_quantizer import quantizer, recipe

    aeq = quantizer.Quantizer(str(model), recipe.static_wi8_ai8() + entries)
    kept = read_tflite(bytes(aeq.quantize(aeq.calibrate({"serving_default": [{"image": rows[:1]}]})).quantized_model))
    assert [op.name for op in kept.all_ops if op.computes_in_float and op.name not in ("QUANTIZE", "DEQUANTIZE")] \
        == ["SHAPE", "FULLY_CONNECTED"]


def test_fix_writes_an_aeq_recipe_that_meets_the_budget_and_reproduces_the_model(models, tmp_path):
    np.savez(tmp_path / "eval.npz", features=vectors(16, seed=1))
    recipe, output, report = tmp_path / "recipe.json", tmp_path / "fixed.tflite", tmp_path / "fix.json"
    overlay = tmp_path / "overlay.json"
    done = run_in_process("fix", str(models["exp"]), "--data", str(models["vectors"]), "--eval-data",
                          str(tmp_path / "eval.npz"), "--min-sqnr", "9.1", "--recipe", str(recipe), "--output",
                          str(output), "--json", str(report), "--model-explorer", str(overlay))
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(report.read_text())
    assert result["met_budget"] and result["verified"] and result["chosen_value"] >= 9.1 > result["int8_value"]
    entries = json.loads(recipe.read_text())
    assert entries[0]["regex"] == ".*" and entries[0]["op_config"]["activation_tensor_config"]["num_bits"] == 8
    kept = entries[1:]
    assert kept and len(kept) == len(result["kept_float"]) < 3
    assert all(e["algorithm_key"] in ("no_quantize", "min_max_uniform_quantize") for e in kept)
    assert "AEQ run afresh with it made the same model" in done.stdout
    reported = [f for f in result["report"]["findings"] if f["severity"] != "info"]  # the terminal says what JSON does
    assert reported and done.stdout.count("\n  QD") == len(reported) and "Still reported" in done.stdout
    assert all(f"  {f['code']}  {f['severity']}  " in done.stdout for f in reported)
    # the recipe JSON, run by AEQ itself in a fresh process, makes exactly the model written
    again = qd.diagnose(models["exp"], models["vectors"], aeq_recipe=recipe)
    assert again.tflite_model == output.read_bytes()
    # the Model Explorer overlay, on the written model's tensors: the ops kept float, and EXP, which AEQ leaves float
    assert f"Model Explorer overlay written to {overlay}" in done.stdout
    from quantdoctor.viz.overlay import graph_id

    results = json.loads(overlay.read_text())[graph_id(read_tflite(output.read_bytes()), 0)]["results"]
    produced = {t.name: op.name for op in read_tflite(output.read_bytes()).ops for t in op.outputs}
    floats = {name for name, r in results.items() if "float" in r["value"]}
    assert set(results) <= set(produced) and "EXP" in {produced[name] for name in floats}
    as_float = {k["tensor"] for k in result["kept_float"] if k["as"] == "float"}
    assert {name for name, r in results.items() if r["value"].endswith("kept float by fix")} == {
        name for name in produced if name.split(";")[0] in as_float}


def test_fix_on_a_float_tflite_shows_the_files_tensor_names_and_its_path_literally(models, tmp_path):
    """The tensors kept float are named by the user's file, and the path by the user: ANSI escapes, newlines and
    bidirectional marks in either are shown as escapes, never passed to the terminal."""
    hostile = "\x1b[31mred\x1b[0m\n[bold]x[/bold]\u202e"
    in_path = hostile.replace("/", "")  # a file name cannot hold the tag's "/"
    model = write(tmp_path / f"exp{in_path}.tflite",
                  renamed(models["exp"].read_bytes(), lambda _, name: name + hostile))
    np.savez(tmp_path / "eval.npz", features=vectors(16, seed=1))
    report = tmp_path / "fix.json"
    done = run_in_process("fix", str(model), "--data", str(models["vectors"]), "--eval-data",
                          str(tmp_path / "eval.npz"), "--min-sqnr", "9.1", "--recipe", str(tmp_path / "recipe.json"),
                          "--json", str(report))
    assert done.returncode == 0, done.stdout + done.stderr
    kept = json.loads(report.read_text())["kept_float"]
    assert kept and all(k["tensor"].endswith(hostile) for k in kept)  # the JSON keeps them exactly
    assert not {"\x1b", "\u202e"} & set(done.stdout)
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"FIXED  {printable(model)}  ")
    assert [line for line in lines if line.startswith("  kept ")] == [
        f"  kept {k['as']}: {printable(k['tensor'])}" for k in kept]


def test_fix_on_a_float_tflite_refuses_outputs_it_never_writes(models, tmp_path):
    done = run_in_process("fix", str(models["exp"]), "--data", str(models["vectors"]), "--eval-data",
                          str(models["vectors"]), "--min-sqnr", "9", "--recipe", str(tmp_path / "recipe.json"),
                          "--script", str(tmp_path / "fix.py"), "--html", str(tmp_path / "fix.html"))
    assert done.returncode == 2 and not (tmp_path / "recipe.json").exists()
    assert done.stderr == ("quantdoctor: error: --script and --html apply to Keras and SavedModel models: fix on a "
                           "float .tflite writes --recipe, --output, --json and --model-explorer\n")


def test_fix_on_a_float_tflite_needs_a_budget_and_a_recipe_path(models, tmp_path):
    done = run_in_process("fix", str(models["exp"]), "--data", str(models["vectors"]))
    assert done.returncode == 2
    assert done.stderr.strip() == ("quantdoctor: error: fix on a float .tflite searches an ai-edge-quantizer recipe "
                                   "for an accuracy budget: give --max-drop or --min-sqnr, --eval-data, and --recipe "
                                   "recipe.json")


def test_a_quantized_tflite_or_a_malformed_recipe_is_refused_before_any_work(models, tmp_path):
    converter = int8_converter(with_layer(keras.layers.ReLU(name="relu")), dataset_from(vectors(8)))
    quantized = write(tmp_path / "int8.tflite", converter.convert())
    with pytest.raises(qd.UsageError) as refused:
        qd.diagnose(quantized, mode="int8")
    assert str(refused.value).startswith(f"{quantized} is already quantized (tensor ")
    assert str(refused.value).endswith(f"give the float model, or check this one with `quantdoctor audit {quantized}`")
    (tmp_path / "recipe.json").write_text(json.dumps([{"regex": ".*", "operation": "*"}]))
    done = run_in_process("diagnose", str(models["exp"]), "--aeq-recipe", str(tmp_path / "recipe.json"))
    assert done.returncode == 2
    assert done.stderr.strip() == (f"quantdoctor: error: AEQ recipe {tmp_path / 'recipe.json'}: entry #0 needs the "
                                   "strings regex, operation, algorithm_key")


@pytest.mark.code("QD430")
def test_fix_on_a_model_aeq_refuses_writes_no_recipe_and_says_why(models, tmp_path):
    exp = models["exp"].read_bytes()
    names = tensor_names(exp)
    duplicated = write(tmp_path / "dup_float.tflite", renamed(exp, lambda i, n: names[1] if i == 2 else n))
    np.savez(tmp_path / "eval.npz", features=vectors(8, seed=1))
    done = run_in_process("fix", str(duplicated), "--data", str(models["vectors"]), "--eval-data",
                          str(tmp_path / "eval.npz"), "--min-sqnr", "9", "--recipe", str(tmp_path / "recipe.json"))
    assert done.returncode == 1 and not (tmp_path / "recipe.json").exists()
    assert done.stdout.splitlines()[:2] == [
        f"NOT FIXED  {duplicated}  ai-edge-quantizer fails with its own recipe; no recipe written",
        f"  QD430 Two tensors of the model share a name: AEQ refuses the model: Two or more tensors of the model are "
        f"named '{names[1]}'."]


@pytest.mark.parametrize("entry, says", [
    ({"regex": "([", "operation": "*", "algorithm_key": "no_quantize"},
     "entry #0's regex '([' is not a regular expression (unterminated character set at position 1)"),
    ({"regex": ".*", "operation": "*", "algorithm_key": "min_max_uniform_quantize", "op_config": {}},
     "entry #0 quantizes (min_max_uniform_quantize), so its op_config needs a weight_tensor_config object"),
])
def test_a_recipe_entry_aeq_cannot_read_is_refused_with_one_line_before_any_work(models, tmp_path, entry, says):
    """An invalid regex was an internal error (exit 3); an op_config without weight_tensor_config was AEQ's
    KeyError, reported as QD305 (sample dict keys) after a conversion."""
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps([entry]))
    done = run_in_process("diagnose", str(models["exp"]), "--data", str(models["vectors"]), "--aeq-recipe", str(recipe))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"quantdoctor: error: AEQ recipe {recipe}: {says}"]


@pytest.mark.parametrize("hostile", ["a\"b'c]d)e\n\x1b[31m$^.*+?{}|\\(", "L" * 12000], ids=["metacharacters", "long"])
def test_a_keep_float_entry_keeps_exactly_its_op_float_whatever_the_tensor_is_named(models, hostile):
    """AEQ cuts an op's scope (its output names, each followed by ';') to 10,000 characters: the entry for a tensor
    named longer than that matched no op, and the fix kept nothing float. A name holding ';' after another name
    (a second dense named 'x;' + the first's name) was kept float by the first's entry too."""
    from ai_edge_quantizer import quantizer, recipe

    from quantdoctor.aeq.findings import aeq_scopes
    from quantdoctor.catalog.aeq import no_quantize_entries
    from quantdoctor.tf_private import aeq_model_ops

    exp = models["exp"].read_bytes()
    dense = [op.outputs[0].name for op in read_tflite(exp).ops if op.name == "FULLY_CONNECTED"]
    names = {dense[0]: hostile, dense[1]: f"x;{hostile}"}  # the second holds the first and AEQ's separator
    model = renamed(exp, lambda _, name: names.get(name, name))
    scopes = aeq_scopes(read_tflite(bytes(model)))
    assert sorted(scopes.values()) == sorted(op.scope for op in aeq_model_ops(bytes(model)))  # AEQ's own scopes
    aeq = quantizer.Quantizer(model, recipe.static_wi8_ai8() + json.loads(no_quantize_entries([scopes[hostile]])))
    samples = [{"features": row[None]} for row in vectors(4)]
    quantized = read_tflite(bytes(aeq.quantize(aeq.calibrate({"serving_default": samples})).quantized_model))
    in_float = [(op.name, op.outputs[0].name) for op in quantized.all_ops
                if op.computes_in_float and op.name not in ("QUANTIZE", "DEQUANTIZE")]
    assert [name for name, _ in in_float] == ["FULLY_CONNECTED", "EXP"]  # EXP: AEQ has no integer kernel for it
    assert in_float[0][1] == hostile
