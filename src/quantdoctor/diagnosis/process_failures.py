"""A worker that ended without a result (timeout, out of memory, crash) as a catalog finding."""

from __future__ import annotations

from quantdoctor import catalog
from quantdoctor.intake.data import CalibrationSet
from quantdoctor.isolation.crash import KERAS3_VARIABLE_READ, crash_frames, crash_stage, native_errors, out_of_memory
from quantdoctor.isolation.runner import WorkerRun
from quantdoctor.report.model import Finding, Location

RNN_LAYER_CLASSES = ("LSTM", "GRU", "SimpleRNN", "RNN", "Bidirectional", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D")


def process_finding(run: WorkerRun, layers: list[dict[str, str]], calibration: CalibrationSet | None) -> Finding:
    """A finding for a conversion worker (its response a `StagedResponse`) that did not report a result:
    timeout, out of memory, or crash."""
    stage = crash_stage(run.stderr, run.response.stage)
    evidence = {"stage": stage, "exit_code": run.returncode, "signal": run.signal_name,
                "seconds": round(run.seconds, 1), "last_frames": crash_frames(run.stderr),
                "native_errors": native_errors(run.stderr)}
    if run.outcome == "timeout":
        return catalog.get("QD902").finding(
            f"The converter was stopped after {run.seconds:.0f} s while {stage}.", evidence=evidence)
    allocation_failure = out_of_memory(run.stderr)
    if run.signal_name == "SIGKILL" or allocation_failure or run.at_memory_limit:
        limit = f", under the {run.memory_limit_mb} MB memory limit" if run.memory_limit_mb else ""
        return catalog.get("QD903").finding(
            f"The converter ran out of memory while {stage}{limit}.",
            evidence={**evidence, "converter_message": allocation_failure or None,
                      "memory_limit_mb": run.memory_limit_mb, "peak_memory_mb": run.peak_memory_mb})
    how = f"was killed by {run.signal_name}" if run.signal_name else f"exited with code {run.returncode}"
    unreadable = KERAS3_VARIABLE_READ.search(run.stderr)
    if unreadable:
        return catalog.get("QD909").finding(
            f"The converter {how} while {stage}: this TensorFlow cannot read the variable reads in the SavedModel "
            "it wrote for the Keras 3 model.",
            evidence={**evidence, "converter_message": "missing attribute 'value'; LLVM ERROR: Failed to infer "
                                                       "result type(s)."})
    rnn_layers = [layer["name"] for layer in layers if layer["class"] in RNN_LAYER_CLASSES]
    if rnn_layers and stage.startswith("calibrating"):
        return catalog.get("QD108").finding(
            f"The calibrator {how} while running the recurrent loop of layer '{rnn_layers[0]}'.",
            location=Location(layer=rnn_layers[0]), evidence={**evidence, "rnn_layers": rnn_layers})
    shapes = ""
    if stage.startswith("calibrating") and calibration is not None and calibration.samples:
        evidence["first_sample_shapes"] = [list(a.shape) for a in calibration.samples[0].arrays]
        shapes = f" on samples shaped {', '.join(str(tuple(a.shape)) for a in calibration.samples[0].arrays)}"
    return catalog.get("QD901").finding(f"The converter process {how} while {stage}{shapes}.", evidence=evidence)
