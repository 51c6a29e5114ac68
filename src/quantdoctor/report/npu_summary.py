"""The report header's NPU line: where the model runs on the accelerator, and Vela's performance estimate."""

from __future__ import annotations

from typing import Any


def npu_line(npu: dict[str, Any] | None, predicted: dict[str, Any] | None = None, target: str | None = None) -> str:
    """One line for the report's `audit.npu` (Vela's compilation) and `preflight.npu` (the prediction), such as
    "NPU ethos-u55-128 (Vela 5.2.0): 1 NPU partition(s), 0 op(s) on the CPU in 0 CPU partition(s) (0.0% of 61472
    MACs) · 88156 cycles · 5672 inferences/s · SRAM 42.0 KiB · flash 13.0 KiB · preflight: 0 CPU layer(s) predicted,
    as compiled"."""
    if npu is None:
        return f"NPU {target}: not compiled; preflight predicts {_predicted(predicted)}"
    head = f"NPU {npu['accelerator']} (Vela {npu.get('compiler_version') or '?'})"
    if npu["outcome"] != "ok":
        return f"{head}: compilation {npu['outcome']}"
    perf = npu.get("performance") or {}
    parts = [f"{head}: {npu['npu_partitions']} NPU partition(s), {npu['cpu_ops']} op(s) on the CPU in "
             f"{npu['cpu_partitions']} CPU partition(s) ({npu['cpu_mac_share']:.1%} of {npu['macs']} MACs)"]
    if perf.get("cycles"):
        parts.append(f"{perf['cycles']} cycles")
    if perf.get("inferences_per_second"):
        parts.append(f"{perf['inferences_per_second']:.0f} inferences/s")
    if perf.get("sram_used_kib") is not None:
        parts.append(f"SRAM {perf['sram_used_kib']:.1f} KiB")
    if perf.get("flash_used_kib") is not None:
        parts.append(f"flash {perf['flash_used_kib']:.1f} KiB")
    if predicted is not None:
        actual = ", ".join(predicted.get("actual_cpu_layers") or []) or "none"
        verdict = "as compiled" if predicted.get("agrees") else f"compiled: {actual}"
        parts.append(f"preflight: {_predicted(predicted)}, {verdict}")
    return " · ".join(parts)


def _predicted(predicted: dict[str, Any] | None) -> str:
    layers = (predicted or {}).get("predicted_cpu_layers") or []
    return f"{len(layers)} CPU layer(s)" + (f" ({', '.join(layers)})" if layers else "")


def edgetpu_line(edgetpu: dict[str, Any]) -> str:
    """One line for the report's `audit.edgetpu`, such as "Edge TPU, predicted (not compiled): 3 of 5 op(s) on
    the Edge TPU; from CUMSUM in layer 'running_total' on, 2 op(s) on the CPU"."""
    head = f"Edge TPU, predicted (not compiled): {edgetpu['edgetpu_ops']} of {edgetpu['ops']} op(s) on the Edge TPU"
    first, outside = edgetpu.get("first_cpu_op"), edgetpu.get("outside_cpu_ops", 0)
    if first:
        where = f"layer '{first['layer']}'" if first.get("layer") else f"op #{first['index']}"
        head += f"; from {first['op']} in {where} on, {edgetpu['cpu_ops'] - outside} op(s) on the CPU"
    if outside:
        head += f"; {outside} op(s) on the CPU before or after the Edge TPU's part"
    if edgetpu.get("other_subgraphs"):
        head += f"; {edgetpu['other_subgraphs']} other subgraph(s) on the CPU"
    return head
