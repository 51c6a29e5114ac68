"""Ctrl-C and SIGTERM end a run cleanly: the worker's process group is killed and the private
temporary directories (which hold a copy of the user's data) are removed.

Both signals are turned into `Interrupted`, an exception that unwinds through every `finally` of
the run. The previous handlers come back when the run ends; an `Interrupted` that leaves the
outermost run is handed back to them, so a program whose SIGTERM was left at its default still
dies by SIGTERM, only after the cleanup.
"""

from __future__ import annotations

import functools
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_DEFAULTS = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
_active = False
_held: list[int] | None = None  # the signals `held_back` keeps until its block ends, while it runs
Function = TypeVar("Function", bound=Callable[..., Any])


class Interrupted(BaseException):
    """A signal stopped the run; `signum` says which. A BaseException, so `except Exception` never stops it."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")


@contextmanager
def interruptible() -> Iterator[None]:
    """Run the block with SIGINT and SIGTERM raising `Interrupted`, where they still have their
    default handlers (a handler of the caller's own is left alone). A second signal during the
    cleanup is ignored. Nested runs and threads other than the main one change nothing."""
    global _active
    if _active or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in _SIGNALS}
    for signum in _SIGNALS:
        if previous[signum] is _DEFAULTS[signum]:
            signal.signal(signum, _interrupt)
    _active = True
    try:
        yield
    except Interrupted as exc:
        _restore(previous)
        if exc.signum == signal.SIGINT:
            raise KeyboardInterrupt from None  # what Python's default SIGINT handler raises
        signal.raise_signal(exc.signum)  # SIGTERM's default: the process ends, by SIGTERM
        raise
    finally:
        _active = False
        _restore(previous)


@contextmanager
def held_back() -> Iterator[None]:
    """Run the block to its end before a signal it receives raises `Interrupted` (after it): for a block that
    starts a process and registers it for cleanup, which an `Interrupted` between the two would leave behind."""
    global _held
    _held = []
    try:
        yield
    finally:
        held, _held = _held, None
    if held:
        raise Interrupted(held[0])


def run_interruptible(function: Function) -> Function:
    """Decorate a public entry point so that a signal during it cleans up before it takes effect."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with interruptible():
            return function(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _interrupt(signum: int, frame: Any) -> None:
    for other in _SIGNALS:
        signal.signal(other, _ignore)  # the cleanup runs to its end
    if _held is not None:
        _held.append(signum)
        return
    raise Interrupted(signum)


def _ignore(signum: int, frame: Any) -> None:
    """A second signal, during the cleanup. A Python handler, not SIG_IGN: one that arrived with the first (Ctrl-C
    and SIGTERM at once) is still pending when the first's handler returns, and Python reports a pending signal
    whose handler became SIG_IGN on stderr ("Signal 15 ignored due to race condition")."""


def _restore(previous: dict[int, Any]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)
