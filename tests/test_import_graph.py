"""No import circles between taskemit's modules.

import-linter's contracts (``lint-imports``) keep the packages in their layers; this test keeps
the modules inside them from importing each other in a circle. Every import statement of a
module counts: at the top, inside functions, and under ``if TYPE_CHECKING:``. A package's
``__init__`` is a module like the others: importing ``taskemit.emit.listener`` is an edge to
that module, not to ``taskemit.emit``.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "taskemit"


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the taskemit modules its import statements name.

    The modules are parsed in a process of their own: CPython 3.11's AST constructor keeps a
    recursion counter that an error path leaves off balance (gh-106905), after which every
    ``ast.parse`` in the process fails; whatever ran earlier in the test process cannot do that here.
    """
    done = subprocess.run(
        [sys.executable, "-c", _PARSE, str(root)],
        cwd=Path(__file__).parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return {name: set(targets) for name, targets in json.loads(done.stdout).items()}


_PARSE = (
    "import json, sys; from pathlib import Path; from test_import_graph import parse_graph; "
    "print(json.dumps({name: sorted(t) for name, t in parse_graph(Path(sys.argv[1])).items()}))"
)


def parse_graph(root: Path) -> dict[str, set[str]]:
    """import_graph's work, in the process that runs it."""
    files = {module_name(path, root): path for path in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in node.names:  # `from pkg import module` names a module
                    targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base)
        graph[name] = {target for target in targets if target in files and target != name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def path_around(graph: dict[str, set[str]], group: list[str]) -> list[str]:
    """One circle through the group's first module, for the message."""
    start, members = group[0], set(group)
    paths = {start: [start]}
    todo = [start]
    while todo:
        node = todo.pop(0)
        for target in sorted(graph[node] & members):
            if target == start:
                return [*paths[node], start]
            if target not in paths:
                paths[target] = [*paths[node], target]
                todo.append(target)
    return group


def test_no_module_imports_itself_through_others() -> None:
    graph = import_graph()
    assert "taskemit.emit.listener" in graph["taskemit.emit.registry"]  # the graph sees imports
    found = [" -> ".join(path_around(graph, group)) for group in circles(graph)]
    assert not found, "import circles between modules:\n" + "\n".join(found)


def test_a_circle_is_found(tmp_path: Path) -> None:
    """The check itself: a circle through a function-level and a TYPE_CHECKING import fails it."""
    package = tmp_path / "taskemit"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from .a import A\n")
    (package / "sub" / "a.py").write_text("def f():\n    from .b import B\n")
    (package / "sub" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from taskemit.sub import c\n"
    )
    (package / "sub" / "c.py").write_text("from ..sub.a import f\n")
    graph = import_graph(package)
    assert circles(graph) == [["taskemit.sub.a", "taskemit.sub.b", "taskemit.sub.c"]]
    assert path_around(graph, circles(graph)[0]) == [
        "taskemit.sub.a",
        "taskemit.sub.b",
        "taskemit.sub.c",
        "taskemit.sub.a",
    ]


@pytest.mark.parametrize(
    ("importer", "imported"),
    [
        ("taskemit.litestar.cli", "taskemit.cli.group"),  # the litestar command's group
        ("taskemit.emit.listener", "taskemit.emit.events"),
    ],
)
def test_edges_that_once_closed_circles_still_exist(importer: str, imported: str) -> None:
    assert imported in import_graph()[importer]
