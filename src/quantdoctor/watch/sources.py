"""Where things happen in the user's source: `convert.py:42`, not a frame inside TensorFlow."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from types import FrameType
from typing import Any

# Frames of these packages are never the user's line: the call that matters is the one into them.
LIBRARY_PACKAGES = frozenset({"tensorflow", "keras", "tf_keras", "tensorflow_model_optimization", "ai_edge_litert",
                              "quantdoctor", "numpy", "absl", "importlib", "contextlib", "functools", "runpy"})


@dataclass(frozen=True)
class SourceLine:
    """A line of the user's code."""

    path: str
    line: int
    function: str | None = None

    def __str__(self) -> str:
        return f"{_display_path(self.path)}:{self.line}"

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.path, "line": self.line, "function": self.function, "where": str(self)}


def caller_line(skip: int = 1) -> SourceLine | None:
    """The innermost frame of the current stack that is the user's code (not a library's)."""
    frame: FrameType | None = sys._getframe(skip)
    while frame is not None and _is_library(frame):
        frame = frame.f_back
    if frame is None:
        return None
    return SourceLine(frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name)


def definition_line(function: Any) -> SourceLine | None:
    """Where a Python function (a representative_dataset, say) is defined; None for anything else."""
    code = getattr(getattr(function, "__func__", function), "__code__", None)
    if code is None:
        return None
    return SourceLine(code.co_filename, code.co_firstlineno, code.co_name)


def suspended_line(generator: Any) -> SourceLine | None:
    """The line a generator is paused at: right after it yields, the `yield` that produced the item."""
    frame = getattr(generator, "gi_frame", None)
    if frame is None:
        return None
    return SourceLine(frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name)


def _is_library(frame: FrameType) -> bool:
    module = frame.f_globals.get("__name__") or ""
    return module.partition(".")[0] in LIBRARY_PACKAGES


def _display_path(path: str) -> str:
    """Relative to the working directory when the file is under it, as the user typed it."""
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive
        return path
    return path if relative.startswith("..") else relative
