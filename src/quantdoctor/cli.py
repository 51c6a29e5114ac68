"""The `quantdoctor` command: a thin layer over the public API.

Exit codes: 0 clean, 1 findings at or above --fail-on, 2 usage or input error, 3 internal error.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

from quantdoctor.errors import QuantizationError, UsageError
from quantdoctor.intake.data import DEFAULT_MAX_SAMPLES
from quantdoctor.intake.paths import check_outputs, input_kind
from quantdoctor.report.model import SEVERITIES

try:  # typer 0.29 carries its own copy of click
    from typer._click.exceptions import ClickException, NoArgsIsHelpError
except ImportError:  # older typer depends on click itself
    from click.exceptions import ClickException, NoArgsIsHelpError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Why does my TensorFlow model fail to quantize for LiteRT, and how do I fix it?")
out = Console(highlight=False, soft_wrap=True)  # lines are never cut or re-wrapped: code stays copyable
err = Console(stderr=True, highlight=False, soft_wrap=True)
FAIL_ON = (*SEVERITIES, "never")
TRUST_MODEL_HELP = ("Load a .keras/.h5 file even if that runs code stored in it (Lambda layers). "
                    "Only for files you trust.")


@app.command()
def diagnose(
    model: Path = typer.Argument(..., help="A .keras/.h5 file or a SavedModel directory."),
    data: Optional[Path] = typer.Option(None, "--data", help="Calibration data: .npz (one array per input) or .npy."),
    eval_data: Optional[Path] = typer.Option(None, "--eval-data", help="Inference data, to check calibration ranges."),
    mode: str = typer.Option("int8", help="int8 | int8-strict | int16x8 | dynamic | float16"),
    io: str = typer.Option("float", help="Model input/output type: float | int8 | uint8"),
    select_tf_ops: bool = typer.Option(False, "--select-tf-ops", help="Allow Select TF ops (Flex)."),
    signature: Optional[list[str]] = typer.Option(None, help="SavedModel signature key to convert (repeatable)."),
    max_samples: int = typer.Option(DEFAULT_MAX_SAMPLES, min=1, help="Use at most this many calibration samples."),
    timeout: float = typer.Option(900.0, help="Seconds before the conversion is stopped."),
    memory_limit: Optional[int] = typer.Option(None, help="Memory limit for the converter process, in MB (>= 256)."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the JSON report to this file."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the converted .tflite here."),
    target: Optional[str] = typer.Option(None, help="Audit the result for: int8-accelerator | microcontroller | "
                                         "ethos-u55-128 | ethos-u55-256 | ethos-u65-256 | ethos-u85-256 (compiled by "
                                         "Arm's Vela) | edgetpu (predicted) (cpu | gpu: no audit of their own)"),
    no_convert: bool = typer.Option(False, "--no-convert", help="Preflight only: check graph and data, predict."),
    fail_on: str = typer.Option("error", help="Exit 1 on findings at or above: error | warning | info | never"),
    keep_workdir: Optional[Path] = typer.Option(None, help="Keep the worker's request, data and logs in this new "
                                                            "(or empty) directory."),
    trust_model: bool = typer.Option(False, "--trust-model", help=TRUST_MODEL_HELP),
) -> None:
    """Convert MODEL with the real converter, in an isolated process, and explain what went wrong."""
    from quantdoctor.diagnose import diagnose as run_diagnose

    _check_fail_on(fail_on)
    if no_convert and output is not None:
        raise UsageError("--output needs a converted model, and --no-convert runs the preflight only: drop one")
    _check_inputs(("model", model), ("calibration data", data), ("eval data", eval_data))
    check_outputs(inputs=(model, data, eval_data),
                  outputs={"--json": json_path, "--output": output, "--keep-workdir": keep_workdir})
    doing = "Checking (preflight only)" if no_convert else "Converting"
    with err.status(f"{doing} {escape(str(model))} in an isolated process…"):
        report = run_diagnose(model, data, mode=mode, io=io, select_tf_ops=select_tf_ops, signature_keys=signature,
                              max_samples=max_samples, timeout=timeout, memory_limit_mb=memory_limit,
                              target=target, convert=not no_convert, eval_data=eval_data,
                              keep_workdir=keep_workdir, trust_model=trust_model)
    if output and report.tflite_model is not None:
        output.write_bytes(report.tflite_model)
    _finish(report, json_path, fail_on)


@app.command()
def audit(
    model: Path = typer.Argument(..., help="A .tflite model."),
    target: Optional[str] = typer.Option(None, help="int8-accelerator | microcontroller | ethos-u55-128 | "
                                         "ethos-u55-256 | ethos-u65-256 | ethos-u85-256 | edgetpu"),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the JSON report to this file."),
    fail_on: str = typer.Option("error", help="Exit 1 on findings at or above: error | warning | info | never"),
) -> None:
    """Is MODEL really fully integer? Which ops stayed float, how to feed it, does it fit TARGET?"""
    from quantdoctor.audit.report import audit as run_audit

    _check_fail_on(fail_on)
    _check_inputs(("model", model))
    check_outputs(inputs=(model,), outputs={"--json": json_path})
    _finish(run_audit(model, target=target), json_path, fail_on)


def _finish(report, json_path: Optional[Path], fail_on: str, failed: bool = False) -> None:
    """Render, write the JSON, and exit 1 when findings reach --fail-on (or the command `failed` its job)."""
    from quantdoctor.report.terminal import render

    render(report, out)
    if json_path:
        json_path.write_text(json.dumps(report.to_dict(), indent=2))
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
    mode: str = typer.Option("int8", help="int8 | int8-strict | int16x8 | dynamic | float16"),
    io: str = typer.Option("float", help="Model input/output type: float | int8 | uint8"),
    target: Optional[str] = typer.Option(None, help="Audit the quantized model for a target as diagnose does "
                                         "(ethos-u55-128, ...: compiled by Arm's Vela)"),
    html_path: Optional[Path] = typer.Option(None, "--html", help="Write the self-contained HTML report here."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the JSON report to this file."),
    max_samples: int = typer.Option(DEFAULT_MAX_SAMPLES, min=1, help="Use at most this many samples of each data set."),
    fail_on: str = typer.Option("error", help="Exit 1 on findings at or above: error | warning | info | never"),
    trust_model: bool = typer.Option(False, "--trust-model", help=TRUST_MODEL_HELP),
) -> None:
    """Float vs quantized MODEL on eval data: end to end and layer by layer, worst layers first."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from quantdoctor.audit.checks import check_target
    from quantdoctor.compare.run import compare as run_compare

    _check_fail_on(fail_on)
    check_target(target)
    _check_inputs(("model", model), ("calibration data", data), ("eval data", eval_data), ("labels", labels),
                  ("--tflite model", tflite))
    check_outputs(inputs=(model, data, eval_data, labels, tflite), outputs={"--json": json_path, "--html": html_path})
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=err,
                      transient=True) as bar:
            task = bar.add_task("Converting (float and quantized)…", total=None)

            def progress(done: int, total: int) -> None:
                bar.update(task, description="Running both models on the eval data", completed=done, total=total)

            report = run_compare(model, data, eval_data=eval_data, labels=labels, tflite=tflite, html=html_path,
                                 mode=mode, io=io, max_samples=max_samples, progress=progress,
                                 trust_model=trust_model, target=target)
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
    timeout: float = typer.Option(900.0, help="Seconds before a diagnosed conversion is stopped."),
    memory_limit: Optional[int] = typer.Option(None, help="Memory limit for the converter process, in MB (>= 256)."),
    max_samples: int = typer.Option(DEFAULT_MAX_SAMPLES, min=1, help="Calibration samples kept per conversion."),
) -> None:
    """Run COMMAND (e.g. `python convert.py --epochs 3`) with its conversions and inference diagnosed.

    Put quantdoctor's options before the command, or end them with --.

    The command's exit code, stdout and files stay its own: quantdoctor writes to stderr and --json.
    """
    from quantdoctor.watch.run import run_command

    run_command(list(ctx.args), json_path=json_path, timeout=timeout, memory_limit_mb=memory_limit,
                max_samples=max_samples)


@app.command()
def fix(
    model: Path = typer.Argument(..., help="A .keras/.h5 file or a SavedModel directory."),
    data: Optional[Path] = typer.Option(None, "--data", help="Calibration data: .npz (one array per input) or .npy."),
    eval_data: Optional[Path] = typer.Option(None, "--eval-data", help="Eval data: the fixed model is compared "
                                             "with the float model on it, and an accuracy error blocks it."),
    labels: Optional[Path] = typer.Option(None, "--labels", help="Class labels (.npy), one per eval sample."),
    mode: str = typer.Option("int8", help="int8 | int8-strict | int16x8 | dynamic | float16"),
    io: str = typer.Option("float", help="Model input/output type: float | int8 | uint8"),
    select_tf_ops: bool = typer.Option(False, "--select-tf-ops", help="Allow Select TF ops (Flex)."),
    signature: Optional[list[str]] = typer.Option(None, help="SavedModel signature key to convert (repeatable)."),
    target: Optional[str] = typer.Option(None, help="Where the model runs: cpu | gpu | int8-accelerator | "
                                         "microcontroller | ethos-u55-128 | ethos-u55-256 | ethos-u65-256 | "
                                         "ethos-u85-256 | edgetpu (decides the repairs that depend on it)"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the verified .tflite here."),
    script: Optional[Path] = typer.Option(None, "--script", help="Write the standalone conversion script here."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the repairs and both reports (JSON) here."),
    max_samples: int = typer.Option(DEFAULT_MAX_SAMPLES, min=1, help="Use at most this many calibration samples."),
    max_rounds: int = typer.Option(4, min=1, help="Conversions at most: diagnose, repair, convert again."),
    timeout: float = typer.Option(900.0, help="Seconds before one conversion is stopped."),
    memory_limit: Optional[int] = typer.Option(None, help="Memory limit for the converter process, in MB (256 or more)."),
    trust_model: bool = typer.Option(False, "--trust-model", help=TRUST_MODEL_HELP),
    max_drop: Optional[float] = typer.Option(None, "--max-drop", help="Accuracy budget on --eval-data: the largest "
                                             "drop of top-1 accuracy (with --labels) or agreement vs float."),
    min_sqnr: Optional[float] = typer.Option(None, "--min-sqnr", help="Accuracy budget: an SQNR floor in dB on "
                                             "every output (regression-style models)."),
    html_path: Optional[Path] = typer.Option(None, "--html", help="Write the HTML report (with a budget: the "
                                             "Pareto plot of the variants tried) here."),
) -> None:
    """Repair MODEL's conversion, convert again, verify; write the verified model and the script.

    With --max-drop or --min-sqnr, the fewest ops kept float that meet that accuracy budget."""
    from quantdoctor.fix.render import render_fix
    from quantdoctor.fix.run import fix as run_fix

    _check_inputs(("model", model), ("calibration data", data), ("eval data", eval_data), ("labels", labels))
    check_outputs(inputs=(model, data, eval_data, labels),
                  outputs={"--output": output, "--script": script, "--json": json_path, "--html": html_path})
    script_output = os.path.abspath(output) if output else "model_int8.tflite"  # the script runs anywhere
    with err.status(f"Fixing {escape(str(model))}: converting in an isolated process, in rounds…") as status:
        def progress(step: str, variants: int) -> None:
            status.update(f"Searching the float fallback for the accuracy budget: {variants} variant(s) tried…")

        result = run_fix(model, data, mode=mode, io=io, select_tf_ops=select_tf_ops, signature_keys=signature,
                         target=target, eval_data=eval_data, labels=labels, max_samples=max_samples,
                         max_rounds=max_rounds, timeout=timeout, memory_limit_mb=memory_limit,
                         trust_model=trust_model, output_name=script_output,
                         max_drop=max_drop, min_sqnr=min_sqnr, html=html_path, progress=progress)
    render_fix(result, out)
    if output and result.model is not None and result.met_budget is False:
        output.write_bytes(result.model)
        out.print(f"Best effort written to {output} ({len(result.model)} bytes): it misses the accuracy budget",
                  markup=False, soft_wrap=True)
    elif output and result.model is not None:
        output.write_bytes(result.model)
        out.print(f"Model written to {output} ({len(result.model)} bytes)", markup=False, soft_wrap=True)
    elif output:
        out.print(f"No model written to {output}: it is not verified", markup=False, soft_wrap=True)
    if script:
        script.write_text(result.script)
        out.print(f"Script written to {script}" + ("" if result.verified else " (its repairs are not verified)"),
                  markup=False, soft_wrap=True)
    if json_path:
        json_path.write_text(json.dumps(result.to_dict(), indent=2))
    if not result.verified:
        raise typer.Exit(1)


@app.command()
def explain(code: str = typer.Argument(..., help="A finding code such as QD201.")) -> None:
    """Print the documentation of one finding code."""
    from quantdoctor import catalog

    out.print(catalog.get(code).explain(), markup=False, soft_wrap=True)


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

    run_demo(out, err)


def main() -> None:
    """Console entry point: user errors are one line and exit 2, quantdoctor's own bugs exit 3.

    Ctrl-C and SIGTERM stop the converter and remove the temporary files, then exit 128 + the signal.
    """
    from quantdoctor.convert.cleanup import Interrupted, interruptible

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
        err.print(f"quantdoctor: error: {_usage_line(exc)}", markup=False)
        sys.exit(2)
    except typer.Abort:
        sys.exit(1)
    except UsageError as exc:
        err.print(f"quantdoctor: error: {' '.join(str(exc).split())}", markup=False)  # one line, whatever it quotes
        sys.exit(2)
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
