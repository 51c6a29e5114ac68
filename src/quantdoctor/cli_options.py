"""The command line's shared options, written once: each is an `Annotated` type with its flag and
help, and the commands give it its default (`timeout: Timeout = DEFAULT_TIMEOUT`). The values are
checked by the API the commands call (`intake.options`), in the same words as from Python."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from quantdoctor.intake.options import Mode, Target

_MODES = " | ".join(mode.value for mode in Mode if mode is not Mode.FLOAT)
_TARGETS = " | ".join(target.value for target in Target)

CalibrationData = Annotated[Optional[Path], typer.Option(
    "--data", help="Calibration data: .npz (one array per input) or .npy.")]
QuantizationMode = Annotated[str, typer.Option(help=f"{_MODES} (for a float .tflite in diagnose, compare and fix: "
                                                    "int8 | int8-strict | int16x8 | dynamic | weight-only)")]
IoType = Annotated[str, typer.Option(help="Model input/output type: float | int8 | uint8")]
SelectTfOps = Annotated[bool, typer.Option("--select-tf-ops", help="Allow Select TF ops (Flex).")]
Signatures = Annotated[Optional[list[str]], typer.Option(
    "--signature", help="SavedModel signature key to convert (repeatable).")]
MaxSamples = Annotated[int, typer.Option(min=1, help="Use at most this many samples of each data set.")]
Timeout = Annotated[float, typer.Option(help="Seconds before one conversion is stopped.")]
MemoryLimit = Annotated[Optional[int], typer.Option(
    "--memory-limit", help="Memory limit for each converter process, in MB (256 or more).")]
JsonReport = Annotated[Optional[Path], typer.Option("--json", help="Also write the JSON report to this file.")]
DeploymentTarget = Annotated[Optional[str], typer.Option(
    help=f"Where the model runs, and what its audit checks: {_TARGETS} (ethos-u*: compiled by Arm's Vela; "
         "edgetpu: predicted from published constraints; cpu and gpu run float ops)")]
FailOn = Annotated[str, typer.Option(help="Exit 1 on findings at or above: error | warning | info | never")]
TrustModel = Annotated[bool, typer.Option(
    "--trust-model", help="Load a .keras/.h5 file even if that runs code stored in it (Lambda layers). "
                          "Only for files you trust.")]
Imports = Annotated[Optional[list[str]], typer.Option(
    "--import", help="Import this .py file or module before loading the model (its registered custom layers), "
                     "in the isolated worker too; repeatable. Only code you trust.")]
