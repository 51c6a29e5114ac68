"""The layering rule (docs/ARCHITECTURE.md): quantdoctor's imports point down, never up, never round.

Every import of a quantdoctor module is read with `ast` from the source files, including imports
inside functions. A unit is a package under `quantdoctor/` or a top-level module; each may import
only the units below it in `LAYERS` (imports under `if TYPE_CHECKING:` included: a type is a
dependency too), and no modules import each other in a cycle. A cycle is counted on the imports
that run: a renderer may name the type of the record it renders (`report.terminal` the `Report`)
under `TYPE_CHECKING`, while the record's `__str__` calls the renderer.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src" / "quantdoctor"

# Bottom to top. A unit imports only units listed before it.
LAYERS = (
    "_version", "errors",
    "litert", "environment", "tf_private",
    "isolation",
    "intake",
    "report",
    "catalog",
    "edits",
    "preflight", "audit", "runtime",
    "convert",
    "aeq",
    "diagnosis",
    "viz",
    "compare",
    "budget",
    "reduce",
    "fix",
    "watch",
    "devtools", "demo", "cli_options", "cli", "launch",
    "__init__",
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SOURCE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imported(module: str, path: Path, *, typing_only: bool = True) -> list[tuple[str, int]]:
    """The quantdoctor modules one file imports, with their line numbers (relative imports resolved);
    without `typing_only`, those imported only under `if TYPE_CHECKING:` are left out."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    skipped = set() if typing_only else {id(inner) for node in ast.walk(tree) if _is_type_checking_block(node)
                                         for statement in node.body for inner in ast.walk(statement)}
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            modules = [f"{base}.{alias.name}" for alias in node.names]
            found += [(name if _is_module(name) else base, node.lineno) for name in modules]
    return [(name, line) for name, line in found if name == "quantdoctor" or name.startswith("quantdoctor.")]


def _is_type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and (
        (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
        or (isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING"))


def _is_module(name: str) -> bool:
    relative = Path(*name.split(".")[1:])
    return (SOURCE / relative).with_suffix(".py").is_file() or (SOURCE / relative / "__init__.py").is_file()


def _graph(*, typing_only: bool = True) -> dict[str, dict[str, int]]:
    graph: dict[str, dict[str, int]] = defaultdict(dict)
    for path in sorted(SOURCE.rglob("*.py")):
        module = _module_name(path)
        for imported, line in _imported(module, path, typing_only=typing_only):
            if imported != module:
                graph[module].setdefault(imported, line)
    return graph


def _cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in list(graph):
        if node not in index:
            visit(node)
    return found


def test_every_unit_has_a_place_in_the_layers():
    units = {_unit(_module_name(path)) for path in SOURCE.rglob("*.py")}
    assert units - set(LAYERS) == set()
    assert set(LAYERS) - units == set(), "a layer names a unit that no longer exists"


def test_imports_point_down():
    rank = {unit: position for position, unit in enumerate(LAYERS)}
    upward = [f"{module} (line {line}) imports {imported}"
              for module, targets in _graph().items() for imported, line in targets.items()
              if _unit(imported) != _unit(module) and rank[_unit(imported)] > rank[_unit(module)]]
    assert upward == []


def test_no_module_imports_round_in_a_cycle():
    assert _cycles(_graph(typing_only=False)) == []


@pytest.mark.parametrize("source, expected", [
    ("from quantdoctor.report import model\n", ["quantdoctor.report.model"]),
    ("def f():\n    from quantdoctor.errors import UsageError\n", ["quantdoctor.errors"]),
    ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import quantdoctor.environment\n",
     ["quantdoctor.environment"]),
    ("from . import literal\n", ["quantdoctor.report.literal"]),
    ("import numpy\n", []),
])
def test_the_reader_sees_every_form_of_import(tmp_path, source, expected):
    sample = tmp_path / "grouping.py"
    sample.write_text(source)
    assert [name for name, _ in _imported("quantdoctor.report.grouping", sample)] == expected


def test_imports_for_type_checking_count_for_layers_but_not_for_cycles(tmp_path):
    sample = tmp_path / "terminal.py"
    sample.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from quantdoctor.report.model import Report\n"
                      "def f():\n    from quantdoctor.report import literal\n")
    assert [name for name, _ in _imported("quantdoctor.report.terminal", sample)] == [
        "quantdoctor.report.model", "quantdoctor.report.literal"]
    assert [name for name, _ in _imported("quantdoctor.report.terminal", sample, typing_only=False)] == [
        "quantdoctor.report.literal"]


def test_a_cycle_is_found():
    assert _cycles({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}) == [["a", "b", "c"]]


def test_the_public_api_is_imported_on_first_use_under_its_own_names():
    """`import quantdoctor` (what the command line and every worker start with) loads none of the pipelines; the
    first public name used loads them all, and the names that are also packages' (`qd.compare`, `qd.convert`, ...)
    stay the functions even when the packages were imported before."""
    import subprocess
    import sys

    script = """
import sys
import quantdoctor as qd
heavy = ["quantdoctor.diagnosis.pipeline", "quantdoctor.compare.compare_models", "quantdoctor.fix.fix_model", "numba"]
print([name for name in heavy if name in sys.modules])
import quantdoctor.compare.metrics, quantdoctor.convert.cache, quantdoctor.audit.report, quantdoctor.fix.rounds
print(sorted(name for name in qd.__all__ if not callable(getattr(qd, name)) and name != "__version__"))
print(qd.compare.__module__, qd.convert.__module__, qd.watch.__module__, qd.audit.__module__, qd.Report.__name__)
from quantdoctor import diagnose, FixResult
print(diagnose.__module__, FixResult.__module__, sorted(set(qd.__all__) - set(dir(qd))))
"""
    path = f"import sys; sys.path.insert(0, {str(SOURCE.parent)!r})\n"
    done = subprocess.run([sys.executable, "-I", "-c", path + script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "[]", "[]", "quantdoctor.compare.compare_models quantdoctor quantdoctor.watch quantdoctor.audit.report Report",
        "quantdoctor.diagnosis.pipeline quantdoctor.fix.fix_model []"]
