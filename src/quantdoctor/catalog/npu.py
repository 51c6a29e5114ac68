"""Checks for NPU targets: what Arm's Vela compiler leaves on the CPU (`--target ethos-u*`), and
what the Edge TPU's published constraints predict (`--target edgetpu`)."""

from quantdoctor.catalog.check import Check


def vela_core_name(accelerator: str) -> str:
    """The name Vela's compiler core gives an accelerator family: "ethos-u85-256" -> "EthosU85"; the
    U55 and the U65 share "EthosU55" (the same operator support)."""
    return "EthosU85" if accelerator.startswith("ethos-u85") else "EthosU55"


CHECKS = [
    Check(
        code="QD120", name="ethos-u-op-on-cpu", severity="error", overlay_cause="NPU refusal", precedence=61,
        from_vela=True,
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
        from_vela=True,
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
        code="QD123", name="ethos-u-sram-overflow", severity="error", precedence=62,
        from_vela=True,
        title="The model's feature maps need more SRAM than the Ethos-U system has",
        detects="With an Ethos-U target and the system's SRAM size given (`quantdoctor audit --sram KiB`), Vela "
                "compiles for that size. Its compiler core (Vela 5.2) still writes a model whose tensor arena does "
                "not fit: only its summary says so, with the SRAM used next to the size compiled for. quantdoctor "
                "compares the two in the memory modes that keep the feature maps in SRAM (Shared_Sram, the default, "
                "and Sram_Only).",
        why="At run time the tensor arena cannot be allocated in the SRAM the system has: the model does not run "
            "there as compiled.",
        example="quantdoctor audit model.tflite --target ethos-u55-128 --sram 256",
        fix="Shrink the largest activations (a smaller input, fewer channels in the widest layers, an earlier "
            "stride or pooling), give the NPU more SRAM, or compile for Vela's Dedicated_Sram memory mode, which "
            "keeps the arena in DRAM and uses the SRAM as a cache.",
    ),
    Check(
        code="QD122", name="edgetpu-op-on-cpu-predicted", severity="error", precedence=61,
        overlay_cause="NPU refusal (predicted)",
        title="Predicted (not compiled): the Edge TPU compiler would leave ops on the CPU",
        detects="With `--target edgetpu`: the first op inside the part of the produced model the Edge TPU compiler "
                "would map that breaks one of its published rules (int8/uint8 tensors only, its operation list and "
                "the limits it gives per op, static shapes, at most 3 dimensions above size 1), with the rule, its "
                "source and the line the compiler writes for it in its log (audit/edgetpu_rules.json); as warnings, "
                "the ops the CPU runs before and after that part (a float input's QUANTIZE, a float output's "
                "DEQUANTIZE, unmappable ops near the input), ops counted on the Edge TPU by unverified entries of "
                "the table or that it says may stay on the CPU, and other subgraphs; and a model the compiler "
                "cannot read at all (a TFLite operator newer than its own, such as GELU). No Edge TPU compiler runs "
                "here: every finding is a prediction, "
                "and says so; one resting on an unverified rule says that too.",
        why="The Edge TPU compiler maps one contiguous part of the graph: the first op it cannot map inside that "
            "part, and every op after it, run on the CPU. An int8 model can run 0% on the accelerator because of "
            "one op near its start.",
        example="quantdoctor diagnose model.keras --data calib.npz --io int8 --target edgetpu",
        fix="Replace or move the op named (after it, nothing runs on the Edge TPU): integer I/O and no float "
            "fallback, a static batch of 1, tensors of at most 3 dimensions above size 1, ops from the list within "
            "their limits.",
    ),
    Check(
        code="QD920", name="ethos-u-compile-failed", severity="error", precedence=90,
        from_vela=True,
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
