"""The `quantdoctor` command: a thin layer over the public API.

Exit codes: 0 clean, 1 findings at or above --fail-on, 2 usage or input error, 3 internal error.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Callable, Optional

import typer
from rich.console import Console
from rich.markup import escape

from quantdoctor.cli_options import (
    CalibrationData,
    DeploymentTarget,
    FailOn,
    Imports,
    IoType,
    JsonReport,
    MaxSamples,
    MemoryLimit,
    QuantizationMode,
    SelectTfOps,
    Signatures,
    Timeout,
    TrustModel,
)
from quantdoctor.environment import require_model_reader, require_tensorflow
from quantdoctor.errors import UsageError
from quantdoctor.intake import options
from quantdoctor.intake.cache_settings import check_cache_root
from quantdoctor.intake.data import DEFAULT_MAX_SAMPLES
from quantdoctor.intake.float_tflite import is_tflite_path
from quantdoctor.intake.imports import handed_over
from quantdoctor.intake.output_file import write_output
from quantdoctor.intake.paths import check_outputs, input_kind
from quantdoctor.isolation.runner import DEFAULT_TIMEOUT
from quantdoctor.reduce.reduce_model import DEFAULT_REDUCE_SAMPLES
from quantdoctor.report.literal import printable
from quantdoctor.report.model import SEVERITIES, QuantizationError
from quantdoctor.report.progress import ProgressLine
from quantdoctor.tf_private import TensorFlowChanged

try:  # typer 0.29 carries its own copy of click
    from typer._click.exceptions import ClickException, NoArgsIsHelpError
except ImportError:  # older typer depends on click itself
    from click.exceptions import ClickException, NoArgsIsHelpError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Why does my TensorFlow model fail to quantize for LiteRT, and how do I fix it?")
class _Console(Console):
    """rich's Console, exiting as a process killed by SIGPIPE (128 + 13) when the reader of its output goes away
    (`quantdoctor diagnose ... | head -1`): rich's own exit 1 would read as "findings at or above --fail-on"."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(128 + signal.SIGPIPE)


out = _Console(highlight=False, soft_wrap=True)  # lines are never cut or re-wrapped: code stays copyable
err = _Console(stderr=True, highlight=False, soft_wrap=True)
FAIL_ON = (*SEVERITIES, "never")
MODEL_EXPLORER_HELP = ("Write a Model Explorer overlay (node data JSON) here: per-layer SQNR and causes on the "
                       "quantized model's tensors; open it with `quantdoctor view`.")


@app.command()
def diagnose(
    model: Path = typer.Argument(..., help="A .keras/.h5 file, a SavedModel directory, or a float .tflite "
                                 "(quantized with ai-edge-quantizer: the aeq extra)."),
    data: CalibrationData = None,
    eval_data: Optional[Path] = typer.Option(None, "--eval-data", help="Inference data, to check calibration ranges."),
    mode: QuantizationMode = "int8",
    io: IoType = "float",
    select_tf_ops: SelectTfOps = False,
    signature: Signatures = None,
    max_samples: MaxSamples = DEFAULT_MAX_SAMPLES,
    timeout: Timeout = DEFAULT_TIMEOUT,
    memory_limit: MemoryLimit = None,
    json_path: JsonReport = None,
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the converted .tflite here."),
    target: DeploymentTarget = None,
    no_convert: bool = typer.Option(False, "--no-convert", help="Preflight only: check graph and data, predict."),
    fail_on: FailOn = "error",
    keep_workdir: Optional[Path] = typer.Option(None, help="Keep the worker's request, data and logs in this new "
                                                            "(or empty) directory."),
    trust_model: TrustModel = False,
    imports: Imports = None,
    aeq_recipe: Optional[Path] = typer.Option(None, "--aeq-recipe", help="For a float .tflite: quantize with this "
                                              "ai-edge-quantizer recipe JSON instead of --mode's recipe."),
    json_stream: Optional[Path] = typer.Option(None, "--json-stream", help="Write each stage as it ends (started, "
                                               "predicted, converted, audited, done) as JSON Lines to this file "
                                               "(- for stdout; the report then goes to stderr)."),
    fail_fast: bool = typer.Option(False, "--fail-fast", help="Stop at a failure predicted with certainty before "
                                   "converting (exit 1), without converting."),
) -> None:
    """Convert MODEL with the real converter, in an isolated process, and explain what went wrong."""
    from quantdoctor.diagnosis.pipeline import diagnose as run_diagnose

    _check_fail_on(fail_on)
    require_tensorflow()
    if no_convert and output is not None:
        raise UsageError("--output needs a converted model, and --no-convert runs the preflight only: drop one")
    if no_convert and fail_fast:
        raise UsageError("--fail-fast stops before converting, and --no-convert never converts: drop one")
    to_stdout = json_stream is not None and str(json_stream) == "-"
    stream_file = None if json_stream is None or to_stdout else json_stream
    _check_inputs(("model", model), ("calibration data", data), ("eval data", eval_data), ("AEQ recipe", aeq_recipe))
    outputs = {"--json": json_path, "--output": output, "--keep-workdir": keep_workdir, "--json-stream": stream_file}
    check_outputs(inputs=(model, data, eval_data, aeq_recipe), outputs=outputs)
    check_cache_root(inputs=(model, data, eval_data, aeq_recipe), outputs=outputs)
    doing = "Checking (preflight only)" if no_convert else "Converting"
    with handed_over(imports), _event_stream(stream_file, to_stdout) as on_event, \
            err.status(f"{doing} {escape(printable(model))} in an isolated process…"):
        report = run_diagnose(model, data, mode=mode, io=io, select_tf_ops=select_tf_ops, signature_keys=signature,
                              max_samples=max_samples, timeout=timeout, memory_limit_mb=memory_limit,
                              target=target, convert=not no_convert, eval_data=eval_data,
                              keep_workdir=keep_workdir, trust_model=trust_model, aeq_recipe=aeq_recipe,
                              fail_fast=fail_fast, on_event=on_event)
    if output and report.tflite_model is not None:
        write_output(output, report.tflite_model, "--output")
    _finish(report, json_path, fail_on, console=err if to_stdout else out)


@contextlib.contextmanager
def _event_stream(path: Optional[Path], to_stdout: bool) -> Iterator[Callable[[dict], None]]:
    """The diagnosis's event handler: a `predicted` event is printed on stderr at once, and with --json-stream
    every event is one JSON line, flushed as it comes (to `path`, or to stdout)."""
    stream = sys.stdout if to_stdout else (open(path, "w", encoding="utf-8") if path is not None else None)

    def on_event(event: dict) -> None:
        if event["event"] == "predicted":
            _print_predicted(event)
        if stream is not None:
            stream.write(json.dumps(event) + "\n")
            stream.flush()

    try:
        yield on_event
    finally:
        if stream is not None and not to_stdout:
            stream.close()


def _print_predicted(event: dict) -> None:
    """The early answer on stderr: the predicted root cause, before the converter has confirmed it."""
    finding = event["finding"]
    if event.get("withdrawn"):
        err.print(f"withdrawn  {finding['code']}: {printable(event['because'])}", markup=False, soft_wrap=True)
        return
    source = "the samples and the model's declared inputs" if event["stage"] == "data" else "the traced model"
    if not event["fail_fast"]:
        then = "converting to confirm it…"
    else:
        then = "--fail-fast: not converting" if event["stage"] == "graph" else \
            "--fail-fast: checking it against the traced model, then stopping"
    err.print(f"predicted  {finding['code']} {finding['severity']}  {printable(finding['title'])}", markup=False,
              soft_wrap=True)
    err.print(f"  {printable(finding['message'])}", markup=False, soft_wrap=True)
    err.print(f"  known {event['seconds']:.1f} s in, from {source}; {then}", markup=False, soft_wrap=True)


@app.command()
def audit(
    model: Path = typer.Argument(..., help="A .tflite model."),
    target: DeploymentTarget = None,
    json_path: JsonReport = None,
    fail_on: FailOn = "error",
    sram: Optional[int] = typer.Option(None, help="For an Ethos-U target: the SRAM, in KiB, your system gives "
                                       "the NPU's tensor arena (Vela compiles for it; QD123 when it does not fit)."),
) -> None:
    """Is MODEL really fully integer? Which ops stayed float, how to feed it, does it fit TARGET?"""
    from quantdoctor.audit.report import audit as run_audit

    _check_fail_on(fail_on)
    require_model_reader()
    _check_inputs(("model", model))
    check_outputs(inputs=(model,), outputs={"--json": json_path})
    _finish(run_audit(model, target=target, sram_kib=sram), json_path, fail_on)


def _finish(report, json_path: Optional[Path], fail_on: str, failed: bool = False, console: Console = out) -> None:
    """Render (to `console`), write the JSON, and exit 1 when findings reach --fail-on (or the command `failed`
    its job)."""
    from quantdoctor.report.terminal import render

    render(report, console)
    if json_path:
        write_output(json_path, json.dumps(report.to_dict(), indent=2), "--json")
    if failed:
        raise typer.Exit(1)
    worst = report.worst_severity()
    if fail_on != "never" and worst is not None and SEVERITIES.index(worst) <= SEVERITIES.index(fail_on):
        raise typer.Exit(1)


def _check_fail_on(fail_on: str) -> None:
    if fail_on not in FAIL_ON:
        raise UsageError(f"unknown --fail-on '{fail_on}': choose one of {', '.join(FAIL_ON)}")


@app.command()
def compare(
    model: Path = typer.Argument(..., help="A .keras/.h5 file or a SavedModel directory."),
    data: Optional[Path] = typer.Option(None, "--data", help="Calibration data (.npz/.npy) for the quantized model."),
    eval_data: Path = typer.Option(..., "--eval-data", help="Eval data (.npz/.npy): what both models are run on."),
    labels: Optional[Path] = typer.Option(None, "--labels", help="Class labels (.npy), one per eval sample."),
    tflite: Optional[Path] = typer.Option(None, "--tflite", help="Compare this quantized .tflite instead of converting."),
    mode: QuantizationMode = "int8",
    io: IoType = "float",
    target: DeploymentTarget = None,
    html_path: Optional[Path] = typer.Option(None, "--html", help="Write the self-contained HTML report here."),
    model_explorer: Optional[Path] = typer.Option(None, "--model-explorer", help=MODEL_EXPLORER_HELP),
    json_path: JsonReport = None,
    max_samples: MaxSamples = DEFAULT_MAX_SAMPLES,
    fail_on: FailOn = "error",
    trust_model: TrustModel = False,
    imports: Imports = None,
) -> None:
    """Float vs quantized MODEL on eval data: end to end and layer by layer, worst layers first."""
    from quantdoctor.compare.compare_models import compare as run_compare

    _check_fail_on(fail_on)
    require_tensorflow()
    options.checked_target(target)
    _check_inputs(("model", model), ("calibration data", data), ("eval data", eval_data), ("labels", labels),
                  ("--tflite model", tflite))
    outputs = {"--json": json_path, "--html": html_path, "--model-explorer": model_explorer}
    check_outputs(inputs=(model, data, eval_data, labels, tflite), outputs=outputs)
    check_cache_root(inputs=(model, data, eval_data, labels, tflite), outputs=outputs)
    try:
        with handed_over(imports), ProgressLine(sys.stderr) as line:  # a terminal only: piped, stderr stays clean
            line.stage("Converting (float and quantized) in an isolated process")

            def progress(done: int, total: int) -> None:
                line.stage("Running both models on the eval data", done, total)

            report = run_compare(model, data, eval_data=eval_data, labels=labels, tflite=tflite, html=html_path,
                                 mode=mode, io=io, max_samples=max_samples, progress=progress,
                                 trust_model=trust_model, target=target, model_explorer=model_explorer)
    except QuantizationError as failure:  # nothing to compare: the diagnosis of the conversion is the answer
        _finish(failure.report, json_path, fail_on, failed=True)
    else:
        _finish(report, json_path, fail_on)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True,
                                "allow_interspersed_args": False},
             options_metavar="[OPTIONS] [--] COMMAND [ARGS]...")
def run(
    ctx: typer.Context,
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write each conversion's report and each "
                                             "finding, in order, to this file."),
    timeout: Timeout = DEFAULT_TIMEOUT,
    memory_limit: MemoryLimit = None,
    max_samples: MaxSamples = DEFAULT_MAX_SAMPLES,
) -> None:
    """Run COMMAND (e.g. `python convert.py --epochs 3`) with its conversions and inference diagnosed.

    Put quantdoctor's options before the command, or end them with --.

    The command's exit code, stdout and files stay its own: quantdoctor writes to stderr and --json.
    """
    from quantdoctor.watch.run_command import run_command

    require_tensorflow()
    run_command(list(ctx.args), json_path=json_path, timeout=timeout, memory_limit_mb=memory_limit,
                max_samples=max_samples)


@app.command()
def fix(
    model: Path = typer.Argument(..., help="A .keras/.h5 file or a SavedModel directory."),
    data: CalibrationData = None,
    eval_data: Optional[Path] = typer.Option(None, "--eval-data", help="Eval data: the fixed model is compared "
                                             "with the float model on it, and an accuracy error blocks it."),
    labels: Optional[Path] = typer.Option(None, "--labels", help="Class labels (.npy), one per eval sample."),
    mode: QuantizationMode = "int8",
    io: IoType = "float",
    select_tf_ops: SelectTfOps = False,
    signature: Signatures = None,
    target: DeploymentTarget = None,
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the verified .tflite here."),
    script: Optional[Path] = typer.Option(None, "--script", help="Write the standalone conversion script here."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the repairs and both reports (JSON) here."),
    max_samples: MaxSamples = DEFAULT_MAX_SAMPLES,
    max_rounds: int = typer.Option(4, min=1, help="Conversions at most: diagnose, repair, convert again."),
    timeout: Timeout = DEFAULT_TIMEOUT,
    memory_limit: MemoryLimit = None,
    trust_model: TrustModel = False,
    imports: Imports = None,
    max_drop: Optional[float] = typer.Option(None, "--max-drop", help="Accuracy budget on --eval-data: the largest "
                                             "drop of top-1 accuracy (with --labels) or agreement vs float."),
    min_sqnr: Optional[float] = typer.Option(None, "--min-sqnr", help="Accuracy budget: an SQNR floor in dB on "
                                             "every output (regression-style models)."),
    html_path: Optional[Path] = typer.Option(None, "--html", help="Write the HTML report (with a budget: the "
                                             "Pareto plot of the variants tried) here."),
    recipe_path: Optional[Path] = typer.Option(None, "--recipe", help="For a float .tflite: write the "
                                               "ai-edge-quantizer recipe JSON that meets the budget here."),
    model_explorer: Optional[Path] = typer.Option(None, "--model-explorer", help=MODEL_EXPLORER_HELP),
) -> None:
    """Repair MODEL's conversion, convert again, verify; write the verified model and the script.

    With --max-drop or --min-sqnr, the fewest ops kept float that meet that accuracy budget."""
    from quantdoctor.fix.fix_model import fix as run_fix
    from quantdoctor.fix.render import render_fix
    from quantdoctor.fix.rounds import ROUND

    require_tensorflow()
    if is_tflite_path(model):
        unwritten = [option for option, path in (("--script", script), ("--html", html_path)) if path is not None]
        if unwritten:  # asked for, never written: say so before the search, not silently after it
            raise UsageError(f"{' and '.join(unwritten)} apply to Keras and SavedModel models: fix on a float .tflite "
                             "writes --recipe, --output, --json and --model-explorer")
        _fix_float_tflite(model, data, eval_data, labels, mode, recipe_path, output, json_path, max_samples,
                          timeout, max_drop, min_sqnr, model_explorer)
        return
    if recipe_path is not None:
        raise UsageError("--recipe writes an ai-edge-quantizer recipe: it applies to a float .tflite model only")

    _check_inputs(("model", model), ("calibration data", data), ("eval data", eval_data), ("labels", labels))
    outputs = {"--output": output, "--script": script, "--json": json_path, "--html": html_path,
               "--model-explorer": model_explorer}
    check_outputs(inputs=(model, data, eval_data, labels), outputs=outputs)
    check_cache_root(inputs=(model, data, eval_data, labels), outputs=outputs)
    script_output = os.path.abspath(output) if output else "model_int8.tflite"  # the script runs anywhere
    with handed_over(imports), ProgressLine(sys.stderr) as line:  # a terminal only: piped, stderr stays clean
        line.stage("Fixing: converting in an isolated process")

        def progress(step: str, count: int) -> None:
            if step == ROUND:
                line.stage("Fixing: round (convert, verify)", count, max_rounds)
            else:
                line.stage("Accuracy budget: variants tried", count)

        result = run_fix(model, data, mode=mode, io=io, select_tf_ops=select_tf_ops, signature_keys=signature,
                         target=target, eval_data=eval_data, labels=labels, max_samples=max_samples,
                         max_rounds=max_rounds, timeout=timeout, memory_limit_mb=memory_limit,
                         trust_model=trust_model, output_name=script_output,
                         max_drop=max_drop, min_sqnr=min_sqnr, html=html_path, progress=progress,
                         model_explorer=model_explorer)
    render_fix(result, out)
    if model_explorer:
        _overlay_written(model_explorer, result.model or result.after.tflite_model)
    if output and result.model is not None and result.met_budget is False:
        write_output(output, result.model, "--output")
        out.print(printable(f"Best effort written to {output} ({len(result.model)} bytes): it misses the accuracy "
                            "budget"), markup=False, soft_wrap=True)
    elif output and result.model is not None:
        write_output(output, result.model, "--output")
        out.print(printable(f"Model written to {output} ({len(result.model)} bytes)"), markup=False, soft_wrap=True)
    elif output:
        out.print(printable(f"No model written to {output}: it is not verified"), markup=False, soft_wrap=True)
    if script:
        write_output(script, result.script, "--script")
        unverified = "" if result.verified else " (its repairs are not verified)"
        out.print(printable(f"Script written to {script}{unverified}"), markup=False, soft_wrap=True)
    if json_path:
        write_output(json_path, json.dumps(result.to_dict(), indent=2), "--json")
    if not result.verified:
        raise typer.Exit(1)


def _fix_float_tflite(model: Path, data: Optional[Path], eval_data: Optional[Path], labels: Optional[Path], mode: str,
                      recipe_path: Optional[Path], output: Optional[Path], json_path: Optional[Path],
                      max_samples: int, timeout: float, max_drop: Optional[float], min_sqnr: Optional[float],
                      model_explorer: Optional[Path]) -> None:
    """`fix` on a float .tflite: the AEQ recipe that meets the accuracy budget, verified in a fresh process."""
    from quantdoctor.budget.aeq_recipe import fit_aeq_recipe

    if recipe_path is None or (max_drop is None and min_sqnr is None):
        raise UsageError("fix on a float .tflite searches an ai-edge-quantizer recipe for an accuracy budget: give "
                         "--max-drop or --min-sqnr, --eval-data, and --recipe recipe.json")
    _check_inputs(("model", model), ("calibration data", data), ("eval data", eval_data), ("labels", labels))
    check_outputs(inputs=(model, data, eval_data, labels),
                  outputs={"--recipe": recipe_path, "--output": output, "--json": json_path,
                           "--model-explorer": model_explorer})
    with err.status(f"Searching an ai-edge-quantizer recipe for {escape(str(model))} in an isolated process…"):
        result = fit_aeq_recipe(model, data, eval_data, recipe_path, labels=labels, mode=mode, max_drop=max_drop,
                                min_sqnr=min_sqnr, max_samples=max_samples, timeout=timeout)
    if not result.entries:  # AEQ failed with its own recipe: no search ran, the diagnosis says why
        root = result.report.root_cause if result.report else None
        out.print(printable(f"NOT FIXED  {model}  ai-edge-quantizer fails with its own recipe; no recipe written"),
                  markup=False, soft_wrap=True)
        if root:
            out.print(printable(f"  {root.code} {root.title}: {root.message}"), markup=False, soft_wrap=True)
        raise typer.Exit(1)
    status = "FIXED" if result.met_budget and result.verified else "NOT FIXED"
    def number(value: Optional[float]) -> str:
        return "n/a" if value is None else f"{value:.4g}"

    out.print(printable(f"{status}  {model}  {result.objective['description']}: {number(result.chosen_value)} "
                        f"(all quantized: {number(result.int8_value)}), {result.evaluations} variant(s)"),
              markup=False, soft_wrap=True)
    for kept in result.kept:  # tensor names from the user's file: shown literally
        out.print(printable(f"  kept {kept['as']}: {kept['tensor']}"), markup=False, soft_wrap=True)
    reported = [f for f in result.report.findings if f.severity != "info"] if result.report else []
    if reported:  # the diagnosis of the model the written recipe makes, as the JSON report has it
        out.print("Still reported", style="bold", markup=False)
        for finding in reported:
            out.print(printable(f"  {finding.code}  {finding.severity}  {finding.title}: {finding.message}"),
                      markup=False, soft_wrap=True)
    out.print(printable(f"Recipe written to {recipe_path}; AEQ run afresh with it "
                        f"{'made the same model' if result.verified else 'made a different model'}"),
              markup=False, soft_wrap=True)
    if output and result.model is not None:
        write_output(output, result.model, "--output")
        missed = "" if result.met_budget else ": best effort, it misses the accuracy budget"
        out.print(printable(f"Model written to {output} ({len(result.model)} bytes){missed}"), markup=False,
                  soft_wrap=True)
    if json_path:
        write_output(json_path, json.dumps(result.to_dict(), indent=2), "--json")
    if model_explorer and result.model is not None and result.report is not None:
        from quantdoctor.viz.overlay import write_overlay

        kept_float = [{"node": kept["tensor"]} for kept in result.kept if kept["as"] == "float"]
        write_overlay(model_explorer, result.report, result.model, kept_float)
    if model_explorer:
        _overlay_written(model_explorer, result.model if result.report is not None else None)
    if not (result.met_budget and result.verified):
        raise typer.Exit(1)


def _overlay_written(path: Path, model: Optional[bytes]) -> None:
    """Say where the Model Explorer overlay went, or that no model was made to write one for."""
    said = (f"Model Explorer overlay written to {path}" if model is not None
            else f"No Model Explorer overlay written to {path}: no model was made")
    out.print(printable(said), markup=False, soft_wrap=True)


@app.command()
def reduce(
    model: Path = typer.Argument(..., help="A .keras/.h5 file (functional, Sequential or nested; Keras 3 or tf_keras)."),
    data: CalibrationData = None,
    code: Optional[str] = typer.Option(None, "--code", help="The finding to reduce (default: the root cause)."),
    repro: Optional[Path] = typer.Option(None, "--repro", help="Write a standalone script that fails the same way."),
    with_weights: bool = typer.Option(False, "--with-weights", help="The repro uses the real weights (saved "
                                      "beside it), not random ones."),
    with_source: bool = typer.Option(False, "--with-source", help="The repro carries the source of your module "
                                     "that defines a custom culprit layer, instead of importing it."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the culprits and the signature (JSON) here."),
    mode: QuantizationMode = "int8",
    io: IoType = "float",
    select_tf_ops: SelectTfOps = False,
    target: DeploymentTarget = None,
    max_samples: MaxSamples = DEFAULT_REDUCE_SAMPLES,
    timeout: Timeout = DEFAULT_TIMEOUT,
    memory_limit: MemoryLimit = None,
    trust_model: TrustModel = False,
    imports: Imports = None,
) -> None:
    """Cut MODEL to the fewest layers that fail to convert the same way; optionally write a repro script."""
    from quantdoctor.reduce.reduce_model import reduce as run_reduce
    from quantdoctor.reduce.render import render_reduce

    _check_inputs(("model", model), ("calibration data", data))
    check_outputs(inputs=(model, data), outputs={"--json": json_path, "--repro": repro})
    check_cache_root(inputs=(model, data), outputs={"--json": json_path, "--repro": repro})
    with handed_over(imports), \
            err.status(f"Reducing {escape(printable(model))}: converting sub-models in an isolated process…"):
        result = run_reduce(model, data, mode=mode, io=io, select_tf_ops=select_tf_ops, target=target, code=code,
                            repro=repro, with_weights=with_weights, with_source=with_source,
                            max_samples=max_samples, timeout=timeout,
                            memory_limit_mb=memory_limit, trust_model=trust_model)
    render_reduce(result, out)
    if repro:
        out.print(printable(f"Repro written to {repro}"), markup=False, soft_wrap=True)
    if json_path:
        write_output(json_path, json.dumps(result.to_dict(), indent=2), "--json")


@app.command()
def explain(code: str = typer.Argument(..., help="A finding code such as QD201.")) -> None:
    """Print the documentation of one finding code."""
    from quantdoctor import catalog

    out.print(catalog.get(code).explain(), markup=False, soft_wrap=True)


@app.command()
def view(
    model: Path = typer.Argument(..., help="The .tflite model to show (the quantized model of the overlay)."),
    overlay: Optional[Path] = typer.Option(None, "--overlay", help="The overlay `--model-explorer` wrote."),
    host: str = typer.Option("localhost", help="The address Model Explorer's server listens on."),
    port: int = typer.Option(8080, help="Its port (8080: the first free one from 8080 up)."),
    no_browser: bool = typer.Option(False, "--no-browser", help="Do not open a browser tab; print the address only."),
) -> None:
    """Start Model Explorer on MODEL with the overlay loaded (the viz extra); Ctrl+C stops it."""
    from quantdoctor.viz.explorer import view as run_view

    run_view(model, overlay, host=host, port=port, open_browser=not no_browser)


@app.command()
def codes() -> None:
    """List every finding code quantdoctor can report."""
    from quantdoctor import catalog

    for check in catalog.CHECKS.values():
        out.print(f"{check.code}  {check.category:<15} {check.severity:<8} {check.title}", markup=False, soft_wrap=True)


@app.command()
def demo() -> None:
    """Diagnose bundled example models: the classic failures and one clean model."""
    from quantdoctor.demo import run_demo

    require_tensorflow()
    run_demo(out, err)


@app.command()
def env() -> None:
    """Print the installed TensorFlow, Keras, LiteRT, ... and whether each was verified.

    Python, TensorFlow (and its distribution), Keras, tf_keras, tfmot, LiteRT and NumPy, and the
    interpreter that runs models: the `environment` of every JSON report."""
    from quantdoctor.environment import current
    from quantdoctor.report.environment import environment_lines

    for line in environment_lines(current()):
        out.print(line, soft_wrap=True)


def main() -> None:
    """Console entry point: user errors are one line and exit 2, quantdoctor's own bugs exit 3.

    Ctrl-C and SIGTERM stop the converter and remove the temporary files, then exit 128 + the signal.
    """
    from quantdoctor.isolation.cleanup import Interrupted, interruptible

    with interruptible():
        try:
            _run()
        except Interrupted as exc:
            err.print("quantdoctor: interrupted", markup=False)
            sys.exit(128 + exc.signum)


def _run() -> None:
    try:
        code = app(standalone_mode=False)  # option errors are raised here, not printed as boxes
    except NoArgsIsHelpError as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ClickException as exc:  # a bad option, a missing argument, an unknown command
        err.print(f"quantdoctor: error: {printable(_usage_line(exc))}", markup=False)
        sys.exit(2)
    except typer.Abort:
        sys.exit(1)
    except UsageError as exc:
        one_line = printable(str(exc).strip())  # one line: a newline of a quoted path or name shows as \n
        err.print(f"quantdoctor: error: {one_line}", markup=False)
        sys.exit(2)
    except TensorFlowChanged as exc:  # the installed TensorFlow changed a private detail quantdoctor relies on
        traceback.print_exc()
        err.print(f"quantdoctor: internal error: {printable(' '.join(str(exc).split()))}: please report it with your "
                  "TensorFlow version", markup=False)
        sys.exit(3)
    except Exception:
        traceback.print_exc()
        err.print("quantdoctor: internal error (a bug in quantdoctor): please report it with the traceback above",
                  markup=False)
        sys.exit(3)
    sys.exit(code or 0)


def _check_inputs(*inputs: tuple[str, Optional[Path]]) -> None:
    """Every input path names a file or directory (not a link loop, a FIFO, a device), checked first."""
    for what, path in inputs:
        if path is not None:
            input_kind(path, what)


def _usage_line(exc: ClickException) -> str:
    """Click's message on one line, with where to read the usage."""
    message = " ".join(exc.format_message().split())
    context = getattr(exc, "ctx", None)
    return f"{message} (see `{context.command_path} --help`)" if context is not None else message
