"""A float `.tflite` input, checked before AEQ runs: a TFLite model that no tensor of is quantized yet."""

from __future__ import annotations

from pathlib import Path

from quantdoctor.audit.tflite_model import read_tflite_file
from quantdoctor.errors import ModelLoadError
from quantdoctor.intake.model import ModelSource


def check_float_model(source: ModelSource) -> None:
    """A ModelLoadError when the model is malformed or already quantized (a tensor carries a scale, AEQ's
    own test of a float model): there is nothing for AEQ to do."""
    from ai_edge_litert import schema_py_generated as schema

    read_tflite_file(Path(source.path))  # one line for a malformed flatbuffer
    model = schema.ModelT.InitFromPackedBuf(Path(source.path).read_bytes(), 0)
    quantized = [tensor.name.decode(errors="replace") for graph in model.subgraphs or [] for tensor in graph.tensors or []
                 if tensor.quantization is not None and tensor.quantization.scale is not None]
    if quantized:
        raise ModelLoadError(f"{source.source} is already quantized (tensor {quantized[0]!r} has a scale): give "
                             f"the float model, or check this one with `quantdoctor audit {source.source}`")
