"""`--import FILE_OR_MODULE`: the user's own code, handed over explicitly to the isolated workers.

Workers start isolated (`python -I`) and import nothing from the working directory, so a model
whose custom layers are registered in the user's module cannot load there. Naming that module
with `--import` (or `handed_over([...])` in Python) is an explicit hand-over of trusted code, like
`--trust-model`: every worker that loads the model imports exactly those, in order, before loading.

A file (`layers.py`) is imported from its path, with its own directory searchable while it
imports (so its sibling modules import). A module name (`mypkg.layers`) is imported with the
directory quantdoctor was started in searchable while it imports; nothing else from that
directory is ever imported.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from quantdoctor.errors import UsageError
from quantdoctor.intake.paths import input_kind

_HANDED_OVER: ContextVar[tuple[dict[str, str], ...]] = ContextVar("quantdoctor_imports", default=())


def resolve(names: list[str] | tuple[str, ...] | None) -> tuple[dict[str, str], ...]:
    """Check each name before any work: a `.py` file that exists, or a dotted module name."""
    resolved = []
    for name in names or ():
        if not isinstance(name, str) or not name:
            raise UsageError(f"--import takes a .py file or a module name, not {name!r}")
        if name.endswith(".py") or os.sep in name or "/" in name:
            path = Path(name)
            input_kind(path, "--import file")
            if path.suffix != ".py":
                raise UsageError(f"--import {name}: a file to import must be a .py file")
            resolved.append({"file": str(path.resolve())})
        elif all(part.isidentifier() for part in name.split(".")):
            resolved.append({"module": name, "search": os.getcwd()})
        else:
            raise UsageError(f"--import {name!r} is neither a .py file nor a module name")
    return tuple(resolved)


@contextlib.contextmanager
def handed_over(names: list[str] | tuple[str, ...] | None) -> Iterator[None]:
    """Within the block, every model quantdoctor loads is loaded after importing `names` (files or modules)."""
    token = _HANDED_OVER.set(resolve(names))
    try:
        yield
    finally:
        _HANDED_OVER.reset(token)


def current() -> list[dict[str, str]]:
    """The imports handed over for the models loaded now (for a worker request)."""
    return list(_HANDED_OVER.get())


def import_handed_over(specs: list[dict[str, Any]] | None) -> None:
    """Worker side: import exactly the handed-over files and modules, in order. An ImportError
    names the one that failed (the worker reports it as the model's load error). No bytecode is
    written beside the user's files (`__pycache__`): quantdoctor writes only where it is asked to."""
    if specs:
        sys.dont_write_bytecode = True
    for spec in specs or ():
        where = spec.get("file") or spec["module"]
        search = str(Path(spec["file"]).parent) if spec.get("file") else spec["search"]
        sys.path.insert(0, search)
        try:
            if spec.get("file"):
                name = Path(spec["file"]).stem
                loader_spec = importlib.util.spec_from_file_location(name, spec["file"])
                module = importlib.util.module_from_spec(loader_spec)
                sys.modules[name] = module
                loader_spec.loader.exec_module(module)
            else:
                importlib.import_module(spec["module"])
        except Exception as exc:
            raise ImportError(f"--import {where} failed: {type(exc).__name__}: {exc}") from exc
        finally:
            sys.path.remove(search)
