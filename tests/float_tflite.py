"""Float .tflite models as users hand them to ai-edge-quantizer: exported from tiny Keras models with
the real converter, and renamed the way litert-torch and onnx2tf name their tensors."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import flatbuffers
import keras
import tensorflow as tf

from quantdoctor.litert import schema_module

# LiteRT's schema, or TensorFlow's own where ai-edge-litert is not installed (the 2.16 compat environment).
schema = schema_module()


def float_tflite(model: keras.Model) -> bytes:
    """The model converted without quantization: what an exporter hands AEQ."""
    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def tensor_names(content: bytes) -> list[str]:
    """The tensor names of the main subgraph, in tensor order."""
    model = schema.ModelT.InitFromPackedBuf(content, 0)
    return [tensor.name.decode() for tensor in model.subgraphs[0].tensors]


def renamed(content: bytes, rename: Callable[[int, str], str]) -> bytes:
    """The model with each tensor of every subgraph renamed to `rename(index, old_name)`; signatures keep
    their own input and output names (they point at tensor indices)."""
    model = schema.ModelT.InitFromPackedBuf(content, 0)
    for graph in model.subgraphs:
        for index, tensor in enumerate(graph.tensors):
            tensor.name = rename(index, tensor.name.decode()).encode()
    builder = flatbuffers.Builder(len(content) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def torch_style(index: int, name: str) -> str:
    """litert-torch's naming: the module path of the op (`MyNet/Linear_fc1;...`), here built from Keras scopes."""
    parts = name.split(";")[0].split("/")
    if len(parts) < 3:
        return name
    return f"MyNet/torch.nn.modules.linear.Linear_{parts[1]}/{parts[-1].lower()}_{index}"


def onnx_style(index: int, name: str) -> str:
    """onnx2tf's naming: `wa/<onnx node>/<op>` after the ONNX graph's node names."""
    parts = name.split(";")[0].split("/")
    if len(parts) < 3:
        return name
    return f"wa/{parts[1]}/{parts[-1]}"
