"""Where the conversion cache lives and how large it may grow: read from the environment, checked
before any work.

- `QUANTDOCTOR_NO_CACHE=1` (any value but empty, `0`, `false`, `no` or `off`) turns the cache off.
- The root is `$QUANTDOCTOR_CACHE_DIR`, else `$XDG_CACHE_HOME/quantdoctor`, else
  `~/.cache/quantdoctor`. A relative `XDG_CACHE_HOME` is ignored, as the XDG Base Directory
  specification says; a relative `QUANTDOCTOR_CACHE_DIR` is taken from the working directory.
- `QUANTDOCTOR_CACHE_MAX_MB` (default 1024) is a finite number of megabytes, 0 or more.

A root that is, contains or lies inside one of the user's inputs or outputs is refused
(`check_cache_root`), compared on disk like every output (`intake/paths.py`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quantdoctor.errors import UsageError
from quantdoctor.intake.paths import placement

DEFAULT_MAX_MB = 1024
_MAX_MB_VARIABLE = "QUANTDOCTOR_CACHE_MAX_MB"


_FALSE = ("", "0", "false", "no", "off")  # QUANTDOCTOR_NO_CACHE values that leave the cache on


@dataclass(frozen=True)
class CacheSettings:
    """The cache's root (None when the cache is off), where that root came from, and its size bound."""

    root: Path | None
    origin: str
    max_bytes: int


def cache_settings() -> CacheSettings:
    """The settings from the environment; a UsageError for a size bound that is not one."""
    max_bytes = _max_bytes(os.environ.get(_MAX_MB_VARIABLE, ""))
    if os.environ.get("QUANTDOCTOR_NO_CACHE", "").strip().lower() not in _FALSE:
        return CacheSettings(None, "QUANTDOCTOR_NO_CACHE", max_bytes)
    configured = os.environ.get("QUANTDOCTOR_CACHE_DIR")
    if configured:
        return CacheSettings(Path(os.path.abspath(configured)), "QUANTDOCTOR_CACHE_DIR", max_bytes)
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if os.path.isabs(xdg):
        return CacheSettings(Path(xdg) / "quantdoctor", "XDG_CACHE_HOME", max_bytes)
    return CacheSettings(Path.home() / ".cache" / "quantdoctor", "the default cache directory", max_bytes)


def check_cache_root(inputs: Iterable[Any], outputs: Mapping[str, Any]) -> None:
    """Refuse, before any work, a cache that cannot be used safely with these paths: a size bound that
    is not one, or a root that is, contains or lies inside one of the `inputs` (anything a user passes;
    only paths are considered) or `outputs` (option name -> path or None)."""
    settings = cache_settings()
    if settings.root is None:
        return
    if settings.root.exists() and not settings.root.is_dir():  # the cache would silently stay off
        raise UsageError(f"the cache directory {settings.root} ({settings.origin}) is not a directory; point "
                         "QUANTDOCTOR_CACHE_DIR at a directory of its own, or set QUANTDOCTOR_NO_CACHE=1")
    named = [(f"input {path}", Path(path)) for path in inputs if isinstance(path, (str, Path))]
    named += [(f"output {option} {path}", Path(path)) for option, path in outputs.items() if path is not None]
    for what, path in named:
        where = placement(settings.root, path)
        if where is not None:
            raise UsageError(f"refusing to use the cache directory {settings.root} ({settings.origin}): it {where} "
                             f"your {what}; point QUANTDOCTOR_CACHE_DIR at a directory of its own, or set "
                             "QUANTDOCTOR_NO_CACHE=1")


def _max_bytes(value: str) -> int:
    if not value.strip():
        return DEFAULT_MAX_MB * 2**20
    try:
        megabytes = float(value)
    except ValueError:
        megabytes = math.nan
    if not 0 <= megabytes * 2**20 < math.inf:  # 1e308 MB is a finite number but no byte count
        raise UsageError(f"{_MAX_MB_VARIABLE}={value!r} is not a cache size: give a number of megabytes, 0 or more "
                         f"(default {DEFAULT_MAX_MB})")
    return int(megabytes * 2**20)
