"""Fixtures: a real `workbench server` for the session, a fresh PostgreSQL database per test,
a PostgreSQL cluster of a test's own."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from servers import PostgresCluster, free_port, stop, wait_until_up


@dataclass(frozen=True)
class Server:
    url: str  # http://127.0.0.1:PORT
    root: Path  # its backend database and artifacts folder


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real `workbench server` (mlflow server, 1 worker) on a free loopback port; yields its URL.

    One per session (it takes tens of seconds to start on 2 cores): tests use distinct names.
    """
    port = free_port()
    root = tmp_path_factory.mktemp("server")
    command = [
        sys.executable,
        "-m",
        "workbench",
        "server",
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        f"sqlite:///{root}/mlflow.db",
        "--artifacts-destination",
        str(root / "artifacts"),
    ]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    with open(root / "server.log", "w") as log:
        proc = subprocess.Popen(
            command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_up(f"{url}/health", proc, 120, root / "server.log")
            yield Server(url, root)
        finally:
            stop(proc)


@pytest.fixture
def postgres_url():
    """A fresh PostgreSQL database for one test (CI sets WORKBENCH_TEST_POSTGRES_URL; see .ci/postgres.sh)."""
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


@pytest.fixture
def own_postgres():
    """A PostgreSQL cluster of this test's own (see servers.PostgresCluster): the test may restart it."""
    cluster = PostgresCluster()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
