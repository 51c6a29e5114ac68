"""The joint worker: compare's conversion and its comparison in one process.

Run as `python -m quantdoctor.compare.joint_worker REQUEST.json`. It serves the conversion request
first, exactly as the conversion worker does (the TFLiteConverter's, or AEQ's for a float `.tflite`):
same stages, outcomes and response, so a converter crash or hang is still the converter's finding.
Then, when the conversion produced a model, its float twin and a run check that passed, it runs
compare's lanes on the eval data (the request's `after_conversion`) in the same process: TensorFlow
and the model are loaded once, LiteRT is loaded already (the run check used it), and the float
reference is the very file the conversion wrote. When the float model fails on the eval data, the
float probe's variants run here too.

The comparison's own modules (Numba's compiled statistics) are imported after the conversion, never on a
thread beside it: once, with a thread importing them during the conversion, the run check's XNNPACK
delegate failed to create its runtime (a false QD112). The comparison's results go to files of their own; the conversion's response only gains `after_conversion_seconds`, the time spent
after converting, which the conversion's reported time leaves out. When this step does not run, or
dies, the parent compares in the compare worker as before.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from quantdoctor.errors import UsageError
from quantdoctor.intake.data import CalibrationSet
from quantdoctor.isolation.protocol import raised_in, read_json, serve, write_json
from quantdoctor.litert import interpreter_package


def main(request: dict[str, Any]) -> int:
    """Convert as the conversion worker does, then compare (see the module docstring)."""
    if "aeq" in request:
        from quantdoctor.convert import aeq_worker as conversion
    else:
        from quantdoctor.convert import worker as conversion
    code = conversion.main(request)
    response_path = Path(request["response"])
    response = read_json(response_path)
    if _comparable(request, response):
        started = time.perf_counter()
        compare(request["after_conversion"], Path(request["float_twin_output"]), Path(request["output"]))
        write_json(response_path, {**read_json(response_path),
                                   "after_conversion_seconds": round(time.perf_counter() - started, 3)})
    return code


def _comparable(request: dict[str, Any], response: dict[str, Any]) -> bool:
    """True when the conversion made a model that runs (its run check passed) and its float twin."""
    return (response.get("outcome") == "ok" and response.get("float_twin") == "ok"
            and (response.get("run_check") or {}).get("outcome") == "ok" and "after_conversion" in request)


def compare(phase: dict[str, Any], float_path: Path, quant_path: Path) -> None:
    """Both models side by side on the eval samples of `phase["data"]`, fitted to the quantized model:
    the compare worker's response, outputs and progress files at the paths `phase` names, and with
    `phase["probe"]`, the float probe's predictions (`phase["probed"]`, .npz) when the float model fails."""
    from quantdoctor.audit.tflite_model import read_tflite
    from quantdoctor.compare.preprocessing import probed_in_place
    from quantdoctor.compare.rows import eval_rows
    from quantdoctor.compare.worker import analyse

    try:
        evaluation = eval_rows(CalibrationSet.load(Path(phase["data"])), read_tflite(quant_path.read_bytes()))
    except UsageError:
        return  # eval data that does not fit: the parent says so, as before
    started = time.perf_counter()
    try:
        response, outputs = analyse(str(float_path), str(quant_path), evaluation.samples, Path(phase["progress"]))
    except Exception as exc:
        if not raised_in(exc, interpreter_package()):
            raise
        write_json(Path(phase["response"]), {"model_error": f"{type(exc).__name__}: {exc}"})
        return
    np.savez(phase["outputs"], **outputs)
    response["seconds"] = round(time.perf_counter() - started, 3)
    if "probe" in phase:
        labels = np.load(phase["probe"]["labels"]) if phase["probe"].get("labels") else None
        try:
            probed = probed_in_place(float_path, evaluation, outputs, labels)
        except Exception as exc:  # the parent's float probe runs the variants again, and reports the failure
            if not raised_in(exc, interpreter_package()):
                raise
            probed = None
        if probed is not None:
            np.savez(phase["probed"], **{f"variant_{i}": p for i, p in enumerate(probed.predictions)})
            response["probed_variants"] = probed.candidates
    write_json(Path(phase["response"]), response)


if __name__ == "__main__":
    sys.exit(serve(main, sys.argv[1]))
