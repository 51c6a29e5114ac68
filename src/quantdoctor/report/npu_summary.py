"""The report header's NPU line: where the model runs on the accelerator, and Vela's performance estimate."""

from __future__ import annotations

from typing import Any


def npu_line(npu: dict[str, Any]) -> str:
    """One line for the report's `audit.npu` object, such as
    "NPU ethos-u55-128 (Vela 5.2.0): 1 NPU partition, 0 ops on the CPU (0.0% of 61472 MACs) · 88156 cycles ·
    5672 inferences/s · SRAM 42.0 KiB · flash 13.0 KiB"."""
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
    return " · ".join(parts)
