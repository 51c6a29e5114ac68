"""`quantdoctor view`: Model Explorer on a .tflite model with a quantdoctor overlay loaded.

Model Explorer (`ai-edge-model-explorer`, the `viz` extra) is a local web server with its own
graph viewer. Its Python API takes a config: the model by path, and node data either by path or as
a JSON string it serves itself. quantdoctor hands the overlay over as a string: the viewer fetches a
node-data path through a URL it does not escape, so a path holding `&` or `#` would not load.
Everything is checked before the server starts: the extra, the model, the overlay.
"""

from __future__ import annotations

import importlib.util
import json
import socket
from pathlib import Path
from typing import Any

from quantdoctor.audit.tflite_model import TFLiteModel, read_tflite_file
from quantdoctor.errors import UsageError
from quantdoctor.report.literal import printable

EXPLORER_MODULE = "model_explorer"
INSTALL = "pip install 'quantdoctor[viz]'"
DEFAULT_HOST = "localhost"


def require_model_explorer() -> None:
    """A UsageError saying what to install when Model Explorer is missing."""
    if importlib.util.find_spec(EXPLORER_MODULE) is None:
        raise UsageError("quantdoctor view needs Model Explorer (ai-edge-model-explorer), which is not installed; "
                         f"install it with: {INSTALL}")


def read_overlay(path: str | Path) -> str:
    """The overlay file's text, once checked to be Model Explorer node data: a JSON object of graph ids,
    each with a `results` object (or one graph's data, with `results` at the top)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read the overlay {printable(str(path))}: "
                         f"{getattr(exc, 'strerror', None) or exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"the overlay {printable(str(path))} is not JSON: {exc.msg} (line {exc.lineno})") from exc
    graphs = [data] if isinstance(data, dict) and "results" in data else \
        list(data.values()) if isinstance(data, dict) else None
    if not graphs or not all(isinstance(g, dict) and isinstance(g.get("results"), dict) for g in graphs):
        raise UsageError(f"the overlay {printable(str(path))} is not Model Explorer node data: write one with "
                         "`quantdoctor compare ... --model-explorer overlay.json`")
    return text


def view(model: str | Path, overlay: str | Path | None = None, *, host: str = DEFAULT_HOST, port: int = 8080,
         open_browser: bool = True) -> None:
    """Start Model Explorer on `model` (a .tflite) with `overlay` loaded, and serve until interrupted.

    Port 8080 lets Model Explorer take the first free port from 8080 up; any other port must be free.
    """
    require_model_explorer()
    tflite = read_tflite_file(model)  # a .tflite, readable: one line otherwise, before the server starts
    text = read_overlay(overlay) if overlay is not None else None
    if text is not None and not _names_a_tensor_of(json.loads(text), tflite):
        raise UsageError(f"the overlay {printable(str(overlay))} names no tensor of {printable(str(model))}: it was "
                         "written for another model; view the .tflite the same compare or fix produced (--output)")
    if not 0 < port < 65536:
        raise UsageError(f"--port must be between 1 and 65535, not {port}")
    if port != 8080 and _in_use(host, port):
        raise UsageError(f"port {port} on {printable(host)} is in use: choose another --port")
    import model_explorer

    config: Any = model_explorer.config()
    config.add_model_from_path(str(Path(model).resolve()))
    if text is not None:
        config.add_node_data(name="quantdoctor overlay", node_data=text)  # no file name in the page URL
    model_explorer.visualize_from_config(config=config, host=host, port=port, no_open_in_browser=not open_browser)


def _names_a_tensor_of(data: Any, model: TFLiteModel) -> bool:
    """Whether the node data (checked by `read_overlay`) keys a result by an output tensor of `model` or by
    an op's index, as Model Explorer matches them; True for data with no result at all (nothing to show)."""
    graphs = [data] if "results" in data else list(data.values())
    keys = {key for graph in graphs for key in graph["results"]}
    names = {tensor.name for graph in model.graphs for op in graph.ops for tensor in op.outputs}
    indices = {str(index) for graph in model.graphs for index in range(len(graph.ops))}
    return not keys or bool(keys & (names | indices))


def _in_use(host: str, port: int) -> bool:
    """Whether something already listens on `host`:`port`."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False
