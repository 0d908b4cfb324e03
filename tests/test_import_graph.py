"""The project's import graph, read with `ast` (nothing is imported): no cycles among the modules
of flows/, tasks/ and musika_model/, and imports that go one way only (flows -> tasks ->
musika_model).

Every import counts, at module level or inside a function, except that imports under
`if TYPE_CHECKING:` are left out of the cycle check (they never run); they still count for the
layering. `python tests/test_import_graph.py` prints the cycles and the wrong-way imports.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("flows", "tasks", "musika_model")
FORBIDDEN = {"tasks": ("flows",), "musika_model": ("tasks", "flows")}
"""Top-level package -> the top-level packages it must never import."""


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int
    runtime: bool
    """False for imports under `if TYPE_CHECKING:`."""


def project_modules(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    """Dotted module name -> file, for every module of `packages` under `root`."""
    modules = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _ImportCollector(ast.NodeVisitor):
    """Every import statement of a module, with whether it runs (is not under TYPE_CHECKING)."""

    def __init__(self) -> None:
        self.found: list[tuple[ast.Import | ast.ImportFrom, bool]] = []
        self._runtime = True

    def visit_Import(self, node: ast.Import | ast.ImportFrom) -> None:
        self.found.append((node, self._runtime))

    visit_ImportFrom = visit_Import

    def visit_If(self, node: ast.If) -> None:
        if not _is_type_checking(node.test):
            self.generic_visit(node)
            return
        outer, self._runtime = self._runtime, False
        for statement in node.body:
            self.visit(statement)
        self._runtime = outer
        for statement in node.orelse:
            self.visit(statement)


def _base(module: str, path: Path, statement: ast.ImportFrom) -> str:
    """The absolute module a `from ... import` names, relative imports resolved."""
    if not statement.level:
        return statement.module or ""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for _ in range(statement.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{statement.module}" if statement.module else package


def import_edges(modules: dict[str, Path]) -> list[Edge]:
    """The imports of project modules by project modules (`from a import b` names the module
    a.b when there is one, else a)."""
    edges = []
    for module, path in modules.items():
        collector = _ImportCollector()
        collector.visit(ast.parse(path.read_text(), filename=str(path)))
        for statement, runtime in collector.found:
            if isinstance(statement, ast.Import):
                targets = [alias.name for alias in statement.names]
            else:
                base = _base(module, path, statement)
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                    for alias in statement.names
                ]
            edges += [
                Edge(module, target, statement.lineno, runtime)
                for target in dict.fromkeys(targets)
                if target in modules and target != module
            ]
    return edges


def cycles(edges: list[Edge]) -> list[list[str]]:
    """The strongly connected components of more than one module among the runtime imports
    (Tarjan's algorithm, iterative), each sorted, sorted by their first module."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        if edge.runtime:
            graph.setdefault(edge.source, set()).add(edge.target)
            graph.setdefault(edge.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            successor = next(successors, None)
            if successor is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
            elif successor not in index:
                index[successor] = low[successor] = len(index)
                stack.append(successor)
                on_stack.add(successor)
                work.append((successor, iter(sorted(graph[successor]))))
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
    return sorted(found)


def wrong_way(edges: list[Edge]) -> list[Edge]:
    """Imports against the layering: flows -> tasks -> musika_model."""
    return [
        edge
        for edge in edges
        if edge.target.split(".")[0] in FORBIDDEN.get(edge.source.split(".")[0], ())
    ]


def describe(component: list[str], edges: list[Edge], modules: dict[str, Path]) -> str:
    """A cycle's modules and the imports that tie them, as `file:line a -> b` lines."""
    members = set(component)
    lines = [" <-> ".join(component)]
    for edge in edges:
        if edge.runtime and edge.source in members and edge.target in members:
            where = modules[edge.source].relative_to(ROOT)
            lines.append(f"    {where}:{edge.line}  {edge.source} -> {edge.target}")
    return "\n".join(lines)


def test_no_import_cycles() -> None:
    modules = project_modules()
    edges = import_edges(modules)
    found = cycles(edges)
    assert not found, "import cycles:\n" + "\n".join(describe(c, edges, modules) for c in found)


def test_imports_go_one_way() -> None:
    bad = wrong_way(import_edges(project_modules()))
    assert not bad, "\n".join(f"{e.source}:{e.line} imports {e.target}" for e in bad)


def test_the_walker_sees_function_level_relative_and_type_only_imports(tmp_path: Path) -> None:
    """The checks above are only as good as the edges they are given."""
    files = {
        "pkg/__init__.py": "",
        "pkg/a.py": "def f():\n    from pkg import b\n",
        "pkg/b.py": "from . import c\n",
        "pkg/c.py": "import pkg.a\n",
        "pkg/d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import f\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    edges = import_edges(project_modules(tmp_path, ("pkg",)))
    assert {(e.source, e.target, e.runtime) for e in edges} == {
        ("pkg.a", "pkg.b", True),
        ("pkg.b", "pkg.c", True),
        ("pkg.c", "pkg.a", True),
        ("pkg.d", "pkg.a", False),
    }
    assert cycles(edges) == [["pkg.a", "pkg.b", "pkg.c"]]


def main() -> int:
    modules = project_modules()
    edges = import_edges(modules)
    found = cycles(edges)
    bad = wrong_way(edges)
    print(f"{len(modules)} modules, {len(edges)} imports among them")
    print(f"{len(found)} cycle(s)")
    for component in found:
        print(describe(component, edges, modules))
    print(f"{len(bad)} wrong-way import(s)")
    for edge in bad:
        print(f"    {edge.source}:{edge.line} imports {edge.target}")
    return 1 if found or bad else 0


if __name__ == "__main__":
    sys.exit(main())
