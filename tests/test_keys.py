"""Tag and attribute names live in workbench.core.keys alone: no module spells one out again."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from workbench.core import keys

ROOT = Path(__file__).resolve().parents[1]
# the namespaced names (workbench.*, optuna.*, mlflow.*): short ones like "worker" are common words
NAMESPACED = {v for k, v in vars(keys).items() if k.isupper() and isinstance(v, str) and "." in v}
# a key as a whole name: "workbench.trial" is a key, "workbench.trial.objective" a module
WHOLE = r"(?![\w.])"  # not followed by more of a dotted name (prefix keys, ending in ".", are followed)
SPELLED = re.compile("|".join(r"(?<![\w.])" + re.escape(v) + ("" if v.endswith(".") else WHOLE) for v in NAMESPACED))


def test_the_keys_keep_the_values_the_stores_hold():
    # a changed value orphans every run, version and study recorded before: these are read back
    assert (keys.ROLE_TAG, keys.RUN_TRIAL_TAG, keys.RUN_STATE_TAG) == (
        "workbench.role",
        "optuna.trial.number",
        "optuna.trial.state",
    )
    assert (keys.RUN_STUDY_TAG, keys.VERSION_STUDY_TAG) == ("optuna.study", "workbench.study")
    assert (keys.RUN_ID_ATTR, keys.METRIC_ATTR, keys.HISTORY_TAG_PREFIX) == (
        "mlflow_run_id",
        "workbench.metric",
        "workbench.history.",
    )


def test_no_module_spells_out_a_key():
    found = []
    for path in sorted((ROOT / "workbench").rglob("*.py")):
        if path.name == "keys.py":
            continue
        tree = ast.parse(path.read_text())
        docstrings = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                found += [f"{path.relative_to(ROOT)}:{node.lineno} {m[0]}" for m in SPELLED.finditer(node.value)]
    assert found == [], "import the name from workbench.core.keys"
