"""Faults in the middle of a study: secrets kept secret, a tracking server that goes away and comes back."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from helpers import trial_runs
from servers import descendants

ROOT = Path(__file__).resolve().parents[1]


def env(**extra) -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT), **extra)


def with_password(url: str, password: str) -> str:
    """`url` with `password` in its user info (the test cluster trusts loopback: any password is accepted)."""
    scheme, rest = url.split("://", 1)
    userinfo, host = rest.rsplit("@", 1) if "@" in rest else ("workbench", rest)
    return f"{scheme}://{userinfo.split(':')[0]}:{password}@{host}"


# --- secrets --------------------------------------------------------------------------------


@pytest.mark.parametrize("flag, url", [
    ("--storage", "postgresql://trainer:{secret}@127.0.0.1:1/optuna"),  # port 1: nothing listens
    ("--tracking-uri", "http://trainer:{secret}@127.0.0.1:1"),
])
def test_an_unreachable_store_is_named_with_its_password_masked(write_study, flag, url):
    secret = f"pw-{uuid.uuid4().hex[:8]}"
    url = url.format(secret=secret)
    args = ["--tracking-uri", url, "study", "run", str(write_study())] if flag == "--tracking-uri" else ["study", "run", str(write_study()), "--storage", url]
    result = subprocess.run([sys.executable, "-m", "workbench", *args], env=env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {flag} {url.replace(secret, '***')}: cannot")
    assert secret not in result.stdout + result.stderr


def mlflow_fields(tracking_uri: str, experiment: str, into: Path) -> list[str]:
    """Every param, tag and artifact (as text) of every run of `experiment`, and the registered versions' fields."""
    from workbench.tracking import mlflow_client

    client = mlflow_client(tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id], max_results=1000)
    fields = []
    for run in runs:
        fields += [f"{k}={v}" for k, v in {**run.data.params, **run.data.tags}.items()]
        folder = Path(client.download_artifacts(run.info.run_id, "", str(into / run.info.run_id)))
        fields += [p.read_bytes().decode("latin-1") for p in folder.rglob("*") if p.is_file()]
    for version in client.search_model_versions():
        fields += [str(version.source), str(version.tags), str(version.description)]
    return fields


@pytest.mark.slow
def test_passwords_in_the_stores_reach_no_output_no_worker_command_line_and_no_mlflow_field(write_study, postgres_url, mlflow_server, tmp_path):
    import optuna

    from workbench.db import driver_url

    secret = f"pw-{uuid.uuid4().hex[:12]}"
    storage = with_password(postgres_url, secret)
    tracking = mlflow_server.url.replace("http://", f"http://trainer:{secret}@")  # basic auth in the URL (requests sends it)
    path = write_study(study={"name": "secret", "n_trials": 2}, training={"num_train_epochs": 1}, registry={"model_name": "secret-classifier"})
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    command = [sys.executable, "-m", "workbench", "--tracking-uri", tracking, "study", "run", str(path), "--workers", "2", "--storage", storage]
    with open(out, "w") as stdout, open(err, "w") as stderr:
        proc = subprocess.Popen(command, env=env(), stdout=stdout, stderr=stderr)
    workers, leaks = set(), set()
    deadline = time.monotonic() + 400
    while proc.poll() is None and time.monotonic() < deadline:
        for pid in descendants(proc.pid):
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
            except OSError:  # exited meanwhile
                continue
            workers |= {pid} if argv[2:5] == ["workbench", "study", "run"] else set()
            leaks |= {pid} if any(secret in a for a in argv) else set()
        time.sleep(0.2)
    if proc.poll() is None:
        proc.kill()
    assert proc.wait() == 0, out.read_text()[-3000:] + err.read_text()[-3000:]
    assert len(workers) == 2 and leaks == set()  # both workers seen running, neither with the password in its arguments
    printed = out.read_text() + err.read_text()
    assert "trainer:***@" in printed and secret not in printed  # the stores are named, masked

    study = optuna.load_study(study_name="secret", storage=driver_url(storage))
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    recorded = [str(study.user_attrs)] + [str(t.user_attrs) for t in study.trials]
    fields = mlflow_fields(mlflow_server.url, "secret", tmp_path / "artifacts")
    assert any("trial_spec.json" in f or "learning_rate" in f for f in fields)  # the fields were read
    assert [f[:200] for f in recorded + fields if secret in f] == []


# --- the tracking server goes away mid-study --------------------------------------------------

# MLflow retries a failed request with backoff 1, 2, 4, 8 s...: an outage of ~10 s is bridged in seconds, not minutes
OUTAGE_RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "8", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}
OUTAGE_S = 8


def start_server(port: int, root: Path) -> subprocess.Popen:
    from servers import wait_until_up

    command = [sys.executable, "-m", "workbench", "server", "--port", str(port),
               "--backend-store-uri", f"sqlite:///{root}/mlflow.db", "--artifacts-destination", str(root / "artifacts")]
    log = root / f"server-{time.monotonic_ns()}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(command, cwd=root, env=env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    wait_until_up(f"http://127.0.0.1:{port}/health", proc, 120, log)
    return proc


@pytest.mark.slow
def test_a_study_survives_its_tracking_server_stopped_and_restarted_mid_trial(write_study, tmp_path):
    import signal

    import optuna
    from servers import free_port, stop

    from workbench.tracking import mlflow_client

    port, root = free_port(), tmp_path / "server"
    root.mkdir()
    url = f"http://127.0.0.1:{port}"
    path = write_study(study={"name": "outage", "n_trials": 2}, training={"num_train_epochs": 3}, registry={"model_name": "outage-classifier"})
    server, study, out = start_server(port, root), None, tmp_path / "study.log"
    try:
        with open(out, "w") as log:
            study = subprocess.Popen([sys.executable, "-m", "workbench", "--tracking-uri", url, "study", "run", str(path)],
                                     cwd=tmp_path, env=env(**OUTAGE_RETRIES), stdout=log, stderr=subprocess.STDOUT)
        client = mlflow_client(url)
        deadline = time.monotonic() + 120
        while not (client.get_experiment_by_name("outage") and trial_runs(client, "outage")):
            assert study.poll() is None and time.monotonic() < deadline, out.read_text()[-3000:]
            time.sleep(0.3)
        os.kill(server.pid, signal.SIGTERM)  # trial 0 trains: its evaluations, its run's end, the next trial's start meet no server
        assert server.wait(timeout=40) == 0
        time.sleep(OUTAGE_S)
        assert study.poll() is None, out.read_text()[-3000:]  # waiting for the server, not failed
        server = start_server(port, root)  # same port, same backend
        assert study.wait(timeout=240) == 0, out.read_text()[-3000:]

        runs = trial_runs(client, "outage")
        assert sorted((r.data.tags["optuna.trial.number"], r.info.status) for r in runs) == [(str(n), "FINISHED") for n in range(2)]
        trials = optuna.load_study(study_name="outage", storage=f"sqlite:///{tmp_path}/mlruns/optuna.db").trials
        assert [t.state.name for t in trials] == ["COMPLETE"] * 2
        by_run = {t.user_attrs["mlflow_run_id"]: t for t in trials}
        for run in runs:  # every evaluation the trial reported to Optuna arrived in MLflow, once
            history = client.get_metric_history(run.info.run_id, "eval_accuracy")
            assert len(history) == len(by_run[run.info.run_id].intermediate_values) > 0
        assert client.get_model_version_by_alias("outage-classifier", "challenger").version == "1"
    finally:
        if study is not None and study.poll() is None:
            study.kill()
        if server.poll() is None:
            stop(server)
