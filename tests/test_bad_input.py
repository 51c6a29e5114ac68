"""Bad input, as hostile and careless users give it: each is one line, exit 2 (or a UsageError in
the API), found before any long work; quantdoctor's own bugs are exit 3 and say so."""

from __future__ import annotations

import importlib
import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_finding, only, run_in_process
from models import dataset_from, image_model, smooth_images, with_layer
from rich.console import Console

import quantdoctor as qd
from quantdoctor.audit.tflite_model import read_tflite
from quantdoctor.catalog.check import Check
from quantdoctor.compare.labels import check_classes, read_labels
from quantdoctor.errors import DataLoadError, InternalError, UsageError
from quantdoctor.intake import data as data_intake
from quantdoctor.intake.data import CalibrationSet
from quantdoctor.isolation.protocol import raised_in
from quantdoctor.isolation.runner import run_isolated, run_worker
from quantdoctor.report.model import Report
from quantdoctor.report.terminal import render

QUANTDOCTOR = str(Path(sys.executable).with_name("quantdoctor"))


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([QUANTDOCTOR, *args], capture_output=True, text=True, timeout=600, cwd=cwd)


def one_line_error(result: subprocess.CompletedProcess, message: str) -> None:
    """Exit 2, and stderr is exactly one line: quantdoctor's error, containing `message`."""
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("quantdoctor: error: "), result.stderr
    assert message in lines[0], lines[0]


@pytest.fixture(scope="module")
def user_files(image_model_files) -> dict[str, Path]:
    return {"keras": image_model_files["keras"], "npz": image_model_files["npz"]}


# -- data files: only what is used, and every malformed file is one line --------------------------

def write_npz_streaming(path: Path, name: str, shape: tuple[int, ...], dtype: str = "<f4") -> None:
    """A large stored .npz written member by member, without holding the array in memory."""
    with zipfile.ZipFile(path, "w") as archive, archive.open(f"{name}.npy", "w", force_zip64=True) as member:
        np.lib.format.write_array_header_2_0(member, {"descr": dtype, "fortran_order": False, "shape": shape})
        row = np.arange(np.prod(shape[1:]), dtype=dtype).reshape(shape[1:])
        for index in range(shape[0]):
            member.write((row + index).tobytes())


# The peak resident memory of a fresh process (VmHWM: unlike ru_maxrss, not inherited from the parent
# that forked it), before and after reading 100 samples, then after NumPy's own whole-file load, which
# shows the measure sees a file-sized read.
PEAK = textwrap.dedent("""
    import sys
    import numpy as np
    from quantdoctor.intake.data import from_file

    def peak_mb():
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) // 1024

    before = peak_mb()
    samples = from_file(sys.argv[1], max_samples=100)
    ours = peak_mb() - before
    assert len(samples) == 100 and samples.available == 50_000 and samples.truncated
    assert float(samples.samples[99].arrays[0][0, 0]) == 99.0
    loaded = np.load(sys.argv[1])
    whole = np.asarray(loaded["features"] if sys.argv[1].endswith(".npz") else loaded) + 0
    print(ours, peak_mb() - before)
""")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the peak memory from /proc")
@pytest.mark.parametrize("suffix", [".npz", ".npy"])
def test_a_200_mb_file_read_for_100_samples_costs_the_100_samples(tmp_path, suffix):
    shape = (50_000, 1_000)  # 200 MB of float32
    path = tmp_path / f"big{suffix}"
    if suffix == ".npz":
        write_npz_streaming(path, "features", shape)
    else:
        mapped = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=shape)
        for start in range(0, shape[0], 5_000):  # a slice at a time: the test itself stays small too
            mapped[start:start + 5_000] = np.arange(start, start + 5_000, dtype=np.float32)[:, None]
        del mapped
    assert path.stat().st_size > 200_000_000
    result = subprocess.run([sys.executable, "-c", PEAK, str(path)], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(Path(qd.__file__).parents[1])})
    assert result.returncode == 0, result.stderr
    ours, whole = map(int, result.stdout.split())
    assert ours < 20, f"reading 100 samples raised the peak memory by {ours} MB"
    assert whole > 180  # the measure does see a whole-file read


def test_rows_read_are_the_first_rows_whatever_the_layout(tmp_path):
    array = np.random.default_rng(0).normal(size=(40, 3, 5)).astype(np.float32)
    np.savez(tmp_path / "stored.npz", x=array)
    np.savez_compressed(tmp_path / "compressed.npz", x=array)
    np.savez(tmp_path / "fortran.npz", x=np.asfortranarray(array))
    np.save(tmp_path / "fortran.npy", np.asfortranarray(array))
    np.save(tmp_path / "plain.npy", array)
    for name in ("stored.npz", "compressed.npz", "fortran.npz", "fortran.npy", "plain.npy"):
        calibration = data_intake.from_file(tmp_path / name, max_samples=7)
        assert len(calibration) == 7 and calibration.available == 40 and calibration.truncated, name
        np.testing.assert_array_equal(np.concatenate([s.arrays[0] for s in calibration.samples]), array[:7])


def crafted_files(folder: Path) -> dict[str, Path]:
    """Files a careless or hostile user hands over as data."""
    files = {}

    def put(name: str, content: bytes) -> None:
        files[name] = folder / name
        files[name].write_bytes(content)

    put("garbage.npz", os.urandom(300))
    put("garbage.npy", b"this is not numpy at all" * 10)
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    put("pickled.npy", buffer.getvalue())
    np.savez(folder / "pickled_member.npz", x=np.array([[1], [None]], dtype=object))
    files["pickled_member.npz"] = folder / "pickled_member.npz"
    np.save(folder / "text.npy", np.array(["cat", "dog"]))
    files["text.npy"] = folder / "text.npy"
    np.save(folder / "scalar.npy", np.float32(3.0))
    files["scalar.npy"] = folder / "scalar.npy"
    header = io.BytesIO()  # 64 TiB declared, 16 bytes present
    np.lib.format.write_array_header_2_0(header, {"descr": "<f4", "fortran_order": False, "shape": (2 ** 44, 1)})
    put("huge.npy", header.getvalue() + bytes(16))
    with zipfile.ZipFile(folder / "huge.npz", "w") as archive:
        archive.writestr("x.npy", header.getvalue() + bytes(16))
    files["huge.npz"] = folder / "huge.npz"
    np.savez(folder / "truncated.npz", x=np.ones((100, 10), np.float32))
    content = (folder / "truncated.npz").read_bytes()
    put("truncated.npz", content[:len(content) // 2])
    with zipfile.ZipFile(folder / "not_npy.npz", "w") as archive:
        archive.writestr("readme.txt", "hello")
    files["not_npy.npz"] = folder / "not_npy.npz"
    # quantdoctor's own calibration format, edited by hand: a key missing, an index past the samples
    np.savez(folder / "no_kinds.npz", __format__=np.array("quantdoctor-calibration-1"), **{"0/v/x": np.ones((1, 2))})
    files["no_kinds.npz"] = folder / "no_kinds.npz"
    np.savez(folder / "bad_index.npz", __format__=np.array("quantdoctor-calibration-1"),
             __source__=np.array("x"), __truncated__=np.array(False), __kinds__=np.array(["list"]),
             **{"0/v/x": np.ones((1, 2)), "oops/v/x": np.ones((1, 2))})
    files["bad_index.npz"] = folder / "bad_index.npz"
    os.mkfifo(folder / "fifo.npz")
    files["fifo.npz"] = folder / "fifo.npz"
    (folder / "folder.npz").mkdir()
    files["folder.npz"] = folder / "folder.npz"
    os.symlink(folder / "loop_b.npz", folder / "loop_a.npz")
    os.symlink(folder / "loop_a.npz", folder / "loop_b.npz")
    files["loop_a.npz"] = folder / "loop_a.npz"
    files["device"] = Path("/dev/zero")
    return files


BAD_DATA = {
    "garbage.npz": "is not a valid .npz file (a zip archive of .npy arrays)",
    "garbage.npy": "is not a NumPy .npy array (it lacks the NUMPY header)",
    "pickled.npy": "holds Python objects (pickled data), which quantdoctor never loads",
    "pickled_member.npz": "holds Python objects (pickled data), which quantdoctor never loads",
    "text.npy": "holds text (<U3): data must be numeric arrays",
    "scalar.npy": "holds a scalar, not samples",
    "huge.npy": "the header declares 64.0 TiB of data",
    "huge.npz": "the header declares 64.0 TiB of data",
    "truncated.npz": "is not a valid .npz file",
    "not_npy.npz": "member 'readme.txt' is not a .npy array",
    "no_kinds.npz": "is not a valid quantdoctor calibration file",
    "bad_index.npz": "is not a valid quantdoctor calibration file",
    "fifo.npz": "is a named pipe (FIFO), not a regular file",
    "folder.npz": "is a directory: give a file",
    "loop_a.npz": "is a symbolic link loop",
    "device": "is a device, not a regular file",
}


@pytest.fixture(scope="module")
def bad_data(tmp_path_factory) -> dict[str, Path]:
    return crafted_files(tmp_path_factory.mktemp("bad_data"))


@pytest.mark.parametrize("name", sorted(BAD_DATA))
def test_malformed_data_files_are_one_clear_line(bad_data, name):
    with pytest.raises(DataLoadError) as raised:
        data_intake.from_file(bad_data[name])
    message = str(raised.value)
    assert BAD_DATA[name] in message and "\n" not in message
    assert "allow_pickle" not in message


@pytest.mark.parametrize("option", ["--data", "--eval-data"])
@pytest.mark.parametrize("name", ["garbage.npz", "huge.npz", "fifo.npz"])
def test_bad_data_on_the_command_line_is_exit_2_before_converting(user_files, bad_data, option, name):
    result = run("diagnose", str(user_files["keras"]), option, str(bad_data[name]))  # a FIFO must not hang
    one_line_error(result, BAD_DATA[name])


def test_bad_eval_data_and_labels_through_the_api_are_data_errors(user_files, bad_data):
    with pytest.raises(DataLoadError, match="not a valid .npz file"):
        qd.diagnose(user_files["keras"], user_files["npz"], eval_data=bad_data["garbage.npz"])
    with pytest.raises(DataLoadError, match="Python objects"):
        qd.compare(user_files["keras"], user_files["npz"], eval_data=user_files["npz"], labels=bad_data["pickled.npy"])


def test_a_sample_that_is_not_an_array_is_kept_described_not_a_crash():
    ragged = data_intake.from_generator(lambda: iter([[np.ones((1, 2))], [[[1.0], [1.0, 2.0]]]]))
    assert len(ragged) == 2 and ragged.generator_error is None
    assert ragged.samples[1].not_arrays == {"0": "a list of 2 items that do not form an array of numbers"}


# -- model paths ------------------------------------------------------------------------------------

def test_model_paths_that_are_not_models_say_what_they_are(tmp_path, user_files):
    os.symlink(tmp_path / "b.keras", tmp_path / "a.keras")
    os.symlink(tmp_path / "a.keras", tmp_path / "b.keras")
    one_line_error(run("diagnose", str(tmp_path / "a.keras")), "is a symbolic link loop")
    (tmp_path / "broken.keras").write_bytes(b"not a zip archive")
    one_line_error(run("diagnose", str(tmp_path / "broken.keras")), "is not a valid .keras file (not a zip archive)")
    shutil.copy(user_files["npz"], tmp_path / "data.keras")
    one_line_error(run("diagnose", str(tmp_path / "data.keras")), "the archive has no config.json")
    (tmp_path / "broken.h5").write_bytes(b"not hdf5")
    one_line_error(run("diagnose", str(tmp_path / "broken.h5")), "is not a valid .h5 file (no HDF5 signature)")
    os.mkfifo(tmp_path / "pipe.keras")
    one_line_error(run("diagnose", str(tmp_path / "pipe.keras")), "is a named pipe (FIFO)")
    one_line_error(run("audit", str(tmp_path)), "is a directory: audit reads a .tflite file")


def test_a_path_full_of_rich_markup_is_printed_as_it_is(tmp_path):
    result = run("diagnose", "[/red][bold]model.keras", cwd=tmp_path)
    one_line_error(result, "model not found: [/red][bold]model.keras")


def test_an_unregistered_custom_layer_is_one_line_that_says_what_to_do(tmp_path):
    class Doubling(keras.layers.Layer):  # defined here, registered nowhere: the worker cannot know it
        def call(self, x):
            return x * 2.0

    inputs = keras.Input((4,), name="features")
    keras.Model(inputs, keras.layers.Dense(2)(Doubling(name="doubling")(inputs))).save(tmp_path / "custom.keras")
    result = run_in_process("diagnose", str(tmp_path / "custom.keras"), "--no-convert")
    one_line_error(result, "uses the custom class 'Doubling', which is not registered here")
    assert "register_keras_serializable" in result.stderr and "from_keras_model" in result.stderr


# -- output paths, checked before the long work ------------------------------------------------------

@pytest.fixture
def no_conversion(monkeypatch):
    """Fails the test if quantdoctor gets as far as converting or comparing."""
    def converting(*args, **kwargs):
        pytest.fail("the output path was checked only after starting the work")

    monkeypatch.setattr(importlib.import_module("quantdoctor.diagnosis.pipeline"), "_diagnose", converting)
    monkeypatch.setattr(importlib.import_module("quantdoctor.compare.compare_models"), "eval_set", converting)


@pytest.mark.parametrize("command", ["diagnose", "compare", "audit"])
@pytest.mark.parametrize("where, message", [
    ("missing/report.json", "the directory {tmp}/missing does not exist"),
    ("", "is a directory: give a file name"),
])
def test_outputs_that_cannot_be_written_are_refused_before_converting(user_files, tmp_path, no_conversion, command,
                                                                       where, message):
    extra = ["--eval-data", str(user_files["npz"])] if command == "compare" else []
    options = ["--json"] + (["--html"] if command == "compare" else ["--output"] if command == "diagnose" else [])
    for option in options:
        args = [command, str(user_files["keras"]), *extra, option, str(tmp_path / where)]
        result = run_in_process(*args)
        assert result.returncode == 2
        error = result.stderr.strip()
        assert error.startswith(f"quantdoctor: error: {option}") and message.format(tmp=tmp_path) in error
        assert len(error.splitlines()) == 1


def test_outputs_onto_a_read_only_file_system_are_refused(user_files, tmp_path):
    mount = tmp_path / "read_only"
    mount.mkdir()
    script = (f"mount -t tmpfs -o ro tmpfs {mount} && exec {QUANTDOCTOR} diagnose {user_files['keras']} "
              f"--json {mount}/report.json")
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-m", "true"]).returncode != 0:
        pytest.skip("needs unshare -m (root) to mount a read-only file system")
    result = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=300)
    one_line_error(result, "Read-only file system")


def test_no_convert_with_output_is_refused(user_files, tmp_path):
    one_line_error(run("diagnose", str(user_files["keras"]), "--no-convert", "--output", str(tmp_path / "m.tflite")),
                   "--output needs a converted model")
    with pytest.raises(UsageError, match="diagnose"):
        qd.convert(user_files["keras"], user_files["npz"], convert=False)


# -- labels for compare ------------------------------------------------------------------------------

def eval_set(count: int, *, available: int | None = None, truncated: bool = False) -> CalibrationSet:
    calibration = data_intake.from_arrays({"arr_0": np.zeros((count, 2), np.float32)})
    calibration.available = count if available is None else available
    calibration.truncated = truncated
    return calibration


@pytest.mark.parametrize("labels, message", [
    (np.int64(3), "labels are a scalar"),
    (np.zeros((5, 3)), "labels have shape (5, 3)"),
    (np.array([0.0, 1.0, 0.5, 1.0, 0.0]), "fractional values such as 0.5"),
    (np.array(["cat"] * 5), "labels hold text"),
    (np.array([True] * 5), "labels hold bool values"),
    (np.arange(6), "6 labels for 5 eval samples"),
    (np.arange(4), "4 labels for 5 eval samples"),
    (np.array([0, 1, -1, 0, 1]), "negative class index (-1)"),
    (np.zeros((5, 2, 2)), "labels have shape (5, 2, 2)"),
])
def test_labels_that_are_not_one_class_index_per_sample_are_refused(labels, message):
    with pytest.raises(UsageError) as raised:
        read_labels(labels, eval_set(5))
    assert message in str(raised.value)


def test_labels_files_are_read_safely(bad_data, tmp_path):
    with pytest.raises(UsageError, match="labels not found"):
        read_labels(tmp_path / "missing.npy", eval_set(5))
    with pytest.raises(UsageError, match="Python objects"):
        read_labels(bad_data["pickled.npy"], eval_set(5))
    np.save(tmp_path / "labels.npy", np.arange(5))
    assert read_labels(tmp_path / "labels.npy", eval_set(5)).classes.tolist() == [0, 1, 2, 3, 4]


def test_labels_accepted_are_class_indices_and_one_hot_is_said_to_be_read_by_argmax():
    one_hot = read_labels(np.eye(3)[[2, 0, 1, 1, 0]], eval_set(5))
    assert one_hot.classes.tolist() == [2, 0, 1, 1, 0] and one_hot.given_as == "one-hot"
    column = read_labels(np.array([[1.0], [0.0], [2.0], [2.0], [1.0]]), eval_set(5))
    assert column.classes.tolist() == [1, 0, 2, 2, 1] and column.given_as == "indices"
    truncated = read_labels(np.arange(10) % 2, eval_set(5, available=10, truncated=True))  # --max-samples 5
    assert truncated.classes.tolist() == [0, 1, 0, 1, 0]
    with pytest.raises(UsageError, match="names a class the model does not have: its first output has 3"):
        check_classes(read_labels(np.array([0, 1, 3, 0, 1]), eval_set(5)), [1, 3])
    with pytest.raises(UsageError, match="pass a metric instead"):
        check_classes(column, [1, 4, 3])


def test_bad_labels_on_the_command_line_are_exit_2_before_converting(user_files, tmp_path):
    np.save(tmp_path / "labels.npy", np.zeros(121, np.int64))
    one_line_error(run_in_process("compare", str(user_files["keras"]), "--data", str(user_files["npz"]),
                                  "--eval-data", str(user_files["npz"]), "--labels", str(tmp_path / "labels.npy")),
                   "121 labels for 120 eval samples")


# -- compare on a model that does not convert --------------------------------------------------------

def test_compare_on_a_failing_conversion_renders_the_diagnosis_and_exits_1(user_files, tmp_path):
    np.save(tmp_path / "calib64.npy", smooth_images(120).astype(np.float64))
    result = run_in_process("compare", str(user_files["keras"]), "--data", str(tmp_path / "calib64.npy"),
                            "--eval-data", str(user_files["npz"]), "--json", str(tmp_path / "report.json"),
                            "--fail-on", "never")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "bug" not in result.stderr
    assert result.stdout.startswith("FAILED") and "QD201" in result.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["verdict"] == "failed" and report["findings"][0]["code"] == "QD201"


# -- quantdoctor's bugs are bugs ---------------------------------------------------------------------

def test_a_bug_in_the_conversion_worker_is_an_internal_error_with_its_traceback(tmp_path, user_files):
    request = {"model": {"loader": "keras_file", "path": str(user_files["keras"]), "signature_keys": None},
               "recipe": {"no_such_setting": True}, "data": None, "convert": True}
    with pytest.raises(InternalError) as raised:
        run_worker(request, tmp_path)
    assert not isinstance(raised.value, qd.QuantdoctorError)
    assert "Recipe.from_dict" in str(raised.value) and "no_such_setting" in str(raised.value)


def test_a_bug_in_the_compare_worker_is_an_internal_error(tmp_path):
    with pytest.raises(InternalError, match=r"CompareRequest.__init__\(\) missing .*'data'"):
        run_isolated("quantdoctor.compare.worker", {"response": str(tmp_path / "response.json")}, tmp_path)


def test_the_interpreters_own_errors_are_told_apart_from_quantdoctors():
    from ai_edge_litert.interpreter import Interpreter

    with pytest.raises(ValueError) as litert:
        Interpreter(model_content=b"not a model at all")
    assert raised_in(litert.value, "ai_edge_litert")
    with pytest.raises(UsageError) as ours:
        read_labels(np.int64(1), eval_set(1))
    assert not raised_in(ours.value, "ai_edge_litert")


def test_the_command_line_says_a_bug_is_a_bug(user_files, monkeypatch):
    def broken(*args, **kwargs):
        raise InternalError("the quantdoctor.convert.worker process failed:\nTraceback ...\nKeyError: 'x'")

    monkeypatch.setattr(importlib.import_module("quantdoctor.diagnosis.pipeline"), "_diagnose", broken)
    result = run_in_process("diagnose", str(user_files["keras"]))
    assert result.returncode == 3 and "internal error (a bug in quantdoctor)" in result.stderr


# -- typer's usage errors ----------------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["diagnose"], "Missing argument 'model'. (see `quantdoctor diagnose --help`)"),
    (["diagnose", "m.keras", "--dat", "x.npz"], "No such option: --dat"),
    (["diagnose", "m.keras", "--max-samples", "zero"], "Invalid value for '--max-samples'"),
    (["diagnose", "m.keras", "--max-samples", "0"], "Invalid value for '--max-samples'"),
    (["diagnoze", "m.keras"], "No such command 'diagnoze'"),
    (["audit", "a.tflite", "b.tflite"], "Got unexpected extra argument"),
])
def test_usage_errors_are_one_line(args, message):
    one_line_error(run(*args), message)


# -- the Python API checks its options at entry --------------------------------------------------------

@pytest.mark.parametrize("options, message", [
    ({"timeout": -5}, "timeout must be a positive number of seconds, not -5"),
    ({"timeout": float("nan")}, "timeout must be a positive number"),
    ({"max_samples": 0}, "max_samples must be a whole number of at least 1, not 0"),
    ({"max_samples": 2.5}, "max_samples must be a whole number"),
    ({"max_samples": True}, "max_samples must be a whole number"),
    ({"memory_limit_mb": 1}, "memory limit 1 MB is out of range"),
    ({"memory_limit_mb": 99999999999999}, "memory limit 99999999999999 MB is out of range"),
    ({"trust_model": "yes"}, "trust_model must be True or False"),
    ({"convert": "no"}, "convert must be True or False"),
    ({"signature_keys": "serving_default"}, "signature_keys must be a list of strings"),
    ({"target": "npu"}, "unknown target 'npu'"),
])
def test_diagnose_refuses_bad_options_before_any_work(user_files, options, message, monkeypatch):
    monkeypatch.setattr(importlib.import_module("quantdoctor.diagnosis.pipeline"), "run_worker",
                        lambda *a, **k: pytest.fail("work started"))
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        qd.diagnose(user_files["keras"], user_files["npz"], **options)


def test_compare_and_audit_refuse_bad_arguments(user_files, tmp_path):
    for options, message in (({"max_samples": 0}, "max_samples"), ({"timeout": 0}, "timeout"),
                             ({"metric": "accuracy"}, "metric must be a function"),
                             ({"html": tmp_path / "missing" / "r.html"}, "does not exist"),
                             ({"tflite": 42}, "tflite must be a .tflite path")):
        with pytest.raises(UsageError, match=message):
            qd.compare(user_files["keras"], user_files["npz"], eval_data=user_files["npz"], **options)
    with pytest.raises(UsageError, match="is a directory: audit reads a .tflite file"):
        qd.audit(tmp_path)
    with pytest.raises(UsageError, match="not a .tflite model"):
        qd.audit(user_files["keras"])
    with pytest.raises(UsageError, match="audit takes a .tflite path or its bytes, not list"):
        qd.audit([1, 2, 3])


# -- words: preflight-only runs, unused data, float models for microcontrollers --------------------------

def test_a_preflight_only_run_has_a_verdict_of_its_own(user_files, tmp_path):
    markup = tmp_path / "[/red]models"
    markup.mkdir(parents=True)
    shutil.copy(user_files["keras"], markup / "model.keras")
    result = run_in_process("diagnose", str(markup / "model.keras"), "--data", str(user_files["npz"]), "--no-convert",
                            "--json", str(tmp_path / "report.json"), "--fail-on", "never")
    assert result.returncode == 0, result.stderr
    headline = result.stdout.splitlines()[0]
    assert headline.startswith(f"PREFLIGHT ONLY  {markup / 'model.keras'}  mode=int8")
    assert "predicted: fully integer" in headline
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["verdict"] == "not_converted" and report["conversion"]["attempted"] is False
    assert report["preflight"]["verdict"] == "fully_integer"


@pytest.mark.code("QD908")
def test_data_for_settings_that_never_calibrate_is_said_to_be_unused():
    dynamic = qd.diagnose(image_model(), smooth_images(120), mode="dynamic")
    assert_finding(only(dynamic, "QD908"), "QD908", "environment", "info")
    assert "dynamic range quantization quantizes the weights only" in only(dynamic, "QD908").message
    assert [f.code for f in dynamic.findings] == ["QD908"]  # no calibration findings on data that is not used

    converter = tf.lite.TFLiteConverter.from_keras_model(image_model())
    converter.representative_dataset = dataset_from(smooth_images(120))  # but no optimizations
    forgotten = qd.diagnose(converter)
    finding = only(forgotten, "QD908")
    assert_finding(finding, "QD908", "environment", "warning")
    assert "converter.optimizations is empty" in finding.message
    assert forgotten.audit["model_kind"] == "float"  # the converter really ignored the samples


def test_microcontroller_target_on_a_float_model_says_the_model_is_float():
    float_model = tf.lite.TFLiteConverter.from_keras_model(with_layer(keras.layers.ReLU(name="relu"))).convert()
    report = qd.audit(float_model, target="microcontroller")
    finding = only(report, "QD209")
    assert finding.message.startswith("The model is not integer at all (float): LiteRT for Microcontrollers runs "
                                      "integer models")
    assert "QD111" not in [f.code for f in report.findings]
    assert "FULLY_CONNECTED" not in finding.message and "TFLITE_BUILTINS_INT8" in finding.fix.code
    assert str(report).splitlines()[0] == "FAILED  <bytes>  model: float"


def test_int8_accelerator_target_on_a_float_model_does_not_speak_of_dequantize_ops_it_lacks():
    float_model = tf.lite.TFLiteConverter.from_keras_model(with_layer(keras.layers.ReLU(name="relu"))).convert()
    assert not [op for op in read_tflite(float_model).ops if op.name in ("QUANTIZE", "DEQUANTIZE")]
    messages = [f.message for f in qd.audit(float_model, target="int8-accelerator").findings if f.code == "QD105"]
    assert messages and all(message.endswith(" computes in float in a model meant to be integer, as every op does: "
                                             "the model holds no quantized tensor.") for message in messages)


# -- terminal output: never cropped, rows never wrapped --------------------------------------------------

def test_piped_output_keeps_every_code_line_and_row_whole():
    long_line = ("debugger = tf.lite.experimental.QuantizationDebugger(converter=converter, "
                 "debug_dataset=representative_dataset, debug_options=options)")
    check = Check(code="QD501", name="n", severity="warning", title="t", detects="d", why="w", example="e", fix="f")
    finding = check.finding("a layer", fix="Keep it float.", fix_code=long_line)
    row = {"layer": "a_layer_with_a_long_name", "tensor": "t", "op": "FULLY_CONNECTED", "worst_channel_sqnr_db": 3.0,
           "sqnr_db": 10.0, "own_sqnr_drop_db": 7.0, "clipped_fraction": 0.01}
    report = Report(model={"source": "model.keras"}, settings={"mode": "int8"}, findings=[finding],
                    conversion={"attempted": True, "outcome": "ok", "seconds": 1.0},
                    comparison={"samples": 5, "end_to_end": {"sqnr_db": 20.0}, "layers": [row]})
    pipe = io.StringIO()
    render(report, Console(file=pipe, width=80, color_system=None))  # what a pipe gets: 80 columns
    lines = pipe.getvalue().splitlines()
    assert f"    {long_line}" in lines
    rows = [line for line in lines if "a_layer_with_a_long_name" in line]
    assert len(rows) == 1 and rows[0].endswith("1.00%")
