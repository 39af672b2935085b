"""Settings: each environment variable is read when used, refused with one line when it does not
parse, and listed in the README's "Settings" table with its default."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from workbench.core import settings
from workbench.core.errors import SettingError

ROOT = Path(__file__).resolve().parents[1]


def test_a_setting_is_read_when_used_not_at_import(monkeypatch):
    monkeypatch.delenv("WORKBENCH_GRACE_S", raising=False)
    assert settings.WORKBENCH_GRACE_S.get() == 60
    monkeypatch.setenv("WORKBENCH_GRACE_S", "8")
    assert settings.WORKBENCH_GRACE_S.get() == 8
    monkeypatch.setenv("WORKBENCH_GRACE_S", "")  # empty is unset
    assert settings.WORKBENCH_GRACE_S.get() == 60


def test_a_value_that_does_not_parse_names_the_variable_and_the_fix(monkeypatch):
    monkeypatch.setenv("WORKBENCH_RECONNECT_S", "a minute")
    with pytest.raises(SettingError) as raised:
        settings.WORKBENCH_RECONNECT_S.get()
    assert str(raised.value) == "$WORKBENCH_RECONNECT_S='a minute': not a float: unset it for the default, 60.0"


def readme_rows() -> dict[str, str]:
    """variable -> default cell of the README's Settings table."""
    section = (ROOT / "README.md").read_text().split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    return {m[1]: m[2] for m in re.finditer(r"^\| `(\w+)` \| ([^|]+?) \|", section, re.MULTILINE)}


def test_the_readme_lists_every_setting_with_its_default():
    def shown(default) -> str:
        if default is None:
            return "unset"
        return f"`{default:g}`" if isinstance(default, float) else f"`{default}`"

    listed = readme_rows()
    assert sorted(listed) == sorted(s.name for s in settings.SETTINGS), "README.md's Settings table and settings.py"
    assert {s.name: shown(s.default) for s in settings.SETTINGS} == listed


def at_import(node: ast.AST):
    """Every node that runs when the module is imported: all but the bodies of functions."""
    for child in ast.iter_child_nodes(node):
        if not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            yield child
            yield from at_import(child)


def test_no_module_reads_the_environment_at_import():
    found = []
    for path in sorted((ROOT / "workbench").rglob("*.py")):
        for node in at_import(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv"):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert found == [], "read a workbench.core.settings Setting with .get() where the value is used"
