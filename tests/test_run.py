"""`quantdoctor run`: real user scripts, run through the CLI in a subprocess, making real mistakes.

The inference scripts import LiteRT only (no TensorFlow), so each runs in about a second; the
conversion scripts start TensorFlow and quantdoctor's isolated converter.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import assert_finding
from models import dataset_from, image_model, int8_converter, smooth_images

from quantdoctor.report.model import Finding, Fix, Location

QUANTDOCTOR = str(Path(sys.executable).with_name("quantdoctor"))
PYTHON = sys.executable


def quantdoctor_run(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([QUANTDOCTOR, "run", *args], capture_output=True, text=True, timeout=600, cwd=folder)


def write_script(folder: Path, name: str, *parts: str) -> Path:
    """A script made of `parts`, each dedented on its own."""
    path = folder / name
    path.write_text("".join(textwrap.dedent(part) for part in parts).lstrip())
    return path


def line_of(script: Path, marker: str) -> int:
    """The 1-based line of `script` that carries the comment `# <marker>`."""
    lines = script.read_text().splitlines()
    return next(number for number, line in enumerate(lines, 1) if line.rstrip().endswith(f"# {marker}"))


def findings_in(document: dict, code: str) -> list[Finding]:
    """The run's script findings with `code`, rebuilt from the JSON."""
    return [Finding(code=f["code"], category=f["category"], severity=f["severity"], title=f["title"],
                    message=f["message"], fix=Fix(**f["fix"]), location=Location(**f["location"]),
                    evidence=f["evidence"]) for f in document["findings"] if f["code"] == code]


@pytest.fixture(scope="module")
def int8_model(tmp_path_factory) -> Path:
    """A tiny full-integer model with int8 input and output, calibrated on images in [0, 1]."""
    folder = tmp_path_factory.mktemp("inference")
    converter = int8_converter(image_model(), dataset_from(smooth_images(100)), int8_io=True)
    (folder / "model.tflite").write_bytes(converter.convert())
    return folder / "model.tflite"


INFERENCE_PRELUDE = """
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path="model.tflite")
    interpreter.allocate_tensors()
    input_details = interpreter.get_input_details()[0]
    output_details = interpreter.get_output_details()[0]
    image = np.linspace(0.0, 1.0, 16 * 16 * 3, dtype=np.float32).reshape(1, 16, 16, 3)
"""


def run_inference(folder: Path, model: Path, body: str) -> tuple[subprocess.CompletedProcess, dict, Path]:
    (folder / "model.tflite").write_bytes(model.read_bytes())
    script = write_script(folder, "infer.py", INFERENCE_PRELUDE, body)
    result = quantdoctor_run(folder, "--json", "run.json", "--", PYTHON, "infer.py")
    assert "internal error" not in result.stderr, result.stderr
    return result, json.loads((folder / "run.json").read_text()), script


def test_floats_fed_to_an_integer_input_are_explained_before_litert_refuses_them(int8_model, tmp_path):
    result, document, script = run_inference(tmp_path, int8_model, """
        try:
            interpreter.set_tensor(input_details["index"], image)  # FLOATS
        except ValueError as error:
            print("LiteRT:", error)
    """)
    assert result.returncode == 0
    assert result.stdout.startswith("LiteRT: Cannot set tensor: Got value of type FLOAT32 but expected type INT8")
    [finding] = findings_in(document, "QD213")
    assert_finding(finding, "QD213", "dtype_mismatch", "error", input="serving_default_image:0")
    assert finding.evidence["source"]["where"] == f"infer.py:{line_of(script, 'FLOATS')}"
    assert (finding.evidence["scale"], finding.evidence["zero_point"]) == (pytest.approx(1 / 255), -128)
    assert "floats in [0, 1] map to [-128, 127]" in finding.message
    assert "astype(np.int8)" in finding.fix.code and "-128, 127" in finding.fix.code
    assert "QD213 error at infer.py:" in result.stderr


def test_normalised_floats_cast_with_astype_are_caught_on_invocation(int8_model, tmp_path):
    result, document, script = run_inference(tmp_path, int8_model, """
        interpreter.set_tensor(input_details["index"], np.zeros((1, 16, 16, 3), np.int8))  # warm-up: constant
        interpreter.invoke()
        for _ in range(5):
            interpreter.set_tensor(input_details["index"], np.round(image).astype(np.int8))  # CAST
            interpreter.invoke()
        print("done")
    """)
    assert (result.returncode, result.stdout) == (0, "done\n")
    [finding] = findings_in(document, "QD214")
    assert_finding(finding, "QD214", "dtype_mismatch", "error", input="serving_default_image:0")
    assert finding.evidence["source"]["where"] == f"infer.py:{line_of(script, 'CAST')}"
    assert finding.evidence["fed_range"] == [0, 1]
    assert finding.evidence["calibrated_range"] == [pytest.approx(0.0), pytest.approx(1.0)]


def test_a_threshold_on_raw_int8_outputs_is_flagged_and_argmax_and_dequantized_use_are_not(int8_model, tmp_path):
    result, document, script = run_inference(tmp_path, int8_model, """
        scale, zero_point = input_details["quantization"]
        quantized = np.clip(np.round(image / scale + zero_point), -128, 127).astype(np.int8)
        interpreter.set_tensor(input_details["index"], quantized)
        interpreter.invoke()
        scores = interpreter.get_tensor(output_details["index"])
        print(repr(scores.dtype), int(np.argmax(scores)) in (0, 1))
        positive = scores[0][1] > 0.5  # THRESHOLD
        out_scale, out_zero_point = output_details["quantization"]
        probabilities = (scores.astype(np.float32) - out_zero_point) * out_scale
        print(bool(positive) in (True, False), (probabilities > 0.5).shape)
    """)
    assert (result.returncode, result.stdout) == (0, "dtype('int8') True\nTrue (1, 2)\n")
    assert [f["code"] for f in document["findings"]] == ["QD215"]
    [finding] = findings_in(document, "QD215")
    assert_finding(finding, "QD215", "dtype_mismatch", "error", tensor="StatefulPartitionedCall_1:0")
    assert finding.evidence["source"]["where"] == f"infer.py:{line_of(script, 'THRESHOLD')}"
    assert finding.evidence["operation"] == "compares" and finding.evidence["operand"] == "0.5"
    assert "(output.astype(np.float32) - zero_point) * scale" in finding.fix.code


def test_an_input_resized_without_allocate_tensors_is_named(int8_model, tmp_path):
    result, document, script = run_inference(tmp_path, int8_model, """
        batch = np.zeros((4, 16, 16, 3), np.int8)
        interpreter.resize_tensor_input(input_details["index"], batch.shape)
        try:
            interpreter.set_tensor(input_details["index"], batch)  # UNALLOCATED
        except ValueError as error:
            print("LiteRT:", error)
    """)
    assert result.stdout == "LiteRT: Cannot set tensor: Tensor is unallocated. Try calling allocate_tensors() first\n"
    [finding] = findings_in(document, "QD516")
    assert_finding(finding, "QD516", "accuracy", "error", input="serving_default_image:0")
    assert finding.evidence["source"]["where"] == f"infer.py:{line_of(script, 'UNALLOCATED')}"


def test_a_signature_runner_fed_keras_default_names_lists_the_real_keys(int8_model, tmp_path):
    result, document, script = run_inference(tmp_path, int8_model, """
        runner = interpreter.get_signature_runner()
        try:
            runner(input_1=np.zeros((1, 16, 16, 3), np.int8))  # WRONG KEYS
        except ValueError as error:
            print("LiteRT:", error)
    """)
    assert result.stdout == "LiteRT: Invalid Input name (input_1) for SignatureDef\n"
    [finding] = findings_in(document, "QD517")
    assert_finding(finding, "QD517", "accuracy", "error", input="input_1, image")
    assert finding.evidence["unknown_keys"] == ["input_1"] and finding.evidence["missing_keys"] == ["image"]
    assert "'image' (tensor 'serving_default_image:0')" in finding.message
    assert finding.fix.code == "outputs = runner(image=...)"
    assert finding.evidence["source"]["where"] == f"infer.py:{line_of(script, 'WRONG KEYS')}"


def test_correct_inference_through_tf_lite_interpreter_reports_nothing(int8_model, tmp_path):
    (tmp_path / "model.tflite").write_bytes(int8_model.read_bytes())
    write_script(tmp_path, "infer.py", """
        import numpy as np
        import tensorflow as tf

        interpreter = tf.lite.Interpreter(model_path="model.tflite")
        interpreter.allocate_tensors()
        input_details, output_details = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
        scale, zero_point = input_details["quantization"]
        for seed in range(4):
            image = np.random.default_rng(seed).random((1, 16, 16, 3), dtype=np.float32)
            interpreter.set_tensor(input_details["index"], np.round(image / scale + zero_point).astype(np.int8))
            interpreter.invoke()
            scores = interpreter.get_tensor(output_details["index"])
            out_scale, out_zero_point = output_details["quantization"]
            print(bool(((scores.astype(np.float32) - out_zero_point) * out_scale > 0.5).any()) in (True, False),
                  scores[0][0] > out_zero_point)
        runner = interpreter.get_signature_runner()
        print(sorted(runner(image=np.zeros((1, 16, 16, 3), np.int8))))
    """)
    result = quantdoctor_run(tmp_path, "--json", "run.json", PYTHON, "infer.py")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "['output_0']"
    assert json.loads((tmp_path / "run.json").read_text())["findings"] == []
    assert "quantdoctor" not in result.stderr


CONVERT_PRELUDE = """
    import sys

    import keras
    import numpy as np
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16, 16, 3), name="image"), keras.layers.Conv2D(4, 3),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
    grid = np.linspace(0.0, 1.0, 16, dtype=np.float32)
    images = [np.stack([grid[:, None] * grid[None, :] * (k + 1) / 20] * 3, axis=-1) for k in range(20)]
"""


def test_failing_conversion_prints_the_diagnosis_and_raises_the_converters_exception_class(tmp_path):
    script = write_script(tmp_path, "convert.py", CONVERT_PRELUDE, """
        def representative_dataset():  # DATASET
            for image in images:
                yield [image[None].astype(np.float64)]  # YIELD

        converter = tf.lite.TFLiteConverter.from_keras_model(model)  # BUILT
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative_dataset
        try:
            converter.convert()  # CONVERT
        except ValueError as error:  # what TF raises for float64 samples
            import quantdoctor
            print(f"caught {type(error).__name__}", isinstance(error, quantdoctor.QuantizationError))
            sys.exit(3)
    """)
    result = quantdoctor_run(tmp_path, "--json", "run.json", PYTHON, "convert.py")
    assert (result.returncode, result.stdout) == (3, "caught ValueError True\n"), result.stderr
    yielded = f"convert.py:{line_of(script, 'YIELD')}"
    assert f"{yielded} yields float64 for input 'image'; the input expects float32." in result.stderr
    assert result.stderr.index("Root cause") < result.stderr.index("QD201")
    [conversion] = json.loads((tmp_path / "run.json").read_text())["conversions"]
    assert conversion["verdict"] == "failed"
    assert conversion["conversion"]["exception"] == "builtins:ValueError"
    root = conversion["findings"][0]
    assert (root["code"], root["evidence"]["source"]["where"]) == ("QD201", yielded)
    assert {key: site["line"] for key, site in conversion["call_site"].items()} == {
        "convert": line_of(script, "CONVERT"), "converter": line_of(script, "BUILT"),
        "representative_dataset": line_of(script, "DATASET")}


@pytest.mark.slow
def test_successful_conversions_return_the_bytes_the_script_gets_without_quantdoctor_for_every_constructor(tmp_path):
    script = write_script(tmp_path, "convert.py", CONVERT_PRELUDE, """
        def representative_dataset():  # DATASET
            for image in images:
                yield [image[None]]

        converter = tf.lite.TFLiteConverter.from_keras_model(model)  # KERAS
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative_dataset
        converter.inference_input_type = converter.inference_output_type = tf.int8
        models = [converter.convert()]

        class Projection(tf.Module):
            def __init__(self):
                self.weights = tf.Variable([[1.0, 2.0], [3.0, 4.0]])

            @tf.function(input_signature=[tf.TensorSpec((1, 2), tf.float32, name="x")])
            def serve(self, x):
                return tf.matmul(x, self.weights)

        projection = Projection()
        tf.saved_model.save(projection, sys.argv[1] + "_saved", signatures={"serving_default": projection.serve})
        models.append(tf.lite.TFLiteConverter.from_saved_model(sys.argv[1] + "_saved").convert())  # SAVED
        function = projection.serve.get_concrete_function()
        models.append(tf.lite.TFLiteConverter.from_concrete_functions([function], projection).convert())  # FUNCTIONS
        for number, tflite in enumerate(models):
            with open(f"{sys.argv[1]}{number}.tflite", "wb") as f:
                f.write(tflite)
        print("wrote", [len(tflite) for tflite in models])
    """)
    plain = subprocess.run([PYTHON, "convert.py", "plain"], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    watched = quantdoctor_run(tmp_path, "--json", "run.json", "--", PYTHON, "convert.py", "watched")
    assert watched.returncode == plain.returncode == 0, watched.stderr
    assert _without_temporary_names(watched.stdout) == _without_temporary_names(plain.stdout)  # TF prints its export
    assert watched.stdout.splitlines()[-1].startswith("wrote [")
    for number in range(3):
        assert (tmp_path / f"watched{number}.tflite").read_bytes() == (tmp_path / f"plain{number}.tflite").read_bytes()
    conversions = json.loads((tmp_path / "run.json").read_text())["conversions"]
    assert [c["call_site"]["converter"]["line"] for c in conversions] == [
        line_of(script, marker) for marker in ("KERAS", "SAVED", "FUNCTIONS")]
    keras_conversion = conversions[0]
    assert keras_conversion["conversion"]["model_bytes"] == (tmp_path / "plain0.tflite").stat().st_size
    assert keras_conversion["audit"]["fully_integer"] is True
    few = next(f for f in keras_conversion["findings"] if f["code"] == "QD308")
    assert few["evidence"]["source"]["where"] == f"convert.py:{line_of(script, 'DATASET')}"
    assert [c["verdict"] for c in conversions[1:]] == ["ok", "ok"]
    assert "CONVERTED WITH PROBLEMS" in watched.stderr and "QD308" in watched.stderr


def _without_temporary_names(text: str) -> str:
    return re.sub(r"/tmp/tmp\w+|\b\d{12,}\b", "*", text)


@pytest.mark.slow
def test_a_converter_crash_ends_the_run_by_the_same_signal_after_the_diagnosis(tmp_path):
    write_script(tmp_path, "convert.py", CONVERT_PRELUDE, """
        images[5][1, 1, 1] = np.inf

        def representative_dataset():
            for image in images:
                yield [image[None]]

        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative_dataset
        converter.convert()
        print("not reached")
    """)
    result = quantdoctor_run(tmp_path, "--json", "run.json", PYTHON, "convert.py")
    assert result.returncode == -signal.SIGSEGV and result.stdout == ""
    [conversion] = json.loads((tmp_path / "run.json").read_text())["conversions"]
    assert [f["code"] for f in conversion["findings"]][:2] == ["QD307", "QD901"]
    assert "QD307" in result.stderr


def test_a_script_that_never_imports_tensorflow_runs_without_quantdoctor_and_keeps_its_sitecustomize(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import os\nos.environ['USER_SITECUSTOMIZE'] = 'ran'\n")
    write_script(tmp_path, "plain.py", """
        import os, sys
        print(os.environ.get("USER_SITECUSTOMIZE"), "quantdoctor" in sys.modules, sys.argv[1:])
        sys.exit(5)
    """)
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)
    result = subprocess.run([QUANTDOCTOR, "run", PYTHON, "plain.py", "--json", "x"], capture_output=True, text=True,
                            cwd=tmp_path, timeout=120, env={**os.environ, "PYTHONPATH": path})
    assert (result.returncode, result.stdout, result.stderr) == (5, "ran False ['--json', 'x']\n", "")


@pytest.mark.parametrize("args, message", [
    ([], "nothing to run"),
    (["no-such-command-quantdoctor"], "command not found: no-such-command-quantdoctor"),
    (["./plain.py"], "./plain.py is not executable (run it with its interpreter: `quantdoctor run python ./plain.py`)"),
    (["--json", "plain.py", PYTHON, "plain.py"], "refusing to write --json plain.py: it is your input plain.py"),
    (["--timeout", "0", PYTHON, "plain.py"], "timeout must be a positive number of seconds"),
    (["--json", "model.keras", PYTHON, "plain.py"],  # a file the script may read, not named on its command line
     "refusing to replace model.keras: it exists and is not a quantdoctor run report"),
])
def test_run_usage_errors_exit_2_in_one_line(tmp_path, args, message):
    (tmp_path / "plain.py").write_text("print('never')\n")
    (tmp_path / "model.keras").write_bytes(b"PK\x03\x04 the user's only copy")
    result = quantdoctor_run(tmp_path, *args)
    assert result.returncode == 2 and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("quantdoctor: error: ")
    assert message in result.stderr
    assert (tmp_path / "plain.py").read_text() == "print('never')\n"
    assert (tmp_path / "model.keras").read_bytes() == b"PK\x03\x04 the user's only copy"


@pytest.mark.parametrize("first_line, message", [
    ("print(1)", "cannot execute ./tool: Exec format error"),  # executable, no shebang
    ("#!/nonexistent/python",  # its interpreter is missing
     "cannot execute ./tool: its interpreter line `#!/nonexistent/python` names nothing that runs "
     "(No such file or directory)"),
])
def test_an_executable_the_system_cannot_start_is_one_line_exit_2(tmp_path, first_line, message):
    (tmp_path / "tool").write_text(first_line + "\n")
    (tmp_path / "tool").chmod(0o755)
    result = quantdoctor_run(tmp_path, "./tool")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.strip() == f"quantdoctor: error: {message}"


def test_run_json_replaces_an_earlier_run_report(tmp_path):
    (tmp_path / "plain.py").write_text("print('ran')\n")
    for _ in range(2):  # the second run finds the first one's report and replaces it
        result = quantdoctor_run(tmp_path, "--json", "run.json", PYTHON, "plain.py")
        assert (result.returncode, result.stdout) == (0, "ran\n")
    assert json.loads((tmp_path / "run.json").read_text())["conversions"] == []


@pytest.mark.slow
def test_two_threads_converting_lose_no_line_a_third_thread_prints(tmp_path):
    """quantdoctor never swaps the process's stdout: every line the script's threads print arrives,
    while two other threads convert (each diagnosed) at the same time."""
    write_script(tmp_path, "convert.py", CONVERT_PRELUDE, """
        import threading
        import time

        models = [model, keras.models.clone_model(model)]
        stop = threading.Event()

        def representative_dataset():
            for image in images[:4]:
                yield [image[None]]

        def convert(number, results):
            converter = tf.lite.TFLiteConverter.from_keras_model(models[number])
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = representative_dataset
            results[number] = len(converter.convert())

        def printer():
            number = 0
            while not stop.is_set():
                sys.stdout.write(f"line {number}\\n")
                number += 1
                time.sleep(0.005)
            sys.stdout.write(f"printed {number}\\n")

        printing = threading.Thread(target=printer)
        printing.start()
        results = {}
        converting = [threading.Thread(target=convert, args=(number, results)) for number in range(2)]
        for thread in converting:
            thread.start()
        for thread in converting:
            thread.join()
        stop.set()
        printing.join()
        print("converted", sorted(results))
    """)
    result = quantdoctor_run(tmp_path, "--json", "run.json", PYTHON, "convert.py")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "converted [0, 1]"
    [printed] = re.findall(r"^printed (\d+)$", result.stdout, re.M)
    numbers = [int(n) for n in re.findall(r"^line (\d+)$", result.stdout, re.M)]
    assert numbers == list(range(int(printed))) and len(numbers) > 100  # the printer outlived both conversions
    assert [c["verdict"] for c in json.loads((tmp_path / "run.json").read_text())["conversions"]] == [
        "converted_with_problems"] * 2  # four samples: QD308
