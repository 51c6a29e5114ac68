"""The converter side of run/watch: every `TFLiteConverter.convert()` diagnosed where the script calls it.

What `convert()` does while watched:
1. `qd.diagnose(converter)` converts in an isolated process, the same settings and the very samples
   the script's representative_dataset yields (its generator runs once, here, and each sample's
   `yield` line is recorded).
2. On success, the script's own converter converts again in the script's process, calibrated on
   those recorded samples: the script gets exactly the bytes it would have got without quantdoctor.
   That model is the one audited; the findings are printed.
3. On failure the diagnosis is printed, root cause first, and convert() fails the way it would
   have: the same exception class (it is also a `qd.QuantizationError` carrying the report, its
   message the diagnosis rather than the MLIR text). A converter crash ends a `quantdoctor run`
   by the same signal; under `qd.watch()` it raises QuantizationError.

Findings point at the script's lines: the samples' `yield`, the representative_dataset function,
the line that built the converter and the line that called convert().
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import threading
import time
import weakref
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np

from quantdoctor import tf_private
from quantdoctor.errors import QuantdoctorError
from quantdoctor.report.model import Finding, QuantizationError, Report, rank_findings
from quantdoctor.watch import session
from quantdoctor.watch.patches import PatchSet
from quantdoctor.watch.sources import SourceLine, caller_line, definition_line, suspended_line

_built_at: weakref.WeakKeyDictionary[Any, SourceLine | None] = weakref.WeakKeyDictionary()
_busy = threading.local()


def install(lite: Any, patches: PatchSet) -> None:
    """Patch the TF2 converter classes of `tensorflow.lite.python.lite`: constructors record their
    caller's line, `convert()` is diagnosed."""
    base = tf_private.converter_base(lite)
    patches.replace(base, "__init__", _recording_init(vars(base)["__init__"]))
    for cls in tf_private.converter_classes(lite):
        patches.replace(cls, "convert", _watched_convert(vars(cls)["convert"]))


MODULES = {tf_private.CONVERTER_MODULE: install}


def _recording_init(original: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        if session.active() is not None:
            _built_at.setdefault(self, caller_line())
    return __init__


def _watched_convert(original: Callable[..., bytes]) -> Callable[..., bytes]:
    @functools.wraps(original)
    def convert(self: Any, *args: Any, **kwargs: Any) -> bytes:
        watching = session.active()
        if watching is None or getattr(_busy, "active", False):
            return original(self, *args, **kwargs)
        _busy.active = True
        try:
            return _diagnosed_convert(self, lambda: original(self, *args, **kwargs), watching)
        finally:
            _busy.active = False
    return convert


class RecordingDataset:
    """The script's representative_dataset, as quantdoctor's intake calls it (once): each item is
    kept (arrays copied) for the in-process conversion, with the line of the `yield` that made it."""

    def __init__(self, function: Callable[[], Any]) -> None:
        functools.update_wrapper(self, function)
        self.function = function
        self.items: list[Any] = []
        self.lines: list[SourceLine | None] = []
        self.exhausted = False

    def __call__(self) -> Any:
        produced = self.function()
        for item in produced:
            self.items.append(_copied(item))
            self.lines.append(suspended_line(produced))
            yield item
        self.exhausted = True

    def replay(self) -> Any:
        """The recorded items again, in order (a representative_dataset for the script's converter)."""
        yield from self.items


@dataclass
class CallSite:
    """The script's lines behind one conversion."""

    convert: SourceLine | None
    converter: SourceLine | None
    representative_dataset: SourceLine | None
    yields: list[SourceLine | None] = field(default_factory=list)

    def describe(self) -> str:
        """`convert() at convert.py:30, converter built at convert.py:22, ...`"""
        parts = [("convert() at", self.convert), ("converter built at", self.converter),
                 ("representative_dataset at", self.representative_dataset)]
        return ", ".join(f"{label} {line}" for label, line in parts if line is not None)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: each line as file, line, function and `where` (`convert.py:30`)."""
        return {name: line.to_dict() if line else None for name, line in
                (("convert", self.convert), ("converter", self.converter),
                 ("representative_dataset", self.representative_dataset))}


def _diagnosed_convert(converter: Any, original: Callable[[], bytes], watching: session.WatchSession) -> bytes:
    from quantdoctor.diagnosis.pipeline import diagnose

    dataset = tf_private.representative_dataset_function(converter.representative_dataset)
    recorder = RecordingDataset(dataset) if callable(dataset) else None
    call_site = CallSite(caller_line(), _built_at.get(converter), definition_line(dataset))
    try:
        report = diagnose(converter, recorder if recorder is not None else dataset, **watching.diagnose_options)
    except QuantdoctorError as exc:
        session.note(f"cannot diagnose the conversion at {call_site.convert}: {exc}; it runs unwatched")
        return original()
    except Exception as exc:  # a bug of ours must not cost the user the conversion
        session.report_bug("diagnosing a conversion", exc)
        return original()
    call_site.yields = recorder.lines if recorder else []
    if report.conversion["outcome"] != "ok":
        return _fail_like_the_converter(_record(report, call_site), original, watching)
    started = time.perf_counter()
    try:
        model = _convert_in_process(converter, original, recorder)
    except BaseException:
        _record(report, call_site)
        session.note("quantdoctor's isolated conversion succeeded, but your converter then failed in your process")
        raise
    report = replace(report, conversion={**report.conversion,
                                         "in_process_seconds": round(time.perf_counter() - started, 3)})
    _record(_audited_returned_model(report, model), call_site)
    return model


def _record(report: Report, call_site: CallSite) -> Report:
    """Point the findings at the script's lines, then print and record the report (returned)."""
    report = replace(report, findings=[_located(finding, call_site) for finding in report.findings])
    session.guarded("reporting a conversion", session.record_conversion)(report, call_site)
    return report


def _convert_in_process(converter: Any, original: Callable[[], bytes], recorder: RecordingDataset | None) -> bytes:
    """The script's own converter, calibrated on the recorded samples (all of them were recorded
    unless the generator yields more than max_samples: it is then called again)."""
    if recorder is None or not recorder.exhausted:
        return original()
    saved = converter.representative_dataset
    converter.representative_dataset = recorder.replay
    try:
        return original()
    finally:
        converter.representative_dataset = saved


def _audited_returned_model(report: Report, model: bytes) -> Report:
    """The report, its audit made about the bytes the script gets (the isolated worker's model differs
    at least in its conversion metadata: it converts from a SavedModel)."""
    from quantdoctor.audit.checks import audit_findings, summarize
    from quantdoctor.audit.tflite_model import read_tflite
    from quantdoctor.intake.recipe import Recipe

    if report.tflite_model == model:
        return report
    settings = {key: value for key, value in report.settings.items() if key != "target"}
    recipe, target, layers = Recipe.from_dict(settings), report.settings.get("target"), report.model.get("layers", [])
    isolated = audit_findings(read_tflite(report.tflite_model), layers, recipe, target) if report.tflite_model else []
    produced = read_tflite(model)
    kept = [finding for finding in report.findings if finding not in isolated]
    return replace(report, findings=rank_findings(kept + audit_findings(produced, layers, recipe, target)),
                   audit=summarize(produced, layers), conversion={**report.conversion, "model_bytes": len(model)},
                   tflite_model=model)


def _fail_like_the_converter(report: Report, original: Callable[[], bytes], watching: session.WatchSession) -> bytes:
    outcome = report.conversion["outcome"]
    if outcome == "error":
        error = diagnosed_exception(report)
        if error is None:  # a class quantdoctor cannot rebuild: the converter raises its own
            return original()
        raise error
    process = next((f.evidence for f in report.findings if "exit_code" in f.evidence), {})
    if outcome == "crash" and watching.on_crash == "exit" and process.get("signal") != "SIGKILL":
        # The script would have died the same way. A SIGKILL is the out-of-memory killer or the
        # converter's memory limit, which the script's own process need not have hit: it raises.
        sys.stderr.flush()
        if process.get("signal"):
            number = signal.Signals[process["signal"]]
            signal.signal(number, signal.SIG_DFL)
            os.kill(os.getpid(), number)
        os._exit(process.get("exit_code") or 1)
    raise QuantizationError(report)


def diagnosed_exception(report: Report) -> BaseException | None:
    """An exception of the class the converter raised, which is also a QuantizationError carrying the
    report: the script's `except ConverterError` still works, and the message is the diagnosis.

    Its attributes come from the converter's own message (ConverterError parses `errors` from it).
    None when the class is not loaded here or cannot be combined.
    """
    module, _, qualname = (report.conversion.get("exception") or "").partition(":")
    cls: Any = sys.modules.get(module)
    for part in qualname.split(".") if qualname else ["<none>"]:
        cls = getattr(cls, part, None)
    if not (isinstance(cls, type) and issubclass(cls, Exception)):
        return None
    try:
        diagnosed = type(cls.__name__, (QuantizationError, cls), {"__module__": cls.__module__,
                                                                  "__qualname__": cls.__qualname__})
        error = diagnosed.__new__(diagnosed)
        cls.__init__(error, report.conversion.get("error_excerpt") or "")
    except Exception:
        return None
    error.converter_message = report.conversion.get("error_excerpt")
    error.report = report
    error.args = QuantizationError(report).args
    return error


def _located(finding: Finding, call_site: CallSite) -> Finding:
    """The finding, pointing at the script's line: the sample's `yield`, the representative_dataset,
    or the line that built the converter."""
    samples = finding.evidence.get("first_samples")
    line = call_site.yields[samples[0]] if samples and samples[0] < len(call_site.yields) else None
    message = _sample_message(finding, line) if line is not None else finding.message
    if line is None and finding.category == "calibration":
        line = call_site.representative_dataset
    line = line or call_site.converter or call_site.convert
    if line is None:
        return finding
    return replace(finding, message=message, evidence={**finding.evidence, "source": line.to_dict()})


def _sample_message(finding: Finding, line: SourceLine) -> str:
    evidence = finding.evidence
    if "sample_dtype" in evidence:
        count = evidence.get("samples_affected", 1)
        affected = f" ({count} samples affected)" if count > 1 else f" (sample #{evidence['first_samples'][0]})"
        return (f"{line} yields {evidence['sample_dtype']} for input '{finding.location.input or 0}'; the input "
                f"expects {evidence['input_dtype']}.{affected}")
    return f"{line}: {finding.message}"


def _copied(item: Any) -> Any:
    """The item with its NumPy arrays copied (a generator may refill one buffer between yields)."""
    if isinstance(item, np.ndarray):
        return item.copy()
    if isinstance(item, list):
        return [_copied(value) for value in item]
    if isinstance(item, tuple):
        return tuple(_copied(value) for value in item)
    if isinstance(item, dict):
        return {key: _copied(value) for key, value in item.items()}
    return item
