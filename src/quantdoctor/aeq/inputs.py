"""A float `.tflite` input, checked before AEQ runs: it must be a float model, readable by LiteRT's schema."""

from __future__ import annotations

from pathlib import Path

from quantdoctor.audit.tflite_model import TFLiteModel, read_tflite_file
from quantdoctor.errors import ModelLoadError
from quantdoctor.intake.model import ModelSource


def check_float_model(source: ModelSource) -> TFLiteModel:
    """The parsed model; a ModelLoadError when it is already quantized (nothing for AEQ to do)."""
    model = read_tflite_file(Path(source.path))
    quantized = [t.name for op in model.all_ops for t in op.inputs + op.outputs if t.scale]
    if quantized:
        raise ModelLoadError(f"{source.source} is already quantized (tensor {quantized[0]!r} has a scale): give "
                             f"the float model, or check this one with `quantdoctor audit {source.source}`")
    return model
