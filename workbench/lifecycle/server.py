"""`workbench server`: an `mlflow server` that many workers and machines share as their one tracking store.

Workers on other machines should not write one SQLite file over a network file system: they
log through this server (`--tracking-uri http://HOST:PORT`), which writes runs and models to a
database and stores artifacts itself (proxied `mlflow-artifacts:/`, so workers need no access
to the artifact store). It binds to 127.0.0.1 unless `--host` says otherwise.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from workbench.core import settings
from workbench.core.errors import WorkbenchError
from workbench.stores.db import driver_url, mask_url

DEFAULT_BACKEND = "sqlite:///mlruns/mlflow.db"  # the same store `study run` writes by default
DEFAULT_ARTIFACTS = Path("mlruns/artifacts")


@dataclass(frozen=True)
class ServerSpec:
    host: str = "127.0.0.1"
    port: int = 5000
    backend_store_uri: str | None = None  # runs, metrics and the model registry
    artifacts_destination: str | None = None  # where the server stores proxied artifacts
    workers: int = 1  # uvicorn worker processes; 1 is plenty for a handful of training workers
    allowed_hosts: str | None = None  # extra Host headers (mlflow refuses foreign ones by default)


def build_server_command(spec: ServerSpec) -> tuple[list[str], dict[str, str]]:
    """The `mlflow server` command line for `spec` and the environment it adds; creates the default
    local stores' directories. The backend URL (it may hold a password) goes in the environment,
    which only its owner can read, not on the command line, which `ps` shows every user."""
    problems = []
    if not 1 <= spec.port <= 65535:
        problems.append(f"--port {spec.port}: choose a port between 1 and 65535")
    if spec.workers < 1:
        problems.append(f"--workers {spec.workers}: must be 1 or more")
    if spec.backend_store_uri is not None and "://" not in spec.backend_store_uri:
        problems.append(
            f"--backend-store-uri {mask_url(spec.backend_store_uri)!r}: not a database URL "
            "(e.g. sqlite:///mlruns/mlflow.db or postgresql://...)"
        )
    if problems:
        raise WorkbenchError("; ".join(problems))
    backend = driver_url(spec.backend_store_uri or settings.MLFLOW_BACKEND_STORE_URI.get() or DEFAULT_BACKEND)
    if backend.startswith("sqlite:///"):
        Path(backend.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    artifacts = spec.artifacts_destination
    if artifacts is None or "://" not in artifacts:  # a local folder: absolute, so the server's cwd does not matter
        folder = Path(artifacts) if artifacts else DEFAULT_ARTIFACTS
        folder.mkdir(parents=True, exist_ok=True)
        artifacts = folder.resolve().as_uri()
    command = [sys.executable, "-m", "mlflow", "server", "--host", spec.host, "--port", str(spec.port)]
    command += ["--serve-artifacts", "--artifacts-destination", artifacts]
    command += ["--workers", str(spec.workers)]
    if spec.allowed_hosts:
        command += ["--allowed-hosts", spec.allowed_hosts]
    return command, {settings.MLFLOW_BACKEND_STORE_URI.name: backend}  # mlflow server reads it


STOP_GRACE_S = 20  # seconds the server's processes get to exit after SIGTERM, then SIGKILL


def run_server(spec: ServerSpec) -> int:
    """Run `mlflow server` in the foreground until it exits, SIGTERM or Ctrl-C; returns its exit code."""
    command, env = build_server_command(spec)
    host = socket.gethostname() if spec.host == "0.0.0.0" else spec.host
    print(
        f"mlflow server on {spec.host}:{spec.port} (backend {mask_url(env[settings.MLFLOW_BACKEND_STORE_URI.name])})",
        flush=True,
    )
    print(
        f"workers: workbench --tracking-uri http://{host}:{spec.port} study run FILE --storage postgresql://...",
        flush=True,
    )
    code, stopped = run_until_stopped(command, env)
    if stopped:
        print("server stopped", flush=True)
    return code


def run_until_stopped(command: list[str], env: dict[str, str]) -> tuple[int, bool]:
    """Run a server command in its own process group until it exits, or SIGTERM / Ctrl-C stops it.

    mlflow starts uvicorn and uvicorn its workers: a SIGTERM or SIGINT to this process stops
    the whole group and waits, so nothing keeps the port. Returns (exit code, stopped by a signal).
    """
    proc = subprocess.Popen(command, env=os.environ | env, start_new_session=True)
    stop_requested_at: list[float] = []

    def forward(_signum, _frame):
        stop_requested_at.append(time.monotonic())
        _signal_group(proc.pid, signal.SIGTERM)

    previous = {signum: signal.signal(signum, forward) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        while proc.poll() is None:
            if stop_requested_at and time.monotonic() - stop_requested_at[0] > STOP_GRACE_S:
                _signal_group(proc.pid, signal.SIGKILL)
            time.sleep(0.2)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if proc.poll() is None:  # leaving for another reason: take the server along
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait()
        _signal_group(proc.pid, signal.SIGKILL)  # a worker its parent left behind would keep the port
    return (0 if stop_requested_at else proc.returncode), bool(stop_requested_at)


def _signal_group(pgid: int, signum: int) -> None:
    """Send `signum` to the server's process group (started with start_new_session: pgid = its pid)."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:  # nothing left in the group
        pass
