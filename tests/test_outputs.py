"""The files quantdoctor writes for the user: whole or not at all, and only regular files.

A full disk is one line naming the path (exit 2) and leaves no empty or half-written file; a FIFO
or a device given as an output is refused before any work (a FIFO with no reader must not hang).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import keras
import pytest
from helpers import QUANTDOCTOR, run, run_in_process

from quantdoctor.errors import UsageError
from quantdoctor.intake import output_file
from quantdoctor.intake.output_file import write_output


@pytest.fixture(scope="module")
def tflite_model(tmp_path_factory) -> Path:
    """A real float .tflite (audit reads it without TensorFlow)."""
    import tensorflow as tf

    model = keras.Sequential([keras.Input((4,), name="features"), keras.layers.Dense(3, name="scores")])
    path = tmp_path_factory.mktemp("model") / "model.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return path


def one_line(completed: subprocess.CompletedProcess, *parts: str) -> str:
    assert completed.returncode == 2, completed.stdout[-2000:] + completed.stderr[-2000:]
    line = completed.stderr
    assert line.startswith("quantdoctor: error: ") and line.count("\n") == 1, line
    for part in parts:
        assert part in line, line
    return line


# Every command's outputs are checked before any work: the model is never read (it is not one).
OUTPUT_OPTIONS = [("audit", "--json"), ("diagnose", "--json"), ("diagnose", "--output"), ("fix", "--script"),
                  ("fix", "--html"), ("fix", "--output"), ("compare", "--html"), ("compare", "--json")]


@pytest.mark.parametrize("command, option", OUTPUT_OPTIONS)
def test_a_fifo_without_a_reader_is_refused_at_once_not_waited_on(command, option, tmp_path):
    model = tmp_path / ("model.tflite" if command == "audit" else "model.keras")
    model.write_bytes(b"never read: the output is refused first")
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    extra = ["--eval-data", str(model)] if command == "compare" else []  # compare needs eval data to start
    completed = subprocess.run([QUANTDOCTOR, command, str(model), *extra, option, str(fifo)],
                               capture_output=True, text=True, timeout=60)  # a hang fails here
    one_line(completed, f"{option} {fifo} is a named pipe (FIFO), not a regular file")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_run_refuses_a_fifo_as_its_json_before_starting_the_command(tmp_path):
    fifo = tmp_path / "run.fifo"
    os.mkfifo(fifo)
    marker = tmp_path / "STARTED"
    completed = subprocess.run([QUANTDOCTOR, "run", "--json", str(fifo), "--", "touch", str(marker)],
                               capture_output=True, text=True, timeout=60)
    one_line(completed, f"--json {fifo} is a named pipe (FIFO), not a regular file")
    assert not marker.exists()


def test_dev_full_is_refused_as_a_device_before_any_work(tflite_model):
    one_line(run("audit", str(tflite_model), "--json", "/dev/full"), "--json /dev/full is a device, not a regular file")


def test_a_full_file_system_is_one_line_naming_the_path_and_leaves_the_old_file(tflite_model, tmp_path):
    """A real full file system: a 64 KiB tmpfs, filled, in a private mount namespace."""
    if not shutil.which("unshare") or subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "true"],
                                                     capture_output=True).returncode != 0:
        pytest.skip("no user and mount namespaces here to mount a small tmpfs")
    full = tmp_path / "full"
    full.mkdir()
    script = (f'mount -t tmpfs -o size=64k tmpfs "{full}" && echo old > "{full}/report.json" && '
              f'(dd if=/dev/zero of="{full}/filler" bs=4k 2>/dev/null; true) && '
              f'"{QUANTDOCTOR}" audit "{tflite_model}" --json "{full}/report.json"; code=$?; '
              f'echo "listing: $(ls -A "{full}" | tr "\\n" " ")"; '
              f'echo "report: $(cat "{full}/report.json")"; exit $code')
    completed = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
                               capture_output=True, text=True, timeout=120)
    line = one_line(completed, f"cannot write --json {full}/report.json: No space left on device")
    assert "free some space or choose another place" in line
    assert "listing: filler report.json \n" in completed.stdout  # no temporary file left behind
    assert "report: old\n" in completed.stdout  # the file that was there is untouched


def test_enospc_at_any_step_leaves_no_partial_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    target = tmp_path / "report.json"
    target.write_text("old")
    os.chmod(target, 0o640)

    def full(*args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(output_file.os, "fsync", full)  # where a delayed allocation reports it
    with pytest.raises(UsageError, match=rf"cannot write --json {target}: No space left on device: free some space"):
        write_output(target, "{}", "--json")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]
    monkeypatch.undo()

    write_output(target, '{"new": 1}', "--json")
    assert target.read_text() == '{"new": 1}' and stat.S_IMODE(target.stat().st_mode) == 0o640  # mode kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_a_symlinked_output_writes_its_target_and_the_link_stays(tmp_path):
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "model.tflite"
    target.write_bytes(b"old")
    link = tmp_path / "link.tflite"
    link.symlink_to(target)
    write_output(link, b"new", "--output")
    assert link.is_symlink() and target.read_bytes() == b"new"
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == ["model.tflite"]


@pytest.mark.parametrize("command, option", OUTPUT_OPTIONS)
def test_a_dangling_symlink_output_is_checked_where_it_points(command, option, tmp_path):
    model = tmp_path / ("model.tflite" if command == "audit" else "model.keras")
    model.write_bytes(b"never read: the output is refused first")
    link = tmp_path / "dangling.out"
    link.symlink_to(tmp_path / "missing" / "dir" / "x.out")  # written through: its target's directory counts
    extra = ["--eval-data", str(model)] if command == "compare" else []  # compare needs eval data to start
    completed = run_in_process(command, str(model), *extra, option, str(link))
    one_line(completed, f"the directory {tmp_path / 'missing' / 'dir'} does not exist")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["dangling.out", model.name])


def test_a_watch_document_stays_whole_on_a_full_disk_and_a_path_must_be_a_path(tmp_path, monkeypatch):
    import quantdoctor as qd
    from quantdoctor.watch.session import _append

    path = tmp_path / "run.json"
    with qd.watch(path, echo=False) as session:
        _append(session, "findings", {"code": "QD214", "n": 1})

        def full(*args):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(output_file.os, "fsync", full)
        with pytest.raises(UsageError, match="No space left on device"):
            _append(session, "findings", {"code": "QD214", "n": 2})
        monkeypatch.undo()
    document = json.loads(path.read_text())  # the entries written before the disk filled, intact
    assert [finding["n"] for finding in document["findings"]] == [1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]
    for wrong in (5, b"run.json"):
        with pytest.raises(UsageError, match="json_path must be a path"):
            qd.watch(wrong)
