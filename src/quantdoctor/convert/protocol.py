"""The worker's request and response files: JSON on disk, written atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write `data` so that a reader never sees a half-written file."""
    partial = path.with_suffix(path.suffix + ".partial")
    partial.write_text(json.dumps(data, indent=1, default=str))
    os.replace(partial, path)


def read_json(path: Path) -> dict[str, Any]:
    """Read a file written by `write_json`; an absent file reads as empty."""
    return json.loads(path.read_text()) if path.exists() else {}
