"""How a worker process ends (quantdoctor.isolation.worker_process): at once after its module, with the exit
code, output and atexit handlers of a normal exit."""

from __future__ import annotations

import json
import subprocess
import sys

import keras
import pytest
from models import vectors, with_layer

import quantdoctor as qd
from quantdoctor.intake.imports import handed_over
from quantdoctor.isolation import PACKAGE_ROOT, prefork

ENDINGS = {
    "returns": ("print('out', end='')", 0, ""),
    "exits with a number": ("import sys; print('out', end=''); sys.exit(3)", 3, ""),
    "exits with None": ("import sys; print('out', end=''); sys.exit()", 0, ""),
    "exits with a message": ("import sys; print('out', end=''); sys.exit('a message')", 1, "a message"),
    "raises": ("print('out', end=''); raise ValueError('a bug')", 1, "ValueError: a bug"),
}


@pytest.mark.parametrize("ending", ENDINGS)
def test_a_worker_module_ends_with_the_code_output_and_atexit_handlers_of_a_normal_exit(ending, tmp_path):
    code, returncode, stderr = ENDINGS[ending]
    marker = tmp_path / "atexit.txt"
    (tmp_path / "ending.py").write_text(f"import atexit\natexit.register(lambda: open({str(marker)!r}, 'w').write("
                                        f"__name__))\n{code}\n")
    ran = subprocess.run([sys.executable, "-I", "-c", "import sys; sys.path[:0] = sys.argv[1:3]; "
                          "from quantdoctor.isolation import worker_process; worker_process.run('ending')",
                          str(PACKAGE_ROOT), str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert (ran.returncode, ran.stdout) == (returncode, "out")
    assert stderr in ran.stderr and (stderr or not ran.stderr)
    assert marker.read_text() == "__main__"


ATEXIT_MODULE = """
import atexit
import os

atexit.register(lambda: open({path!r}, "a").write(f"{{os.getpid()}}\\n"))
"""


@pytest.mark.parametrize("start", ["spawn", "fork"])
def test_a_conversion_worker_runs_the_users_atexit_handlers_as_it_ends(start, tmp_path, monkeypatch):
    """The worker ends without TensorFlow's teardown, but an --import module's atexit handler runs there,
    cold or forked, once per worker."""
    log, ran = tmp_path / "workers.jsonl", tmp_path / "atexit.txt"
    monkeypatch.setenv("QUANTDOCTOR_WORKER_LOG", str(log))
    monkeypatch.setenv(prefork.SWITCH, "1" if start == "fork" else "0")
    (tmp_path / "at_exit.py").write_text(ATEXIT_MODULE.format(path=str(ran)))
    model = tmp_path / "model.keras"
    with_layer(keras.layers.ReLU(name="relu")).save(model)
    with handed_over([str(tmp_path / "at_exit.py")]):
        report = qd.diagnose(model, vectors(20))
    assert report.conversion["outcome"] == "ok"
    assert [json.loads(line)["started_by"] for line in log.read_text().splitlines()] == [start]
    assert len(ran.read_text().splitlines()) == 1
