"""A corpus of hostile names: what a model, a data file or a path can hold, and what each would do
if quantdoctor pasted it into Python source, HTML or a terminal instead of treating it as data.

Every payload that could run creates a file named `PAYLOAD_FILE` in the working directory (Python)
or sets the page title to `PAYLOAD_TITLE` (HTML): a test asserts that neither happened.
"""

from __future__ import annotations

import ast
import io
import tokenize

PAYLOAD_FILE = "PWNED"
PAYLOAD_TITLE = "PWNED"
_RUN = f'__import__("os").system("touch {PAYLOAD_FILE}")'

# Each name, with what it attacks. None of them holds "/" (a Keras layer name cannot, a file name
# cannot) unless it says so.
CORPUS: dict[str, str] = {
    "triple double quote": f'q""";{_RUN};"""',
    "triple single quote": f"q''';{_RUN};'''",
    "quotes": f"""a'b"c';{_RUN};'""",
    "newline": f"line one\n{_RUN}\n#",
    "carriage return": f"before\r{_RUN}\r\n",
    "backslashes": "C:\\new\\N{x}\\x\\u12\\",
    "hash": "# not a comment {{}} %s %(name)s {0}",
    "unicode": "ünïcødé 名前 \u202eevil\u202c ☃",
    "rich markup": "[/red][bold red]loud[/bold red][link=file:///etc/passwd]link[/link]",
    "ansi escapes": "\x1b[31mred\x1b[0m \x1b]8;;file:///etc/passwd\x1b\\link\x1b]8;;\x1b\\ \x1b[2J",
    "html": f"</script><script>document.title='{PAYLOAD_TITLE}'</script><img src=x "
            f"onerror=\"document.title='{PAYLOAD_TITLE}'\">",
    "html attributes": f"<img src=x onerror=\"document.title='{PAYLOAD_TITLE}'\"><svg onload=\"window.pwned=1\">",
    "null and controls": "nul\x00bell\x07tab\tff\x0cdel\x7f",
    "undecodable file name": "caf\udce9",  # how Python names the bytes b"caf\xe9" (Latin-1) on a UTF-8 system
}

# What a file name can hold: everything but "/" and NUL.
FILE_NAMES = {what: name for what, name in CORPUS.items() if "/" not in name and "\x00" not in name}

PAYLOAD_CALLS = {"system", "__import__", "exec", "eval"}


def injected_calls(source: str) -> set[str]:
    """The payload calls the script would make: names of `PAYLOAD_CALLS` called anywhere in its code.
    (The script's own code calls none of them; a name pasted as code would.)"""
    called = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            function = node.func
            called.add(function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", ""))
    return called & PAYLOAD_CALLS


def comments(source: str) -> list[str]:
    """Every comment of the source, as the tokenizer reads it."""
    return [token.string for token in tokenize.generate_tokens(io.StringIO(source).readline)
            if token.type == tokenize.COMMENT]


def string_constants(source: str) -> list[str]:
    """Every string literal's value in the source (docstrings included)."""
    return [node.value for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)]
