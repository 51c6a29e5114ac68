"""Match a failed conversion's messages against the known failure signatures.

The input is what the worker reported (exception type and message, stderr, graph facts); the
output is findings in the user's terms: the Keras layer, the model input, the sample.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Callable

from quantdoctor import catalog
from quantdoctor.audit.tflite_model import VARIABLE_OPS
from quantdoctor.catalog.locations import layer_for_location, op_paths, scope_for_path
from quantdoctor.diagnosis.mlir import Diagnostic, op_name, parse_diagnostics
from quantdoctor.intake.data import CalibrationSet
from quantdoctor.intake.model import invalid_layer_names
from quantdoctor.isolation.crash import KERAS3_VARIABLE_READ, OUT_OF_MEMORY, STAGE_MARKERS
from quantdoctor.isolation.matcher import Matcher
from quantdoctor.preflight.data_checks import LIST_ORDER_HINT
from quantdoctor.report.model import Finding, Location

_EXCERPT_LINES = 12
_TF_SOURCE_PATH = re.compile(r"(?:tensorflow|third_party|external)/[\w/.-]+\.(?:cc|h|py):\d+\s*")


@dataclass
class FailureContext:
    """What the classifier knows besides the error text."""

    error_text: str
    exception_type: str = ""
    layer_names: list[str] = field(default_factory=list)
    calibration: CalibrationSet | None = None
    layers: list[dict[str, str]] = field(default_factory=list)  # {"name", "class"} each, nested ones included

    @property
    def headline(self) -> str:
        """The exception as Python prints its last line: `KeyError: 'image'`."""
        return f"{self.exception_type}: {first_line(self.error_text)}"


def classify_failure(context: FailureContext) -> list[Finding]:
    """Findings explaining a conversion that raised an error; QD904 when no matcher recognises it."""
    findings: list[Finding] = []
    for rule in _RULES:
        found = rule.matcher.search(context.headline if rule.on_exception else context.error_text)
        if found:
            finding = rule.build(found, context)
            verified_on = tuple(r for r in finding.verified_on if r in rule.matcher.verified_on)
            findings.append(replace(finding, verified_on=verified_on))
    findings += _diagnostic_findings(context)
    if not findings:
        findings.append(catalog.get("QD904").finding(
            f"The converter raised {context.exception_type or 'an error'}: {first_line(context.error_text)}",
            evidence={"exception_type": context.exception_type, "excerpt": excerpt(context.error_text)}))
    return findings


def first_line(text: str) -> str:
    """The first non-empty line, without TF source paths, shortened."""
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return _TF_SOURCE_PATH.sub("", line)[:300]


def excerpt(text: str) -> str:
    """The lines of a converter error worth keeping (errors first), without the MLIR module dump."""
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith(("  %", "^bb", '"func'))]
    return "\n".join(lines[:_EXCERPT_LINES])


@dataclass(frozen=True)
class _Rule:
    """A matcher and the finding its match builds. With `on_exception`, it reads the exception headline
    (`KeyError: 'image'`) rather than the whole error text."""

    matcher: Matcher
    build: Callable[[re.Match, FailureContext], Finding]
    on_exception: bool = False


def _sample_signature(context: FailureContext) -> str:
    """The signature key the first (signature_key, dict) sample names."""
    samples = context.calibration.samples if context.calibration is not None else []
    return next((s.signature_key for s in samples if s.signature_key is not None), "?")


def _tensor_input_name(tensor: str) -> str:
    """`serving_default_keras_tensor:0` -> `keras_tensor`."""
    return re.sub(r"^serving_default_|:\d+$", "", tensor)


def _set_tensor_type(match: re.Match, context: FailureContext) -> Finding:
    got, expected, name = match.group(1), match.group(2), _tensor_input_name(match.group(4))
    if got == "STRING" and _first_non_array(context) is not None:  # NumPy made an object array of it
        return _non_array_finding(match, context)
    code = "QD201" if got == "FLOAT64" and expected == "FLOAT32" else "QD204"
    return catalog.get(code).finding(
        f"The calibrator refused a {got.lower()} sample for input '{name}' (expects {expected.lower()}).",
        location=Location(input=name), evidence={"converter_message": match.group(0).strip()})


def _first_non_array(context: FailureContext) -> int | None:
    """The index of the first sample that is, or holds, something other than a numeric array."""
    samples = context.calibration.samples if context.calibration else []
    return next((index for index, sample in enumerate(samples) if sample.holds_non_arrays), None)


def _non_array_finding(match: re.Match, context: FailureContext) -> Finding:
    index = _first_non_array(context)
    return catalog.get("QD211").finding(
        f"The calibrator stopped on sample #{index}, which is not an array of numbers.",
        evidence={"converter_message": match.group(0).strip()})


def _unsupported_sample(match: re.Match, context: FailureContext) -> Finding:
    """The calibrator's refusal of a sample that is not a list, dict or tuple: a bare array (QD303),
    or something that is no array at all (QD211), whichever comes first."""
    samples = context.calibration.samples if context.calibration else []
    first = next((s for s in samples if s.kind not in ("list", "dict", "signature")), None)
    if first is not None and first.holds_non_arrays:
        return _non_array_finding(match, context)
    return catalog.get("QD303").finding(
        "The representative dataset yielded something other than a list, dict or (signature_key, dict) tuple.",
        evidence={"converter_message": match.group(0).strip()})


def _prepare_failed(match: re.Match, context: FailureContext) -> Finding:
    op = match.group(3)
    custom = _UNRESOLVED_CUSTOM_OP.search(context.error_text)
    if op in VARIABLE_OPS:
        return catalog.get("QD406").finding(
            f"The calibrator ran the model and its {op} (node {match.group(2)}) found no value: the weights "
            "stayed variables that nothing initialises.",
            location=Location(op=op), evidence={"node": int(match.group(2)), "converter_message": match.group(0)})
    if op.startswith("Flex") or custom:
        kind = "a Select TF (Flex) op" if op.startswith("Flex") else "a custom op"
        converter_message = custom.group(0) if custom and not op.startswith("Flex") else match.group(0)
        return catalog.get("QD109").finding(
            f"Calibration runs the model in the TFLite interpreter, which has no kernel for {op}, {kind}.",
            location=Location(op=op),
            evidence={"node": int(match.group(2)), "converter_message": converter_message.strip()})
    check_text = _TF_SOURCE_PATH.sub("", match.group(1)).strip()
    shapes = _first_sample_shapes(context.calibration)
    several = context.calibration and context.calibration.samples and len(context.calibration.samples[0].values) > 1
    hint = LIST_ORDER_HINT if several else ""
    return catalog.get("QD310").finding(
        f"The {op} kernel (node {match.group(2)}) failed to prepare on the first sample, "
        f"shaped {shapes}: {check_text}.{hint}",
        location=Location(op=op),
        evidence={"kernel_check": check_text, "node": int(match.group(2)), "sample_shapes": shapes,
                  "converter_message": _TF_SOURCE_PATH.sub("", match.group(0)).strip()})


def _first_sample_shapes(calibration: CalibrationSet | None) -> str:
    if not calibration or not calibration.samples:
        return "unknown"
    return ", ".join(str(tuple(a.shape)) for a in calibration.samples[0].arrays)


def _simple(code: str, message: str) -> Callable[[re.Match, FailureContext], Finding]:
    return lambda match, context: catalog.get(code).finding(
        message, evidence={"converter_message": match.group(0).strip()})


def _dicts_without_signature(match: re.Match) -> Finding:
    """Dict samples naming no signature: refused by a model with several signatures, and by one with none (a
    converter from concrete functions, which feeds list samples only, in the function's argument order)."""
    evidence = {"converter_message": match.group(0)}
    if match.group(1) != "0":
        return catalog.get("QD315").finding(
            f"The samples name no signature, and the model has {match.group(1)}: the calibrator refuses them.",
            evidence=evidence)
    return catalog.get("QD315").finding(
        "The samples are dicts, and the model has no signature (a converter from concrete functions): the "
        "calibrator takes list samples only.", evidence={**evidence, "no_signature": True},
        fix="Yield a list of arrays per sample, in the order of the function's arguments.",
        fix_code="def representative_dataset():\n"
                 "    for x in samples:\n"
                 "        yield [x[None].astype(np.float32)]          # one array per argument, in order")


def _keras_export_failed(match: re.Match, context: FailureContext) -> Finding:
    """The converter's export of a Keras model failed with nothing but a bare TypeError: a layer named outside
    TensorFlow's pattern (QD407) when the model has one, else an input so named (QD405)."""
    evidence = {"converter_message": match.group(0)}
    layers = invalid_layer_names(context.layers)
    if layers:
        return catalog.get("QD407").finding(
            f"Layer '{layers[0]}' is not a valid TensorFlow name: the converter's export of the model fails on it"
            + (f" (and on {len(layers) - 1} more)." if len(layers) > 1 else "."),
            location=Location(layer=layers[0]), evidence={**evidence, "layers": layers})
    return catalog.get("QD405").finding(
        "The converter's export of the Keras model failed with nothing but this TypeError, the symptom of a "
        "model input named outside TensorFlow's node-name pattern.", evidence=evidence)


_UNRESOLVED_CUSTOM_OP = Matcher.of("unresolved-custom-op", r"Encountered unresolved custom op: [^\n.]+")
_NOT_CONVERTIBLE = Matcher.of("op-neither-custom-nor-flex", r"is neither a custom op nor a flex op")
_TENSOR_LIST = Matcher.of("tensor-list-lowering", r"TensorList|Lowering tensor list ops is failed")

_RULES = (
    _Rule(Matcher.of("set-tensor-type",
                     r"Got value of type (\w+) but expected type (\w+) for input (\d+), name: (\S+)"),
          _set_tensor_type),
    _Rule(Matcher.of("kernel-failed-to-prepare", r"([^\n]*?)Node number (\d+) \((\w+)\) failed to (?:prepare|invoke)"),
          _prepare_failed),
    _Rule(Matcher.of("float16-with-int8-only",
                     r"As full integer quantization has been enabled[^\n]*supported_types[^\n]*"),
          _simple("QD203", "supported_types asks for float16 while supported_ops asks for integer-only "
                           "(TFLITE_BUILTINS_INT8) kernels.")),
    _Rule(Matcher.of("dataset-required",
                     r"For full integer quantization, a `representative_dataset` must be specified\.?"),
          _simple("QD301", "Integer-only ops or integer input/output were requested without a representative "
                           "dataset.")),
    _Rule(Matcher.of("io-types-must-be-float",
                     r"The inference_input_type and inference_output_type must be tf.float32\.?"),
          _simple("QD205", "Integer input/output types were requested, but the settings do not produce a fully "
                           "integer model.")),
    _Rule(Matcher.of("unsupported-sample-value",
                     r"You need to provide either a dictionary with input names and values"),
          _unsupported_sample),
    # TF 2.21 quotes the key ('Invalid signature_key provided: "serve"'), 2.18 does not: the samples name it.
    _Rule(Matcher.of("invalid-sample-signature-key", r"Invalid signature_key provided(?:: \"?([^\".]+)\"?|\.)"),
          lambda m, c: catalog.get("QD305").finding(
              f"Samples are (signature_key, dict) tuples naming signature '{m.group(1) or _sample_signature(c)}', "
              "which the model does not have.", evidence={"converter_message": m.group(0)})),
    _Rule(Matcher.of("sample-dict-key-missing", r"^KeyError: '([^'\n]+)'$"),
          lambda m, c: catalog.get("QD305").finding(
              f"The calibrator looked up input '{m.group(1)}' in a sample dict that has no such key.",
              location=Location(input=m.group(1)), evidence={"converter_message": m.group(0)}),
          on_exception=True),
    _Rule(Matcher.of("signature-key-none", r"SignatureDef signature_key is None and model has (\d+) Signatures"),
          lambda m, c: _dicts_without_signature(m)),
    _Rule(Matcher.of("input-count", r"Invalid input shapes: expected (\d+) items got (\d+) items\.?"),
          lambda m, c: catalog.get("QD304").finding(
              f"The calibrator expected {m.group(1)} array(s) per sample and got {m.group(2)}.",
              evidence={"converter_message": m.group(0)})),
    _Rule(Matcher.of("resize-input",
                     r"Attempting to resize dimension (\d+) of tensor (\d+) with value (\d+) to (\d+)[^\n]*"),
          lambda m, c: catalog.get("QD306").finding(
              f"Input {m.group(2)} has size {m.group(3)} in dimension {m.group(1)}; a sample has {m.group(4)}.",
              evidence={"converter_message": m.group(0)})),
    _Rule(Matcher.of("sample-not-an-array", r"the representative dataset yielded [^\n]+? where an array belongs[^\n]*"),
          _non_array_finding),
    _Rule(Matcher.of("dataset-raised", r"the representative dataset raised [^\n]+"),
          lambda m, c: catalog.get("QD312").finding(
              "The representative dataset raised while the calibrator consumed it.",
              evidence={"converter_message": m.group(0)})),
    _Rule(Matcher.of("legacy-quantizer-no-int8", r"Quantization not yet supported for op: '(\w+)'"),
          lambda m, c: catalog.get("QD104").finding(
              f"The quantizer has no integer version of {m.group(1)}, and only integer ops were allowed.",
              location=Location(op=m.group(1)), evidence={"converter_message": m.group(0)})),
    _Rule(Matcher.of("16x8-not-supported", r"Quantization to 16x8-bit not yet supported for op: '(\w+)'"),
          lambda m, c: catalog.get("QD113").finding(
              f"{m.group(1)} has no kernel with 16-bit activations, and only 16x8 ops were allowed.",
              location=Location(op=m.group(1)), evidence={"converter_message": m.group(0)})),
    _Rule(Matcher.of("keras-input-shapes-unset",
                     r"Model [^\n]*?cannot be saved because the input shapes have not been set\.[^\n]*"),
          _simple("QD408", "The converter's export of the Keras model cannot tell its input shapes: the model has no "
                           "Input layers, and Keras recorded no call the converter can read them from.")),
    _Rule(Matcher.of("no-signature", r"Only support at least one signature key\.?"),
          _simple("QD401", "The SavedModel offers no signature the converter can use.")),
    _Rule(Matcher.of("unknown-signature-key",
                     r"Invalid signature key '([\s\S]*?)' found\. Valid keys are '([\s\S]*)'\.?$"),
          lambda m, c: catalog.get("QD402").finding(
              f"Signature '{m.group(1)}' was requested; the SavedModel has {m.group(2).split(',')}.",
              evidence={"converter_message": m.group(0), "valid_keys": m.group(2).split(",")})),
    _Rule(Matcher.of("keras-export-none-callable", r"^TypeError: 'NoneType' object is not callable$"),
          lambda m, c: _keras_export_failed(m, c), on_exception=True),
)

# Every matcher quantdoctor has, for the meta-test: each needs a real-model test marked with its name. An
# allocation failure ends the worker (QD903 from its stderr, isolation/crash.py), so it has no rule here.
MATCHERS: tuple[Matcher, ...] = (*(rule.matcher for rule in _RULES), _UNRESOLVED_CUSTOM_OP, _NOT_CONVERTIBLE,
                                 _TENSOR_LIST, *(marker for marker, _ in STAGE_MARKERS), OUT_OF_MEMORY,
                                 KERAS3_VARIABLE_READ)


def _diagnostic_findings(context: FailureContext) -> list[Finding]:
    findings = []
    for diagnostic in parse_diagnostics(context.error_text):
        finding = _classify_diagnostic(diagnostic, context)
        if finding:
            findings.append(finding)
    return findings


def _classify_diagnostic(diagnostic: Diagnostic, context: FailureContext) -> Finding | None:
    layer = layer_for_location(diagnostic.location, context.layer_names) if diagnostic.location else None
    paths = op_paths(diagnostic.location)
    if not layer and paths:
        layer = scope_for_path(paths[0])
    op = op_name(diagnostic.op)
    location = Location(layer=layer, op=diagnostic.op, tensor=paths[0] if paths else None)
    evidence = {"converter_message": diagnostic.message, "op_types": diagnostic.types,
                "error_code": diagnostic.error_code}
    evidence = {k: v for k, v in evidence.items() if v}
    where = f"layer '{layer}'" if layer else "the model"
    message = diagnostic.message
    if _NOT_CONVERTIBLE.search(message):
        if _has_type(diagnostic, "f64"):
            return catalog.get("QD202").finding(
                f"{where} computes {op} in float64; TFLite has no float64 kernels. The op is fine, its dtype "
                "is not.", location=location, evidence=evidence)
        if _has_type(diagnostic, "f16"):
            return catalog.get("QD207").finding(
                f"{where} computes {op} in float16 (a mixed precision policy); TFLite converts float32 graphs.",
                location=location, evidence=evidence)
        if diagnostic.error_code == "ERROR_NEEDS_CUSTOM_OPS":
            return catalog.get("QD102").finding(
                f"{op} in {where} has no TFLite kernel and is not available through Select TF ops either.",
                location=location, evidence=evidence)
        return catalog.get("QD101").finding(
            f"{op} in {where} has no TFLite builtin kernel; it converts with Select TF ops (as a float op).",
            location=location, evidence=evidence)
    if _TENSOR_LIST.search(message):
        return catalog.get("QD103").finding(
            f"{where} loops over a TensorList whose element shape is not static (dynamic batch size).",
            location=Location(layer=layer), evidence=evidence) if layer or not context.layer_names else None
    return None


def _has_type(diagnostic: Diagnostic, element_type: str) -> bool:
    """True when the op's MLIR type signature mentions `element_type` (f64, f16, ...)."""
    return bool(diagnostic.types and re.search(rf"[<x]{element_type}>", diagnostic.types))
