"""The child process that compiles a .tflite with Arm's Vela: `python -m quantdoctor.audit.vela_worker request.json`.

Vela runs here, never in quantdoctor's own process: it is run like the converter (`isolation/runner.py`),
with a time limit, and a compiler crash is an outcome. What Vela decided is read from its own files,
never from its console text (whose wording changes between releases):

- `<model>_per-layer.csv` (`--verbose-performance`): each op, whether it runs on the NPU or the CPU,
  its MACs and cycles;
- `<model>_summary_<system config>.csv`: the performance estimate, the memory used, and the memory
  mode and arena (SRAM) size it compiled for (`VelaRequest.arena_cache_size`, bytes, sets that size);
- `<model>_vela.tflite`: the compiled model, whose `ethos-u` custom ops are the NPU partitions;
- why an op stays on the CPU: Vela's own constraint checks (`TFLiteSemantic` and
  `TFLiteSupportedOperators`), called one by one on Vela's reading of the model; each returns
  whether the op passes and the tensors at fault, and its docstring states the rule. Vela's
  compiler core's op table for the accelerator (`regor.tflite_operator_constraints`) says which
  op types it has kernels for.
"""

from __future__ import annotations

import csv
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quantdoctor.catalog.npu import vela_core_name
from quantdoctor.isolation.protocol import Message, serve, write_message

# What Vela's model reader adds to the graph: not ops of the model.
_READER_OPS = ("Placeholder", "SubgraphInput", "Const")


@dataclass
class VelaRequest(Message):
    """Compile `model` (a .tflite path) for `accelerator` (a Vela accelerator config) into `output_dir`;
    `arena_cache_size`: the SRAM for the tensor arena in bytes (None: Vela's default)."""

    model: str
    accelerator: str
    output_dir: str
    response: str
    arena_cache_size: int | None = None


@dataclass
class VelaResponse(Message):
    """How far the compile got (`stage`), and with `outcome` "ok": Vela's per-op CSV rows, its summary row,
    the compiled model's path and, by output tensor, why each op Vela refuses stays on the CPU."""

    vela_version: str
    accelerator: str
    stage: str = "compiling"
    outcome: str | None = None
    error: str | None = None
    seconds: float | None = None
    per_layer: list[dict[str, str]] = field(default_factory=list)
    summary: dict[str, str] = field(default_factory=dict)
    compiled_model: str | None = None
    reasons: dict[str, dict[str, str]] = field(default_factory=dict)


def main(request: VelaRequest) -> int:
    """Compile the request's model with Vela; write the response."""
    response_path, output_dir = Path(request.response), Path(request.output_dir)
    from ethosu.vela import vela  # optional extra: imported only in this process

    response = VelaResponse(vela_version=vela.__version__, accelerator=request.accelerator)
    write_message(response_path, response)
    started = time.perf_counter()
    try:
        sram = ["--arena-cache-size", str(int(request.arena_cache_size))] if request.arena_cache_size else []
        returncode = vela.main([request.model, "--accelerator-config", request.accelerator, "--output-dir",
                                str(output_dir), "--verbose-performance", *sram])
    except Exception as exc:  # Vela refusing the user's model is an outcome, not a bug of quantdoctor
        response.stage, response.outcome, response.error = "done", "error", f"{type(exc).__name__}: {exc}"
        write_message(response_path, response)
        return 0
    response.seconds = round(time.perf_counter() - started, 3)
    stem = output_dir / Path(request.model).stem
    summary = sorted(output_dir.glob(f"{Path(request.model).stem}_summary_*.csv"))
    per_layer = Path(f"{stem}_per-layer.csv")
    compiled = Path(f"{stem}_vela.tflite")
    response.stage = "done"
    if returncode != 0 or not (summary and per_layer.is_file() and compiled.is_file()):
        response.outcome, response.error = "error", f"Vela exited with {returncode} and wrote no compiled model"
        write_message(response_path, response)
        return 0
    response.outcome, response.per_layer, response.summary = "ok", read_csv(per_layer), read_csv(summary[0])[0]
    response.compiled_model, response.reasons = str(compiled), cpu_reasons(request.model, request.accelerator)
    write_message(response_path, response)
    return 0


def read_csv(path: Path) -> list[dict[str, str]]:
    """The rows of one of Vela's CSV files, by column name."""
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def cpu_reasons(model: str, accelerator: str) -> dict[str, dict[str, str]]:
    """Output tensor name -> {"op", "rule", "detail"}: the first of Vela's constraints the op breaks.

    Vela's Python constraint checks are tried first. An op type Vela's compiler core has no kernel
    for on this accelerator is said so. An op those checks pass, with 16-bit feature maps, is named
    with the core's own constraints for that op that ask for 8-bit ones. Other ops are left out:
    Vela may still place them on the CPU, and the caller says that Vela gave no reason.
    """
    from ethosu import regor
    from ethosu.vela import model_reader
    from ethosu.vela.data_type import DataType
    from ethosu.vela.tflite_mapping import optype_to_builtintype
    from ethosu.vela.tflite_model_semantic import TFLiteSemantic
    from ethosu.vela.tflite_supported_operators import TFLiteSupportedOperators

    kernels = {name.replace("ARGMAX", "ARG_MAX"): rules
               for name, rules in regor.tflite_operator_constraints(vela_core_name(accelerator)).items()}
    common = _common_rules(kernels)
    nng, _ = model_reader.read_model(model, model_reader.ModelReaderOptions())
    semantic, supported = TFLiteSemantic(), TFLiteSupportedOperators()
    reasons = {}
    for subgraph in nng.subgraphs:
        for op in subgraph.get_all_ops():
            if op.type.name in _READER_OPS or not op.outputs:
                continue
            builtin = optype_to_builtintype(op.type)
            if builtin not in kernels:
                reason = {"rule": f"Vela has no {vela_core_name(accelerator)} kernel for {builtin}", "detail": ""}
            else:
                reason = _broken_constraint(op, semantic, supported)
                wide = [t.name for t in (op.ifm, op.ifm2, op.ofm) if t is not None and t.dtype == DataType.int16]
                eight_bit = [rule for rule in kernels[builtin] if rule not in common
                             and "Int8" in rule and "Int16" not in rule]
                if reason is None and wide and eight_bit:
                    reason = {"rule": " ".join(" ".join(eight_bit).split()),
                              "detail": f"16-bit tensor(s): {', '.join(wide)}"}
            if reason:
                reasons[op.outputs[0].name] = {"op": builtin, **reason}
    return reasons


def _common_rules(kernels: dict[str, list[str]]) -> set[str]:
    """The rules of Vela's op table that most op types share (dtypes, shapes, quantization): not
    what tells one op type from another."""
    counts: dict[str, int] = {}
    for rules in kernels.values():
        for rule in set(rules):
            counts[rule] = counts.get(rule, 0) + 1
    return {rule for rule, count in counts.items() if count > 0.8 * len(kernels)}


def _broken_constraint(op: Any, semantic: Any, supported: Any) -> dict[str, str] | None:
    excluded = semantic.get_generic_constraint_exclude_list().get(op.type, [])
    checks = [c for c in semantic.generic_constraints if c not in excluded] + semantic.specific_constraints[op.type]
    if op.type in supported.supported_operators:
        exceptions = supported.generic_constraints_exceptions[op.type]
        checks += [c for c in supported.generic_constraints if c not in exceptions]
        checks += supported.specific_constraints[op.type]
    for check in checks:
        valid, extra = check(op)
        if not valid:
            return {"rule": " ".join((check.__doc__ or check.__name__).split()), "detail": str(extra or "")}
    return None


if __name__ == "__main__":
    sys.exit(serve(main, sys.argv[1], VelaRequest))
