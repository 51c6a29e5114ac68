"""Which op a LiteRT interpreter dies on, when it dies without saying (an abort in `allocate_tensors`).

The interpreter prepares and runs the ops of a subgraph in order, so a model cut after its first
k ops fails exactly when the failing op is among them. Bisection over k finds it in about log2(ops)
probes, each a short process of its own (`probe`): the abort takes the probe down, not quantdoctor.
Only a model that already failed its run check pays for this.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from quantdoctor.isolation.runner import run_isolated
from quantdoctor.runtime.probe import ProbeRequest

PROBE_TIMEOUT = 120.0


def failing_op(tflite: bytes, row: dict[str, np.ndarray], invoke: bool, timeout: float = PROBE_TIMEOUT) -> int | None:
    """The index (in the main subgraph) of the op the interpreter fails on with `row`, allocating
    tensors and, with `invoke`, running the model; None when the whole model passes in a probe (the
    failure does not reproduce) or has no ops."""
    workdir = Path(tempfile.mkdtemp(prefix="quantdoctor-locate-"))
    try:
        np.savez(workdir / "sample.npz", **row)
        count = _op_count(tflite)
        if not count or not _fails(tflite, workdir, invoke, timeout):
            return None
        runs, fails = 0, count  # the first `runs` ops run; the first `fails` ops fail
        while fails - runs > 1:
            middle = (runs + fails) // 2
            if _fails(prefix(tflite, middle), workdir, invoke, timeout):
                fails = middle
            else:
                runs = middle
        return fails - 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def prefix(tflite: bytes, count: int) -> bytes:
    """The model cut after the first `count` ops of its main subgraph, whose outputs become the
    outputs of the last op kept. Signatures are dropped: they name the old outputs."""
    import flatbuffers

    from quantdoctor.litert import schema_module

    schema = schema_module()

    model = schema.ModelT.InitFromPackedBuf(tflite, 0)
    graph = model.subgraphs[0]
    graph.operators = graph.operators[:count]
    graph.outputs = [int(i) for i in graph.operators[-1].outputs if i >= 0]
    model.signatureDefs = None
    builder = flatbuffers.Builder(len(tflite) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _op_count(tflite: bytes) -> int:
    from quantdoctor.litert import schema_module

    schema = schema_module()

    return schema.Model.GetRootAs(tflite, 0).Subgraphs(0).OperatorsLength()


def _fails(tflite: bytes, workdir: Path, invoke: bool, timeout: float) -> bool:
    """True when the interpreter dies or errs running `tflite` on the sample, in a probe process."""
    (workdir / "model.tflite").write_bytes(tflite)
    (workdir / "response.json").unlink(missing_ok=True)
    request = ProbeRequest(model=str(workdir / "model.tflite"), sample=str(workdir / "sample.npz"),
                           response=str(workdir / "response.json"), invoke=invoke)
    run = run_isolated("quantdoctor.runtime.probe", request, workdir, timeout)
    return run.outcome != "done" or run.response.get("outcome") != "ok"
