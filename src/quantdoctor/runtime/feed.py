"""Feeding samples to a LiteRT interpreter: every part of quantdoctor that runs a .tflite goes through here.

A sample is a dict of arrays: by input name (dict samples) or in order (list samples). Fitting it
to a model means pairing its arrays with the model's inputs (by name when it names them all, in
order otherwise, and never when the counts differ), splitting a stack of samples along the batch
axis into rows when the model takes one at a time, and checking every size the model fixes.
Feeding it resizes each input whose signature leaves a size free (`None` outside the batch axis,
or a dynamic batch) to the sample's shape and reallocates, and quantizes float data for an
integer input with that input's scale and zero point.

NumPy only: the interpreter is created by the caller (in a worker process), the checks run in
the parent before any long work.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from quantdoctor.errors import UsageError

if TYPE_CHECKING:
    from quantdoctor.audit.tflite_model import TFLiteModel


@dataclass(frozen=True)
class ModelInput:
    """One input of a .tflite model, as a sample must fit it."""

    name: str  # the name samples use for it: the signature's input name
    index: int  # its tensor index in the main subgraph
    shape_signature: tuple[int, ...]  # -1 where the model leaves the size free
    dtype: str
    scale: float | None = None
    zero_point: int = 0

    def fits(self, shape: tuple[int, ...]) -> bool:
        """True when `shape` has every size the model fixes."""
        return len(shape) == len(self.shape_signature) and all(
            fixed in (-1, size) for fixed, size in zip(self.shape_signature, shape))

    def describe(self) -> str:
        return f"'{self.name}' {_shape(self.shape_signature)}"


def input_name(tensor_name: str, signature_keys: list[str]) -> str:
    """The name a sample gives an input: its tensor name without the converter's `{signature}_`
    prefix and `:0` suffix (`serving_default_image:0` -> `image`)."""
    name = tensor_name.rsplit(":", 1)[0]
    for key in signature_keys:
        if name.startswith(f"{key}_"):
            return name[len(key) + 1:]
    return name


def interpreter_inputs(interpreter: Any) -> list[ModelInput]:
    """The inputs of a LiteRT interpreter's main subgraph."""
    keys = list(interpreter.get_signature_list())
    return [detailed_input(input_name(detail["name"], keys), detail) for detail in interpreter.get_input_details()]


def ordered_output_details(interpreter: Any) -> list[dict[str, Any]]:
    """The interpreter's output details in the model's own output order: its only signature's
    (`output_0`, `output_1`, ... follow a Keras model's outputs; numbered names sort by number).
    The interpreter lists tensors in its own order, which can put a Keras model's second output
    first, and a float and a quantized model in different orders."""
    details = interpreter.get_output_details()
    signatures = interpreter.get_signature_list()
    if len(signatures) != 1:
        return details
    by_index = {d["index"]: d for d in details}
    named = interpreter.get_signature_runner(next(iter(signatures))).get_output_details()
    indices = [named[name]["index"] for name in sorted(named, key=natural_key) if named[name]["index"] in by_index]
    return [by_index[i] for i in indices] + [d for d in details if d["index"] not in indices]


def natural_key(name: str) -> list[Any]:
    """A sort key that puts `output_10` after `output_2`: how a signature numbers its outputs."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def detailed_input(name: str, detail: dict[str, Any]) -> ModelInput:
    """The input an interpreter's (or a signature runner's) input detail describes, named `name`."""
    scale, zero_point = detail["quantization"]
    return ModelInput(name, int(detail["index"]), tuple(int(d) for d in detail["shape_signature"]),
                      np.dtype(detail["dtype"]).name, float(scale) or None, int(zero_point))


def tflite_inputs(model: TFLiteModel) -> list[ModelInput]:
    """The inputs of a .tflite model's main subgraph, read from the flatbuffer (nothing runs)."""
    signature = model.signature_of(0)
    names = {tensor.index: name for name, tensor in signature.inputs.items()} if signature else {}
    return [ModelInput(names.get(t.index) or input_name(t.name, []), t.index, t.signature, t.dtype.lower(),
                       t.scale or None, t.zero_point or 0) for t in model.inputs]


def arrays_for(inputs: list[ModelInput], values: dict[str, np.ndarray], what: str = "a sample",
               by_name: bool = False) -> list[np.ndarray]:
    """The sample's arrays in the model's input order: by name when the sample names every input,
    in the order given otherwise. A sample with more or fewer arrays than inputs is refused, and so
    is one `by_name` (a dict) whose names are not the inputs'."""
    if len(values) != len(inputs):
        raise UsageError(f"{what} holds {len(values)} array(s) for a model with {len(inputs)} input(s) "
                         f"({', '.join(i.describe() for i in inputs)}): give one array per input")
    if all(model_input.name in values for model_input in inputs):
        return [values[model_input.name] for model_input in inputs]
    if by_name:
        raise UsageError(f"{what} names its arrays {sorted(values)}; the model's inputs are named "
                         f"{sorted(i.name for i in inputs)}")
    return list(values.values())


def rows(inputs: list[ModelInput], values: dict[str, np.ndarray], what: str = "a sample",
         by_name: bool = False) -> list[dict[str, np.ndarray]]:
    """The sample as batch-of-1 rows when it stacks several along the batch axis of a model that
    takes a batch of 1 or a free batch; the sample itself otherwise."""
    count = _row_count(inputs, {key: array.shape for key, array in values.items()}, what, by_name)
    if count == 1:
        return [values]
    return [{key: array[row:row + 1] for key, array in values.items()} for row in range(count)]


def _row_count(inputs: list[ModelInput], shapes: dict[str, tuple[int, ...]], what: str, by_name: bool) -> int:
    """How many rows `rows` makes of a sample of arrays with these shapes (1: the sample as it is)."""
    ordered = arrays_for(inputs, shapes, what, by_name)
    one_at_a_time = all(i.shape_signature[:1] in ((-1,), (1,)) and len(shape) == len(i.shape_signature)
                        for i, shape in zip(inputs, ordered))
    count = _leading_size(shapes.values())
    return count if one_at_a_time and count > 1 else 1


def batch_size(values: dict[str, np.ndarray]) -> int:
    """How many rows the sample stacks along axis 0: the arrays' common leading size (1 when they
    disagree, or for scalars)."""
    return _leading_size(a.shape for a in values.values())


def _leading_size(shapes: Any) -> int:
    leading = {shape[0] if len(shape) else 1 for shape in shapes}
    return leading.pop() if len(leading) == 1 else 1


def fitted_rows(inputs: list[ModelInput], values: dict[str, np.ndarray], what: str,
                by_name: bool = False) -> list[dict[str, np.ndarray]]:
    """The sample as rows (`rows`) that fit the model; a UsageError says how `what` does not."""
    check_fits(inputs, {key: array.shape for key, array in values.items()}, what, by_name)
    return rows(inputs, values, what, by_name)


def check_fits(inputs: list[ModelInput], shapes: dict[str, tuple[int, ...]], what: str, by_name: bool = False) -> None:
    """`fitted_rows`'s check on the arrays' shapes alone (by key, as the sample holds them): a
    UsageError says how `what` does not fit the model."""
    split = _row_count(inputs, shapes, what, by_name) > 1
    row = {key: (1, *shape[1:]) if split else tuple(shape) for key, shape in shapes.items()}
    for model_input, shape in zip(inputs, arrays_for(inputs, row)):
        if not model_input.fits(shape):
            raise UsageError(f"{what} gives input {model_input.describe()} an array shaped "
                             f"{_shape(shape)}: {_mismatch(model_input, shape)}")


class Feeder:
    """Feeds samples to one interpreter: resizes and reallocates when a sample's shapes change.

    Create it before any `allocate_tensors()`: the first sample sets the sizes the model is
    allocated with (a free size allocated as 1 can fail to prepare, say a 3x3 convolution).
    """

    def __init__(self, interpreter: Any) -> None:
        self.interpreter = interpreter
        self.inputs = interpreter_inputs(interpreter)
        self._shapes: list[tuple[int, ...]] | None = None

    def __call__(self, values: dict[str, np.ndarray]) -> None:
        """Set the sample as the model's input (ready to `invoke()`)."""
        arrays = arrays_for(self.inputs, values)
        shapes = [tuple(a.shape) for a in arrays]
        if shapes != self._shapes:
            for model_input, shape in zip(self.inputs, shapes):
                if shape != model_input.shape_signature:
                    self.interpreter.resize_tensor_input(model_input.index, list(shape), strict=True)
            self.interpreter.allocate_tensors()
            self._shapes = shapes
        for model_input, array in zip(self.inputs, arrays):
            self.interpreter.set_tensor(model_input.index, as_input(model_input, array))


def as_input(model_input: ModelInput, array: np.ndarray) -> np.ndarray:
    """Float data quantized for an integer input with its scale and zero point; cast otherwise."""
    dtype = np.dtype(model_input.dtype)
    if np.issubdtype(dtype, np.integer) and model_input.scale and np.issubdtype(array.dtype, np.floating):
        info = np.iinfo(dtype)
        quantized = np.round(array / model_input.scale) + model_input.zero_point
        return np.clip(quantized, info.min, info.max).astype(dtype)
    return np.asarray(array).astype(dtype, copy=False)


def _mismatch(model_input: ModelInput, shape: tuple[int, ...]) -> str:
    unbatched = model_input.shape_signature[1:]
    if len(shape) == len(unbatched) and all(size in (-1, given) for size, given in zip(unbatched, shape)):
        return "it lacks the batch axis (add one: array[None])"  # only then would array[None] fit
    if len(shape) != len(model_input.shape_signature):
        return f"the model takes rank {len(model_input.shape_signature)}, the array has rank {len(shape)}"
    return "the sizes the model fixes differ"


def _shape(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join("None" if d == -1 else str(d) for d in shape) + "]"
