"""compare vs TensorFlow's QuantizationDebugger: per-layer analysis on the same model and samples.

Model: MobileNetV2 (alpha 0.35, 96x96, the bench model of bench/run.py); 100 calibration samples
and 50 eval samples (scikit-learn digits upscaled). In one process, one after the other:

- QuantizationDebugger: the constructor calibrates and quantizes (with numeric-verify ops), `run()`
  computes its per-layer statistics. Per-layer analysis time = `run()`.
- quantdoctor compare: converts float and INT8 models in isolated processes, then the compare
  worker runs both on the eval samples. Per-layer analysis time = the compare worker, with and
  without its process start (Python, NumPy, LiteRT import, interpreter set-up).
- The floor: one float and one quantized forward pass per sample, nothing recorded.

Target: quantdoctor's per-layer analysis at least 2x faster than the debugger's.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import RESULTS, prepare  # noqa: E402


def main() -> None:
    import keras
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    import quantdoctor as qd

    model_path, good, _ = prepare()
    images = np.load(good)["image"]
    calibration, evaluation = images[:100], images[50:100]
    model = keras.saving.load_model(model_path, compile=False)

    def dataset(rows):
        return lambda: ([row[None]] for row in rows)

    started = time.perf_counter()
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = dataset(calibration)
    debugger = tf.lite.experimental.QuantizationDebugger(converter=converter, debug_dataset=dataset(evaluation))
    constructed = time.perf_counter()
    debugger.run()
    debugger_done = time.perf_counter()

    report = qd.compare(model_path, calibration, eval_data=evaluation)
    compare_done = time.perf_counter()

    float_model = qd.diagnose(model_path, mode="float").tflite_model
    options = {"experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
    interpreters = [Interpreter(model_content=m, **options) for m in (float_model, report.tflite_model)]
    for interpreter in interpreters:
        interpreter.allocate_tensors()
    floor_started = time.perf_counter()
    for row in evaluation:
        for interpreter in interpreters:
            detail = interpreter.get_input_details()[0]
            scale, zero = detail["quantization"]
            value = row[None] if not scale else np.clip(np.round(row[None] / scale) + zero, -128, 127)
            interpreter.set_tensor(detail["index"], value.astype(detail["dtype"]))
            interpreter.invoke()
    floor = time.perf_counter() - floor_started

    result = {
        "model": "MobileNetV2 alpha 0.35, 96x96x3", "calibration_samples": 100, "eval_samples": len(evaluation),
        "debugger_setup_s": round(constructed - started, 2), "debugger_run_s": round(debugger_done - constructed, 2),
        "debugger_layers": len(debugger.layer_statistics),
        "quantdoctor_total_s": round(compare_done - debugger_done, 2),
        "quantdoctor_per_layer_s": report.comparison["seconds"],
        "quantdoctor_per_layer_in_worker_s": report.comparison["analysis_seconds"],
        "quantdoctor_layers": len(report.comparison["layers"]),
        "floor_forward_passes_s": round(floor, 2),
    }
    result["per_layer_speedup"] = round(result["debugger_run_s"] / result["quantdoctor_per_layer_s"], 2)
    result["per_layer_speedup_in_worker"] = round(result["debugger_run_s"] / result["quantdoctor_per_layer_in_worker_s"], 2)
    result["total_speedup"] = round((result["debugger_setup_s"] + result["debugger_run_s"])
                                    / result["quantdoctor_total_s"], 2)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "compare.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
