"""The `quantdoctor` console script: starts the worker's zygote first, then runs the command line (`cli.main`).

A command that runs a model in a worker (diagnose, compare, fix, reduce on a model path) gets its zygote
(`isolation.prefork`) started here, before the command line imports typer, rich and its pipeline: the zygote's
own imports (TensorFlow and Keras, or for a float .tflite AEQ and LiteRT) then run beside the command's instead
of after them. It is started with the environment and command line the runner gives its workers, so the
runner's first fork finds it; a guess that misses (a user error, a model the command refuses, an option that
makes the run start cold) costs only that background process, which ends at exit or on Ctrl-C like any zygote.
This module imports nothing but the standard library and `quantdoctor.isolation`'s cleanup, runner and prefork
(about 0.05 s: `import quantdoctor` itself loads no subpackage). Ctrl-C and SIGTERM are handled from its first line
on, as `cli.main` handles them: one line, exit 128 + the signal, and the zygote ends with the command.
"""

from __future__ import annotations

import os
import sys

from quantdoctor.isolation.cleanup import Interrupted, held_back, interruptible

# The commands that run their model in a worker, when it is the first argument.
_WORKER_COMMANDS = frozenset({"diagnose", "compare", "fix", "reduce"})
# Options after which the command runs no worker from a zygote (a memory limit starts cold) or none at all.
_COLD_OPTIONS = ("--memory-limit", "--help")


def main() -> None:
    """Start the zygote the command will use (see the module docstring), then run the command line. A signal
    before the command line handles its own (`cli.main`, run inside this handling) ends here, at exit."""
    with interruptible():
        try:
            from quantdoctor.isolation import prefork
            from quantdoctor.isolation.runner import isolated_command, worker_variables

            kind = zygote_kind(sys.argv[1:])
            if kind is not None:
                with held_back():  # the zygote is registered (to end at exit) before a signal takes effect
                    prefork.start_early(kind, worker_variables(), isolated_command)
            from quantdoctor.cli import main as cli_main
        except Interrupted as exc:
            sys.stderr.write("quantdoctor: interrupted\n")
            sys.exit(128 + exc.signum)
        cli_main()


def zygote_kind(arguments: list[str]) -> str | None:
    """The kind of zygote (`prefork.PRELOADS`) the command `arguments` will fork its workers from, or None: a
    float .tflite model runs AEQ's worker, any other model TensorFlow's."""
    from quantdoctor.isolation import prefork

    if len(arguments) < 2 or arguments[0] not in _WORKER_COMMANDS or arguments[1].startswith("-"):
        return None
    if any(argument.split("=", 1)[0] in _COLD_OPTIONS for argument in arguments):
        return None
    model = arguments[1]
    if not os.path.exists(model):
        return None
    return prefork.AEQ if os.path.isfile(model) and model.lower().endswith(".tflite") else prefork.TENSORFLOW
