"""Workers count a study's trials and ask for one under a lock that covers every worker of the storage."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from pathlib import Path

import pytest

from workbench.config.study_file import StudySpec, validate_study
from workbench.core.progress import StudyProgress
from workbench.stores.ask_lock import FileAskLock, JournalAskLock, PostgresAskLock, ask_lock_for
from workbench.stores.storage import build_storage, count_trials, open_study
from workbench.study.session import OpenedStores, RunOptions, StudySession


def held_until_released(lock, other) -> bool:
    """True when `other` (the same lock, another holder) waits while `lock` is held and gets it once released."""
    got = threading.Event()
    lock.acquire()
    waiter = threading.Thread(target=lambda: (other.acquire(), got.set()), daemon=True)
    waiter.start()
    waited = not got.wait(0.3)
    lock.release()
    acquired = got.wait(10)
    other.release()
    return waited and acquired


def test_the_lock_follows_the_storage(tmp_path):
    assert isinstance(ask_lock_for("postgresql://u:p@db/optuna", "s", tmp_path), PostgresAskLock)
    assert isinstance(ask_lock_for(f"journal:{tmp_path}/study.log", "s", tmp_path), JournalAskLock)
    assert isinstance(ask_lock_for(f"sqlite:///{tmp_path}/optuna.db", "s", tmp_path), FileAskLock)


def test_a_file_lock_and_a_journal_lock_hold_off_a_second_worker(tmp_path):
    assert held_until_released(FileAskLock(tmp_path / "a.lock"), FileAskLock(tmp_path / "a.lock"))
    assert held_until_released(JournalAskLock(tmp_path / "j.log"), JournalAskLock(tmp_path / "j.log"))


def _race(url: str, name: str, home: Path, start: float) -> None:
    """One "machine": its own working directory (so its own mlruns/trials/), the shared storage."""
    os.chdir(home)
    spec = validate_study({"study": {"name": name, "n_trials": 2}, "data": {"synthetic": {"n_examples": 50}}})
    study = open_study(spec, url)
    stores = OpenedStores(study, None, url, "", count_trials(study), target=2)  # type: ignore[arg-type]
    options = RunOptions(storage=url, workdir=Path("mlruns/trials"))
    session = StudySession(spec, options, StudyProgress(lambda line: None), None, stores)  # type: ignore[arg-type]
    time.sleep(max(0.0, start - time.time()))  # both machines start counting at once
    while session._wait_for_work():  # holds the lock when True
        trial = study.ask()
        session.ask_lock.release()  # the trial exists: the other machine's count includes it
        study.tell(trial, 1.0)


@pytest.mark.slow
def test_two_machines_on_postgresql_never_run_a_trial_past_the_target(postgres_url, tmp_path):
    import optuna

    context = multiprocessing.get_context("fork")
    for repetition in range(20):
        name, start = f"race-{repetition}", time.time() + 0.5
        homes = [tmp_path / f"machine-{m}-{repetition}" for m in (0, 1)]
        machines = []
        for home in homes:
            home.mkdir()
            machines.append(context.Process(target=_race, args=(postgres_url, name, home, start)))
        for machine in machines:
            machine.start()
        for machine in machines:
            machine.join(120)
        assert [m.exitcode for m in machines] == [0, 0]
        trials = optuna.load_study(study_name=name, storage=build_storage(postgres_url)).get_trials()
        assert len(trials) == 2, f"repetition {repetition}: {len(trials)} trials for a target of 2"


@pytest.mark.slow
def test_two_machines_running_the_study_command_on_postgresql_and_a_server_overshoot_by_nothing(
    write_study, postgres_url, mlflow_server, tmp_path
):
    """The real command on two "machines" (own working directories, so own mlruns/trials/) at once, 20 times."""
    import subprocess
    import sys

    import optuna

    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "WORKBENCH_STORAGE")}
    env["PYTHONPATH"] = str(root)
    path = write_study(study={"n_trials": 2}, training={"num_train_epochs": 1})
    for repetition in range(20):
        name = f"race-e2e-{repetition}"
        machines = []
        for m in (0, 1):
            home = tmp_path / f"machine-{m}-{repetition}"
            home.mkdir()
            command = [sys.executable, "-m", "workbench", "--tracking-uri", mlflow_server.url, "--storage"]
            command += [postgres_url, "study", "run", str(path), "--set", f"study.name={name}", "--no-register"]
            machines.append(
                subprocess.Popen(
                    command, cwd=home, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
                )
            )
        printed = [machine.communicate(timeout=600)[0] for machine in machines]
        assert [machine.returncode for machine in machines] == [0, 0], "\n".join(p[-2000:] for p in printed)
        trials = optuna.load_study(study_name=name, storage=build_storage(postgres_url)).get_trials()
        assert len(trials) == 2, f"repetition {repetition}: {len(trials)} trials for a target of 2"


def test_machines_opening_one_study_at_once_share_one_parent_run_with_its_params(tmp_path):
    """Without the ask lock around opening: two parent runs, or a params key two machines insert at once
    (MLflow's store reads a run's params, then inserts them)."""
    from workbench.study.session import _open_stores

    storage, uri = f"sqlite:///{tmp_path}/optuna.db", f"sqlite:///{tmp_path}/mlflow.db"
    failures: list[str] = []
    opened: list[OpenedStores] = []

    def spec(name: str) -> StudySpec:
        return validate_study({"study": {"name": name}, "data": {"synthetic": {"n_examples": 50}}})

    study = spec("race").study
    expected = {"metric": study.metric, "direction": study.direction, "sampler": study.sampler.type}
    expected["pruner"] = study.pruner.type

    def start(name: str) -> None:
        options = RunOptions(workdir=tmp_path / "trials")
        try:
            opened.append(_open_stores(spec(name), options, storage, uri, lambda line: None))
        except Exception as e:  # the assertion below names it
            failures.append(f"{name}: {e}")

    for repetition in range(10):
        opened.clear()
        machines = [threading.Thread(target=start, args=(f"race-{repetition}",)) for _ in range(4)]
        for machine in machines:
            machine.start()
        for machine in machines:
            machine.join(120)
        assert not failures, failures[0]
        assert len({stores.tracking.parent_run_id for stores in opened}) == 1, f"repetition {repetition}"
        tracking = opened[0].tracking
        runs = tracking.client.search_runs([tracking.experiment_id])
        assert [r.info.run_id for r in runs] == [tracking.parent_run_id]  # no second parent run left behind
        assert {k: runs[0].data.params[k] for k in expected} == expected
