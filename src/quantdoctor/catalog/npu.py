"""Checks for NPU targets: what Arm's Vela compiler leaves on the CPU (`--target ethos-u*`), and
what the Edge TPU's published constraints predict (`--target edgetpu`)."""

from quantdoctor.catalog.check import Check

ETHOS_U_TARGETS = ("ethos-u55-128", "ethos-u55-256", "ethos-u65-256", "ethos-u85-256")  # Vela's accelerator configs
NPU_TARGETS = ETHOS_U_TARGETS + ("edgetpu",)  # integer-only: a float op runs on the CPU
VELA_INSTALL = "pip install 'quantdoctor[ethos-u]'"


def vela_core_name(accelerator: str) -> str:
    """The name Vela's compiler core gives an accelerator family: "ethos-u85-256" -> "EthosU85"; the
    U55 and the U65 share "EthosU55" (the same operator support)."""
    return "EthosU85" if accelerator.startswith("ethos-u85") else "EthosU55"


CHECKS = [
    Check(
        code="QD120", name="ethos-u-op-on-cpu", severity="error", overlay_cause="NPU refusal", precedence=61,
        automatic_fix=True,
        title="An op runs on the CPU, not on the Ethos-U NPU",
        detects="With `--target ethos-u55-128` (or another Ethos-U config) quantdoctor compiles the produced "
                "model with Arm's Vela compiler, in an isolated process, and reads from Vela's own outputs which "
                "ops it placed on the CPU. Each such op is a finding with its Keras layer and the Vela constraint "
                "it breaks (a float tensor, a stride or kernel above Vela's limit, a 16-bit tensor an op has no "
                "kernel for, an op type the NPU lacks).",
        why="An op Vela cannot place runs on the Cortex-M CPU, usually in LiteRT for Microcontrollers' "
            "reference kernels: orders of magnitude slower than the NPU, and every CPU op between NPU ops "
            "cuts the model into another partition, with the tensors copied across.",
        example="quantdoctor diagnose model.keras --data calib.npz --target ethos-u55-128",
        fix="Change the layer so it meets the Vela constraint named in the message (integer I/O and no float "
            "fallback, strides of at most 3, supported kernel sizes, int8 instead of 16x8 activations), or "
            "replace the op by one the NPU runs.",
    ),
    Check(
        code="QD121", name="ethos-u-partitions", severity="warning", precedence=64,
        title="The model is split between the Ethos-U NPU and the CPU",
        detects="After Vela's compilation: how many NPU partitions (Vela's `ethos-u` ops in the compiled model) "
                "and CPU partitions the model runs in, and the share of its multiply-accumulates (MACs) that "
                "Vela leaves to the CPU.",
        why="The NPU is only as useful as the share of the work it does: a model whose costly layers run on "
            "the CPU gains little from the accelerator, and each partition boundary adds a hand-over.",
        example="quantdoctor audit model.tflite --target ethos-u55-128",
        fix="Move the CPU ops named by QD120 onto the NPU, starting with those that carry the MACs; a model "
            "whose ops all run on the NPU compiles to a single `ethos-u` op.",
    ),
    Check(
        code="QD122", name="edgetpu-op-on-cpu-predicted", severity="error", precedence=61,
        overlay_cause="NPU refusal (predicted)",
        title="Predicted (not compiled): the Edge TPU compiler would leave ops on the CPU",
        detects="With `--target edgetpu`: the first op of the produced model that breaks one of the Edge TPU's "
                "published rules (int8/uint8 tensors only, its operation list, static shapes, at most 3 "
                "dimensions above size 1, one subgraph), with the rule and its source (audit/edgetpu_rules.json). "
                "No Edge TPU compiler runs here: the finding is a prediction, and says so.",
        why="The Edge TPU compiler partitions the graph once: the first op it cannot map, and every op after it, "
            "run on the CPU. An int8 model can run 0% on the accelerator because of one op near its input.",
        example="quantdoctor diagnose model.keras --data calib.npz --io int8 --target edgetpu",
        fix="Replace or move the op named (after it, nothing runs on the Edge TPU): integer I/O and no float "
            "fallback, a static batch of 1, tensors of at most 3 dimensions above size 1, ops from the list.",
    ),
    Check(
        code="QD920", name="ethos-u-compile-failed", severity="error", precedence=90,
        automatic_fix=True,
        title="Arm's Vela compiler failed on the model",
        detects="Vela, run in an isolated process with a time limit, raised an error, crashed or ran out of "
                "time on the produced model.",
        why="Without Vela's compilation nothing can be said about what runs on the NPU, and the model cannot be "
            "deployed to an Ethos-U.",
        example="quantdoctor audit model.tflite --target ethos-u55-128",
        fix="Read Vela's message in the evidence; try another Vela release, or report the model to Arm's Vela "
            "project with the .tflite attached.",
    ),
]
