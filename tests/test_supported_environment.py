"""quantdoctor in the user's environment: the TensorFlow and LiteRT they have, the versions in every
report, a refused TensorFlow as one line, and one real run of every command (the part of
`make compat` that runs on each supported release)."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from helpers import run, run_in_process
from models import CONVERTS_KERAS_MODELS, smooth_images, vectors, with_layer

from quantdoctor import catalog, environment, tf_private
from quantdoctor.environment import Environment, Package, current, release, within
from quantdoctor.litert import has_litert

pytestmark = pytest.mark.compat

RELEASE = current().tensorflow_release


def installed_tensorflow() -> list[str]:
    return [f"{name}=={metadata.version(name)}" for name in environment.TENSORFLOW_DISTRIBUTIONS
            if _has(name)]


def _has(name: str) -> bool:
    try:
        metadata.version(name)
    except metadata.PackageNotFoundError:
        return False
    return True


@pytest.fixture(scope="module")
def user_files(tmp_path_factory) -> dict[str, Path]:
    """A Dense model (TensorFlow 2.16 aborts on a Keras 3 Conv2D before converting anything: QD909), as a
    .keras file, and `model`: what the commands diagnose, the .keras file or on TensorFlow 2.16 its
    `model.export()` (2.16 also aborts on a Dense model's from_keras_model SavedModel under integer settings)."""
    import keras

    folder = tmp_path_factory.mktemp("user_files")
    model = with_layer(keras.layers.ReLU(name="relu"), name="user_model")
    model.save(folder / "model.keras")
    if not CONVERTS_KERAS_MODELS:
        model.export(str(folder / "exported"), verbose=False)
    np.save(folder / "calib.npy", vectors(40))
    np.save(folder / "calib64.npy", vectors(40).astype(np.float64))
    np.save(folder / "eval.npy", vectors(20, seed=1))
    return {"keras": folder / "model.keras", "npy": folder / "calib.npy", "npy64": folder / "calib64.npy",
            "eval": folder / "eval.npy", "folder": folder,
            "model": folder / ("model.keras" if CONVERTS_KERAS_MODELS else "exported")}


def test_env_prints_every_version_the_interpreter_and_whether_each_was_verified():
    result = run("env")
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    (tensorflow,) = installed_tensorflow()
    name, version = tensorflow.split("==")
    assert f"{version} ({name})" in lines["TensorFlow"] and "verified on 2.18 and 2.21" in lines["TensorFlow"]
    assert metadata.version("numpy") in lines["NumPy"] and metadata.version("keras") in lines["Keras"]
    assert platform_version() in lines["Python"]
    assert lines["TensorFlow"].split()[3] == ("verified" if RELEASE in environment.VERIFIED_TENSORFLOW
                                              else "NOT")
    if has_litert():
        assert f"{metadata.version('ai-edge-litert')} (ai-edge-litert)" in lines["LiteRT"]
        assert "Models run in: ai_edge_litert.interpreter.Interpreter (LiteRT)" in result.stdout
    else:
        assert "not installed" in lines["LiteRT"]
        assert "Models run in: tf.lite.Interpreter (TensorFlow's own)" in result.stdout
        assert "LiteRT (ai-edge-litert) is not installed: models run in TensorFlow's own tf.lite.Interpreter" \
            in result.stdout


def platform_version() -> str:
    return ".".join(map(str, sys.version_info[:3]))


def test_diagnose_report_header_carries_the_environment_and_findings_their_verification(user_files, tmp_path):
    result = run_in_process("diagnose", str(user_files["model"]), "--data", str(user_files["npy64"]),
                            "--json", str(tmp_path / "report.json"))
    assert result.returncode == 1, result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    header = report["environment"]
    (tensorflow,) = installed_tensorflow()
    assert f"{header['tensorflow']['distribution']}=={header['tensorflow']['version']}" == tensorflow
    assert header["keras"]["version"] == metadata.version("keras")
    assert header["numpy"]["version"] == metadata.version("numpy")
    assert header["ai_edge_litert"]["version"] == (metadata.version("ai-edge-litert") if has_litert() else None)
    assert header["interpreter"].startswith("ai_edge_litert" if has_litert() else "tf.lite.Interpreter")
    assert header["catalog_verified_on"] == ["2.18", "2.21"]
    assert header["catalog_verified"] is (RELEASE in ("2.18", "2.21"))
    assert report["findings"][0]["code"] == "QD201"  # float64 samples for a float32 input
    assert report["findings"][0]["verification"]["verified"] is header["catalog_verified"]
    assert {"schema_version", "tool", "model", "settings", "verdict", "findings", "conversion"} <= set(report)


def test_audit_reads_the_converted_model(user_files, tmp_path):
    model = tmp_path / "model.tflite"
    converted = run_in_process("diagnose", str(user_files["model"]), "--data", str(user_files["npy"]), "--mode",
                               "int8-strict", "--output", str(model))
    assert converted.returncode == 0, converted.stdout + converted.stderr
    result = run_in_process("audit", str(model), "--target", "int8-accelerator", "--json", str(tmp_path / "audit.json"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads((tmp_path / "audit.json").read_text())["audit"]["fully_integer"] is True


def test_compare_runs_both_models_in_the_installed_interpreter(user_files, tmp_path):
    result = run_in_process("compare", str(user_files["model"]), "--data", str(user_files["npy"]), "--eval-data",
                            str(user_files["eval"]), "--json", str(tmp_path / "compare.json"))
    assert result.returncode == 0, result.stdout + result.stderr
    comparison = json.loads((tmp_path / "compare.json").read_text())["comparison"]
    assert comparison["samples"] == 20 and comparison["end_to_end"]["sqnr_db"] > 10


def test_fix_repairs_float64_samples_and_verifies(user_files, tmp_path):
    result = run_in_process("fix", str(user_files["model"]), "--data", str(user_files["npy64"]), "--mode",
                            "int8-strict", "--output", str(tmp_path / "fixed.tflite"), "--json",
                            str(tmp_path / "fix.json"))
    assert result.returncode == 0, result.stdout + result.stderr
    document = json.loads((tmp_path / "fix.json").read_text())
    assert document["verified"] is True and "QD201" in {r["code"] for r in document["applied"]}
    assert document["environment"]["tensorflow"]["version"] == current().tensorflow.version


def test_run_diagnoses_a_script_conversion(user_files, tmp_path):
    script = tmp_path / "convert.py"
    converter_line = ("converter = tf.lite.TFLiteConverter."
                      + (f"from_keras_model(keras.saving.load_model({str(user_files['keras'])!r}))"
                         if CONVERTS_KERAS_MODELS else f"from_saved_model({str(user_files['model'])!r})"))
    script.write_text(textwrap.dedent(f"""
        import numpy as np
        import tensorflow as tf
        import keras

        samples = np.load({str(user_files["npy64"])!r})
        {converter_line}
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([s[None]] for s in samples)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        try:
            converter.convert()
        except Exception as error:
            print("script caught", type(error).__name__)
    """))
    result = run("run", "--json", str(tmp_path / "run.json"), "--", sys.executable, str(script), cwd=tmp_path)
    assert "script caught" in result.stdout, result.stdout + result.stderr
    document = json.loads((tmp_path / "run.json").read_text())
    assert document["environment"]["tensorflow"]["version"] == current().tensorflow.version
    assert "QD201" in {f["code"] for f in document["conversions"][0]["findings"]}


def test_demo_runs_on_the_installed_release(tmp_path):
    result = run_in_process("demo", cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "QD" in result.stdout and "Traceback" not in result.stderr


def test_explain_and_codes_work_without_tensorflow(tmp_path):
    """A Python whose `tensorflow` cannot be imported (a broken package shadows it) still explains codes."""
    shadow = tmp_path / "shadow" / "tensorflow"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('no TensorFlow here')\n")
    env = {**os.environ, "PYTHONPATH": str(shadow.parent)}
    explained = run("explain", "QD201", env=env)
    assert explained.returncode == 0 and explained.stdout.startswith("QD201 "), explained.stderr
    listed = run("codes", env=env)
    assert listed.returncode == 0 and len(listed.stdout.strip().splitlines()) == len(catalog.CHECKS)


def fake_tensorflow(folder: Path, version: str) -> dict[str, str]:
    """An environment whose `tensorflow` distribution metadata says `version` (found before the real one)."""
    info = folder / f"tensorflow-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: tensorflow\nVersion: {version}\n")
    return {**os.environ, "PYTHONPATH": str(folder)}


@pytest.mark.parametrize("version", ["2.15.1", "2.22.0", "1.15.5"])
def test_an_unsupported_tensorflow_is_one_line_exit_2_before_any_work(user_files, tmp_path, version):
    for command in (["diagnose", str(user_files["keras"])], ["demo"], ["fix", str(user_files["keras"])]):
        result = run(*command, env=fake_tensorflow(tmp_path / command[0], version))
        assert result.returncode == 2, result.stdout + result.stderr
        assert result.stderr.strip() == (
            f"quantdoctor: error: tensorflow {version} is installed; quantdoctor supports TensorFlow 2.16 to 2.21: "
            'run it in a virtual environment with pip install "quantdoctor[tensorflow-cpu]" '
            '(or "quantdoctor[tensorflow]" for the GPU build)')


def test_a_missing_tensorflow_names_the_supported_range_and_the_install(monkeypatch):
    monkeypatch.setattr(environment, "_tensorflow_distributions", lambda: [])
    monkeypatch.setattr(environment.importlib.util, "find_spec", lambda name, *args: None)
    current.cache_clear()
    try:
        with pytest.raises(environment.UnsupportedEnvironmentError) as raised:
            environment.require_tensorflow()
    finally:
        monkeypatch.undo()
        current.cache_clear()
    assert str(raised.value) == (f"TensorFlow is not installed in {sys.executable}: quantdoctor needs TensorFlow 2.16 "
                                 'to 2.21; install it with pip install "quantdoctor[tensorflow-cpu]" '
                                 '(or "quantdoctor[tensorflow]" for the GPU build)')


def environment_running(version: str) -> Environment:
    packages = tuple(Package(p.name, p.module, p.distribution, version if p.module == "tensorflow" else p.version,
                             p.verified_range, p.verified_releases) for p in current().packages)
    return Environment("3.11.7", packages, ("tensorflow",), current().interpreter)


def test_a_release_outside_the_verified_set_is_named_in_the_header_and_on_each_finding():
    for version in ("2.16.2", "2.19.1"):
        unverified = environment_running(version)
        assert unverified.catalog_note() == (f"catalog verified on TensorFlow 2.18 and 2.21; you run {version}: "
                                             "messages may differ")
        assert unverified.to_dict()["catalog_verified"] is False
        assert unverified.to_dict()["notes"][0] == unverified.catalog_note()
    finding = catalog.get("QD201").finding("float64 samples")
    assert finding.verification(environment_running("2.19.1")) == {
        "verified_on": ["2.18", "2.21"], "verified": False,
        "note": "verified on TensorFlow 2.18 and 2.21; you run 2.19.1: the message may differ"}
    verified = environment_running("2.18.0")
    assert verified.catalog_note() is None and finding.verification(verified)["verified"] is True
    assert catalog.get("QD909").finding("aborted").verification(environment_running("2.16.2"))["verified"] is True


def test_versions_compare_by_release_prefix():
    assert within("2.16.2", "2.16", "2.21") and within("2.21.0rc1", "2.16", "2.21")
    assert not within("2.15.1", "2.16", "2.21") and not within("2.22.0.dev20261201", "2.16", "2.21")
    assert release("2.18.0rc1") == (2, 18) and release("3") == (3, 0)


def test_every_matcher_and_tf_private_hook_says_where_it_was_verified():
    from quantdoctor.diagnosis.classify_failure import MATCHERS

    for matcher in MATCHERS:
        assert matcher.verified_on and all(within(r, *environment.SUPPORTED_TENSORFLOW) for r in matcher.verified_on)
    hooks = {name for name, value in vars(tf_private).items() if callable(value) and not isinstance(value, type)
             and getattr(value, "__module__", None) == tf_private.__name__ and not name.startswith("_")}
    assert hooks and hooks == set(tf_private.HOOKS_VERIFIED_ON)
    for since in tf_private.CONVERTER_FLAGS_SINCE.values():
        assert since in environment.VERIFIED_TENSORFLOW
    assert set(tf_private.HOOKS_VERIFIED_ON.values()) == {environment.VERIFIED_TENSORFLOW}


def test_a_converter_setting_is_read_from_the_release_that_has_it_on():
    import tensorflow as tf

    from quantdoctor.intake.recipe import Recipe

    function = tf.function(lambda x: x + 1).get_concrete_function(tf.TensorSpec([1], tf.float32))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function])
    recipe = Recipe.from_converter(converter)
    newer = {name for name, since in tf_private.CONVERTER_FLAGS_SINCE.items()
             if release(current().tensorflow.version) >= release(since)}
    assert set(tf_private.CONVERTER_FLAGS_SINCE) & set(recipe.flags) == newer
    assert "_experimental_disable_per_channel" in recipe.flags


@pytest.mark.tensorflow("2.16")
@pytest.mark.code("QD909")
@pytest.mark.matcher("unreadable-variable-read")
def test_tf216_aborting_on_its_own_keras3_saved_model_is_named_with_the_export_fix(tmp_path):
    import keras
    import tensorflow as tf

    import quantdoctor as qd

    inputs = keras.Input((8, 8, 1), name="image")
    model = keras.Model(inputs, keras.layers.Conv2D(4, 3, name="conv")(inputs))
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    samples = smooth_images(20, size=8)[..., :1]
    report = qd.diagnose(converter, data=samples)
    finding = report.root_cause
    assert finding is not None and finding.code == "QD909", report
    assert finding.message.startswith("The converter was killed by SIGABRT while converting: this TensorFlow "
                                      "cannot read the variable reads")
    assert finding.fix.code.startswith('model.export("exported")')
    assert finding.verification(current())["verified"] is True
    # The fix works on this release: Keras' own export converts.
    model.export(str(tmp_path / "exported"))
    exported = qd.diagnose(tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "exported")), data=samples)
    assert exported.conversion["outcome"] == "ok", exported
