"""The package imports in one direction, and has no import cycles.

Layers, top to bottom (docs/writing-plugins.md, "How the core is laid out"):

    cli and the package face (gaitbench/__init__)
    run, steps, the method-contract kit (gaitbench.testing)
    training, evaluation, results, bench, checkpoint import
    data, protocols, plugins, registry, the core plugin, hook specs
    config, io, progress, nn, contracts, errors

A module may import from its own layer or from layers below, never from above. Every import
counts, including those inside functions (they run too); imports under ``TYPE_CHECKING`` do not.
The check is plain ``ast`` over the source files, so it sees what import-linter would, without a
dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import gaitbench

LAYERS = [
    ["gaitbench", "gaitbench.__main__", "gaitbench.cli", "gaitbench.scaffold"],
    ["gaitbench.run", "gaitbench.steps", "gaitbench.smoke", "gaitbench.testing"],
    ["gaitbench.training", "gaitbench.evaluation", "gaitbench.results", "gaitbench.bench",
     "gaitbench.checkpoint_import"],
    ["gaitbench.data", "gaitbench.protocols", "gaitbench.plugins", "gaitbench.registry", "gaitbench.builtin",
     "gaitbench.hookspecs"],
    ["gaitbench.config", "gaitbench.io", "gaitbench.progress", "gaitbench.nn", "gaitbench.contracts",
     "gaitbench.errors", "gaitbench.resources"],
]


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(root: Path, path: Path) -> set[str]:
    """The package-internal modules ``path`` imports (relative imports resolved; ``from P import
    name`` counts as importing ``P.name`` when that is a module of the package)."""
    name = module_name(root, path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    modules = {module_name(root, p) for p in root.rglob("*.py")}
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for orelse in child.orelse:
                    visit(orelse)
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - (child.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in child.names:
                    found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
            visit(child)

    visit(ast.parse(path.read_text("utf-8")))
    top = root.name
    return {m for m in found if m == top or m.startswith(top + ".")} - {name}


def layer_of(module: str, layers: list[list[str]]) -> int:
    best, where = -1, None
    for i, layer in enumerate(layers):
        for prefix in layer:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, where = len(prefix), i
    if where is None:
        raise AssertionError(f"module {module} is in no layer: add it to LAYERS")
    return where


def check_layering(root: Path, layers: list[list[str]]) -> list[str]:
    """Problems: imports from a higher layer, and import cycles (each named with its path)."""
    graph = {module_name(root, p): imports_of(root, p) for p in sorted(root.rglob("*.py"))}
    problems = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            if target in graph and layer_of(target, layers) < layer_of(module, layers):
                problems.append(f"{module} imports {target} from a higher layer")
    problems += [f"import cycle: {' -> '.join(cycle)}" for cycle in find_cycles(graph)]
    return problems


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan's algorithm,
    iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next((c for c in children if c in graph), None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
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
                    components.append(_cycle_in(sorted(component), graph))
    return components


def _cycle_in(component: list[str], graph: dict[str, set[str]]) -> list[str]:
    """A concrete cycle through the first module of a strongly connected component."""
    members, start = set(component), component[0]
    path, seen = [start], {start}
    while True:
        nxt = next(c for c in sorted(graph[path[-1]]) if c in members and (c == start or c not in seen))
        path.append(nxt)
        if nxt == start:
            return path
        seen.add(nxt)


def test_gaitbench_imports_downward_only_and_has_no_cycles():
    root = Path(gaitbench.__file__).parent
    assert check_layering(root, LAYERS) == []


def write_package(root: Path, files: dict[str, str]) -> Path:
    pkg = root / "toy"
    for name, text in files.items():
        path = pkg / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return pkg


TOY_LAYERS = [["toy.cli"], ["toy.core"], ["toy", "toy.low"]]


def test_the_check_finds_an_upward_import_and_a_cycle(tmp_path):
    clean = write_package(tmp_path / "a", {"__init__.py": "", "cli.py": "from . import core\n",
                                           "core.py": "from .low import x\n", "low.py": "x = 1\n"})
    assert check_layering(clean, TOY_LAYERS) == []
    upward = write_package(tmp_path / "b", {"__init__.py": "", "cli.py": "", "core.py": "",
                                            "low.py": "def f():\n    from .core import y\n"})
    assert check_layering(upward, TOY_LAYERS) == ["toy.low imports toy.core from a higher layer"]
    cycle = write_package(tmp_path / "c", {"__init__.py": "", "cli.py": "", "core.py": "",
                                           "low.py": "from . import helpers\n",
                                           "helpers.py": "from toy import low\n"})
    assert check_layering(cycle, TOY_LAYERS + [["toy.helpers"]]) == [
        "toy.helpers imports toy.low from a higher layer", "import cycle: toy.helpers -> toy.low -> toy.helpers"]
    typed = write_package(tmp_path / "d", {"__init__.py": "", "cli.py": "", "core.py": "",
                                           "low.py": "from typing import TYPE_CHECKING\n"
                                                     "if TYPE_CHECKING:\n    from .core import C\n"})
    assert check_layering(typed, TOY_LAYERS) == []  # annotations only: nothing runs


def test_every_module_has_a_layer():
    root = Path(gaitbench.__file__).parent
    for path in root.rglob("*.py"):
        layer_of(module_name(root, path), LAYERS)  # raises naming the module otherwise


@pytest.mark.parametrize("module", ["gaitbench.contracts", "gaitbench.errors"])
def test_the_contract_types_import_nothing_but_the_errors(module):
    root = Path(gaitbench.__file__).parent
    path = root / (module.split(".", 1)[1] + ".py")
    assert imports_of(root, path) <= {"gaitbench.errors"}
