"""quantdoctor run on hostile files and by careless hands: each attack or mistake is performed for
real, then the user's files, the processes and the temporary directories are checked."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import keras
import numpy as np
import pytest
from helpers import QUANTDOCTOR, digest, root, run, run_in_process
from models import smooth_images, vectors

import quantdoctor as qd
from quantdoctor.errors import UnsafeModelError, UsageError


def one_line_error(result: subprocess.CompletedProcess, message: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr


def hashes(*paths: Path) -> dict[Path, str]:
    """The digest of every file at or under `paths`."""
    files = [p for path in paths for p in ([path] if path.is_file() else sorted(path.rglob("*"))) if p.is_file()]
    return {file: digest(file) for file in files}


@pytest.fixture(scope="module")
def user_files(image_model_files, tmp_path_factory) -> dict[str, Path]:
    """The shared model files, copied: these tests put links beside them."""
    folder = tmp_path_factory.mktemp("user")
    shutil.copy2(image_model_files["keras"], folder / "model.keras")
    shutil.copytree(image_model_files["saved_model"], folder / "saved_model")
    np.savez(folder / "calib.npz", image=smooth_images(60))
    return {"keras": folder / "model.keras", "saved_model": folder / "saved_model", "npz": folder / "calib.npz"}


# 1. Loading a model file never runs code stored in it, unless the user trusts the file.

def touching(marker: Path):
    """A Lambda function that creates `marker` when it runs: the code an attacker would store."""
    path = str(marker)
    return lambda x: (__import__("pathlib").Path(path).touch(), x)[1]


@pytest.fixture(scope="module")
def lambda_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("hostile")
    marker = folder / "PWNED"
    inputs = keras.Input((8,), name="features")
    hidden = keras.layers.Lambda(touching(marker), name="payload")(keras.layers.Dense(8, name="dense")(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2, name="dense_1")(hidden))
    model.save(folder / "lambda.keras")
    model.save(folder / "lambda.h5")
    np.savez(folder / "calib.npz", features=vectors(60))
    marker.unlink()  # building the model ran the function once
    return {"keras": folder / "lambda.keras", "h5": folder / "lambda.h5", "npz": folder / "calib.npz",
            "marker": marker}


@pytest.mark.parametrize("kind", ["keras", "h5"])
def test_a_model_with_lambda_layers_is_refused_and_its_code_never_runs(lambda_files, kind):
    result = run_in_process("diagnose", str(lambda_files[kind]), "--data", str(lambda_files["npz"]))
    one_line_error(result, f"lambda.{kind} contains Lambda layers ('payload'): loading them runs Python code "
                           "stored in the file. If you trust this file, pass --trust-model")
    assert not lambda_files["marker"].exists()


def test_a_trusted_model_with_lambda_layers_is_loaded_and_converted(lambda_files):
    result = run_in_process("diagnose", str(lambda_files["h5"]), "--data", str(lambda_files["npz"]), "--trust-model")
    assert result.returncode == 0, result.stdout + result.stderr
    assert lambda_files["marker"].exists()
    lambda_files["marker"].unlink()


def test_a_keras_file_holding_a_lambda_is_refused_before_any_worker_starts(lambda_files, tmp_path):
    """Its config says it holds bytecode: the refusal needs no TensorFlow process, for every command."""
    log = tmp_path / "workers.jsonl"
    env = {**os.environ, "QUANTDOCTOR_WORKER_LOG": str(log)}
    data = str(lambda_files["npz"])
    for command in (["diagnose"], ["compare", "--eval-data", data], ["fix"], ["reduce"]):
        result = run(command[0], str(lambda_files["keras"]), "--data", data, *command[1:], env=env)
        one_line_error(result, "lambda.keras contains Lambda layers ('payload'): loading them runs Python code")
    assert not log.exists()  # no worker ran
    assert not lambda_files["marker"].exists()


def test_the_python_api_refuses_untrusted_lambda_models_too(lambda_files):
    with pytest.raises(UnsafeModelError, match="contains Lambda layers \\('payload'\\)"):
        qd.compare(lambda_files["keras"], lambda_files["npz"], eval_data=lambda_files["npz"])
    assert not lambda_files["marker"].exists()


# 2. The child processes import nothing from the working directory or from PYTHON* variables.

@pytest.fixture
def hostile_dir(tmp_path) -> Path:
    folder = tmp_path / "downloads"
    folder.mkdir()
    for name in ("json", "keras", "numpy", "tensorflow"):
        (folder / f"{name}.py").write_text(f"open({str(tmp_path / ('IMPORTED_' + name))!r}, 'w').close()\n")
    (folder / "startup.py").write_text(f"open({str(tmp_path / 'STARTUP')!r}, 'w').close()\n")
    return folder


@pytest.mark.cold_spawn
def test_modules_in_the_working_directory_are_never_imported(user_files, hostile_dir):
    result = run("diagnose", str(user_files["keras"]), "--data", str(user_files["npz"]), cwd=hostile_dir,
                 env={**os.environ, "PYTHONSTARTUP": str(hostile_dir / "startup.py")})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "fully integer" in result.stdout
    assert sorted(p.name for p in hostile_dir.parent.iterdir()) == ["downloads"]


@pytest.mark.cold_spawn
def test_pythonpath_and_pythonstartup_do_not_reach_the_worker(user_files, hostile_dir, monkeypatch):
    monkeypatch.chdir(hostile_dir)
    monkeypatch.setenv("PYTHONPATH", str(hostile_dir))
    monkeypatch.setenv("PYTHONSTARTUP", str(hostile_dir / "startup.py"))
    report = qd.diagnose(user_files["keras"], user_files["npz"])
    assert report.conversion["outcome"] == "ok" and report.audit["fully_integer"]
    assert sorted(p.name for p in hostile_dir.parent.iterdir()) == ["downloads"]


# 3. and 5. An output never lands on or in an input, and two outputs never share a file.

@pytest.mark.parametrize("option, target", [
    ("--output", "saved_model/saved_model.pb"),
    ("--json", "saved_model/variables/variables.index"),
    ("--keep-workdir", "saved_model/variables"),
    ("--output", "saved_model_link/saved_model.pb"),  # through a symlink to the directory
    ("--output", "model_hardlink.tflite"),  # a hard link of the model is the model
    ("--json", "calib_symlink.json"),  # a symlink to the data is the data
])
def test_an_output_on_or_inside_an_input_is_refused(user_files, tmp_path, option, target):
    folder = user_files["keras"].parent
    for link, to in (("saved_model_link", user_files["saved_model"]), ("calib_symlink.json", user_files["npz"])):
        if not (folder / link).is_symlink():
            (folder / link).symlink_to(to)
    if not (folder / "model_hardlink.tflite").exists():
        os.link(user_files["keras"], folder / "model_hardlink.tflite")
    before = hashes(*user_files.values())
    model = user_files["saved_model"] if target.startswith("saved_model") else user_files["keras"]
    result = run_in_process("diagnose", str(model), "--data", str(user_files["npz"]), option, str(folder / target))
    one_line_error(result, f"refusing to write {option} {folder / target}: it ")
    assert "your input" in result.stderr
    assert hashes(*user_files.values()) == before


@pytest.mark.parametrize("first, second", [
    (("--json", "out/x"), ("--output", "out/x")),
    (("--json", "out/x"), ("--output", "out/../out/x")),
    (("--keep-workdir", "out/kept"), ("--output", "out/kept/model.tflite")),
])
def test_two_outputs_writing_to_one_place_are_refused(user_files, tmp_path, first, second):
    (tmp_path / "out").mkdir()
    args = [arg for option, path in (first, second) for arg in (option, str(tmp_path / path))]
    result = run_in_process("diagnose", str(user_files["keras"]), "--data", str(user_files["npz"]), *args)
    one_line_error(result, "would write to the same place")
    assert list((tmp_path / "out").iterdir()) == []


def test_the_api_refuses_an_html_report_onto_the_eval_data(user_files):
    before = hashes(user_files["npz"])
    with pytest.raises(UsageError, match="refusing to write html"):
        qd.compare(user_files["keras"], user_files["npz"], eval_data=user_files["npz"], html=user_files["npz"])
    assert hashes(user_files["npz"]) == before


# 4. --keep-workdir makes its own directory, or takes an empty one as it is.

def test_keep_workdir_keeps_an_empty_shared_directory_as_it_is(user_files, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    result = run_in_process("diagnose", str(user_files["keras"]), "--data", str(user_files["npz"]), "--keep-workdir",
                            str(shared), "--no-convert")
    assert result.returncode == 0, result.stdout + result.stderr
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
    assert json.loads((shared / "request.json").read_text())["convert"] is False
    assert (shared / "calibration.npz").is_file()


def test_keep_workdir_refuses_a_directory_holding_the_users_files(user_files, tmp_path):
    folder = tmp_path / "project"
    folder.mkdir()
    data = folder / "calibration.npz"  # the very name the worker's copy of the data has
    data.write_bytes(user_files["npz"].read_bytes())
    before = hashes(folder)
    result = run_in_process("diagnose", str(user_files["keras"]), "--data", str(data), "--keep-workdir", str(folder))
    one_line_error(result, f"--keep-workdir {folder} is not empty: name a new or empty directory")
    assert hashes(folder) == before and [p.name for p in folder.iterdir()] == ["calibration.npz"]


def test_keep_workdir_naming_a_file_is_refused_without_leaving_a_temporary_directory(user_files, tmp_path):
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    existing = tmp_path / "notes.txt"
    existing.write_text("mine")
    result = run("diagnose", str(user_files["keras"]), "--data", str(user_files["npz"]), "--keep-workdir",
                 str(existing), env={**os.environ, "TMPDIR": str(private_tmp)})
    one_line_error(result, f"--keep-workdir {existing} is an existing file")
    assert existing.read_text() == "mine" and list(private_tmp.iterdir()) == []


def test_keep_workdir_creates_a_private_directory(user_files, tmp_path):
    kept = tmp_path / "runs" / "first"
    qd.diagnose(user_files["keras"], user_files["npz"], convert=False, keep_workdir=kept)
    assert stat.S_IMODE(kept.stat().st_mode) == 0o700
    assert {"request.json", "response.json", "calibration.npz", "stderr.txt"} <= {p.name for p in kept.iterdir()}


# 6. A signal ends the worker and removes the temporary files.

def _workers(pid: int) -> list[int]:
    """The converter workers whose parent is `pid`, read from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_text()
        except (OSError, ValueError, IndexError):
            continue
        if parent == pid and "quantdoctor.convert.worker" in command:
            found.append(int(entry.name))
    return found


def _wait_for(condition, what: str, limit: float = 240.0):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"never saw {what}")


@pytest.fixture(scope="module")
def long_conversion(tmp_path_factory) -> dict[str, Path]:
    """A model whose calibration takes several seconds: the signal arrives in the middle of it."""
    folder = tmp_path_factory.mktemp("long")
    convs = [keras.layers.Conv2D(32, 3, padding="same", name=f"conv_{i}" if i else "conv") for i in range(4)]
    model = keras.Sequential([keras.Input((96, 96, 3), name="image"), *convs, keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(2, name="dense")])
    model.save(folder / "model.keras")
    np.savez(folder / "calib.npz", image=np.random.default_rng(0).random((400, 96, 96, 3), dtype=np.float32))
    return {"keras": folder / "model.keras", "npz": folder / "calib.npz"}


CLI_RUN = [QUANTDOCTOR, "diagnose", "{keras}", "--data", "{npz}", "--timeout", "3600"]
API_RUN = [sys.executable, "-c", "import sys, quantdoctor; quantdoctor.diagnose(*sys.argv[1:], timeout=3600)",
           "{keras}", "{npz}"]


@pytest.mark.cold_spawn
@pytest.mark.slow
@pytest.mark.parametrize("command, signum, returncode", [
    (CLI_RUN, signal.SIGINT, 130),
    (CLI_RUN, signal.SIGTERM, 143),
    (API_RUN, signal.SIGTERM, -signal.SIGTERM),  # SIGTERM's default effect, after the cleanup
], ids=["cli-SIGINT", "cli-SIGTERM", "api-SIGTERM"])
def test_a_signal_ends_the_worker_and_removes_the_temporary_files(long_conversion, tmp_path, command, signum,
                                                                  returncode):
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    process = subprocess.Popen([arg.format(**long_conversion) for arg in command],
                               env={**os.environ, "TMPDIR": str(private_tmp)}, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    worker = None
    try:
        worker = _wait_for(lambda: _workers(process.pid), "the worker process")[0]

        def converting() -> bool:
            responses = list(private_tmp.glob("quantdoctor-*/response.json"))
            return bool(responses) and '"converting"' in responses[0].read_text()

        _wait_for(converting, "the conversion start")
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
        if worker is not None and Path(f"/proc/{worker}").exists():
            os.killpg(worker, signal.SIGKILL)  # the test failed: leave nothing running
    assert process.returncode == returncode, stdout + stderr
    if command is CLI_RUN:
        assert stderr.strip() == "quantdoctor: interrupted"
    assert not Path(f"/proc/{worker}").exists()
    assert list(private_tmp.iterdir()) == []


@pytest.mark.cold_spawn
def test_ctrl_c_in_the_python_api_ends_the_worker_then_raises_keyboard_interrupt(user_files, tmp_path,
                                                                               monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    workers: list[int] = []

    def interrupt_once_the_worker_runs() -> None:
        workers.extend(_wait_for(lambda: _workers(os.getpid()), "the worker process"))
        os.kill(os.getpid(), signal.SIGINT)

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    threading.Thread(target=interrupt_once_the_worker_runs, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        qd.diagnose(user_files["keras"], user_files["npz"], timeout=3600)
    assert workers and not Path(f"/proc/{workers[0]}").exists()
    assert list(tmp_path.iterdir()) == []
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


@pytest.mark.cold_spawn
def test_signal_handlers_come_back_after_a_run(user_files):
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    qd.diagnose(user_files["keras"], user_files["npz"], convert=False)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


# 7. Limits are validated, and every out-of-memory form is QD903.

@pytest.mark.parametrize("options, message", [
    ({"memory_limit_mb": 1}, "memory limit 1 MB is out of range"),
    ({"memory_limit_mb": 99999999999999}, "memory limit 99999999999999 MB is out of range"),
    ({"memory_limit_mb": 512.5}, "memory limit 512.5 MB is out of range"),
    ({"timeout": -5}, "timeout must be a positive number of seconds, not -5"),
    ({"timeout": float("nan")}, "timeout must be a positive number of seconds, not nan"),
])
def test_impossible_limits_are_usage_errors(user_files, options, message):
    with pytest.raises(UsageError, match=message):
        qd.diagnose(user_files["keras"], user_files["npz"], **options)


def test_a_huge_memory_limit_is_one_line_on_the_command_line(user_files):
    result = run_in_process("diagnose", str(user_files["keras"]), "--memory-limit", "99999999999999")
    one_line_error(result, "memory limit 99999999999999 MB is out of range: give a whole number of MB from 256 to")


@pytest.mark.cold_spawn
@pytest.mark.code("QD903")
@pytest.mark.matcher("out-of-memory")
def test_a_limit_too_small_to_start_tensorflow_is_out_of_memory(user_files):
    report = qd.diagnose(user_files["keras"], user_files["npz"], memory_limit_mb=256)
    assert report.conversion["outcome"] == "crash"
    finding = root(report)
    assert finding.code == "QD903", [f.code for f in report.findings]
    assert finding.message == "The converter ran out of memory while loading, under the 256 MB memory limit."
    assert "failed to map segment from shared object" in finding.evidence["converter_message"]


@pytest.fixture(scope="module")
def wide_model(tmp_path_factory) -> dict[str, Path]:
    """Two 4096x4096 Dense layers (64 MB of weights each): TensorFlow's own 1.2 GB plus this is too much
    for the limits below."""
    folder = tmp_path_factory.mktemp("wide")
    model = keras.Sequential([keras.Input((512,), name="features"), keras.layers.Dense(4096, name="dense"),
                              keras.layers.Dense(4096, name="dense_1"), keras.layers.Dense(2, name="dense_2")])
    model.save(folder / "wide.keras")
    np.savez(folder / "calib.npz", features=vectors(120, 512))
    return {"keras": folder / "wide.keras", "npz": folder / "calib.npz"}


@pytest.mark.cold_spawn
@pytest.mark.slow
@pytest.mark.parametrize("limit", [1600, 1700])
def test_a_model_that_needs_more_than_the_limit_is_out_of_memory(wide_model, limit):
    """Where the allocation fails decides its form: TensorFlow's ResourceExhaustedError or NumPy's
    MemoryError (wrapped in a ValueError by Keras) while restoring the weights, a native bad_alloc, a
    thread that cannot start, or a segfault inside TensorFlow with nothing printed. Each is QD903,
    never a user error (exit 2) or a crash (QD901)."""
    report = qd.diagnose(wide_model["keras"], wide_model["npz"], memory_limit_mb=limit)
    assert report.conversion["outcome"] == "crash"
    finding = root(report)
    assert finding.code == "QD903", [(f.code, f.message) for f in report.findings]
    assert finding.evidence["memory_limit_mb"] == limit
    assert finding.evidence["converter_message"] or finding.evidence["peak_memory_mb"] >= 0.9 * limit
