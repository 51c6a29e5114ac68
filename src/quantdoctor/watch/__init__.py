"""`quantdoctor run` and `qd.watch()`: quantdoctor inside the user's own scripts.

While a session is active, every `TFLiteConverter.convert()` is diagnosed in place
(`conversion`), LiteRT's Interpreter is watched for misfed inputs and misread outputs
(`inference`), and tfmot's quantize calls are explained when they fail (`tfmot`). The patches
are applied only when the script imports those modules, and undone when the last session ends.
"""

from __future__ import annotations

from pathlib import Path

from quantdoctor.environment import require_tensorflow
from quantdoctor.intake.data import DEFAULT_MAX_SAMPLES
from quantdoctor.isolation.runner import DEFAULT_TIMEOUT
from quantdoctor.watch import conversion, inference, session, tfmot
from quantdoctor.watch.session import WatchSession

session.register_installers({**conversion.MODULES, **inference.MODULES, **tfmot.MODULES})


def watch(json_path: str | Path | None = None, *, timeout: float = DEFAULT_TIMEOUT,
          memory_limit_mb: int | None = None, max_samples: int = DEFAULT_MAX_SAMPLES,
          echo: bool = True) -> WatchSession:
    """Watch the conversions and inference of a block: `with qd.watch() as session: ...`.

    Findings are printed to stderr as they happen (`echo=False` keeps quiet) and collected in
    `session.conversions` (one report per conversion, in order) and `session.findings`
    (inference and tfmot findings); `json_path` also writes them to a JSON file. `timeout`,
    `memory_limit_mb` and `max_samples` apply to each diagnosed conversion. A converter crash
    raises `qd.QuantizationError` here (under `quantdoctor run` it ends the process like the
    crash would have).
    """
    require_tensorflow()
    return WatchSession(json_path, timeout=timeout, memory_limit_mb=memory_limit_mb, max_samples=max_samples,
                        echo=echo)
