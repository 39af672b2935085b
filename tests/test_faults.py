"""Faults in the middle of a study: secrets kept secret, a tracking server that goes away and comes back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from helpers import evaluations_of_running_trial, trial_runs
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


@pytest.mark.parametrize(
    "flag, url",
    [
        ("--storage", "postgresql://trainer:{secret}@127.0.0.1:1/optuna"),  # port 1: nothing listens
        ("--tracking-uri", "http://trainer:{secret}@127.0.0.1:1"),
    ],
)
@pytest.mark.slow
def test_an_unreachable_store_is_named_with_its_password_masked(write_study, flag, url):
    secret = f"pw-{uuid.uuid4().hex[:8]}"
    url = url.format(secret=secret)
    args = (
        ["--tracking-uri", url, "study", "run", str(write_study())]
        if flag == "--tracking-uri"
        else ["study", "run", str(write_study()), "--storage", url]
    )
    result = subprocess.run(
        [sys.executable, "-m", "workbench", *args], env=env(), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {flag} {url.replace(secret, '***')}: cannot")
    assert secret not in result.stdout + result.stderr


def mlflow_fields(tracking_uri: str, experiment: str, into: Path) -> list[str]:
    """Every param, tag and artifact (as text) of every run of `experiment`, and the registered versions' fields."""
    from workbench.stores.tracking import mlflow_client

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
def test_passwords_in_the_stores_reach_no_output_no_worker_command_line_and_no_mlflow_field(
    write_study, postgres_url, mlflow_server, tmp_path
):
    import optuna

    from workbench.stores.db import driver_url

    secret = f"pw-{uuid.uuid4().hex[:12]}"
    storage = with_password(postgres_url, secret)
    tracking = mlflow_server.url.replace(
        "http://", f"http://trainer:{secret}@"
    )  # basic auth in the URL (requests sends it)
    path = write_study(
        study={"name": "secret", "n_trials": 2},
        training={"num_train_epochs": 1},
        registry={"model_name": "secret-classifier"},
    )
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    command = [
        sys.executable,
        "-m",
        "workbench",
        "--tracking-uri",
        tracking,
        "study",
        "run",
        str(path),
        "--workers",
        "2",
        "--storage",
        storage,
    ]
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
            # a worker is forked from the launcher's fork server: the server's command line, the server as parent
            forked = "multiprocessing.forkserver" in " ".join(argv) and parent_pid(pid) != proc.pid
            workers |= {pid} if forked else set()
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


def parent_pid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError):  # exited meanwhile
        return None


# --- the tracking server goes away mid-study --------------------------------------------------

# MLflow retries a failed request with backoff 1, 2, 4, 8 s...: an outage of ~10 s is bridged in seconds, not minutes
OUTAGE_RETRIES = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "8",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
}
OUTAGE_S = 8


def start_server(port: int, root: Path) -> subprocess.Popen:
    from servers import wait_until_up

    command = [
        sys.executable,
        "-m",
        "workbench",
        "server",
        "--port",
        str(port),
        "--backend-store-uri",
        f"sqlite:///{root}/mlflow.db",
        "--artifacts-destination",
        str(root / "artifacts"),
    ]
    log = root / f"server-{time.monotonic_ns()}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            command, cwd=root, env=env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    wait_until_up(f"http://127.0.0.1:{port}/health", proc, 120, log)
    return proc


@pytest.mark.slow
def test_a_study_survives_its_tracking_server_stopped_and_restarted_mid_trial(write_study, tmp_path):

    import optuna
    from servers import free_port, stop

    from workbench.stores.tracking import mlflow_client

    port, root = free_port(), tmp_path / "server"
    root.mkdir()
    url = f"http://127.0.0.1:{port}"
    path = write_study(
        study={"name": "outage", "n_trials": 2},
        training={"num_train_epochs": 3},
        registry={"model_name": "outage-classifier"},
    )
    server, study, out = start_server(port, root), None, tmp_path / "study.log"
    try:
        with open(out, "w") as log:
            study = subprocess.Popen(
                [sys.executable, "-m", "workbench", "--tracking-uri", url, "study", "run", str(path)],
                cwd=tmp_path,
                env=env(**OUTAGE_RETRIES),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        client = mlflow_client(url)
        deadline = time.monotonic() + 120
        while not (client.get_experiment_by_name("outage") and trial_runs(client, "outage")):
            assert study.poll() is None and time.monotonic() < deadline, out.read_text()[-3000:]
            time.sleep(0.3)
        os.kill(
            server.pid, signal.SIGTERM
        )  # trial 0 trains: its evaluations, its run's end, the next trial's start meet no server
        assert server.wait(timeout=40) == 0
        time.sleep(OUTAGE_S)
        assert study.poll() is None, out.read_text()[-3000:]  # waiting for the server, not failed
        server = start_server(port, root)  # same port, same backend
        assert study.wait(timeout=240) == 0, out.read_text()[-3000:]

        runs = trial_runs(client, "outage")
        assert sorted((r.data.tags["optuna.trial.number"], r.info.status) for r in runs) == [
            (str(n), "FINISHED") for n in range(2)
        ]
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


# --- the Optuna store (PostgreSQL) restarts mid-study -----------------------------------------


def running_trial_with_evaluations(url: str) -> int | None:
    """The number of a RUNNING trial that has reported at least one evaluation, read with a connection of our own."""
    import psycopg2

    with psycopg2.connect(url) as con, con.cursor() as cur:
        cur.execute("select to_regclass('trials')")
        if cur.fetchone()[0] is None:  # the study has not created its tables yet
            return None
        cur.execute(
            "select t.number from trials t join trial_intermediate_values v using (trial_id) "
            "where t.state = 'RUNNING' limit 1"
        )
        row = cur.fetchone()
    con.close()
    return row[0] if row else None


# 30 epochs, no early stopping: a trial trains for seconds however fast trials get, so the outage lands mid-study
# (with 4 epochs a trial took 0.5 s and the whole study could end while the server was being stopped)
PG_EPOCHS = 30
PG_STUDY = {
    "study": {"name": "pg-restart", "n_trials": 3},
    "training": {"num_train_epochs": PG_EPOCHS},
    "data": {"synthetic": {"n_examples": 1200}},
    "early_stopping": None,
}


def run_through_postgres_restart(path: Path, cluster, down_s: float, log: Path, **extra_env) -> tuple[int, int]:
    """`study run` on `cluster`; the server goes down for `down_s` seconds while a trial trains.

    Returns the exit code and the number of the trial that was cut off.
    """
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "workbench", "study", "run", str(path), "--storage", cluster.url],
            cwd=path.parent,
            env=env(**extra_env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline, cut = time.monotonic() + 180, None
        while cut is None:
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            cut = running_trial_with_evaluations(cluster.url)
            time.sleep(0.1)
        cluster.restart(down_s)  # every connection of the study is cut, and refused while it is down
        return proc.wait(timeout=300), cut
    finally:
        if proc.poll() is None:
            proc.kill()


def check_all_trials_complete(url: str, tracking_root: Path, n_trials: int, epochs: int) -> None:
    """Every trial COMPLETE with all its evaluations, each with one FINISHED run."""
    import optuna

    from workbench.stores.db import driver_url
    from workbench.stores.tracking import mlflow_client

    trials = optuna.load_study(study_name="pg-restart", storage=driver_url(url)).trials
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(complete) == n_trials, [(t.state.name, t.user_attrs) for t in trials]
    assert all(len(t.intermediate_values) == epochs for t in complete)
    runs = trial_runs(mlflow_client(f"sqlite:///{tracking_root}/mlruns/mlflow.db"), "pg-restart")
    finished = {t.user_attrs["mlflow_run_id"] for t in complete}
    assert finished <= {r.info.run_id for r in runs if r.info.status == "FINISHED"}
    assert all(r.info.status in ("FINISHED", "FAILED", "KILLED") for r in runs)  # none left RUNNING


@pytest.mark.slow
def test_a_study_survives_its_postgresql_restarted_mid_trial(write_study, own_postgres, tmp_path):
    """A restart (seconds down): the running trial waits for the server and goes on; nothing is lost or repeated."""
    path, log = write_study(**PG_STUDY), tmp_path / "study.log"
    code, cut = run_through_postgres_restart(path, own_postgres, 5, log)
    printed = log.read_text()
    assert code == 0, printed[-3000:]
    # the study met the outage: refused while down, or cut off while the server shut down ("terminating
    # connection", "the database system is shutting down"), whichever the first call after the cut saw
    met = [line for line in printed.splitlines() if "unreachable (" in line and "retrying" in line]
    assert met, printed[-3000:]
    check_all_trials_complete(own_postgres.url, tmp_path, 3, PG_EPOCHS)
    assert len(optuna_trials(own_postgres.url)) == 3  # no retry was needed: the cut-off trial went on


@pytest.mark.slow
def test_an_outage_longer_than_the_retries_stops_the_study_and_the_same_command_resumes_it(
    write_study, own_postgres, tmp_path
):
    # grace well above the heartbeat: on a loaded machine a live trial must not look stale
    fast = {"WORKBENCH_RECONNECT_S": "2", "WORKBENCH_HEARTBEAT_S": "1", "WORKBENCH_GRACE_S": "8"}
    path, log = write_study(**PG_STUDY), tmp_path / "study.log"
    code, cut = run_through_postgres_restart(path, own_postgres, 8, log, **fast)
    printed = log.read_text()
    assert code == 2, printed[-3000:]
    last = printed.strip().splitlines()[-1]
    assert (
        last.startswith("error: ") and "unreachable for over 2 s" in last and "run the same command to resume" in last
    ), printed[-3000:]
    assert "Traceback" not in printed

    resumed = subprocess.run(
        [sys.executable, "-m", "workbench", "study", "run", str(path), "--storage", own_postgres.url],
        cwd=tmp_path,
        env=env(**fast),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    check_all_trials_complete(
        own_postgres.url, tmp_path, 3, PG_EPOCHS
    )  # the cut-off trial was run again, not counted as the study's


def optuna_trials(url: str) -> list:
    import optuna

    from workbench.stores.db import driver_url

    return optuna.load_study(study_name="pg-restart", storage=driver_url(url)).trials


# --- a worker preempted (SIGTERM) mid-trial ----------------------------------------------------


@pytest.mark.slow
def test_a_preempted_worker_saves_its_trial_and_the_retry_resumes_from_that_checkpoint(write_study, tmp_path):
    import optuna

    from workbench.stores.tracking import mlflow_client

    epochs = 20  # no early stopping: trial 1 is still training when the signal lands, however fast trials get
    path = write_study(
        study={"name": "preempt", "n_trials": 2},
        training={"num_train_epochs": epochs},
        data={"synthetic": {"n_examples": 1200}},
        early_stopping=None,
    )
    command = [sys.executable, "-m", "workbench", "study", "run", str(path)]
    log = tmp_path / "first.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(command, cwd=tmp_path, env=env(), stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while evaluations_of_running_trial(tmp_path / "mlruns" / "optuna.db", 1) < 2:  # trial 0 done, trial 1 mid-way
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)  # what a spot instance, Slurm or Kubernetes sends, SIGKILL following
        code = proc.wait(timeout=30)  # within a grace period
    finally:
        if proc.poll() is None:
            proc.kill()
    printed = log.read_text()
    assert code == 143, printed[-3000:]
    assert printed.strip().splitlines()[-1].startswith("error: preempted (SIGTERM): trial 1 saved at step "), printed[
        -3000:
    ]

    resumed = subprocess.run(command, cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "not found" not in resumed.stdout + resumed.stderr, resumed.stdout + resumed.stderr

    trials = optuna.load_study(study_name="preempt", storage=f"sqlite:///{tmp_path}/mlruns/optuna.db").trials
    assert [t.state.name for t in trials] == [
        "COMPLETE",
        "FAIL",
        "COMPLETE",
    ]  # no completed trial lost, the preempted one retried
    first, retry = trials[1], trials[2]
    step = int(first.user_attrs["preempted"].removeprefix("preempted at step "))
    assert retry.params == first.params and retry.user_attrs["retry_of"] == 1
    assert sorted(first.intermediate_values) + sorted(retry.intermediate_values) == list(
        range(1, epochs + 1)
    )  # evaluations go on counting

    client = mlflow_client(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    runs = {r.info.run_id: r for r in trial_runs(client, "preempt")}
    first_run, retry_run = runs[first.user_attrs["mlflow_run_id"]], runs[retry.user_attrs["mlflow_run_id"]]
    assert first_run.info.status == "KILLED" and retry_run.info.status == "FINISHED"
    assert retry_run.data.tags["workbench.retry_of_run"] == first_run.info.run_id  # the retry links to the first run
    before = [m.step for m in client.get_metric_history(first_run.info.run_id, "eval_accuracy")]
    after = [m.step for m in client.get_metric_history(retry_run.info.run_id, "eval_accuracy")]
    assert 0 < max(before) <= step < min(after)  # the retry started from the saved step, not 0, and goes on numbering
    assert len(before) + len(after) == epochs  # no evaluation interval lost or repeated


@pytest.mark.slow
def test_sigterm_to_the_workers_launcher_saves_every_running_trial_and_the_same_command_resumes_them(
    write_study, tmp_path
):
    import optuna

    epochs = 20  # no early stopping: the trials are still training when the signal lands, however fast trials get
    path = write_study(
        study={"name": "preempt", "n_trials": 3},
        training={"num_train_epochs": epochs},
        data={"synthetic": {"n_examples": 1200}},
        early_stopping=None,
    )
    command = [sys.executable, "-m", "workbench", "study", "run", str(path), "--workers", "2"]
    log = tmp_path / "first.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(command, cwd=tmp_path, env=env(), stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while max(evaluations_of_running_trial(tmp_path / "mlruns" / "optuna.db", n) for n in range(3)) < 1:
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)  # the launcher forwards it to every worker
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    printed = log.read_text()
    assert code == 143, printed[-3000:]
    assert printed.strip().splitlines()[-1].startswith("error: preempted (SIGTERM)"), printed[-3000:]

    resumed = subprocess.run(command, cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=400)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "not found" not in resumed.stdout + resumed.stderr  # every retry found its checkpoint
    trials = optuna.load_study(study_name="preempt", storage=f"sqlite:///{tmp_path}/mlruns/optuna.db").trials
    preempted = [t for t in trials if "preempted" in t.user_attrs]
    retries = {t.user_attrs["retry_of"]: t for t in trials if "retry_of" in t.user_attrs}
    assert preempted and sorted(retries) == [t.number for t in preempted]  # each preempted trial was retried once
    for t in preempted:  # each retry resumed: together they evaluated once per epoch
        assert retries[t.number].state.name == "COMPLETE"
        assert sorted(t.intermediate_values) + sorted(retries[t.number].intermediate_values) == list(
            range(1, epochs + 1)
        )
    assert sum(t.state.name == "COMPLETE" for t in trials) == 3
