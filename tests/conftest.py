"""Shared fixtures: a tiny study (seconds per trial) and stores in a temporary directory."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

TINY = {
    "study": {
        "name": "tiny",
        "metric": "eval_accuracy",
        "direction": "maximize",
        "n_trials": 3,
        "sampler": {"type": "random", "seed": 0},
        "pruner": {"type": "none"},
    },
    "data": {"source": "synthetic", "synthetic": {"n_examples": 240, "seed": 1}, "max_length": 32},
    "tokenizer": {"vocab_size": 300},
    "model": {"hidden_size": 16, "num_layers": 1, "num_heads": 2, "dropout": 0.0},
    "training": {"num_train_epochs": 2, "per_device_train_batch_size": 32, "learning_rate": 3.0e-3, "seed": 0},
    "search_space": {"training.learning_rate": {"low": 1.0e-3, "high": 5.0e-3, "log": True}},
    "registry": {"model_name": "tiny-classifier"},
}


def merge(base: dict, changes: dict) -> dict:
    """Sections merge key by key; `search_space` is replaced whole."""
    out = dict(base)
    for key, value in changes.items():
        nested = isinstance(value, dict) and isinstance(out.get(key), dict) and key != "search_space"
        out[key] = merge(out[key], value) if nested else value
    return out


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """Run in a fresh directory: the default stores land in tmp_path/mlruns."""
    monkeypatch.chdir(tmp_path)
    # mlflow.set_tracking_uri / set_registry_uri export these: an earlier test's store must not leak in
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    return tmp_path


@pytest.fixture
def write_study(workdir):
    """write_study(**changes) -> path of a tiny study file with `changes` merged in."""

    def write(name: str = "study.yaml", **changes) -> Path:
        path = workdir / name
        path.write_text(yaml.safe_dump(merge(TINY, changes), sort_keys=False))
        return path

    return write


@dataclass(frozen=True)
class Server:
    url: str  # http://127.0.0.1:PORT
    root: Path  # its backend database and artifacts folder


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real `workbench server` (mlflow server, 1 worker) on a free loopback port; yields its URL.

    One per session (it takes tens of seconds to start on 2 cores): tests use distinct names.
    """
    import subprocess
    import sys

    from servers import free_port, stop, wait_until_up

    port = free_port()
    root = tmp_path_factory.mktemp("server")
    command = [sys.executable, "-m", "workbench", "server", "--port", str(port), "--workers", "1",
               "--backend-store-uri", f"sqlite:///{root}/mlflow.db", "--artifacts-destination", str(root / "artifacts")]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    with open(root / "server.log", "w") as log:
        proc = subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_up(f"{url}/health", proc, 120, root / "server.log")
            yield Server(url, root)
        finally:
            stop(proc)


@pytest.fixture
def postgres_url():
    """A fresh PostgreSQL database for one test (CI sets WORKBENCH_TEST_POSTGRES_URL; see .ci/postgres.sh)."""
    import uuid

    base = os.environ.get("WORKBENCH_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("WORKBENCH_TEST_POSTGRES_URL is not set: `source .ci/postgres.sh` starts a local PostgreSQL")
    import psycopg2

    name = f"wb_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(base)
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {name}")
    yield base.rsplit("/", 1)[0] + f"/{name}"
    admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.close()


@pytest.fixture(scope="session")
def keyword_registry(tmp_path_factory):
    """Four registered versions of a tiny keyword classifier, trained once (tests/registry_models.py)."""
    from registry_models import build_registry

    return build_registry(tmp_path_factory.mktemp("registry"))
