"""The user's layer or module name behind a tensor name of a float `.tflite`, where the exporter's naming allows.

The TFLite converter names a tensor after its Keras scopes (`sequential/dense_1/MatMul`: layer
`dense`); litert-torch after the PyTorch module path, each module as its qualified class and
attribute name (`MyNet/torch.nn.modules.linear.Linear_fc1/...`: module `fc1`); onnx2tf after the
ONNX node (`wa/conv1/Conv2D`). Fused ops join their sources with ';': the first names the op.
A name with no scope (`x`, `tensor_12`) has no layer: the tensor name stands for itself.
"""

from __future__ import annotations

import re

from quantdoctor.catalog.locations import scope_for_path

# litert-torch's module segment: the module's qualified class name, '_', its attribute name.
_TORCH_MODULE = re.compile(r"^(?:[A-Za-z_]\w*\.)+[A-Za-z][A-Za-z0-9]*_(\w+)$")


def layer_of_tensor(name: str) -> str | None:
    """The layer or module a tensor of a float .tflite comes from; None when its name has no scope."""
    scope = scope_for_path(name.split(";")[0])
    if not scope:
        return None
    return "/".join(_module_name(segment) for segment in scope.split("/"))


def _module_name(segment: str) -> str:
    torch = _TORCH_MODULE.match(segment)
    return torch.group(1) if torch else segment
