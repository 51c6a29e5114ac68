"""The worker's request and response files: JSON on disk, written atomically; and how a worker
reports a bug of its own, so the parent never mistakes it for the converter's or the user's doing."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import sys
import traceback
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, TypeVar

from quantdoctor import tf_private
from quantdoctor.errors import InternalError
from quantdoctor.isolation.crash import out_of_memory

INTERNAL_ERROR_EXIT = 70  # EX_SOFTWARE
# What `serve` adds to any worker's response when the worker itself failed: not the worker's own fields.
FAILURE_KEYS = ("internal_error", "tensorflow_changed")
AnyMessage = TypeVar("AnyMessage", bound="Message")
_STATE_BYTES = 4096  # a page: the longest state a `StateFile` writes in place


class Message:
    """A request or response between quantdoctor's processes: subclasses are dataclasses whose fields hold
    JSON values, or other messages (nested records, such as one stage's result). They are turned into JSON
    and back only here, so a field one side writes and the other does not know is caught as the bug it is
    (`InternalError`), never read as missing data. A field that is None by default is left out of the JSON
    while it is None: a response rewritten at each stage holds only what the worker got to."""

    def to_json(self) -> dict[str, Any]:
        """The fields as a JSON object."""
        fields = dataclasses.fields(self)  # type: ignore[arg-type]
        return {field.name: _to_json(getattr(self, field.name)) for field in fields
                if not (field.default is None and getattr(self, field.name) is None)}

    @classmethod
    def from_json(cls: type[AnyMessage], data: Mapping[str, Any]) -> AnyMessage:
        """The message `to_json` wrote; `serve`'s failure keys are left to the runner."""
        types = _field_types(cls)
        unknown = set(data) - set(types) - set(FAILURE_KEYS)
        if unknown:
            raise InternalError(f"{cls.__qualname__} has no field {', '.join(sorted(unknown))}: the two processes "
                                "of quantdoctor disagree on their messages")
        return cls(**{name: _from_json(types[name], value) for name, value in data.items() if name in types})


@dataclasses.dataclass
class StagedResponse(Message):
    """A response the worker rewrites at each stage, so that the parent knows how far it got when the worker
    died: the stage (`starting` before the worker wrote any), and once it is `done`, the outcome and its error."""

    stage: str = "starting"
    outcome: str | None = None
    error_message: str | None = None


def _to_json(value: Any) -> Any:
    return value.to_json() if isinstance(value, Message) else value


def _from_json(kind: Any, value: Any) -> Any:
    """`value` as the field's type reads it: a nested message from its JSON object, any other value as it is."""
    message = next((candidate for candidate in (kind, *typing.get_args(kind))
                    if isinstance(candidate, type) and issubclass(candidate, Message)), None)
    return message.from_json(value) if message is not None and isinstance(value, Mapping) else value


@functools.cache
def _field_types(kind: type[Message]) -> dict[str, Any]:
    """Each field's type (the annotations resolved: the message modules postpone them)."""
    hints = typing.get_type_hints(kind)
    return {field.name: hints[field.name] for field in dataclasses.fields(kind)}  # type: ignore[arg-type]


def write_message(path: Path, message: Message) -> None:
    """Write a request or response so that a reader never sees half of it."""
    write_json(path, message.to_json())


def read_message(path: Path, kind: type[AnyMessage]) -> AnyMessage:
    """Read a message `write_message` wrote."""
    return kind.from_json(read_json(path))


def serve(main: Callable[[Any], int], request_path: str, request_type: type[Message] | None = None) -> int:
    """Run a worker's `main(request)`; an exception escaping it is a bug in quantdoctor. With
    `request_type`, `main` gets the request as that message; otherwise as a dict.

    The worker's own code catches what the user's model, data and converter raise. Whatever
    else escapes is written to the response as `internal_error` (with the traceback), and the
    process exits with INTERNAL_ERROR_EXIT; a `TensorFlowChanged` behind it (a private hook that
    broke on the installed release) is also written as `tensorflow_changed`. An allocation failure (MemoryError,
    ResourceExhaustedError, ...) is left to kill the process: running out of memory is the
    converter's finding (QD903), not a bug.
    """
    request = read_json(Path(request_path))
    try:
        return main(request_type.from_json(request) if request_type else request)
    except Exception as exc:
        if out_of_memory(f"{type(exc).__name__}: {exc}"):
            raise
        response_path = Path(request["response"])
        changed = tf_private.changed_in(exc)
        failure = {"tensorflow_changed": str(changed)} if changed else {}
        write_json(response_path, {**read_json(response_path), **failure, "internal_error": traceback.format_exc()})
        traceback.print_exc()
        return INTERNAL_ERROR_EXIT


def raised_in(exc: BaseException, package: str) -> bool:
    """True when the innermost Python frame that raised `exc` is in `package` (a dotted module prefix):
    what LiteRT raises running the user's model is the model's outcome, anything else a bug."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return False
    module = sys.modules.get(package)
    root = Path(module.__file__).parent if module and module.__file__ else None
    return root is not None and Path(frames[-1].filename).is_relative_to(root)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write `data` so that a reader never sees a half-written file."""
    partial = path.with_suffix(path.suffix + ".partial")
    partial.write_text(json.dumps(data, indent=1, default=str))
    os.replace(partial, path)


class StateFile:
    """A small JSON file a worker rewrites before each native step it may die in (the run check's stage and
    row), read by the parent once the worker has ended. Each state is one write at offset 0 of a file kept open,
    padded with spaces to the longest state written so far (`read_json` reads it): no new file and no rename
    per state, which on ext4 starts the file's writeback each time, milliseconds under load, and the run check
    writes two states a row. A process killed during the write keeps the previous state: a write of at most
    `_STATE_BYTES` into the page cache is not torn by a signal. A longer state is written by `write_json`."""

    def __init__(self, path: Path):
        self._path = path
        self._fd: int | None = None
        self._length = 0

    def write(self, data: dict[str, Any]) -> None:
        """Make `data` the file's content."""
        encoded = json.dumps(data, indent=1, default=str).encode()
        if len(encoded) > _STATE_BYTES:
            self.close()
            write_json(self._path, data)
            return
        if self._fd is None:
            self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            self._length = 0
        os.pwrite(self._fd, encoded.ljust(self._length), 0)
        self._length = max(self._length, len(encoded))

    def close(self) -> None:
        """Close the file (the next `write` starts it again)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def read_json(path: Path) -> dict[str, Any]:
    """Read a file written by `write_json`; an absent file reads as empty."""
    return json.loads(path.read_text()) if path.exists() else {}
