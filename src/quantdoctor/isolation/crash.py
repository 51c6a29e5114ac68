"""Read a dead worker's stderr: which converter stage it died in, and its last Python frames.

The worker runs with Python's faulthandler on, so a segfault or abort prints the Python stack
(`File ".../calibrator.py", line 152 in _feed_tensors`). The innermost frame tells the stage.
"""

from __future__ import annotations

import re

from quantdoctor.isolation.matcher import Matcher

_FRAME = re.compile(r'File "(?:[^"]*/)?([^"/]+)", line (\d+) in (\w+)')
# Functions of the converter's Python layer, innermost first: the stage within the worker's
# "converting" (a crash while loading needs no marker: the worker reports that stage itself).
STAGE_MARKERS = (
    (Matcher.of("stage-calibrating", r"^(?:_feed_tensors|calibrate)$"),
     "calibrating (running the representative dataset)"),
    (Matcher.of("stage-quantizing", r"^(?:mlir_quantize|wrapped_experimental_mlir_quantize|_quantize)$"),
     "quantizing"),
)


def crash_frames(stderr: str, count: int = 4) -> list[str]:
    """The innermost Python frames of the last crash dump, as `file.py:line in function`."""
    dump = stderr.rsplit("most recent call first", 1)
    if len(dump) < 2:
        return []
    return [f"{name}:{line} in {function}" for name, line, function in _FRAME.findall(dump[1])[:count]]


def crash_stage(stderr: str, reported_stage: str) -> str:
    """The converter stage the process died in, from the crash dump or the worker's last report."""
    frames = crash_frames(stderr, count=8)
    for frame in frames:
        function = frame.rsplit(" in ", 1)[-1]
        for marker, stage in STAGE_MARKERS:
            if marker.search(function):
                return stage
    return reported_stage


_NATIVE_ERROR = re.compile(r"^(?:error: (.*)|F\d{4} [^\]]*\] (.*))$")
# Every form an allocation failure takes in the converter process, matched case-insensitively: Python's
# MemoryError (NumPy's _ArrayMemoryError and its "Unable to allocate", which Keras rewraps as a
# ValueError), C++'s bad_alloc, TensorFlow's ResourceExhaustedError and allocator messages, mmap/dlopen
# failures (TensorFlow's own libraries failing to load under the limit), thread stacks, and OpenBLAS's
# buffers (NumPy failing to import).
OUT_OF_MEMORY = Matcher.of("out-of-memory", "|".join(re.escape(marker) for marker in (
    "MemoryError", "std::bad_alloc", "Cannot allocate memory", "failed to map segment", "pthread_create() failed",
    "Resource exhausted: OOM", "ResourceExhaustedError", "OOM when allocating", "failed to allocate memory",
    "ran out of memory trying to allocate", "Unable to allocate", "Memory allocation still failed")), re.IGNORECASE)


# TensorFlow 2.16's MLIR importer cannot read the variable reads (ReadVariableOp) in the SavedModel that
# tf.saved_model.save and from_keras_model write for a Keras 3 model (a Conv2D's kernel, say): the
# converter aborts the process. Its own later releases read them; `model.export()` writes them readably.
KERAS3_VARIABLE_READ = Matcher.of("unreadable-variable-read",
                                  r"error: missing attribute 'value'[\s\S]*LLVM ERROR: Failed to infer result type",
                                  verified_on=("2.16",))


def native_errors(stderr: str) -> list[str]:
    """Errors printed by native code before the crash: MLIR `error:` lines and fatal `Check failed` logs."""
    found = []
    for line in stderr.splitlines():
        match = _NATIVE_ERROR.match(line.strip())
        if match:
            found.append(match.group(1) or match.group(2))
    return found[-3:]


def out_of_memory(text: str) -> str:
    """The first line of `text` (a stderr, an error message) that shows an allocation failure (heap,
    mapping, thread stack), or "" when none does."""
    found = OUT_OF_MEMORY.search(text)
    if found is None:
        return ""
    start = text.rfind("\n", 0, found.start()) + 1
    end = text.find("\n", found.end())
    return text[start:end if end >= 0 else len(text)].strip()
