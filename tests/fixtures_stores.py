"""Fixtures: a seeded pair of stores (the tiny study, trained once per session), copied per test."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from stores import copy_stores, seed, snapshot


@pytest.fixture(scope="session")
def seeded():
    """A store holding the tiny study (2 trials) and a registered version, made once per session.

    Outside pytest's numbered temp dirs: another pytest session on the machine rotates those away.
    """
    from workbench.cli.commands import main

    root = Path(tempfile.mkdtemp(prefix="workbench-seeded-"))
    with pytest.MonkeyPatch.context() as mp:  # session scope: the function-scoped `monkeypatch` cannot reach here
        mp.chdir(root)
        for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):  # the shell's stores must not be seeded
            mp.delenv(name, raising=False)
        seed(root, main)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def stores(seeded, workdir):
    """The seeded stores copied into this test's directory; returns their snapshot before the test."""
    copy_stores(seeded, workdir)
    return snapshot(workdir)


@pytest.fixture(scope="session")
def empty_mlflow_db():
    """An MLflow SQLite store with its tables and nothing else, made once a session (its migrations take ~8 s)."""
    from workbench.stores.tracking import mlflow_client

    root = Path(tempfile.mkdtemp(prefix="workbench-mlflow-"))
    mlflow_client(f"sqlite:///{root}/mlflow.db").search_experiments(max_results=1)
    yield root / "mlflow.db"
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def new_mlflow_store(empty_mlflow_db):
    """new_mlflow_store(folder) -> the URI of a fresh MLflow store at folder/mlflow.db (a copy: no migrations)."""

    def new(folder: Path) -> str:
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(empty_mlflow_db, folder / "mlflow.db")
        return f"sqlite:///{folder / 'mlflow.db'}"

    return new


@pytest.fixture(scope="session")
def empty_optuna_db():
    """An Optuna SQLite storage with its tables and no study, made once per session (~1 s each on a slow disk)."""
    from optuna.storages import RDBStorage

    root = Path(tempfile.mkdtemp(prefix="workbench-optuna-"))
    RDBStorage(f"sqlite:///{root}/optuna.db").engine.dispose()
    yield root / "optuna.db"
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def optuna_url(empty_optuna_db, tmp_path):
    """The URL of a fresh Optuna SQLite storage of this test's own, tmp_path/optuna.db (a copy)."""
    shutil.copyfile(empty_optuna_db, tmp_path / "optuna.db")
    return f"sqlite:///{tmp_path / 'optuna.db'}"
