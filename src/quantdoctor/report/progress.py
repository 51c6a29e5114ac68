"""Progress of a long run (compare, fix, fix with an accuracy budget) on one line of stderr: the stage,
how far it is (a count), and the time since the run started, redrawn in place.

Only a terminal gets it: piped or redirected, stderr stays free of it, and the JSON report never holds it.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import IO, Callable

from quantdoctor.report.literal import printable

TICK_SECONDS = 1.0  # the elapsed time is redrawn this often while a stage runs
_CLEAR = "\r\x1b[2K"  # back to the start of the line, and erase it


class ProgressLine:
    """One progress line on `stream`, on a terminal only (`interactive` overrides the stream's own
    answer, for tests); `clock` gives seconds (time.monotonic). Use it as a context manager: the line
    is erased at the end, whatever ends the run."""

    def __init__(self, stream: IO[str] | None = None, interactive: bool | None = None,
                 clock: Callable[[], float] = time.monotonic, tick: float | None = TICK_SECONDS) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = _is_terminal(self.stream) if interactive is None else interactive
        self.clock = clock
        self.started = clock()
        self.stage_name = ""
        self.count = ""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, args=(tick,), daemon=True) if self.enabled and tick else None

    def __enter__(self) -> ProgressLine:
        if self._ticker is not None:
            self._ticker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        if self.enabled:
            with self._lock:
                self.stream.write(_CLEAR)
                self.stream.flush()

    def stage(self, name: str, done: int | None = None, total: int | None = None) -> None:
        """Show `name` (what runs now) with its count: `done/total`, or `done` alone without a total."""
        self.stage_name = name
        self.count = f"{done}/{total}" if done is not None and total else (str(done) if done is not None else "")
        self.draw()

    def line(self) -> str:
        """The progress line as shown: stage, count, elapsed seconds."""
        elapsed = self.clock() - self.started
        parts = [printable(self.stage_name), self.count, f"{elapsed:.0f} s"]
        return "  ".join(part for part in parts if part)

    def draw(self) -> None:
        """Redraw the line in place (nothing off a terminal)."""
        if not self.enabled:
            return
        with self._lock:
            self.stream.write(_CLEAR + self.line())
            self.stream.flush()

    def _tick(self, seconds: float) -> None:
        while not self._stop.wait(seconds):
            if self.stage_name:
                self.draw()


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or exotic stream: no terminal
        return False
