"""Audit a .tflite model on its own: `quantdoctor audit` and `quantdoctor.audit`."""

from __future__ import annotations

from pathlib import Path

from quantdoctor.audit.checks import audit_findings, summarize
from quantdoctor.audit.edgetpu import edgetpu_audit
from quantdoctor.audit.ethos_u import npu_audit
from quantdoctor.audit.tflite_model import read_tflite, read_tflite_file
from quantdoctor.errors import UsageError
from quantdoctor.intake import options
from quantdoctor.intake.options import Target
from quantdoctor.report.model import Report, rank_findings


def audit(model: str | Path | bytes, target: str | None = None, sram_kib: int | None = None) -> Report:
    """Is the model fully integer, which ops stayed float, how to feed it, and does it fit `target`.

    `model` is a .tflite path or its bytes; `target` is "int8-accelerator", "microcontroller" or an Ethos-U config
    ("ethos-u55-128", ...: the model is then compiled by Arm's Vela, in an isolated process). `sram_kib`, for an
    Ethos-U target: the SRAM the system gives the NPU's tensor arena, in KiB (QD123 when the model needs more).
    Nothing is executed: the flatbuffer is read with LiteRT's schema.
    """
    options.checked_target(target)
    if sram_kib is not None:
        sram_kib = options.count(sram_kib, "the SRAM size (--sram, sram_kib) in KiB")
        if target is None or not Target(target).ethos_u:
            ethos_u = ", ".join(t.value for t in Target if t.ethos_u)
            raise UsageError(f"the SRAM size (--sram, sram_kib) is an Ethos-U system's: give an Ethos-U target "
                             f"({ethos_u}), not {target!r}")
    if not isinstance(model, (str, Path, bytes, bytearray)):
        raise UsageError(f"audit takes a .tflite path or its bytes, not {type(model).__name__}")
    model = bytes(model) if isinstance(model, bytearray) else model
    produced = read_tflite(model) if isinstance(model, bytes) else read_tflite_file(model)
    source = "<bytes>" if isinstance(model, bytes) else str(model)
    content = model if isinstance(model, bytes) else Path(model).read_bytes()
    npu, npu_findings = npu_audit(content, target, produced, [], sram_kib=sram_kib)
    edgetpu, edgetpu_findings = edgetpu_audit(target, produced, [])
    findings = rank_findings(audit_findings(produced, [], target=target) + npu_findings + edgetpu_findings)
    extra = {key: value for key, value in (("npu", npu), ("edgetpu", edgetpu)) if value}
    return Report(model={"source": source, "format": "tflite", "inputs": []},
                  settings={"mode": None, "target": target}, findings=findings,
                  conversion={"attempted": False}, audit=summarize(produced, []) | extra)
