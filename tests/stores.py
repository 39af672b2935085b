"""Helpers for error tests: seeding a pair of stores, and a snapshot to prove a refused run changed nothing.

The `seeded` and `stores` fixtures built from these live in fixtures_stores.py.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import yaml
from helpers import TINY, merge

# What a refused command must leave as it was: every row of both stores, statuses included.
OPTUNA_TABLES = ("studies", "trials", "trial_values", "trial_params", "trial_user_attributes", "study_user_attributes")
MLFLOW_TABLES = (
    "experiments",
    "runs",
    "metrics",
    "params",
    "tags",
    "registered_models",
    "model_versions",
    "registered_model_aliases",
)


def snapshot(root: Path) -> dict:
    """Row counts of every table that matters, trial states, run statuses and registry aliases."""
    out: dict = {}
    for db, tables in (("optuna.db", OPTUNA_TABLES), ("mlflow.db", MLFLOW_TABLES)):
        path = root / "mlruns" / db
        if not path.exists():
            out[db] = None
            continue
        with sqlite3.connect(path) as con:
            out[db] = {t: con.execute(f"select count(*) from {t}").fetchone()[0] for t in tables}
            if db == "optuna.db":
                out["trial_states"] = con.execute("select number, state from trials order by number").fetchall()
            else:
                out["run_statuses"] = con.execute("select run_uuid, status from runs order by run_uuid").fetchall()
                out["aliases"] = con.execute(
                    "select name, alias, version from registered_model_aliases order by alias"
                ).fetchall()
    return out


def seed(root: Path, main) -> Path:
    """Run the tiny study (2 trials, registered) in `root`; returns the study file."""
    path = root / "study.yaml"
    path.write_text(yaml.safe_dump(merge(TINY, {"study": {"n_trials": 2}}), sort_keys=False))
    assert main(["study", "run", str(path)]) == 0
    return path


def copy_stores(source: Path, target: Path) -> None:
    """The whole mlruns/ folder: both databases and the artifacts (a copied store adopts its new folder)."""
    shutil.copytree(source / "mlruns", target / "mlruns", dirs_exist_ok=True)


def refused(capsys, argv: list[str]) -> str:
    """Run the CLI, expect exit 2 and a one-line error without a traceback; return that line."""
    from workbench.cli.commands import main

    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("error: ") and "\n" not in err, err
    assert "Traceback" not in err
    return err
