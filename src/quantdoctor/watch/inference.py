"""The inference side of run/watch: LiteRT's Interpreter watched for the ways scripts misfeed it.

Both `ai_edge_litert.interpreter.Interpreter` and TensorFlow's own `tf.lite.Interpreter` are
patched (and their signature runners). Each mistake is reported once per tensor and script line,
with the model's own scale and zero point and the lines to write:
- QD213 floats fed to an integer input (before LiteRT's `Cannot set tensor` error);
- QD214 integer inputs that hold what `astype` makes of normalised floats, checked on the first
  invocations against the levels a raw cast of the input's calibrated range gives (`raw_cast`);
- QD215 integer outputs compared with floats before dequantization (see `outputs`);
- QD516 an input resized and then set or invoked without `allocate_tensors()`;
- QD517 a signature runner called with other keys than its signature's inputs.
Checks never change what LiteRT does: the call goes through, and fails, exactly as it would have.
"""

from __future__ import annotations

import functools
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from quantdoctor import catalog, tf_private
from quantdoctor.report.literal import python_comment
from quantdoctor.report.model import Finding, Location
from quantdoctor.watch import session
from quantdoctor.watch.outputs import track
from quantdoctor.watch.patches import PatchSet
from quantdoctor.watch.raw_cast import CHECKED_FEEDS, Feeds, RawCast, examine
from quantdoctor.watch.sources import SourceLine, caller_line


def install(module: Any, patches: PatchSet) -> None:
    """Patch the Interpreter and SignatureRunner classes of an interpreter module."""
    interpreter, runner = tf_private.interpreter_classes(module)
    original = dict(vars(interpreter))
    patches.replace(interpreter, "invoke", _invoke(original["invoke"], original["get_tensor"]))
    for name, wrap in (("set_tensor", _set_tensor), ("get_tensor", _get_tensor),
                       ("resize_tensor_input", _resize_tensor_input), ("allocate_tensors", _allocate_tensors)):
        patches.replace(interpreter, name, wrap(original[name]))
    patches.replace(runner, "__call__", _runner_call(vars(runner)["__call__"]))


MODULES = {"ai_edge_litert.interpreter": install, tf_private.TF_INTERPRETER_MODULE: install}


@dataclass(frozen=True)
class TensorInfo:
    """A model input or output as the interpreter describes it."""

    name: str
    index: int
    dtype: np.dtype
    scale: float
    zero_point: int
    key: str | None = None  # the signature's name for it, for a signature runner's tensors

    @classmethod
    def from_details(cls, details: dict[str, Any], key: str | None = None) -> TensorInfo:
        scale, zero_point = details.get("quantization", (0.0, 0))
        return cls(details["name"], int(details["index"]), np.dtype(details["dtype"]), float(scale),
                   int(zero_point), key)

    @property
    def quantized(self) -> bool:
        """An integer tensor with quantization parameters: it holds levels, not values."""
        return self.scale != 0.0 and self.dtype.kind in "iu"

    @property
    def levels(self) -> tuple[int, int]:
        limits = np.iinfo(self.dtype)
        return int(limits.min), int(limits.max)

    @property
    def float_range(self) -> tuple[float, float]:
        """The float range the levels cover: the range the tensor was calibrated on."""
        low, high = self.levels
        return (low - self.zero_point) * self.scale, (high - self.zero_point) * self.scale

    def describe(self) -> str:
        return f"'{self.key or self.name}' ({self.dtype.name}, scale {self.scale:.6g}, zero point {self.zero_point})"

    def evidence(self) -> dict[str, Any]:
        return {"tensor": self.name, "dtype": self.dtype.name, "scale": self.scale, "zero_point": self.zero_point}


@dataclass
class _State:
    """What quantdoctor knows about one interpreter."""

    inputs: dict[int, TensorInfo]
    outputs: dict[int, TensorInfo]
    resized: set[int] = field(default_factory=set)
    set_at: dict[int, SourceLine | None] = field(default_factory=dict)
    feeds: dict[int, Feeds] = field(default_factory=dict)  # per integer input, for QD214


_states: weakref.WeakKeyDictionary[Any, _State] = weakref.WeakKeyDictionary()
_runner_feeds: weakref.WeakKeyDictionary[Any, dict[str, Feeds]] = weakref.WeakKeyDictionary()


def _state(interpreter: Any) -> _State:
    state = _states.get(interpreter)
    if state is None:
        inputs = [TensorInfo.from_details(d) for d in interpreter.get_input_details()]
        outputs = [TensorInfo.from_details(d) for d in interpreter.get_output_details()]
        state = _states[interpreter] = _State({t.index: t for t in inputs}, {t.index: t for t in outputs})
    return state


def _watched(check: Callable[..., Any]) -> Callable[..., Any]:
    """Run `check` only while a session is active, and never let a bug in it reach the script."""
    guarded = session.guarded(f"the inference check {check.__name__}", check)

    @functools.wraps(check)
    def run(*args: Any, **kwargs: Any) -> Any:
        return guarded(*args, **kwargs) if session.active() is not None else None
    return run


def _set_tensor(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def set_tensor(self: Any, tensor_index: int, value: Any) -> Any:
        _check_set_tensor(self, tensor_index, value)
        return original(self, tensor_index, value)
    return set_tensor


@_watched
def _check_set_tensor(interpreter: Any, tensor_index: int, value: Any) -> None:
    state = _state(interpreter)
    if tensor_index in state.resized:
        _report_unallocated(state.inputs[tensor_index], caller_line(), "set")
    info = state.inputs.get(tensor_index)
    if info is None or not info.quantized:
        return
    where = state.set_at[tensor_index] = caller_line()
    dtype = np.dtype(value.dtype) if isinstance(value, np.ndarray) else np.asarray(value).dtype
    if np.issubdtype(dtype, np.floating):
        _report_float_input(info, dtype, where)


def _get_tensor(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def get_tensor(self: Any, tensor_index: int, *args: Any, **kwargs: Any) -> Any:
        value = original(self, tensor_index, *args, **kwargs)
        tracked = _tracked_output(self, tensor_index, value)
        return value if tracked is None else tracked
    return get_tensor


@_watched
def _tracked_output(interpreter: Any, tensor_index: int, value: Any) -> Any:
    info = _state(interpreter).outputs.get(tensor_index)
    if info is None or not info.quantized or not isinstance(value, np.ndarray):
        return None
    return track(value, _OutputUse(info))


def _invoke(original: Callable[..., Any], get_tensor: Callable[..., np.ndarray]) -> Callable[..., Any]:
    @functools.wraps(original)
    def invoke(self: Any, *args: Any, **kwargs: Any) -> Any:
        _check_invoke(self, functools.partial(get_tensor, self))
        return original(self, *args, **kwargs)
    return invoke


@_watched
def _check_invoke(interpreter: Any, get_tensor: Callable[[int], np.ndarray]) -> None:
    state = _state(interpreter)
    if state.resized:
        _report_unallocated(state.inputs[min(state.resized)], caller_line(), "invoked")
        return
    for index, info in state.inputs.items():
        feeds = state.feeds.setdefault(index, Feeds())
        if info.quantized and not feeds.done:
            _check_raw_cast(info, get_tensor(index), state.set_at.get(index) or caller_line(), feeds)


def _resize_tensor_input(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def resize_tensor_input(self: Any, input_index: int, tensor_size: Any, *args: Any, **kwargs: Any) -> Any:
        shape = _current_shape(self, input_index)
        result = original(self, input_index, tensor_size, *args, **kwargs)
        _note_resize(self, input_index, shape, tensor_size)
        return result
    return resize_tensor_input


@_watched
def _current_shape(interpreter: Any, input_index: int) -> list[int] | None:
    return next((list(d["shape"]) for d in interpreter.get_input_details() if d["index"] == input_index), None)


@_watched
def _note_resize(interpreter: Any, input_index: int, shape: list[int] | None, tensor_size: Any) -> None:
    if shape is not None and [int(d) for d in tensor_size] != shape:
        _state(interpreter).resized.add(input_index)


def _allocate_tensors(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def allocate_tensors(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = original(self, *args, **kwargs)
        state = _states.get(self)
        if state is not None:
            state.resized.clear()
        return result
    return allocate_tensors


def _runner_call(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def __call__(self: Any, *args: Any, **kwargs: Any) -> Any:
        _check_runner_inputs(self, kwargs)
        outputs = original(self, *args, **kwargs)
        return _tracked_runner_outputs(self, outputs) or outputs
    return __call__


@_watched
def _check_runner_inputs(runner: Any, kwargs: dict[str, Any]) -> None:
    where = caller_line()
    inputs = {name: TensorInfo.from_details(details, name) for name, details in runner.get_input_details().items()}
    unknown = sorted(set(kwargs) - set(inputs))
    missing = sorted(set(inputs) - set(kwargs))
    if unknown or missing:
        _report_runner_keys(inputs, unknown, missing, where)
    feeds = _runner_feeds.setdefault(runner, {})
    for name, value in kwargs.items():
        info = inputs.get(name)
        if info is None or not info.quantized:
            continue
        array = np.asarray(value)
        if np.issubdtype(array.dtype, np.floating):
            _report_float_input(info, array.dtype, where)
        else:
            _check_raw_cast(info, array, where, feeds.setdefault(name, Feeds()))


@_watched
def _tracked_runner_outputs(runner: Any, outputs: Any) -> Any:
    if not isinstance(outputs, dict):
        return None
    infos = {name: TensorInfo.from_details(details, name) for name, details in runner.get_output_details().items()}
    return {name: track(value, _OutputUse(infos[name])) if name in infos and infos[name].quantized
            and isinstance(value, np.ndarray) else value for name, value in outputs.items()}


def _check_raw_cast(info: TensorInfo, value: np.ndarray, where: SourceLine | None, feeds: Feeds) -> None:
    """QD214: the levels fed are those a raw cast of the calibrated floats gives (`raw_cast.examine`)."""
    found = examine(value, info.dtype, info.float_range, info.scale, feeds)
    if found is not None:
        _report_raw_cast(info, found, where)


def _report_raw_cast(info: TensorInfo, found: RawCast, where: SourceLine | None) -> None:
    low, high = info.float_range
    first, last = info.levels
    fed = (f"is fed a constant ({'level' if len(found.fed) == 1 else 'levels'} {_set(found.fed)}) on each of its "
           f"first {CHECKED_FEEDS} invocations" if found.constant else f"is fed only the levels {_set(found.fed)}")
    wrapped = [level for level in found.cast if level > high + info.scale]
    how = "it truncates toward zero" + (f" and wraps negatives around to {_set(wrapped)[1:-1]}" if wrapped else "")
    _report(catalog.get("QD214").finding(
        f"Input {info.describe()} {fed}{_at(where)}. `.astype(np.{info.dtype.name})` makes the levels "
        f"{_set(found.cast)} of floats in its calibrated range [{low:.4g}, {high:.4g}] ({how}), where quantizing "
        f"them uses all of [{first}, {last}].",
        location=Location(input=info.key or info.name), fix_code=_quantize_code(info),
        evidence={**info.evidence(), "fed_range": [found.fed[0], found.fed[-1]], "fed_levels": found.fed,
                  "cast_levels": found.cast, "constant_feeds": found.constant, "calibrated_range": [low, high],
                  **_source(where)}), where)


def _set(levels: list[int]) -> str:
    return "{" + ", ".join(str(level) for level in levels) + "}"


def _report_float_input(info: TensorInfo, dtype: np.dtype, where: SourceLine | None) -> None:
    low, high = info.float_range
    _report(catalog.get("QD213").finding(
        f"Input {info.describe()} is fed {dtype.name} values{_at(where)}. It takes quantized levels: "
        f"floats in [{low:.4g}, {high:.4g}] map to [{info.levels[0]}, {info.levels[1]}].",
        location=Location(input=info.key or info.name), fix_code=_quantize_code(info),
        evidence={**info.evidence(), "fed_dtype": dtype.name, **_source(where)}), where)


def _report_unallocated(info: TensorInfo, where: SourceLine | None, action: str) -> None:
    _report(catalog.get("QD516").finding(
        f"Input '{info.name}' was resized, then {action}{_at(where)} before allocate_tensors().",
        location=Location(input=info.key or info.name), evidence={"tensor": info.name, **_source(where)}), where)


def _report_runner_keys(inputs: dict[str, TensorInfo], unknown: list[str], missing: list[str],
                        where: SourceLine | None) -> None:
    parts = []
    if unknown:
        parts.append(f"with {', '.join(repr(k) for k in unknown)}, which it does not have")
    if missing:
        parts.append(f"without {', '.join(repr(k) for k in missing)}")
    expected = ", ".join(f"'{key}' (tensor '{info.name}')" for key, info in inputs.items())
    keys = ", ".join(f"{name}=..." if name.isidentifier() else f"**{{{name!r}: ...}}" for name in inputs)
    _report(catalog.get("QD517").finding(
        f"The signature runner is called{_at(where)} {' and '.join(parts)}. Its inputs are {expected}.",
        location=Location(input=", ".join(unknown + missing)), fix_code=f"outputs = runner({keys})",
        evidence={"unknown_keys": unknown, "missing_keys": missing, "signature_inputs": list(inputs),
                  **_source(where)}), where)


class _OutputUse:
    """A quantized output handed to the script: reports its use as floats (QD215)."""

    def __init__(self, info: TensorInfo) -> None:
        self.info = info

    def misused(self, action: str, operand: Any) -> None:
        _report_raw_output(self.info, action, operand)


@_watched
def _report_raw_output(info: TensorInfo, action: str, operand: Any) -> None:
    where = caller_line()
    shown = f"{float(operand):g}" if np.ndim(operand) == 0 else f"a {np.asarray(operand).dtype.name} array"
    verb = f"compares output {info.describe()} with {shown}" if action == "compares" else \
        f"subtracts {shown} from output {info.describe()}"
    meaning = ""
    if np.ndim(operand) == 0:
        level = round(float(operand) / info.scale + info.zero_point)
        low, high = info.float_range
        meaning = (f" As a float, {shown} is level {level} of this output." if info.levels[0] <= level <= info.levels[1]
                   else f" {shown} is not even inside the output's float range [{low:.4g}, {high:.4g}].")
    _report(catalog.get("QD215").finding(
        f"{'The script' if where is None else str(where)} {verb}, but the output still holds quantized levels "
        f"({info.levels[0]}..{info.levels[1]}), not the model's float values.{meaning}",
        location=Location(tensor=info.name), fix_code=_dequantize_code(info),
        evidence={**info.evidence(), "operation": action, "operand": shown, **_source(where)}), where)


def _report(finding: Finding, where: SourceLine | None) -> None:
    """Report once per code, tensor and script line, whatever the loop around it."""
    watching = session.active()
    if watching is None:
        return
    key = (finding.code, finding.evidence.get("tensor") or finding.location.input, str(where))
    if key in watching.reported:
        return
    watching.reported.add(key)
    session.record_finding(finding)


def _quantize_code(info: TensorInfo) -> str:
    first, last = info.levels
    return (python_comment(f"'{info.name}': scale {info.scale:.8g}, zero point {info.zero_point}") + "\n"
            "scale, zero_point = input_details['quantization']\n"
            f"x_q = np.clip(np.round(x / scale + zero_point), {first}, {last}).astype(np.{info.dtype.name})\n"
            "interpreter.set_tensor(input_details['index'], x_q)")


def _dequantize_code(info: TensorInfo) -> str:
    return (python_comment(f"'{info.name}': scale {info.scale:.8g}, zero point {info.zero_point}") + "\n"
            "scale, zero_point = output_details['quantization']\n"
            "y = (output.astype(np.float32) - zero_point) * scale   # output: what get_tensor returned")


def _at(where: SourceLine | None) -> str:
    return f" at {where}" if where is not None else ""


def _source(where: SourceLine | None) -> dict[str, Any]:
    return {"source": where.to_dict()} if where is not None else {}
