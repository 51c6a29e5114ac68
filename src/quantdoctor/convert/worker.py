"""The worker process: loads the model, runs the real TFLiteConverter, reports through files.

Run as `python -m quantdoctor.convert.worker REQUEST.json`. The response file is rewritten at
each stage, so when the process dies (segfault, abort, out of memory) the parent still knows how
far it got and what the model looks like.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

from quantdoctor.convert.protocol import read_json, write_json
from quantdoctor.intake.data import CalibrationSet
from quantdoctor.intake.recipe import Recipe


def main(request_path: str) -> int:
    """Serve one conversion request; the exit code is 0 whether or not the conversion failed."""
    request = read_json(Path(request_path))
    response_path = Path(request["response"])
    response: dict[str, Any] = {"stage": "loading"}
    write_json(response_path, response)

    import tensorflow as tf

    convert = request.get("convert", True)
    try:
        make_converter, response["model"], function, loaded_at = _load(tf, request["model"])
    except MemoryError:
        raise  # the runner reports the process's death as out of memory
    except Exception as exc:  # the user's model, not quantdoctor, failed to load
        response.update(stage="done", outcome="load_error", error_message=f"{type(exc).__name__}: {exc}")
        write_json(response_path, response)
        return 0
    response["preflight"] = _inventory(function, loaded_at)
    if not convert:
        response.update(stage="done", outcome="skipped")
        write_json(response_path, response)
        return 0
    response["stage"] = "converting"
    write_json(response_path, response)

    started = time.perf_counter()
    twin = Path(request["float_twin_output"]) if request.get("float_twin_output") else None
    try:
        converter = make_converter()
        Recipe.from_dict(request["recipe"]).apply(converter)
        if request.get("data"):
            converter.representative_dataset = _replay(Path(request["data"]))
            if twin:
                _keep_model_before_quantization(converter, twin)
        with _kept_calibration(request.get("calibration_output")):
            tflite_model = converter.convert()
    except Exception as exc:
        response.update(outcome="error", seconds=time.perf_counter() - started,
                        exception_type=type(exc).__name__, error_message=str(exc))
    else:
        Path(request["output"]).write_bytes(tflite_model)
        response.update(outcome="ok", seconds=time.perf_counter() - started, model_bytes=len(tflite_model))
    response["stage"] = "done"
    write_json(response_path, response)
    if response["outcome"] == "ok" and twin:
        response["float_twin"] = "ok" if twin.exists() else _convert_float_twin(make_converter, twin)
        write_json(response_path, response)
    return 0


def _keep_model_before_quantization(converter: Any, output: Path) -> None:
    """Write the float model the converter hands to its quantizer to `output`: compare's float
    reference, from the very conversion it is compared with (the quantizer keeps its tensor names).

    TF 2.21 passes it to `_optimize_tflite_model` after the float conversion and before calibration;
    an instance attribute shadows that method for this converter only.
    """
    optimize = converter._optimize_tflite_model

    def keep_then_optimize(model: bytes, *args: Any, **kwargs: Any) -> Any:
        output.write_bytes(bytes(model))
        return optimize(model, *args, **kwargs)

    converter._optimize_tflite_model = keep_then_optimize


@contextlib.contextmanager
def _kept_calibration(directory: str | None) -> Iterator[None]:
    """Within the block, keep what the quantizer is handed in `directory` (when given): the calibrated
    float model (`calibrated.tflite`) and the quantizer's arguments (`quantizer.json`), from which
    accuracy budgets make their variants without calibrating again."""
    if not directory:
        yield
        return
    from quantdoctor.tf_private import capture_quantizer_calls

    with capture_quantizer_calls() as calls:
        yield
    if calls:
        Path(directory, "calibrated.tflite").write_bytes(calls[-1].calibrated)
        write_json(Path(directory, "quantizer.json"), calls[-1].arguments)


def _convert_float_twin(make_converter: Callable[[], Any], output: Path) -> str:
    """Convert the model again without quantization (compare's reference, for settings that do not
    calibrate) into `output`: "ok", or the error. Same process: TensorFlow and the model load once."""
    try:
        converter = make_converter()
        Recipe.for_mode("float").apply(converter)
        output.write_bytes(converter.convert())
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return "ok"


def _load(tf: Any, model: dict[str, Any]) -> tuple[Callable[[], Any], dict[str, Any], Any, float]:
    """A factory for the model's converter, a description of its inputs and layers, its serving
    function, and the time loading ended (preflight time counts from there).

    Creating the converter is left to the conversion step: a bad signature key is the user's
    conversion error to diagnose, not a model that failed to load. A Keras file converts through
    `from_keras_model`, exactly as the user's own code would.
    """
    if model["loader"] == "keras_file":
        import keras

        from quantdoctor.intake.model import export_keras, keras_layers, keras_output_layers

        keras_model = keras.saving.load_model(model["path"], compile=False, safe_mode=False)
        loaded_at = time.perf_counter()
        info = {"inputs": [_spec(x.name, x.shape, x.dtype) for x in keras_model.inputs],
                "layers": keras_layers(keras_model), "output_layers": keras_output_layers(keras_model)}
        try:
            function = export_keras(keras_model, None)  # traced for the preflight, not written
        except Exception:  # the converter falls back to freezing such a model: preflight has no graph
            function = None
        return lambda: tf.lite.TFLiteConverter.from_keras_model(keras_model), info, function, loaded_at
    signature_keys = model.get("signature_keys")
    loaded = tf.saved_model.load(model["path"])
    loaded_at = time.perf_counter()
    available = list(loaded.signatures.keys())
    info = {"inputs": [], "layers": [], "signature_keys": available}
    keys = signature_keys or available
    function = None
    if len(keys) == 1 and keys[0] in loaded.signatures:
        function = loaded.signatures[keys[0]]
        _, kwargs = function.structured_input_signature
        info["inputs"] = [_spec(name, spec.shape, spec.dtype) for name, spec in kwargs.items()]
    converter = lambda: tf.lite.TFLiteConverter.from_saved_model(model["path"], signature_keys=signature_keys)  # noqa: E731
    return converter, info, function, loaded_at


def _inventory(function: Any, loaded_at: float) -> dict[str, Any]:
    """The preflight inventory of the serving graph; `seconds` counts from the end of model loading
    (so it includes tracing a Keras model). Empty without a single serving function."""
    if function is None:
        return {}
    from quantdoctor.convert.graph_inventory import inventory

    result = inventory(function)
    result["seconds"] = round(time.perf_counter() - loaded_at, 3)
    return result


def _spec(name: str, shape: Any, dtype: Any) -> dict[str, Any]:
    dims = shape.as_list() if hasattr(shape, "as_list") else list(shape)
    return {"name": name, "shape": dims, "dtype": getattr(dtype, "name", str(dtype))}


def _replay(data_path: Path) -> Any:
    """A representative_dataset that yields the recorded samples exactly as the user's did."""
    calibration = CalibrationSet.load(data_path)
    return calibration.replay


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
