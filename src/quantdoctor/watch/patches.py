"""Scoped patching: attributes replaced for a while and put back exactly, and patches applied to a
module the moment it is imported (so a script that never imports TensorFlow pays nothing).
"""

from __future__ import annotations

import importlib.abc
import sys
from types import ModuleType
from typing import Any, Callable

_MISSING = object()


class PatchSet:
    """Replaced attributes, remembered so `undo()` restores each one as it was (or deletes it when
    the attribute was inherited rather than set on the owner)."""

    def __init__(self) -> None:
        self._saved: list[tuple[Any, str, Any]] = []

    def replace(self, owner: Any, name: str, replacement: Any) -> None:
        """Set `owner.name = replacement` until `undo()`."""
        self._saved.append((owner, name, vars(owner).get(name, _MISSING)))
        setattr(owner, name, replacement)

    def undo(self) -> None:
        """Put every replaced attribute back, newest first."""
        while self._saved:
            owner, name, original = self._saved.pop()
            if original is _MISSING:
                delattr(owner, name)
            else:
                setattr(owner, name, original)


class ImportHook(importlib.abc.MetaPathFinder):
    """Calls `on_import[name](module)` right after the module `name` is executed, whoever imports it.

    It finds the module with the other finders and only wraps the loader, so the module itself is
    loaded exactly as without the hook.
    """

    def __init__(self, on_import: dict[str, Callable[[ModuleType], None]]) -> None:
        self.on_import = on_import

    def install(self) -> None:
        """Watch imports from now on, and call back at once for the modules already imported."""
        sys.meta_path.insert(0, self)
        for name, callback in self.on_import.items():
            if name in sys.modules:
                callback(sys.modules[name])

    def uninstall(self) -> None:
        """Stop watching imports (patches already applied stay until their PatchSet is undone)."""
        if self in sys.meta_path:
            sys.meta_path.remove(self)

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        callback = self.on_import.get(name)
        if callback is None:
            return None
        for finder in list(sys.meta_path):
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(name, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _CallbackLoader(spec.loader, callback)
                return spec
        return None


class _CallbackLoader(importlib.abc.Loader):
    """A loader that runs the real one, then the callback on the fresh module."""

    def __init__(self, loader: Any, callback: Callable[[ModuleType], None]) -> None:
        self._loader = loader
        self._callback = callback

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        self._callback(module)

    def __getattr__(self, name: str) -> Any:  # get_code, get_resource_reader, is_package, ...
        return getattr(self._loader, name)
