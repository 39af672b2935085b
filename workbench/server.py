"""`workbench server`: an `mlflow server` that many workers and machines share as their one tracking store.

Workers on other machines should not write one SQLite file over a network file system: they
log through this server (`--tracking-uri http://HOST:PORT`), which writes runs and models to a
database and stores artifacts itself (proxied `mlflow-artifacts:/`, so workers need no access
to the artifact store). It binds to 127.0.0.1 unless `--host` says otherwise.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from workbench.db import driver_url
from workbench.errors import WorkbenchError

DEFAULT_BACKEND = "sqlite:///mlruns/mlflow.db"  # the same store `study run` writes by default
DEFAULT_ARTIFACTS = Path("mlruns/artifacts")


@dataclass(frozen=True)
class ServerSpec:
    host: str = "127.0.0.1"
    port: int = 5000
    backend_store_uri: Optional[str] = None  # runs, metrics and the model registry
    artifacts_destination: Optional[str] = None  # where the server stores proxied artifacts
    workers: int = 1  # uvicorn worker processes; 1 is plenty for a handful of training workers
    allowed_hosts: Optional[str] = None  # extra Host headers (mlflow refuses foreign ones by default)


def build_server_command(spec: ServerSpec) -> list[str]:
    """The `mlflow server` command line for `spec`; creates the default local stores' directories."""
    problems = []
    if not 1 <= spec.port <= 65535:
        problems.append(f"--port {spec.port}: choose a port between 1 and 65535")
    if spec.workers < 1:
        problems.append(f"--workers {spec.workers}: must be 1 or more")
    if spec.backend_store_uri is not None and "://" not in spec.backend_store_uri:
        problems.append(f"--backend-store-uri {spec.backend_store_uri!r}: not a database URL (e.g. sqlite:///mlruns/mlflow.db or postgresql://...)")
    if problems:
        raise WorkbenchError("; ".join(problems))
    backend = driver_url(spec.backend_store_uri or DEFAULT_BACKEND)
    if backend.startswith("sqlite:///"):
        Path(backend.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    artifacts = spec.artifacts_destination
    if artifacts is None or "://" not in artifacts:  # a local folder: absolute, so the server's cwd does not matter
        folder = Path(artifacts) if artifacts else DEFAULT_ARTIFACTS
        folder.mkdir(parents=True, exist_ok=True)
        artifacts = folder.resolve().as_uri()
    command = [sys.executable, "-m", "mlflow", "server", "--host", spec.host, "--port", str(spec.port)]
    command += ["--backend-store-uri", backend, "--serve-artifacts", "--artifacts-destination", artifacts]
    command += ["--workers", str(spec.workers)]
    if spec.allowed_hosts:
        command += ["--allowed-hosts", spec.allowed_hosts]
    return command


def run_server(spec: ServerSpec) -> int:
    """Run `mlflow server` in the foreground until it exits or Ctrl-C; returns its exit code."""
    command = build_server_command(spec)
    host = socket.gethostname() if spec.host == "0.0.0.0" else spec.host
    print(f"mlflow server on {spec.host}:{spec.port} (backend {command[command.index('--backend-store-uri') + 1]})", flush=True)
    print(f"workers: workbench --tracking-uri http://{host}:{spec.port} study run FILE --storage postgresql://...", flush=True)
    proc = subprocess.Popen(command)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        print("server stopped", flush=True)
        return 0
