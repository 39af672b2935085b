"""Many workers on one study: real worker processes, real stores, real signals."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import tracking_client, trial_runs

from workbench.core.errors import WorkbenchError
from workbench.stores.db import driver_url
from workbench.study.forked import WorkerTask
from workbench.study.workers import WorkerPlan, plan_workers

ROOT = Path(__file__).resolve().parents[1]
SHORT_HEARTBEAT = {"WORKBENCH_HEARTBEAT_S": "1", "WORKBENCH_GRACE_S": "4"}


def env(**extra) -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT), **extra)


def cli(*args: str, timeout: int = 240, **extra) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "workbench", *args], env=env(**extra), capture_output=True, text=True, timeout=timeout
    )


def load(storage: str = "sqlite:///mlruns/optuna.db", name: str = "tiny"):
    import optuna

    return optuna.load_study(study_name=name, storage=driver_url(storage))


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def study_created(name: str = "tiny", db: str = "mlruns/optuna.db") -> bool:
    """Whether the launcher has created the study, read without writing: Optuna's own load would
    create the database's tables, racing the launcher that is creating them."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
            return con.execute("select 1 from studies where study_name = ?", (name,)).fetchone() is not None
    except sqlite3.OperationalError:  # no database file yet, or no tables in it yet
        return False


def running_trials():
    """RUNNING trials whose worker has opened the MLflow run (so they are mid-trial)."""
    from optuna.trial import TrialState

    if not study_created():
        return []
    return [t for t in load().get_trials(states=(TrialState.RUNNING,)) if "worker" in t.user_attrs]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


# --- planning: which worker sees which GPU --------------------------------------------------


def test_workers_spread_round_robin_over_gpus_and_pack_with_workers_per_gpu():
    assert plan_workers(3, None, []) == [WorkerPlan(0), WorkerPlan(1), WorkerPlan(2)]
    assert [p.gpu for p in plan_workers(3, None, ["0", "1"])] == ["0", "1", "0"]
    assert [p.gpu for p in plan_workers(None, 2, ["4", "5"])] == ["4", "4", "5", "5"]
    assert (
        WorkerTask(None, None, worker_id=1, n_workers=4, gpu="5").environment().items()  # type: ignore[arg-type]
        >= {"CUDA_VISIBLE_DEVICES": "5", "WORKBENCH_WORKER_ID": "1", "WORKBENCH_WORKERS": "4"}.items()
    )


@pytest.mark.parametrize(
    "workers, per_gpu, gpus, message",
    [
        (0, None, [], "--workers 0: must be 1 or more"),
        (None, 2, [], "no GPU is visible"),
        (5, 2, ["0", "1"], "at most 4 workers"),
    ],
)
def test_impossible_worker_plans_name_the_flag(workers, per_gpu, gpus, message):
    with pytest.raises(WorkbenchError, match=message):
        plan_workers(workers, per_gpu, gpus)


@pytest.mark.slow
def test_workers_per_gpu_without_gpus_is_a_one_line_usage_error(write_study):
    result = cli("study", "run", str(write_study()), "--workers-per-gpu", "2", CUDA_VISIBLE_DEVICES="")
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == "error: --workers-per-gpu: no GPU is visible; use --workers N to run N workers on the CPU"
    )


# --- end to end -----------------------------------------------------------------------------


@pytest.mark.slow
def test_three_workers_share_one_study_on_postgres_and_an_mlflow_server(write_study, postgres_url, mlflow_server):
    path = write_study(study={"n_trials": 9}, training={"num_train_epochs": 1})
    server = mlflow_server.url
    result = cli(
        "--tracking-uri", server, "study", "run", str(path), "--workers", "3", "--storage", postgres_url, timeout=400
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert {line[:4] for line in result.stdout.splitlines() if line.startswith("[w")} == {"[w0]", "[w1]", "[w2]"}

    trials = load(postgres_url).get_trials()
    assert sorted(t.number for t in trials) == list(range(9))
    not_complete = [
        (t.number, t.state.name, t.user_attrs.get("fail_reason")) for t in trials if t.state.name != "COMPLETE"
    ]
    assert not not_complete, result.stdout[-3000:]
    client = tracking_client(server)
    runs = trial_runs(client)
    assert sorted(int(r.data.tags["optuna.trial.number"]) for r in runs) == list(range(9))  # 9 runs, no duplicates
    parents = {r.data.tags["mlflow.parentRunId"] for r in runs}
    assert len(parents) == 1  # one parent run, though four processes looked for it
    by_run = {t.user_attrs["mlflow_run_id"]: t for t in trials}
    for run in runs:
        assert run.info.status == "FINISHED"
        trial = by_run[run.info.run_id]
        history = client.get_metric_history(run.info.run_id, "eval_accuracy")
        assert len(history) == 1  # one epoch, one evaluation: nothing lost, nothing twice
        assert run.data.metrics["best_eval_accuracy"] == pytest.approx(trial.value)
    versions = client.search_model_versions("name = 'tiny-classifier'")
    assert len(versions) == 1  # registered once, by the launcher, after all workers exited
    best = max(trials, key=lambda t: (t.value, -t.number))
    assert versions[0].run_id == best.user_attrs["mlflow_run_id"]
    assert client.get_model_version_by_alias("tiny-classifier", "challenger").version == versions[0].version


@pytest.mark.slow
def test_four_local_workers_on_the_default_stores_meet_the_target_without_lock_errors(write_study):
    import optuna

    path = write_study(study={"n_trials": 8}, training={"num_train_epochs": 1})
    Path("mlruns").mkdir()
    # a configuration queued by hand (Optuna's enqueue_trial) is one of the 8, run by some worker
    optuna.create_study(storage="sqlite:///mlruns/optuna.db", study_name="tiny", direction="maximize").enqueue_trial(
        {"training.learning_rate": 0.002}
    )
    result = cli("study", "run", str(path), "--workers", "4", "--no-register", timeout=400)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "locked" not in output.lower()
    assert "study tiny: 0/8 trials done (1 queued); 4 workers (w0, w1, w2, w3)" in result.stdout
    trials = load().get_trials()
    assert len(trials) == 8 and {t.state.name for t in trials} == {"COMPLETE"}
    assert trials[0].params == {"training.learning_rate": 0.002}
    assert len({tuple(t.params.items()) for t in trials}) == 8  # seeded samplers differ per worker
    runs = trial_runs(tracking_client())
    assert sorted(int(r.data.tags["optuna.trial.number"]) for r in runs) == list(range(8))
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert "study tiny: ran 8 trials; in total 8 complete" in result.stdout


@pytest.mark.slow
def test_a_worker_killed_mid_trial_is_failed_closed_and_retried(write_study):
    # 200 epochs, no early stopping: the victim is still training a second after it starts, however fast
    # trials get (30 epochs of 240 rows ended within the second once workers were forked ready to train)
    path = write_study(study={"n_trials": 3}, training={"num_train_epochs": 200}, early_stopping=None)
    launcher = subprocess.Popen(
        [sys.executable, "-m", "workbench", "study", "run", str(path), "--workers", "2", "--no-register"],
        env=env(**SHORT_HEARTBEAT),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    victim = wait_for(running_trials, 180, "a running trial")[0]
    time.sleep(1.0)  # well inside its training
    os.kill(int(victim.user_attrs["worker"].rsplit(":", 1)[1]), signal.SIGKILL)
    output, _ = launcher.communicate(timeout=300)
    assert launcher.returncode == 0, output
    assert "exited with code -9 (killed)" in output

    trials = {t.number: t for t in load().get_trials()}
    killed = trials[victim.number]
    assert killed.state.name == "FAIL" and "fail_reason" not in killed.user_attrs
    retries = [t for t in trials.values() if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retries) == 1 and retries[0].state.name == "COMPLETE" and retries[0].params == killed.params
    assert sum(t.state.name == "COMPLETE" for t in trials.values()) == 3  # the target, reached anyway
    runs = {r.info.run_id: r for r in trial_runs(tracking_client())}
    assert runs[killed.user_attrs["mlflow_run_id"]].info.status == "FAILED"
    assert "RUNNING" not in {r.info.status for r in runs.values()}


@pytest.mark.slow
def test_ctrl_c_stops_every_worker_cleanly_and_the_next_run_resumes(write_study):
    path = write_study(study={"n_trials": 2}, training={"num_train_epochs": 200}, early_stopping=None)
    launcher = subprocess.Popen(
        [sys.executable, "-m", "workbench", "study", "run", str(path), "--workers", "2", "--no-register"],
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    started = wait_for(lambda: (lambda r: r if len(r) == 2 else None)(running_trials()), 180, "two running trials")
    pids = [int(t.user_attrs["worker"].rsplit(":", 1)[1]) for t in started]
    launcher.send_signal(signal.SIGINT)  # to the launcher only: it must stop its workers
    output, _ = launcher.communicate(timeout=200)
    assert launcher.returncode == 130, output
    assert not any(alive(pid) for pid in pids)
    trials = load().get_trials()
    assert {t.state.name for t in trials} == {"FAIL"} and all(t.user_attrs.get("interrupted") for t in trials)
    assert {r.info.status for r in trial_runs(tracking_client())} == {"KILLED"}

    resumed = cli("study", "run", str(path), "--no-register", "--set", "training.num_train_epochs=1")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "study tiny: 0/2 trials done" in resumed.stdout  # interrupted trials do not count
    assert sum(t.state.name == "COMPLETE" for t in load().get_trials()) == 2


def test_a_worker_gets_one_picklable_task_and_reports_trials_as_events():
    """The launcher and its workers talk through typed objects, not through the text printed for people."""
    import multiprocessing
    import pickle

    from workbench.config.study_file import validate_study
    from workbench.study.forked import EventProgress, TrialEvent
    from workbench.study.session import RunOptions

    spec = validate_study({"study": {"name": "typed", "n_trials": 3}, "data": {"synthetic": {"n_examples": 100}}})
    task = WorkerTask(spec, RunOptions(storage="postgresql://u:secret@db/optuna", launched=True), 1, 2)
    assert pickle.loads(pickle.dumps(task)) == task

    read, write = multiprocessing.Pipe(duplex=False)
    progress = EventProgress(write, worker=1)
    progress.trial_started(5)
    progress.evaluation(5, 1, 0.75)
    progress.trial_finished(5, "COMPLETE", "  trial   5 COMPLETE eval_f1=0.7500  (lr=0.001) 1.0s")
    assert [read.recv() for _ in range(3)] == [
        TrialEvent(1, "started", 5),
        TrialEvent(1, "evaluated", 5, index=1, value=0.75),
        TrialEvent(1, "ended", 5, state="COMPLETE", summary="trial   5 COMPLETE eval_f1=0.7500  (lr=0.001) 1.0s"),
    ]
