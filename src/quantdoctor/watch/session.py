"""Watch sessions: what a `qd.watch()` block or a `quantdoctor run` saw, printed and recorded.

The hooks (converter, interpreter, tfmot) are installed when the first session starts and undone
when the last one ends. Whatever they find goes to every active session, is printed once to
stderr, and is appended to each session's JSON file as it happens, so the file is complete even
when the script dies right after.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

from quantdoctor.errors import UsageError
from quantdoctor.intake import options
from quantdoctor.intake.data import DEFAULT_MAX_SAMPLES
from quantdoctor.intake.output_file import write_output
from quantdoctor.intake.paths import check_writable
from quantdoctor.isolation.runner import DEFAULT_TIMEOUT
from quantdoctor.report.model import SCHEMA_VERSION, Finding, Report
from quantdoctor.watch.patches import ImportHook, PatchSet

RUN_OPTIONS_VARIABLE = "QUANTDOCTOR_RUN_OPTIONS"
ON_CRASH = ("raise", "exit")

_sessions: list[WatchSession] = []
_hooks: tuple[PatchSet, ImportHook] | None = None
# Module name -> the function that patches it: registered by the watch package (`register_installers`).
_installers: dict[str, Callable[[Any, PatchSet], None]] = {}
_reported_bugs: set[str] = set()


class WatchSession:
    """Conversions and script findings seen while the session is active (a context manager).

    `conversions` holds each conversion's report in order, `findings` the inference and tfmot
    findings. `json_path` is made absolute when the session is created, and must be a file that can
    be written there (UsageError otherwise). `on_crash="exit"` makes a converter crash end the process by the same signal, as
    the script would have ended without quantdoctor (`quantdoctor run`); "raise" raises
    QuantizationError instead (`qd.watch()`: a notebook should not die).
    """

    def __init__(self, json_path: str | Path | None = None, *, timeout: float = DEFAULT_TIMEOUT,
                 memory_limit_mb: int | None = None, max_samples: int = DEFAULT_MAX_SAMPLES,
                 on_crash: str = "raise", echo: bool = True, command: list[str] | None = None) -> None:
        if on_crash not in ON_CRASH:
            raise UsageError(f"unknown on_crash '{on_crash}': choose one of {', '.join(ON_CRASH)}")
        check_options(timeout, memory_limit_mb, max_samples)
        if json_path is not None and not isinstance(json_path, (str, os.PathLike)):
            raise UsageError(f"json_path must be a path, not {type(json_path).__name__}")
        # Resolved once, now: an os.chdir in the block must not move the file (nor overwrite one of the user's).
        self.json_path = Path(json_path).absolute() if json_path is not None else None
        if self.json_path is not None:
            check_writable(self.json_path, "json_path")
        self.diagnose_options = {"timeout": timeout, "memory_limit_mb": memory_limit_mb, "max_samples": max_samples}
        self.on_crash = on_crash
        self.echo = echo
        self.command = command
        self.conversions: list[Report] = []
        self.call_sites: list[Any] = []  # conversion.CallSite, one per conversion
        self.findings: list[Finding] = []
        self.reported: set[tuple[str, ...]] = set()  # (code, tensor, line) already reported

    def start(self, create_json: bool = True) -> WatchSession:
        """Become active (installing the hooks if this is the first session)."""
        if self.json_path is not None and create_json:
            write_document(self.json_path, self.command)
        _sessions.append(self)
        _install_hooks()
        return self

    def stop(self) -> None:
        """Stop receiving events; the last session to stop undoes every patch."""
        if self in _sessions:
            _sessions.remove(self)
        if not _sessions:
            _uninstall_hooks()

    def __enter__(self) -> WatchSession:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()


def check_options(timeout: float, memory_limit_mb: int | None, max_samples: int) -> None:
    """The diagnose options every conversion will get, refused at once rather than at the first conversion."""
    options.RunOptions.checked(timeout=timeout, memory_limit_mb=memory_limit_mb, max_samples=max_samples)


def active() -> WatchSession | None:
    """The innermost active session, or None when nothing is watched."""
    return _sessions[-1] if _sessions else None


def record_conversion(report: Report, call_site: Any) -> None:
    """A diagnosed conversion (`call_site` a conversion.CallSite): printed, and given to every active session."""
    if any(session.echo for session in _sessions):
        from quantdoctor.report.literal import literal_text
        from quantdoctor.report.terminal import render

        console = _console()
        where = call_site.describe()
        console.print(literal_text(f"quantdoctor: converter.convert(){' — ' + where if where else ''}", "bold"))
        render(report, console)
    entry = {"call_site": call_site.to_dict(), **report.to_dict()}
    for session in list(_sessions):
        session.conversions.append(report)
        session.call_sites.append(call_site)
        _append(session, "conversions", entry)


def record_finding(finding: Finding) -> None:
    """A finding about the script itself (inference, tfmot): printed, and given to every active session."""
    if any(session.echo for session in _sessions):
        from quantdoctor.report.literal import literal_text
        from quantdoctor.report.terminal import render_finding

        console = _console()
        source = finding.evidence.get("source", {}).get("where")
        console.print(literal_text(f"quantdoctor: {finding.code} {finding.severity}{' at ' + source if source else ''}",
                                   "bold red" if finding.severity == "error" else "bold"))
        render_finding(finding, console)
    for session in list(_sessions):
        session.findings.append(finding)
        _append(session, "findings", finding.to_dict())


def note(text: str) -> None:
    """One line on stderr about what quantdoctor did or could not do."""
    if any(session.echo for session in _sessions):
        from quantdoctor.report.literal import literal_text

        _console().print(literal_text(f"quantdoctor: {text}"))


def report_bug(where: str, exc: BaseException) -> None:
    """A bug in quantdoctor's hooks: said once on stderr; the user's script carries on unwatched there."""
    if where not in _reported_bugs:
        from quantdoctor.report.literal import printable

        _reported_bugs.add(where)
        print(printable(f"quantdoctor: internal error in {where} (a bug in quantdoctor; please report it): "
                        f"{type(exc).__name__}: {exc}"), file=sys.stderr)


def guarded(where: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """`function`, with its exceptions reported as quantdoctor bugs instead of reaching the user."""
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except Exception as exc:  # never break the user's script over a bug of ours
            report_bug(where, exc)
            return None
    return call


def write_document(path: Path, command: list[str] | None) -> None:
    """Start the JSON file of a run: no conversion and no finding yet.

    The script may read any file, so an existing file is replaced only when it is an earlier run's
    JSON report: a model, a dataset or anything else of the user's is refused (UsageError).
    """
    from quantdoctor._version import __version__

    if path.exists() and not _is_run_document(path):
        raise UsageError(f"refusing to replace {path}: it exists and is not a quantdoctor run report; "
                         "give --json a new file")
    from quantdoctor.environment import current

    document = {"schema_version": SCHEMA_VERSION, "tool": {"name": "quantdoctor", "version": __version__},
                "environment": current().to_dict(), "command": command, "conversions": [], "findings": []}
    write_output(path, json.dumps(document, indent=2), "--json")


def _is_run_document(path: Path) -> bool:
    """True for a JSON file that a quantdoctor run or watch wrote."""
    try:
        with open(path, "rb") as handle:
            document = json.loads(handle.read(1_000_000))
    except (OSError, ValueError):
        return False
    tool = document.get("tool") if isinstance(document, dict) else None
    return isinstance(tool, dict) and tool.get("name") == "quantdoctor" and "conversions" in document


def start_run_session() -> WatchSession:
    """The session of a process started by `quantdoctor run` (options from the environment); it
    lasts as long as the process, and so do its patches."""
    settings = json.loads(os.environ.get(RUN_OPTIONS_VARIABLE) or "{}")
    session = WatchSession(settings.get("json"), timeout=settings.get("timeout", DEFAULT_TIMEOUT),
                           memory_limit_mb=settings.get("memory_limit_mb"),
                           max_samples=settings.get("max_samples", DEFAULT_MAX_SAMPLES), on_crash="exit")
    return session.start(create_json=False)  # `quantdoctor run` wrote the file; every process appends


def _append(session: WatchSession, key: str, entry: dict[str, Any]) -> None:
    """Append to the session's JSON file, whole or not at all (`write_output`: a full disk leaves the
    document as it was, valid), under an exclusive lock on its directory: the processes of one run
    share the file, and each replaces it."""
    if session.json_path is None:
        return
    directory = os.open(os.path.dirname(os.path.realpath(session.json_path)), os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(directory, fcntl.LOCK_EX)
        try:
            text = session.json_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            text = ""
        document = json.loads(text) if text.strip() else {"conversions": [], "findings": []}
        document.setdefault(key, []).append(entry)
        write_output(session.json_path, json.dumps(document, indent=2), "--json")
    finally:
        os.close(directory)  # releases the lock


def _console() -> Any:
    from rich.console import Console  # only when there is something to say: `import quantdoctor` stays light

    return Console(stderr=True, highlight=False, soft_wrap=True)  # like the CLI: code stays copyable


def register_installers(installers: dict[str, Callable[[Any, PatchSet], None]]) -> None:
    """The patches a session applies: for each module name, the function that patches that module
    when the user's script imports it (the conversion, inference and tfmot hooks)."""
    _installers.update(installers)


def _install_hooks() -> None:
    global _hooks
    if _hooks is not None:
        return
    patches = PatchSet()
    hook = ImportHook({name: guarded(f"patching {name}", _bind(install, patches))
                       for name, install in _installers.items()})
    _hooks = (patches, hook)
    hook.install()


def _uninstall_hooks() -> None:
    global _hooks
    if _hooks is None:
        return
    patches, hook = _hooks
    hook.uninstall()
    patches.undo()
    _hooks = None


def _bind(install: Callable[[Any, PatchSet], None], patches: PatchSet) -> Callable[[Any], None]:
    return lambda module: install(module, patches)
