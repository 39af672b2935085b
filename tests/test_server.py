"""`workbench server`: a real mlflow server that workers on many machines log through."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import tracking_client
from workbench.server import ServerSpec, build_server_command

ROOT = Path(__file__).resolve().parents[1]


def listening_addresses(port: int) -> set[str]:
    """Local IPv4 addresses with a socket listening on `port` (from /proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
            found.add(".".join(str(int(address[i : i + 2], 16)) for i in (6, 4, 2, 0)))
    return found


def test_defaults_bind_loopback_one_worker_local_sqlite_and_proxied_artifacts(workdir):
    command = build_server_command(ServerSpec())
    options = {flag: command[i + 1] for i, flag in enumerate(command) if flag.startswith("--") and flag != "--serve-artifacts"}
    assert command[1:4] == ["-m", "mlflow", "server"]
    assert options["--host"] == "127.0.0.1" and options["--workers"] == "1"
    assert options["--backend-store-uri"] == "sqlite:///mlruns/mlflow.db"  # the store `study run` writes by default
    assert options["--artifacts-destination"] == (workdir / "mlruns" / "artifacts").as_uri()
    assert "--serve-artifacts" in command


def test_bad_server_options_are_one_line_usage_errors(workdir):
    result = subprocess.run(
        [sys.executable, "-m", "workbench", "server", "--port", "0", "--workers", "0"],
        env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr == "error: --port 0: choose a port between 1 and 65535; --workers 0: must be 1 or more\n"


@pytest.mark.slow
def test_server_listens_on_loopback_only_and_stores_runs_and_artifacts(mlflow_server, tmp_path):
    port = int(mlflow_server.url.rsplit(":", 1)[1])
    assert listening_addresses(port) == {"127.0.0.1"}
    client = tracking_client(mlflow_server.url)
    experiment = client.create_experiment("through-the-server")
    assert client.get_experiment(experiment).artifact_location.startswith("mlflow-artifacts:")
    run = client.create_run(experiment)
    client.log_metric(run.info.run_id, "eval_f1", 0.75, step=1)
    note = tmp_path / "note.txt"
    note.write_text("hello")
    client.log_artifact(run.info.run_id, str(note))
    client.set_terminated(run.info.run_id)

    assert [m.value for m in client.get_metric_history(run.info.run_id, "eval_f1")] == [0.75]
    stored = [p for p in (mlflow_server.root / "artifacts").rglob("note.txt") if run.info.run_id in str(p)]  # the server wrote it, not the client
    assert len(stored) == 1 and stored[0].read_text() == "hello"
