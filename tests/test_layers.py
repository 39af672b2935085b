"""Imports point one way: each module imports only modules of a lower layer, at module top.

The table is the one in shared/DESIGN.md. A new module must be placed in it; an import that
climbs a layer, or hides in a function (only the CLI imports lazily, for a fast --help), fails.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "workbench"
LAYERS = {
    0: {"errors"},
    1: {"db", "metrics", "synthetic", "modeling", "search_space", "tables", "pretrained", "user_code", "wordpiece", "progress"},  # leaves
    2: {"spec", "distributed", "tracking", "inference", "server"},
    3: {"builders"},
    4: {"study_file"},
    5: {"storage", "data", "callbacks"},
    6: {"training", "registry", "plots"},
    7: {"lineage", "views"},
    8: {"objective", "evaluation"},
    9: {"study", "promotion"},
    10: {"workers", "api"},
    11: {"cli", "mlflow_model", "__init__"},  # entry points
    12: {"__main__"},  # `python -m workbench` runs the CLI
}
LAZY_ALLOWED = {"cli", "__init__"}  # `workbench --help` and `import workbench` stay instant
LAYER_OF = {module: layer for layer, modules in LAYERS.items() for module in modules}


def workbench_imports(tree: ast.Module):
    """(module imported, line, at module top?) for every runtime import of a workbench module."""
    type_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
    top = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "workbench":
            names = [a.name for a in node.names] if node.module == "workbench" else [node.module.split(".")[1]]
        elif isinstance(node, ast.Import):
            names = [a.name.split(".")[1] for a in node.names if a.name.startswith("workbench.")]
        for name in names:
            if (PACKAGE / f"{name}.py").exists():
                yield name, node.lineno, id(node) in top


def test_every_module_has_a_layer():
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    assert modules - set(LAYER_OF) == set(), "place the new module in LAYERS (and in DESIGN.md's table)"


def test_imports_point_down_and_sit_at_the_top():
    problems = []
    for path in sorted(PACKAGE.glob("*.py")):
        module = path.stem
        for imported, line, at_top in workbench_imports(ast.parse(path.read_text())):
            if imported == module:
                continue
            if LAYER_OF[imported] >= LAYER_OF[module]:
                problems.append(f"{path.name}:{line} imports {imported} (layer {LAYER_OF[imported]} >= {LAYER_OF[module]})")
            if not at_top and module not in LAZY_ALLOWED:
                problems.append(f"{path.name}:{line} imports {imported} inside a function")
    assert problems == []


def test_the_walker_sees_lazy_and_upward_imports():
    tree = ast.parse("import os\nfrom workbench import study\ndef f():\n    from workbench.errors import first_line\n")
    assert sorted(workbench_imports(tree)) == [("errors", 4, False), ("study", 2, True)]
