"""Parse the converter's MLIR diagnostics into records: location, message, op, types, error code.

A failing conversion prints lines like

    <unknown>:0: error: loc(callsite(fused["Mul:", "tiny_1/my_f64_1/mul@..."] at ...)): 'tf.Mul' op is neither a custom op nor a flex op
    <unknown>:0: note: loc(<same>): see current operation: %7 = "tf.Mul"(%6, %2) {...} : (tensor<?x8xf64>, tensor<f64>) -> tensor<?x8xf64>
    <unknown>:0: note: loc(<same>): Error code: ERROR_NEEDS_FLEX_OPS

An error and the notes sharing its location become one `Diagnostic`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_LINE = re.compile(r"^.*?:\d+: (error|note|warning): (.*)$")
_OP_IN_MESSAGE = re.compile(r"'((?:tf|tfl|stablehlo|mhlo|quant|func)\.[A-Za-z0-9_]+)'")
_OP_IN_OPERATION = re.compile(r'"((?:tf|tfl)\.[A-Za-z0-9_]+)"')
_ERROR_CODE = re.compile(r"Error code: (ERROR_[A-Z_]+)")
_TYPE_SIGNATURE = re.compile(r":\s*(\(.*\)\s*->\s*.*)$")


@dataclass
class Diagnostic:
    """One converter error, with what its notes add."""

    message: str
    location: str = ""
    op: str | None = None
    types: str | None = None
    error_code: str | None = None
    notes: list[str] = field(default_factory=list)


def split_location(text: str) -> tuple[str, str]:
    """Split `loc(...): message` into the balanced `loc(...)` part and the message."""
    if not text.startswith("loc("):
        return "", text
    depth, in_quote = 0, False
    for index, char in enumerate(text):
        if char == '"':
            in_quote = not in_quote
        elif not in_quote and char == "(":
            depth += 1
        elif not in_quote and char == ")":
            depth -= 1
            if depth == 0:
                return text[: index + 1], text[index + 1:].lstrip(": ").rstrip()
    return text, ""


def parse_diagnostics(text: str) -> list[Diagnostic]:
    """Every `error:` in the converter output, merged with the notes at the same location."""
    diagnostics: list[Diagnostic] = []
    by_location: dict[str, Diagnostic] = {}
    seen: set[tuple[str, str]] = set()
    for line in text.splitlines():
        match = _LINE.match(line.strip())
        if not match:
            continue
        kind, rest = match.groups()
        location, message = split_location(rest)
        if kind == "error":
            if (location, message) in seen:  # the exception text and stderr repeat each other
                continue
            seen.add((location, message))
            op = _OP_IN_MESSAGE.search(message)
            diagnostic = Diagnostic(message=message, location=location, op=op.group(1) if op else None)
            diagnostics.append(diagnostic)
            if location:
                by_location.setdefault(location, diagnostic)
        elif location in by_location:
            _add_note(by_location[location], message)
    return diagnostics


def _add_note(diagnostic: Diagnostic, message: str) -> None:
    diagnostic.notes.append(message)
    code = _ERROR_CODE.search(message)
    if code:
        diagnostic.error_code = code.group(1)
    if message.startswith("see current operation"):
        op = _OP_IN_OPERATION.search(message)
        if op and not diagnostic.op:
            diagnostic.op = op.group(1)
        types = _TYPE_SIGNATURE.search(message)
        if types:
            diagnostic.types = types.group(1)


def op_name(op: str | None) -> str | None:
    """`tf.DenseBincount` -> `DenseBincount`."""
    return op.split(".", 1)[1] if op and "." in op else op
