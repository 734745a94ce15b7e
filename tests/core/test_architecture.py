"""The shape of the code, checked: core → apps → shell, no import cycle, no reach-in, no long function.

Every ``.py`` of the five packages is parsed with :mod:`ast`, so an import inside a function counts as much
as one at the top; relative imports are resolved, and ``from package import submodule`` is an import of the
submodule. Each failure names its offenders (module, file:line), so the fix starts from the message.
"""

from __future__ import annotations

import ast
import itertools
import sys
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = "enrolment"
APPS = ("processor", "producer", "dashboard")
SHELL = "participants"
PACKAGES = (CORE, *APPS, SHELL)
MAX_FUNCTION_LINES = 100
Graph = dict[str, dict[str, list[str]]]  # node -> node it imports -> the import sites (file:line)


@dataclass(frozen=True)
class Import:
    """One imported thing: ``target`` is the module named (ours resolved to the deepest module we have)."""

    source: str
    target: str
    names: tuple[str, ...]  # what `from target import ...` takes that is not a submodule
    site: str  # path:line, relative to the root


class Codebase:
    """The modules of ``packages`` under ``root``, their imports and their functions."""

    def __init__(self, root: Path, packages: tuple[str, ...]) -> None:
        self.root = root
        self.packages = packages

    @cached_property
    def modules(self) -> dict[str, Path]:
        found: dict[str, Path] = {}
        for package in self.packages:
            for path in sorted((self.root / package).rglob("*.py")):
                parts = path.relative_to(self.root).with_suffix("").parts
                found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
        return found

    @cached_property
    def trees(self) -> dict[str, ast.Module]:
        return {name: ast.parse(path.read_text(encoding="utf-8"), str(path)) for name, path in self.modules.items()}

    def site(self, module: str, node: ast.stmt | ast.expr) -> str:
        return f"{self.modules[module].relative_to(self.root)}:{node.lineno}"

    def package_of(self, module: str) -> str:
        """The package a module belongs to: itself for a package's ``__init__``, else its parent."""
        return module if self.modules[module].name == "__init__.py" else module.rpartition(".")[0]

    def ours(self, name: str) -> str | None:
        """The deepest module of ours that ``name`` names or lies in, or None for anything else."""
        while name:
            if name in self.modules:
                return name
            name = name.rpartition(".")[0]
        return None

    @cached_property
    def imports(self) -> list[Import]:
        return [imp for module in self.modules for imp in self._imports_of(module)]

    def _imports_of(self, module: str) -> Iterator[Import]:
        for node in ast.walk(self.trees[module]):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield Import(module, self.ours(alias.name) or alias.name, (), self.site(module, node))
            elif isinstance(node, ast.ImportFrom):
                yield from self._from_import(module, node)

    def _from_import(self, module: str, node: ast.ImportFrom) -> Iterator[Import]:
        base = node.module or ""
        if node.level:
            parts = self.package_of(module).split(".")
            anchor = ".".join(parts[: len(parts) - node.level + 1])
            base = f"{anchor}.{base}" if base else anchor
        names = []
        for alias in node.names:
            if f"{base}.{alias.name}" in self.modules:
                yield Import(module, f"{base}.{alias.name}", (), self.site(module, node))
            else:
                names.append(alias.name)
        if names:
            yield Import(module, self.ours(base) or base, tuple(names), self.site(module, node))

    def graph(self, parent: str) -> Graph:
        """Imports between the direct children of ``parent`` ("" = the top-level packages)."""
        prefix = f"{parent}." if parent else ""
        graph: Graph = defaultdict(lambda: defaultdict(list))
        for imp in self.imports:
            if not (imp.source.startswith(prefix) and imp.target.startswith(prefix)):
                continue
            a = prefix + imp.source[len(prefix) :].split(".")[0]
            b = prefix + imp.target[len(prefix) :].split(".")[0]
            if a != b and a in self.modules and b in self.modules:
                graph[a][b].append(f"{imp.site} imports {imp.target}")
        return graph

    def subpackages(self) -> list[str]:
        return [name for name, path in self.modules.items() if path.name == "__init__.py"]


def cycles(graph: Graph) -> list[str]:
    """Per group of nodes that import each other: its members and one cycle, each edge with an import making it."""
    found = []
    for group in _strongly_connected(graph):
        path = _cycle_through(graph, min(group), group)
        steps = [f"  {a} -> {b}  ({graph[a][b][0]})" for a, b in itertools.pairwise(path)]
        members = ", ".join(sorted(group))
        found.append(f"{members} import each other; one cycle: " + " -> ".join(path) + "\n" + "\n".join(steps))
    return found


def _strongly_connected(graph: Graph) -> list[set[str]]:
    """Tarjan's algorithm; only the groups of more than one node (an import cycle)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, {})):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def _cycle_through(graph: Graph, start: str, group: set[str]) -> list[str]:
    """The shortest path start -> ... -> start inside ``group`` (breadth first)."""
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt_frontier = []
        for node in frontier:
            for nxt in sorted(graph.get(node, {})):
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [*reversed(path), start]
                if nxt in group and nxt not in came_from:
                    came_from[nxt] = node
                    nxt_frontier.append(nxt)
        frontier = nxt_frontier
    raise AssertionError(f"no cycle through {start}")  # a strongly connected group always has one


# ---------------------------------------------------------------------------- the rules, as checks
def core_importing_apps(code: Codebase, core: str, outside: tuple[str, ...]) -> list[str]:
    return [
        f"{i.site} ({i.source}) imports {i.target}"
        for i in code.imports
        if _top(i.source) == core and _top(i.target) in outside
    ]


def importing(code: Codebase, sources: str, targets: str) -> list[str]:
    """Imports from ``sources`` (a package and its modules) of ``targets`` (the same)."""
    return [
        f"{i.site} ({i.source}) imports {i.target}"
        for i in code.imports
        if _in(i.source, sources) and _in(i.target, targets)
    ]


def not_standard_library(code: Codebase, package: str) -> list[str]:
    """Imports from ``package`` of anything but the standard library and ``package`` itself."""
    allowed = sys.stdlib_module_names | {"__future__"}
    return [
        f"{i.site} ({i.source}) imports {i.target}"
        for i in code.imports
        if _in(i.source, package) and not _in(i.target, package) and _top(i.target) not in allowed
    ]


def other_apps_cli(code: Codebase, apps: tuple[str, ...], shell: str) -> list[str]:
    return [
        f"{i.site} ({i.source}) imports {i.target}"
        for i in code.imports
        if _top(i.source) in apps
        and i.target.endswith(".cli")
        and _top(i.target) in (*apps, shell)
        and _top(i.target) != _top(i.source)
    ]


def private_reach_ins(code: Codebase) -> list[str]:
    """Private (``_``) names or modules of another package, imported or reached as ``module._name``."""
    found = []
    for imp in code.imports:
        if imp.target not in code.modules:
            continue
        owner = code.package_of(imp.target)
        private = [n for n in imp.names if _private(n)]
        private += [imp.target] if any(_private(p) for p in imp.target.split(".")) else []
        if private and owner != code.package_of(imp.source):
            found.append(f"{imp.site} ({imp.source}) takes {', '.join(private)} from {imp.target}")
    for module in code.modules:
        found += _private_attributes(code, module)
    return found


def _private_attributes(code: Codebase, module: str) -> list[str]:
    """``cli._engine`` after ``from participants import cli``: a reach-in without an import statement."""
    bound: dict[str, str] = {}
    for node in ast.walk(code.trees[module]):
        if isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                name = alias.asname or alias.name.split(".")[0]
                full = alias.name if isinstance(node, ast.Import) and alias.asname else name
                target = _bound_module(code, module, node, alias.name, full)
                if target:
                    bound[name] = target
    found = []
    for node in ast.walk(code.trees[module]):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            target = _dotted_module(code, bound, node.value)
            if target and code.package_of(target) != code.package_of(module):
                found.append(f"{code.site(module, node)} ({module}) uses {target}.{node.attr}")
    return found


def _bound_module(code: Codebase, module: str, node: ast.Import | ast.ImportFrom, name: str, full: str) -> str | None:
    if isinstance(node, ast.Import):
        return full if full in code.modules else None
    for imp in code._from_import(module, node):
        if imp.target.endswith(f".{name}") and imp.target in code.modules:
            return imp.target
    return None


def _dotted_module(code: Codebase, bound: dict[str, str], expr: ast.expr) -> str | None:
    parts: list[str] = []
    while isinstance(expr, ast.Attribute):
        parts.append(expr.attr)
        expr = expr.value
    if not isinstance(expr, ast.Name) or expr.id not in bound:
        return None
    dotted = ".".join([bound[expr.id], *reversed(parts)])
    return dotted if dotted in code.modules else None


def long_functions(code: Codebase, limit: int, exempt: str) -> list[str]:
    """Functions and methods longer than ``limit`` lines, ``def`` to the end of the body."""
    found = []
    for module, tree in code.trees.items():
        if _in(module, exempt):
            continue
        for qualname, node in _functions(tree, ""):
            lines = (node.end_lineno or node.lineno) - node.lineno + 1
            if lines > limit:
                found.append(f"{code.site(module, node)} {module}.{qualname}: {lines} lines")
    return found


def _functions(node: ast.AST, prefix: str) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
            yield prefix + child.name, child
            yield from _functions(child, f"{prefix}{child.name}.")
        elif isinstance(child, ast.ClassDef):
            yield from _functions(child, f"{prefix}{child.name}.")
        else:
            yield from _functions(child, prefix)


def _top(module: str) -> str:
    return module.split(".")[0]


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(f"{package}.")


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _listed(offenders: list[str]) -> str:
    return "\n  " + "\n  ".join(offenders)


# ---------------------------------------------------------------------------- this repository
CODE = Codebase(ROOT, PACKAGES)


def test_the_packages_are_read() -> None:
    assert set(PACKAGES) <= set(CODE.modules)
    assert any(i.source == "participants.cli" and i.target == "processor.cli" for i in CODE.imports)


def test_no_import_cycle_between_the_top_level_packages() -> None:
    found = cycles(CODE.graph(""))
    assert not found, "import cycles between the top-level packages:\n" + "\n".join(found)


@pytest.mark.parametrize("package", CODE.subpackages())
def test_no_import_cycle_inside_a_package(package: str) -> None:
    found = cycles(CODE.graph(package))
    assert not found, f"import cycles between the modules and subpackages of {package}:\n" + "\n".join(found)


def test_the_core_imports_no_app_and_not_the_shell() -> None:
    found = core_importing_apps(CODE, CORE, (*APPS, SHELL))
    assert not found, f"the core ({CORE}) imports an app or the shell:" + _listed(found)


def test_the_store_does_not_import_kafka() -> None:
    found = importing(CODE, f"{CORE}.store", f"{CORE}.kafka")
    assert not found, f"{CORE}.store imports {CORE}.kafka (kafka may import store, not the reverse):" + _listed(found)


def test_the_domain_imports_only_the_standard_library() -> None:
    found = not_standard_library(CODE, f"{CORE}.domain")
    assert not found, f"{CORE}.domain imports more than the standard library:" + _listed(found)


def test_no_app_imports_another_apps_cli() -> None:
    found = other_apps_cli(CODE, APPS, SHELL)
    assert not found, "an app imports another app's (or the shell's) cli:" + _listed(found)


def test_no_private_name_of_another_package() -> None:
    found = private_reach_ins(CODE)
    assert not found, "private (_) names used outside their package:" + _listed(found)


def test_no_function_longer_than_the_limit() -> None:
    found = long_functions(CODE, MAX_FUNCTION_LINES, f"{CORE}.store.migrations")
    assert not found, f"functions longer than {MAX_FUNCTION_LINES} lines:" + _listed(found)


# ---------------------------------------------------------------------------- the checks can fail
def _tree(root: Path, files: dict[str, str]) -> Codebase:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return Codebase(root, ("core", "app", "other"))


def test_the_checks_find_what_they_look_for(tmp_path: Path) -> None:
    body = "\n".join(f"    x = {i}" for i in range(100))
    code = _tree(
        tmp_path,
        {
            "core/__init__.py": "",
            "core/store/__init__.py": "",
            "core/store/tables.py": "def f():\n    from ..kafka import clients\n",
            "core/kafka/__init__.py": "",
            "core/kafka/clients.py": "from core.store import tables\n",
            "core/domain/__init__.py": "",
            "core/domain/model.py": "import json\nfrom . import rules\nimport sqlalchemy\n",
            "core/domain/rules.py": "from core.domain.model import _hidden\n",
            "app/__init__.py": "",
            "app/cli.py": "def f():\n    import core.domain.model\n    return core.domain.model._secret\n",
            "other/__init__.py": "",
            "other/cli.py": f"from app import cli\nfrom core.store import tables as t\nt._x\ndef g():\n{body}\n",
            "other/run.py": "class C:\n    async def h(self):\n        import app.cli\n",
        },
    )
    assert cycles(code.graph("")) == []
    (store_kafka,) = cycles(code.graph("core"))
    assert store_kafka.startswith(
        "core.kafka, core.store import each other; one cycle: core.kafka -> core.store -> core.kafka\n"
    )
    assert "core/store/tables.py:2 imports core.kafka.clients" in store_kafka
    assert importing(code, "core.store", "core.kafka") == [
        "core/store/tables.py:2 (core.store.tables) imports core.kafka.clients"
    ]
    assert not_standard_library(code, "core.domain") == [
        "core/domain/model.py:3 (core.domain.model) imports sqlalchemy"
    ]
    assert other_apps_cli(code, ("app", "other"), "shell") == [
        "other/cli.py:1 (other.cli) imports app.cli",
        "other/run.py:3 (other.run) imports app.cli",
    ]
    assert sorted(private_reach_ins(code)) == [
        "app/cli.py:3 (app.cli) uses core.domain.model._secret",
        "other/cli.py:3 (other.cli) uses core.store.tables._x",
    ], "the same package (core.domain) may share a private name"
    assert long_functions(code, 100, "core.store") == ["other/cli.py:4 other.cli.g: 101 lines"]
    assert long_functions(code, 100, "other") == []


def test_a_cycle_between_top_level_packages_names_both_imports(tmp_path: Path) -> None:
    code = _tree(
        tmp_path,
        {
            "core/__init__.py": "",
            "core/files.py": "def f():\n    from app.cli import run\n",
            "app/__init__.py": "",
            "app/cli.py": "from core import files\n",
        },
    )
    (found,) = cycles(code.graph(""))
    assert found.splitlines() == [
        "app, core import each other; one cycle: app -> core -> app",
        "  app -> core  (app/cli.py:1 imports core.files)",
        "  core -> app  (core/files.py:2 imports app.cli)",
    ]
    assert core_importing_apps(code, "core", ("app",)) == ["core/files.py:2 (core.files) imports app.cli"]
