"""A probe: run one .tflite once on one sample, in a process of its own.

Run as `python -m quantdoctor.runtime.probe REQUEST.json` by `locate`, which runs shorter and
shorter prefixes of a model that killed the interpreter to find the op it dies on. The response
records the stage before each native step, in the run check's own state record (`runtime.check.run_rows`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from quantdoctor.isolation.protocol import Message, raised_in, serve, write_json
from quantdoctor.litert import interpreter_package
from quantdoctor.runtime.check import open_interpreter, run_rows
from quantdoctor.runtime.feed import Feeder


@dataclass
class ProbeRequest(Message):
    """Load the .tflite at `model`, allocate it for the one sample saved at `sample` (.npz) and, with
    `invoke`, run it."""

    model: str
    sample: str
    response: str
    invoke: bool


def main(request: ProbeRequest) -> int:
    """Load the request's model, allocate it for its sample and, if asked, invoke it; exit 0 unless
    the process dies."""
    response_path = Path(request.response)
    state: dict[str, Any] = {"stage": "loading"}
    write_json(response_path, state)
    with np.load(request.sample) as sample:
        row = {key: sample[key] for key in sample.files}
    try:
        interpreter = open_interpreter(request.model)
        run_rows(interpreter, Feeder(interpreter), [row], state, lambda s: write_json(response_path, s),
                 invoke=request.invoke)
    except Exception as exc:
        if not raised_in(exc, interpreter_package()):
            raise  # quantdoctor's own bug: `serve` reports it as one
        state.update(outcome="error", error=f"{type(exc).__name__}: {exc}")
    else:
        state.update(stage="done", outcome="ok")
    write_json(response_path, state)
    return 0


if __name__ == "__main__":
    sys.exit(serve(main, sys.argv[1], ProbeRequest))
