"""The `quantdoctor` command as a user runs it: real files, real processes, exit codes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from helpers import QUANTDOCTOR, digest, run, run_in_process


@pytest.fixture(scope="module")
def model_files(image_model_files) -> dict[str, Path]:
    return {name: image_model_files[name] for name in ("keras", "h5", "npz", "npy64")}


def test_clean_model_exits_0_writes_json_and_tflite_and_leaves_user_files_untouched(model_files, tmp_path):
    before = {name: digest(path) for name, path in model_files.items()}
    result = run("diagnose", str(model_files["keras"]), "--data", str(model_files["npz"]), "--mode", "int8-strict",
                 "--io", "int8", "--json", str(tmp_path / "report.json"), "--output", str(tmp_path / "model.tflite"))
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["schema_version"] == 1 and report["verdict"] == "ok" and report["findings"] == []
    assert report["model"]["format"] == "keras"
    assert report["audit"]["fully_integer"] is True
    assert (tmp_path / "model.tflite").read_bytes()[4:8] == b"TFL3"
    assert report["conversion"]["model_bytes"] == (tmp_path / "model.tflite").stat().st_size
    assert {name: digest(path) for name, path in model_files.items()} == before


def test_failing_h5_model_exits_1_with_the_root_cause_first(model_files, tmp_path):
    result = run("diagnose", str(model_files["h5"]), "--data", str(model_files["npy64"]),
                 "--json", str(tmp_path / "report.json"))
    assert result.returncode == 1
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["verdict"] == "failed"
    assert report["findings"][0]["code"] == "QD201"
    assert report["findings"][0]["location"]["input"] == "image"
    assert "Root cause" in result.stdout and "QD201" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_fail_on_never_exits_0_even_with_errors(model_files):
    assert run("diagnose", str(model_files["keras"]), "--data", str(model_files["npy64"]),
               "--fail-on", "never").returncode == 0


@pytest.mark.parametrize("args, message", [
    (["diagnose", "missing.keras"], "model not found"),
    (["diagnose", "{keras}", "--mode", "int4"], "unknown mode 'int4'"),
    (["diagnose", "{keras}", "--data", "missing.npz"], "calibration data not found"),
    (["diagnose", "{keras}", "--output", "{keras}"], "refusing to write --output"),
    (["diagnose", "{keras}", "--fail-on", "sometimes"], "unknown --fail-on"),
    (["explain", "qd999\x1b[31m"], "unknown code 'qd999\\x1b[31m'"),  # the text as given, escaped
])
def test_user_errors_are_one_line_and_exit_2(model_files, args, message):
    result = run(*[a.format(**model_files) for a in args])
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_unreadable_model_file_is_a_clear_error(tmp_path):
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"not a zip archive")
    result = run("diagnose", str(broken))
    assert result.returncode == 2
    assert result.stderr == (f"quantdoctor: error: {broken} is not a valid .keras file (not a zip archive); "
                             "a .keras file is what model.save('model.keras') writes\n")


def test_explain_prints_the_documented_sections():
    result = run("explain", "qd103")
    assert result.returncode == 0
    for section in ("QD103 rnn-tensorlist-dynamic-batch", "What it detects", "Why it matters", "Example", "Fix",
                    "unroll=True", "_experimental_lower_tensor_list_ops = False"):
        assert section in result.stdout


def test_a_reader_that_goes_away_is_exit_141_not_the_findings_exit_1():
    """`quantdoctor ... | head -1`: the output's reader closes the pipe; the command ends as a process killed by
    SIGPIPE does (141), silently, where rich's own exit 1 read as "findings at or above --fail-on"."""
    process = subprocess.Popen([QUANTDOCTOR, "explain", "QD103"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # no reader: the first write fails with EPIPE
    assert process.wait(timeout=120) == 141 and process.stderr.read() == b""
    process.stderr.close()


def test_codes_lists_every_catalog_entry():
    from quantdoctor import catalog

    lines = run("codes").stdout.strip().splitlines()
    assert [line.split()[0] for line in lines] == list(catalog.CHECKS)
    assert len(lines) >= 25


@pytest.mark.parametrize("args", [["explain", "QD201"], ["diagnose", "missing.keras"], ["diagnoze", "m.keras"],
                                  ["diagnose", "{keras}", "--mode", "int4"]])
def test_the_command_in_the_tests_process_answers_as_in_a_process_of_its_own(model_files, args):
    """helpers.run_in_process, which most tests of the command use, gives what the installed command gives."""
    args = [a.format(**model_files) for a in args]
    real, in_process = run(*args), run_in_process(*args)
    assert (in_process.returncode, in_process.stdout, in_process.stderr) == (real.returncode, real.stdout, real.stderr)
    assert real.stdout or real.stderr
