"""The worker's request and response files: JSON on disk, written atomically; and how a worker
reports a bug of its own, so the parent never mistakes it for the converter's or the user's doing."""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any, Callable

from quantdoctor import tf_private
from quantdoctor.isolation.crash import out_of_memory

INTERNAL_ERROR_EXIT = 70  # EX_SOFTWARE


def serve(main: Callable[[dict[str, Any]], int], request_path: str) -> int:
    """Run a worker's `main(request)`; an exception escaping it is a bug in quantdoctor.

    The worker's own code catches what the user's model, data and converter raise. Whatever
    else escapes is written to the response as `internal_error` (with the traceback), and the
    process exits with INTERNAL_ERROR_EXIT; a `TensorFlowChanged` behind it (a private hook that
    broke on the installed release) is also written as `tensorflow_changed`. An allocation failure (MemoryError,
    ResourceExhaustedError, ...) is left to kill the process: running out of memory is the
    converter's finding (QD903), not a bug.
    """
    request = read_json(Path(request_path))
    try:
        return main(request)
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


def read_json(path: Path) -> dict[str, Any]:
    """Read a file written by `write_json`; an absent file reads as empty."""
    return json.loads(path.read_text()) if path.exists() else {}
