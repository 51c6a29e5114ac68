"""Quantized outputs that know they are quantized: NumPy arrays (and scalars taken from them) that
notice when the script uses raw quantization levels as floats.

`get_tensor` on an int8/uint8 output returns one of these instead of a plain array. It behaves
as the plain array does (same values, same repr, pickles as a plain array), with two exceptions:
- comparing it with a float (`scores > 0.5`, `scores[0][0] >= 0.5`) or subtracting float
  references from it (`scores - expected`) tells `misused` first;
- any other arithmetic (`(scores - zero_point) * scale`, `scores / 255`) returns a plain array:
  the script transformed the values, maybe dequantized them, and quantdoctor stops tracking.
An argmax, a sort or an integer comparison (`scores > zero_point`) is fine and is not reported.
"""

from __future__ import annotations

import operator
from typing import Any, Protocol

import numpy as np

_COMPARISON_UFUNCS = (np.greater, np.greater_equal, np.less, np.less_equal, np.equal, np.not_equal)
_COMPARISON_OPERATORS = {"__lt__": operator.lt, "__le__": operator.le, "__gt__": operator.gt,
                         "__ge__": operator.ge, "__eq__": operator.eq, "__ne__": operator.ne}


class OutputUse(Protocol):
    """What a tracked output reports to: the model output it came from."""

    def misused(self, action: str, operand: Any) -> None:
        """The script `action`s ("compares", "subtracts") the raw output with a float `operand`."""


class RawOutput(np.ndarray):
    """An integer model output as LiteRT returned it: still quantization levels."""

    quantized_output: OutputUse | None

    def __array_finalize__(self, obj: Any) -> None:
        self.quantized_output = getattr(obj, "quantized_output", None)

    def __repr__(self) -> str:
        return repr(self.view(np.ndarray))

    def __reduce__(self) -> Any:
        return self.view(np.ndarray).__reduce__()

    def __getitem__(self, key: Any) -> Any:
        item = super().__getitem__(key)
        scalar_class = _SCALARS.get(type(item))
        if scalar_class is None or self.quantized_output is None:
            return item
        scalar = scalar_class(item)
        scalar.quantized_output = self.quantized_output
        return scalar

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, out: Any = None, **kwargs: Any) -> Any:
        use = next((x.quantized_output for x in inputs if isinstance(x, RawOutput) and x.quantized_output), None)
        if use is not None and method == "__call__":
            others = [x for x in inputs if not isinstance(x, RawOutput)]
            if ufunc in _COMPARISON_UFUNCS and any(_is_float(x) for x in others):
                use.misused("compares", next(x for x in others if _is_float(x)))
            elif ufunc is np.subtract and any(_is_float_array(x) for x in others):
                use.misused("subtracts", next(x for x in others if _is_float_array(x)))
        plain = [x.view(np.ndarray) if isinstance(x, RawOutput) else x for x in inputs]
        if out is None:
            return getattr(ufunc, method)(*plain, **kwargs)
        for array in out:  # in place: the tracked array now holds whatever the script computed
            if isinstance(array, RawOutput) and ufunc not in _COMPARISON_UFUNCS:
                array.quantized_output = None
        getattr(ufunc, method)(*plain, out=tuple(x.view(np.ndarray) if isinstance(x, RawOutput) else x
                                                 for x in out), **kwargs)
        return out[0] if len(out) == 1 else out


def track(array: np.ndarray, use: OutputUse) -> RawOutput:
    """`array` as a tracked output (no copy)."""
    tracked = array.view(RawOutput)
    tracked.quantized_output = use
    return tracked


def _scalar_class(base: type) -> type:
    """A subclass of an integer scalar type whose comparisons with floats are reported."""
    def comparison(compare: Any) -> Any:
        def method(self: Any, other: Any) -> Any:
            if _is_float(other) and self.quantized_output is not None:
                self.quantized_output.misused("compares", other)
            return compare(base(self), other)
        return method

    namespace = {name: comparison(compare) for name, compare in _COMPARISON_OPERATORS.items()}
    namespace.update(__hash__=base.__hash__, __repr__=lambda self: repr(base(self)),
                     __reduce__=lambda self: (base, (int(self),)), quantized_output=None)
    return type(f"Raw{base.__name__}", (base,), namespace)


_SCALARS = {base: _scalar_class(base) for base in (np.int8, np.uint8, np.int16)}


def _is_float(value: Any) -> bool:
    if isinstance(value, float):
        return True
    dtype = getattr(value, "dtype", None)
    return dtype is not None and not isinstance(value, RawOutput) and np.issubdtype(dtype, np.floating)


def _is_float_array(value: Any) -> bool:
    return isinstance(value, np.ndarray) and value.size > 1 and _is_float(value)
