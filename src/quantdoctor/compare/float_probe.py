"""The float probe worker: runs the float .tflite on variants of the eval data (channels reversed,
rescaled) and records the class each variant predicts per sample.

Run as `python -m quantdoctor.compare.float_probe REQUEST.json`, isolated like every run of a
.tflite. Used when the float model already fails on the eval data, to find which classic
preprocessing mistake, undone, brings it back (see `compare.preprocessing`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from quantdoctor.intake.data import CalibrationSet
from quantdoctor.isolation.protocol import Message, serve, write_message
from quantdoctor.litert import new_interpreter
from quantdoctor.runtime.feed import Feeder, ordered_output_details


@dataclass
class ProbeRequest(Message):
    """Run the float .tflite at `model` on the eval samples saved at `data` under each of `variants`
    (see `transformed`); write the predicted classes to `outputs` (.npz, `variant_<i>`)."""

    model: str
    data: str
    variants: list[dict[str, Any]]
    response: str
    outputs: str


@dataclass
class ProbeResponse(Message):
    """How many variants the outputs file holds."""

    variants: int


def main(request: ProbeRequest) -> int:
    """Predict a class for every eval sample under every variant; write them to the request's outputs file."""
    samples = CalibrationSet.load(Path(request.data)).samples
    interpreter = new_interpreter(request.model)
    feed = Feeder(interpreter)
    output = ordered_output_details(interpreter)[0]["index"]
    predictions = {}
    for number, variant in enumerate(request.variants):
        classes = []
        for sample in samples:
            values = {name: transformed(array, variant) for name, array in sample.values.items()}
            feed(values)
            interpreter.invoke()
            scores = interpreter.get_tensor(output)
            classes.append(scores.reshape(-1, scores.shape[-1]).argmax(-1))
        predictions[f"variant_{number}"] = np.concatenate(classes)
    np.savez(request.outputs, **predictions)
    write_message(Path(request.response), ProbeResponse(variants=len(request.variants)))
    return 0


def transformed(array: np.ndarray, variant: dict[str, Any]) -> np.ndarray:
    """`array` with the variant applied: channels (last axis) reversed, then `x * scale + offset`."""
    values = np.asarray(array, dtype=np.float32)
    if variant.get("reverse_channels"):
        values = values[..., ::-1]
    if variant.get("scale") is not None:
        values = values * np.asarray(variant["scale"], np.float32) + np.asarray(variant["offset"], np.float32)
    return values.astype(np.float32)


if __name__ == "__main__":
    sys.exit(serve(main, sys.argv[1], ProbeRequest))
