"""The package layout is a rule: each sub-package imports only the packages it is allowed to.

The table is the README's "How the code is laid out" (and shared/DESIGN.md's). A new
sub-package or top-level module must be placed in it. Inside a package, modules import each
other freely but without circles; an import hidden in a function hides a circle too, so only
the entry points (`cli`, `__init__`) import lazily, to keep `workbench --help` instant.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "workbench"
# package -> the packages it may import (besides itself); the order is the floor each stands on
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "model": {"core"},
    "config": {"core", "model"},
    "data": {"core", "model", "config"},
    "stores": {"core", "model", "config", "data"},
    "trial": {"core", "model", "config", "data", "stores"},
    "study": {"core", "model", "config", "data", "stores", "trial"},
    "lifecycle": {"core", "model", "config", "data", "stores", "trial"},
    "cluster": {"core", "config", "stores"},
    "api": {"core", "config", "stores", "study"},
    "cli": {"core", "model", "config", "data", "stores", "trial", "study", "lifecycle", "api", "cluster"},
    "__init__": {"api", "config", "core"},
    "__main__": {"cli"},
}
LAZY_ALLOWED = {"cli", "__init__"}  # `workbench --help` and `import workbench` stay instant


def unit_of(path: Path) -> str:
    """The package (or top-level module) a file belongs to: workbench/stores/db.py -> stores."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def module_of(path: Path) -> str:
    return ".".join(("workbench", *path.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")


def workbench_imports(tree: ast.Module):
    """(dotted module imported, line, at module top?) for every runtime import of a workbench module."""
    type_only = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }
    top = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "workbench":
            if node.module.count(".") == 1 and (PACKAGE / node.module.split(".")[1]).is_dir():
                names = [f"{node.module}.{a.name}" for a in node.names]  # from workbench.core import distributed
            else:
                names = [node.module] if node.module != "workbench" else [f"workbench.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("workbench.")]
        for name in names:
            yield name, node.lineno, id(node) in top


def files():
    return sorted(PACKAGE.rglob("*.py"))


def test_every_package_has_a_place():
    units = {unit_of(p) for p in files()}
    assert units - set(ALLOWED) == set(), (
        "place the new package or module in ALLOWED (and in the README's layout table)"
    )


def test_packages_import_only_what_they_may_and_at_the_top():
    problems = []
    for path in files():
        unit = unit_of(path)
        for imported, line, at_top in workbench_imports(ast.parse(path.read_text())):
            target = imported.split(".")[1]
            if target != unit and target not in ALLOWED[unit]:
                problems.append(
                    f"{path.relative_to(PACKAGE)}:{line} imports {imported} ({unit} may import {sorted(ALLOWED[unit])})"
                )
            if not at_top and unit not in LAZY_ALLOWED:
                problems.append(f"{path.relative_to(PACKAGE)}:{line} imports {imported} inside a function")
    assert problems == []


def test_no_two_packages_import_each_other():
    for package, allowed in ALLOWED.items():
        for other in allowed:
            assert package not in ALLOWED.get(other, set()), f"{package} and {other} may import each other"


def test_modules_of_a_package_import_each_other_without_circles():
    graph: dict[str, set[str]] = {}
    for path in files():
        graph[module_of(path)] = {m for m, _, _ in workbench_imports(ast.parse(path.read_text()))}

    def visit(module: str, stack: tuple[str, ...]):
        if module in stack:
            pytest.fail(f"import circle: {' -> '.join((*stack[stack.index(module) :], module))}")
        for imported in graph.get(module, ()):
            visit(imported, (*stack, module))

    for module in graph:
        visit(module, ())


def test_the_walker_sees_lazy_and_forbidden_imports():
    tree = ast.parse(
        "import os\nfrom workbench.core import errors\ndef f():\n    from workbench.study.session import StudySession\n"
    )
    found = sorted(workbench_imports(tree))
    assert found == [("workbench.core.errors", 2, True), ("workbench.study.session", 4, False)]
