"""`workbench server`: a real mlflow server that workers on many machines log through."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import tracking_client
from servers import alive, descendants, free_port, stop, wait_until_up

from workbench.lifecycle.server import ServerSpec, build_server_command

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
    command, env = build_server_command(ServerSpec())
    options = {
        flag: command[i + 1] for i, flag in enumerate(command) if flag.startswith("--") and flag != "--serve-artifacts"
    }
    assert command[1:4] == ["-m", "mlflow", "server"]
    assert options["--host"] == "127.0.0.1" and options["--workers"] == "1"
    assert env == {"MLFLOW_BACKEND_STORE_URI": "sqlite:///mlruns/mlflow.db"}  # the store `study run` writes by default
    assert "--backend-store-uri" not in options  # its password would show in `ps`
    assert options["--artifacts-destination"] == (workdir / "mlruns" / "artifacts").as_uri()
    assert "--serve-artifacts" in command


def test_bad_server_options_are_one_line_usage_errors(workdir):
    result = subprocess.run(
        [sys.executable, "-m", "workbench", "server", "--port", "0", "--workers", "0"],
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=60,
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
    stored = [
        p for p in (mlflow_server.root / "artifacts").rglob("note.txt") if run.info.run_id in str(p)
    ]  # the server wrote it, not the client
    assert len(stored) == 1 and stored[0].read_text() == "hello"


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_to_the_server_stops_its_whole_process_tree_and_frees_the_port(tmp_path, signum):
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "workbench",
        "server",
        "--port",
        str(port),
        "--backend-store-uri",
        f"sqlite:///{tmp_path}/mlflow.db",
        "--artifacts-destination",
        str(tmp_path / "artifacts"),
    ]
    log = tmp_path / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            command,
            cwd=tmp_path,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # a group of its own, so a failed test can still clean up
    children: set[int] = set()
    try:
        wait_until_up(f"http://127.0.0.1:{port}/health", proc, 120, log)
        children = descendants(proc.pid)
        assert len(children) >= 2  # mlflow server, uvicorn (and its workers)
        os.kill(proc.pid, signum)  # the wrapper only, as kill, systemd or Docker do
        assert proc.wait(timeout=40) == 0
        assert [pid for pid in children if alive(pid)] == []
        assert listening_addresses(port) == set()
        with (
            socket.socket() as s
        ):  # a restart on the same port would succeed (servers set SO_REUSEADDR, as uvicorn does)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
        assert log.read_text().rstrip().endswith("server stopped")
    finally:
        if proc.poll() is None:
            stop(proc)
        for pid in children:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
