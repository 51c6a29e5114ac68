"""Ethos-U targets: the produced model compiled by Arm's Vela, and what it left on the CPU, in the user's terms.

Vela runs in its own process (`audit/vela_worker.py`) with a time limit. Its placement, MACs and
performance estimate come from its CSV outputs and compiled model; the reasons from its own
constraint checks. Here they become findings named by Keras layer (QD120, QD121, QD920) and the
report's `audit.npu` object.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quantdoctor import catalog
from quantdoctor.audit.checks import op_layer, output_layer_names
from quantdoctor.audit.tflite_model import OpInfo, TFLiteModel, read_tflite
from quantdoctor.audit.vela_worker import VelaRequest, VelaResponse
from quantdoctor.catalog.locations import layers_in_tensor_name
from quantdoctor.intake.options import Target
from quantdoctor.isolation.runner import run_isolated
from quantdoctor.report.model import Finding, Location

VELA_TIMEOUT = 300.0
NPU_OP = "ethos-u"  # the custom op Vela puts in place of each NPU partition
# Ops that only convert the model's float inputs and outputs to and from integer.
_EDGE_OPS = ("QUANTIZE", "DEQUANTIZE")
# Vela's memory modes whose tensor arena (the feature maps) lives in SRAM: there it must fit.
_ARENA_IN_SRAM = ("Shared_Sram", "Sram_Only")


@dataclass
class NpuOp:
    """One op of the model as Vela placed it."""

    op: str
    tensor: str
    target: str  # NPU | CPU
    macs: int
    cycles: int
    layer: str | None = None
    reason: str | None = None
    detail: str = ""
    # "edge": converts a float model input or output; "boundary": converts around a float op inside the model
    conversion: str | None = None


@dataclass
class VelaCompilation:
    """What Vela made of a model for one accelerator: placement, partitions and its performance estimate."""

    accelerator: str
    outcome: str  # ok | error | crash | timeout
    seconds: float
    vela_version: str | None = None
    error: str = ""
    ops: list[NpuOp] = field(default_factory=list)
    npu_partitions: int = 0
    cpu_partitions: int = 0
    performance: dict[str, Any] = field(default_factory=dict)

    @property
    def cpu_ops(self) -> list[NpuOp]:
        """The ops Vela left on the CPU."""
        return [op for op in self.ops if op.target != "NPU"]

    @property
    def macs(self) -> int:
        """The model's multiply-accumulates: Vela's count on the NPU, quantdoctor's on the CPU."""
        return sum(op.macs for op in self.ops)

    @property
    def cpu_mac_share(self) -> float:
        """The share of the model's MACs that run on the CPU (0 when it has none)."""
        return sum(op.macs for op in self.cpu_ops) / self.macs if self.macs else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The report's `audit.npu` object."""
        return {"accelerator": self.accelerator, "compiler": "vela", "compiler_version": self.vela_version,
                "outcome": self.outcome, "seconds": round(self.seconds, 3), "error": self.error or None,
                "npu_ops": len(self.ops) - len(self.cpu_ops), "cpu_ops": len(self.cpu_ops),
                "npu_partitions": self.npu_partitions, "cpu_partitions": self.cpu_partitions,
                "macs": self.macs, "cpu_macs": sum(op.macs for op in self.cpu_ops),
                "cpu_mac_share": round(self.cpu_mac_share, 4), "performance": self.performance,
                "ops": [vars(op) for op in self.ops]}


def compile_with_vela(tflite: bytes, accelerator: str, model: TFLiteModel, layer_names: list[str],
                      output_layers: list[str | None] | None = None,
                      timeout: float = VELA_TIMEOUT, sram_kib: int | None = None) -> VelaCompilation:
    """Compile `tflite` with Vela for `accelerator` in an isolated process; ops named by Keras layer.
    `sram_kib`: the SRAM the system gives the NPU's tensor arena (Vela's arena cache size); None: Vela's default."""
    workdir = Path(tempfile.mkdtemp(prefix="quantdoctor-vela-"))
    try:
        (workdir / "model.tflite").write_bytes(tflite)
        request = VelaRequest(model=str(workdir / "model.tflite"), accelerator=accelerator,
                              output_dir=str(workdir / "vela"), response=str(workdir / "response.json"),
                              arena_cache_size=sram_kib * 1024 if sram_kib else None)
        run = run_isolated("quantdoctor.audit.vela_worker", request, workdir, timeout)
        response = VelaResponse.from_json(run.response) if run.response else None
        outcome = run.outcome if run.outcome == "timeout" else (response and response.outcome) or "crash"
        result = VelaCompilation(accelerator, outcome, run.seconds, response.vela_version if response else None)
        if outcome != "ok" or response is None or response.compiled_model is None:
            result.error = (response and response.error) or (f"killed by {run.signal_name}" if run.signal_name
                                                             else "") or run.stderr[-2000:]
            return result
        compiled = read_tflite(Path(response.compiled_model).read_bytes())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result.ops = _placed_ops(response.per_layer, response.reasons, model, layer_names, output_layers or [])
    result.npu_partitions, result.cpu_partitions = partitions(compiled)
    result.performance = performance(response.summary)
    return result


def partitions(compiled: TFLiteModel) -> tuple[int, int]:
    """(NPU partitions, CPU partitions) of a Vela-compiled model: its `ethos-u` ops, and the runs of
    other ops between them, in the main subgraph's execution order."""
    npu = cpu = 0
    previous = None
    for op in compiled.ops:
        on_npu = op.custom_name == NPU_OP
        if on_npu != previous:
            npu, cpu = (npu + 1, cpu) if on_npu else (npu, cpu + 1)
        previous = on_npu
    return npu, cpu


def performance(summary: dict[str, str]) -> dict[str, Any]:
    """Vela's performance estimate and memory use, from its summary CSV."""
    number = {key: _number(value) for key, value in summary.items()}
    flash = (number.get("off_chip_flash_memory_used") or 0) + (number.get("on_chip_flash_memory_used") or 0)
    return {"system_config": summary.get("system_config"), "memory_mode": summary.get("memory_mode"),
            "cycles": int(number.get("cycles_total") or 0), "npu_cycles": int(number.get("cycles_npu") or 0),
            "inferences_per_second": number.get("inferences_per_second"),
            "inference_time_s": number.get("inference_time"),
            "sram_used_kib": number.get("sram_memory_used"), "dram_used_kib": number.get("dram_memory_used"),
            "flash_used_kib": flash, "clock_hz": number.get("core_clock"),
            "sram_size_kib": number.get("arena_cache_size")}


def sram_overflow(performance: dict[str, Any]) -> tuple[float, float] | None:
    """(SRAM used, SRAM size) in KiB when the model's SRAM use is above the size it was compiled for, in a
    memory mode that keeps the feature maps in SRAM; None otherwise. Vela's compiler core still writes the
    model then: its summary's `sram_memory_used` and `arena_cache_size` are the only trace."""
    used, size = performance.get("sram_used_kib"), performance.get("sram_size_kib")
    if performance.get("memory_mode") not in _ARENA_IN_SRAM or used is None or size is None or used <= size:
        return None
    return used, size


def ethos_u_findings(result: VelaCompilation) -> list[Finding]:
    """QD120 for each op on the CPU, QD121 for the partitions and CPU MACs, QD123 when the feature maps need more
    SRAM than the model was compiled for, QD920 when Vela failed."""
    name = result.accelerator
    if result.outcome != "ok":
        what = {"timeout": "ran out of time", "crash": "crashed"}.get(result.outcome, "failed")
        return [catalog.get("QD920").finding(
            f"Vela {what} compiling the model for {name}: {result.error.strip()[:500] or 'no message'}",
            evidence={"accelerator": name, "outcome": result.outcome, "vela_version": result.vela_version,
                      "error": result.error[-2000:]})]
    # The conversions around a float op go with it: that op's finding names the cause.
    findings = [_cpu_op_finding(op, name, result.vela_version) for op in result.cpu_ops if op.conversion != "boundary"]
    overflow = sram_overflow(result.performance)
    if overflow:
        used, size = overflow
        findings.append(catalog.get("QD123").finding(
            f"On {name} the model needs {used:g} KiB of SRAM, above the {size:g} KiB it was compiled for "
            f"({result.performance['memory_mode']} memory mode, where the feature maps live in SRAM): Vela wrote "
            f"the model, but its tensor arena does not fit that SRAM.",
            evidence={"accelerator": name, "sram_used_kib": used, "sram_size_kib": size,
                      "memory_mode": result.performance["memory_mode"], "vela_version": result.vela_version}))
    if result.cpu_ops:
        cpu_macs = sum(op.macs for op in result.cpu_ops)
        findings.append(catalog.get("QD121").finding(
            f"On {name} the model runs in {result.npu_partitions} NPU partition(s) and {result.cpu_partitions} CPU "
            f"partition(s): {len(result.cpu_ops)} op(s) on the CPU carry {result.cpu_mac_share:.1%} of the MACs "
            f"({cpu_macs} of {result.macs}).",
            evidence={"accelerator": name, "npu_partitions": result.npu_partitions,
                      "cpu_partitions": result.cpu_partitions, "cpu_ops": [op.op for op in result.cpu_ops],
                      "cpu_macs": cpu_macs, "macs": result.macs, "cpu_mac_share": round(result.cpu_mac_share, 4)}))
    return findings


def _cpu_op_finding(op: NpuOp, accelerator: str, vela_version: str | None) -> Finding:
    where = f"layer '{op.layer}'" if op.layer else f"tensor '{op.tensor}'"
    reason = op.reason or "Vela placed it on the CPU; its constraint checks name no rule the op breaks"
    detail = f" ({op.detail})" if op.detail else ""
    edge = op.conversion == "edge"
    return catalog.get("QD120").finding(
        f"{op.op} in {where} runs on the CPU, not on the {accelerator} NPU. Vela: {reason}{detail}.",
        location=Location(layer=op.layer, op=op.op, tensor=op.tensor),
        evidence={"accelerator": accelerator, "vela_reason": op.reason, "vela_detail": op.detail or None,
                  "macs": op.macs, "vela_version": vela_version},
        severity="warning" if edge else None,
        fix=("Give the model integer inputs and outputs (--io int8): then no float conversion runs on the CPU "
             "at its edges." if edge else None))


def _placed_ops(rows: list[dict[str, str]], reasons: dict[str, dict[str, str]], model: TFLiteModel,
                layer_names: list[str], output_layers: list[str | None]) -> list[NpuOp]:
    """Vela's per-layer rows, each matched to the model's op by output tensor name, named by Keras layer.

    Vela counts no MACs for an op it leaves on the CPU: those are counted from the op's tensors."""
    by_tensor: dict[str, OpInfo] = {t.name: op for op in model.all_ops for t in op.outputs}
    outputs = output_layer_names(model, output_layers)
    ops = []
    for row in rows:
        tensor = row.get("Name") or ""  # a short row (a name with a newline cuts the CSV line) has None
        original = by_tensor.get(tensor)
        reason = reasons.get(tensor, {})
        layer = op_layer(original, layer_names) if original else next(iter(layers_in_tensor_name(tensor, layer_names)),
                                                                       None)
        target = row.get("Target", "CPU")
        macs = int(_number(row.get("MAC Count")) or 0)
        if target != "NPU" and original is not None:
            macs = max(macs, op_macs(original))
        ops.append(NpuOp(op=original.name if original else reason.get("op") or row.get("Original Operator", "?"),
                         tensor=tensor, target=target, macs=macs,
                         cycles=int(_number(row.get("Op Cycles")) or 0), layer=layer or outputs.get(tensor),
                         reason=reason.get("rule"), detail=reason.get("detail", ""),
                         conversion=_conversion(original, model) if original else None))
    return ops


def op_macs(op: OpInfo) -> int:
    """The multiply-accumulates of a convolution, fully connected or matrix product op (0 for other ops)."""
    if not op.outputs or len(op.inputs) < 2:
        return 0
    out = _size(op.outputs[0].shape)
    weights = op.inputs[1].shape
    if op.name == "CONV_2D" and len(weights) == 4:
        return out * weights[1] * weights[2] * weights[3]
    if op.name == "DEPTHWISE_CONV_2D" and len(weights) == 4:
        return out * weights[1] * weights[2]
    if op.name == "FULLY_CONNECTED" and len(weights) == 2:
        return out * weights[1]
    if op.name == "TRANSPOSE_CONV" and len(op.inputs) > 2 and len(weights) == 4:
        return _size(op.inputs[2].shape) * weights[0] * weights[1] * weights[2]
    if op.name == "BATCH_MATMUL" and op.inputs[0].shape:
        return out * op.inputs[0].shape[-1]
    return 0


def _size(shape: tuple[int, ...]) -> int:
    size = 1
    for dim in shape:
        size *= max(dim, 1)
    return size


def _conversion(op: OpInfo, model: TFLiteModel) -> str | None:
    """ "edge" for a QUANTIZE of a float model input or a DEQUANTIZE to a float model output, "boundary"
    for another conversion between float and integer, None for any other op."""
    if op.name not in _EDGE_OPS or not op.computes_in_float:
        return None
    graph = model.graphs[op.subgraph]
    ends = {t.index for t in (graph.inputs if op.name == "QUANTIZE" else graph.outputs)}
    touched = op.inputs if op.name == "QUANTIZE" else op.outputs
    return "edge" if any(t.index in ends for t in touched) else "boundary"


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


def npu_audit(tflite: bytes, target: str | None, model: TFLiteModel, layer_names: list[str],
              output_layers: list[str | None] | None = None,
              sram_kib: int | None = None) -> tuple[dict[str, Any] | None, list[Finding]]:
    """For an Ethos-U target, Vela's compilation of `tflite` (the report's `audit.npu`) and its findings;
    (None, []) for any other target. `sram_kib`: the SRAM of the system, as in `compile_with_vela`."""
    if target is None or not Target(target).ethos_u:
        return None, []
    result = compile_with_vela(tflite, target, model, layer_names, output_layers, sram_kib=sram_kib)
    return result.to_dict(), ethos_u_findings(result)
