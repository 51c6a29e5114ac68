"""`quantdoctor fix` as a user runs it, and its script run in a fresh process: the same model as quantdoctor's."""

from __future__ import annotations

import ast
import hashlib
import inspect
import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
from helpers import run_in_process
from models import smooth_images, vectors

from quantdoctor.audit.tflite_model import read_tflite_file
from quantdoctor.edits import transforms
from quantdoctor.fix.script import transform_dependencies


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def signature(path: Path) -> list[tuple]:
    """Each op with its tensors' types and quantization parameters."""
    return [(op.name, [(t.dtype, t.scale, t.zero_point) for t in op.inputs + op.outputs])
            for op in read_tflite_file(path).all_ops]


def outputs(path: Path, samples: dict[str, np.ndarray]) -> list[np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path)).get_signature_runner()
    return [runner(**{name: value[i:i + 1] for name, value in samples.items()}) for i in range(3)]


def test_fix_writes_a_verified_model_and_a_script_that_reproduces_it(tmp_path):
    image = keras.Input((8, 8, 3), name="my image")  # not a valid TensorFlow name (QD405)
    meta = keras.Input((4,), name="meta")
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(keras.layers.Conv2D(4, 3, name="conv")(image))
    merged = keras.layers.Concatenate(name="merge")([pooled, keras.layers.Dense(4, name="dense")(meta)])
    keras.Model([image, meta], keras.layers.Dense(2, name="head")(merged), name="two").save(tmp_path / "model.keras")
    np.savez(tmp_path / "calib.npz", **{"my image": smooth_images(120, size=8).astype(np.float64),  # QD201
                                        "meta": vectors(120, 4).astype(np.float64)})
    inputs = {name: tmp_path / name for name in ("model.keras", "calib.npz")}
    before = {name: digest(path) for name, path in inputs.items()}

    result = run_in_process("fix", "model.keras", "--data", "calib.npz",  # paths relative to fix's cwd
                            "--mode", "int8-strict", "--io", "int8", "--output", "fixed.tflite",
                            "--script", "convert_fixed.py", "--json", "fix.json", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("VERIFIED")
    assert "  QD405  input 'my image' -> 'my_image' by a new Input in front" in result.stdout
    assert "Model written to fixed.tflite" in result.stdout
    report = json.loads((tmp_path / "fix.json").read_text())
    assert report["verified"] and [r["code"] for r in report["applied"]] == ["QD405", "QD201"]
    assert report["before"]["findings"][0]["code"] == "QD405" and report["before"]["findings"][0]["fix"]["automatic"]
    assert report["after"]["audit"]["fully_integer"] and report["conversions"] == 2
    assert {name: digest(path) for name, path in inputs.items()} == before  # the user's files are only read

    script = (tmp_path / "convert_fixed.py").read_text()
    assert "import quantdoctor" not in script and "from quantdoctor" not in script
    assert "# QD405 (A model input's name is not a valid TensorFlow name)" in script
    assert f"MODEL_PATH = {str(tmp_path / 'model.keras')!r}" in script
    assert f"OUTPUT_PATH = {str(tmp_path / 'fixed.tflite')!r}" in script
    script = script.replace(f"OUTPUT_PATH = {str(tmp_path / 'fixed.tflite')!r}",
                            f"OUTPUT_PATH = {str(tmp_path / 'by_script.tflite')!r}")
    (tmp_path / "convert_fixed.py").write_text(script)
    (tmp_path / "elsewhere").mkdir()  # the script's paths are absolute: it runs from any directory
    ran = subprocess.run([sys.executable, "-I", str(tmp_path / "convert_fixed.py")], cwd=tmp_path / "elsewhere",
                         capture_output=True, text=True, timeout=600)
    assert ran.returncode == 0, ran.stderr[-3000:]

    ours, theirs = tmp_path / "fixed.tflite", tmp_path / "by_script.tflite"
    assert signature(theirs) == signature(ours)
    samples = {"my_image": smooth_images(3, size=8, seed=9), "meta": vectors(3, 4, seed=9)}
    quantized = {name: (value * 20).astype(np.int8) for name, value in samples.items()}
    for a, b in zip(outputs(ours, quantized), outputs(theirs, quantized)):
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_fix_without_any_data_exits_1_with_what_to_change(tmp_path):
    from models import image_model

    image_model().save(tmp_path / "model.keras")
    result = run_in_process("fix", str(tmp_path / "model.keras"), "--mode", "int8-strict", "--output",
                            str(tmp_path / "fixed.tflite"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.startswith("NOT FIXED")
    assert "QD301  There is no calibration data at all." in result.stdout
    assert "do: pass a few hundred real, preprocessed inputs: --data calib.npz" in result.stdout
    assert "No model written to" in result.stdout and not (tmp_path / "fixed.tflite").exists()


def test_the_script_defines_every_transforms_function_a_step_calls():
    """Each public transforms function, written into a script, comes with the transforms functions it calls
    (a helper left out, `_keras_of` behind `with_inputs`, was a NameError when the script ran)."""
    public = [name for name, value in vars(transforms).items()
              if inspect.isfunction(value) and not name.startswith("_")]
    assert transform_dependencies("with_inputs") == ["_keras_of"]
    assert sorted(transform_dependencies("with_static_batch")) == ["_keras_of", "_same_weights"]
    assert transform_dependencies("cast_to") == ["map_arrays"]
    for name in public:
        written = [*transform_dependencies(name), name]
        namespace = {"np": np}
        exec("\n\n".join(inspect.getsource(getattr(transforms, n)) for n in written), namespace)
        called = {node.id for n in written for node in ast.walk(ast.parse(inspect.getsource(getattr(transforms, n))))
                  if isinstance(node, ast.Name) and inspect.isfunction(getattr(transforms, node.id, None))}
        assert called <= namespace.keys(), (name, called - namespace.keys())
