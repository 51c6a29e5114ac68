"""Text that may come from the user's files (names, keys, paths, converter messages), shown as it is.

Such text is data. In the terminal it is never read as rich markup and never passes a control
character through: a newline, an ANSI escape (ESC), a carriage return or a bidirectional override
is shown as its Python escape (`\\n`, `\\x1b`, `\\r`, `\\u202e`), so a name prints on one line, as
written, and cannot move the cursor, colour the terminal or forge a link. The renderers build
every line with `literal_text` and `literal_assemble`; a generated script writes such text in its
comments with `python_comment`, which cannot end the comment's line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # rich is imported when a line is built: the watched script's process may never print
    from rich.text import Text


def printable(value: object) -> str:
    """`value` as a string in which every non-printable character (control, format, separator other
    than the space, unpaired surrogate) is replaced by its Python escape; the rest is unchanged."""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def literal_text(value: object, style: str = "") -> Text:
    """A rich `Text` showing `value` literally (see `printable`): no markup is read, no control passes."""
    from rich.text import Text

    return Text(printable(value), style)


def literal_assemble(*parts: object) -> Text:
    """Like `Text.assemble`: each part a string, a (string, style) pair or a `Text`; strings shown literally."""
    from rich.text import Text

    pieces: list[Text | tuple[str, str] | str] = []
    for part in parts:
        if isinstance(part, Text):
            pieces.append(part)
        elif isinstance(part, tuple):
            pieces.append((printable(part[0]), part[1]))
        else:
            pieces.append(printable(part))
    return Text.assemble(*pieces)


def python_comment(value: object) -> str:
    """`value` as one Python comment line (`# ...`): no character of it can end the line or the comment."""
    return f"# {printable(value)}"
