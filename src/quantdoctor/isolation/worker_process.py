"""A worker process from start to end: its module run as `__main__`, then the process ends at once.

Every worker, cold (`runner.isolated_command`) or forked (`prefork`), runs its module through `run`. A
worker has written its response before its module returns; what Python's own shutdown would do after
that is tear down TensorFlow's interpreter state: about 0.8 s on any model, measured in a forked worker
of a tiny Keras model (TensorFlow 2.21, 2 cores), as long as the load or conversion itself. So once the
module has returned, or exited with a number, the process runs its `atexit` handlers (logging's flush,
temporary files, the user's `--import` modules' own), flushes stdout and stderr, and ends with that exit
code without the teardown. An exception escaping the module (MemoryError, a worker's own bug) is left to
the interpreter, which prints it and exits 1 through its usual shutdown.
"""

from __future__ import annotations

import atexit
import os
import runpy
import sys
from typing import NoReturn


def run(module: str) -> NoReturn:
    """Run `module` as `__main__` (with the process's `sys.argv`), then end the process with its exit code."""
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as stop:
        if stop.code is not None and not isinstance(stop.code, int):
            raise  # sys.exit("a message"): the interpreter prints it
        code = stop.code or 0
    atexit._run_exitfuncs()  # what a normal exit runs first; the rest of the shutdown is teardown only
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
