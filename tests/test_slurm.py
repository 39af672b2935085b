"""`workbench cluster slurm`: the scripts it writes, and a study run as a real Slurm job array
(`.ci/slurm.sh` starts a single-node Slurm and sets WORKBENCH_TEST_SLURM=1)."""

from __future__ import annotations

import os
import stat
import subprocess
import time
from pathlib import Path

import pytest
from helpers import tracking_client

from workbench.cli.commands import main
from workbench.cluster.slurm import SlurmSpec, render_workers_script, write_slurm_job
from workbench.cluster.stores import ClusterStores

ROOT = Path(__file__).resolve().parents[1]
SECRET_STORES = ClusterStores("postgresql://optuna:s3cret@db:5432/optuna", "http://mlflow:s3cret@trackhost:5000")
needs_slurm = pytest.mark.skipif(
    os.environ.get("WORKBENCH_TEST_SLURM") != "1",
    reason="no Slurm here: `source .ci/slurm.sh` starts one (as root) and sets WORKBENCH_TEST_SLURM=1",
)


def slurm_spec(tmp_path: Path, **changes) -> SlurmSpec:
    fields = dict(study_file=tmp_path / "study.yaml", study_name="tiny", workers=3, folder=tmp_path / "jobs")
    return SlurmSpec(**{**fields, "workdir": tmp_path, **changes})


def test_the_scripts_run_an_array_of_workers_and_keep_the_passwords_in_a_private_file(tmp_path):
    workers, conclude = write_slurm_job(slurm_spec(tmp_path, grace_s=90), SECRET_STORES)
    text = workers.read_text()
    assert "#SBATCH --array=0-2" in text
    assert "#SBATCH --signal=B:TERM@90" in text and "#SBATCH --requeue" in text
    assert "study run" in text and "--no-register" in text and "study conclude" in conclude.read_text()
    assert "srun" not in text  # one process per worker: no torchrun
    env_file = tmp_path / "jobs" / "stores.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert "s3cret" in env_file.read_text()
    for script in (workers, conclude):
        assert "s3cret" not in script.read_text() and "://" not in script.read_text()
        subprocess.run(["bash", "-n", str(script)], check=True)  # valid shell


def test_a_worker_on_several_gpus_or_nodes_runs_under_srun_torchrun(tmp_path):
    text = render_workers_script(slurm_spec(tmp_path, gpus_per_worker=8, nodes_per_worker=2))
    assert "#SBATCH --nodes=2" in text and "#SBATCH --gpus-per-node=4" in text
    assert "srun" in text and "torch.distributed.run --nnodes=2 --nproc-per-node=4" in text


def test_the_command_writes_the_jobs_and_says_how_to_submit_them(workdir, write_study, capsys):
    study = write_study()
    assert main(["cluster", "slurm", str(study), "--workers", "2", "--sbatch=--time=01:00:00"]) == 0
    out = capsys.readouterr().out
    folder = workdir / "mlruns" / "cluster" / "tiny" / "slurm"
    assert "afterany" in out and str(folder / "workers.sbatch") in out
    assert "#SBATCH --time=01:00:00" in (folder / "conclude.sbatch").read_text()
    assert stat.S_IMODE((folder / "stores.env").stat().st_mode) == 0o600


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--workers", "0"], "--workers 0: must be 1 or more"),
        (["--workers", "2", "--gpus-per-worker", "3", "--nodes-per-worker", "2"], "must be a multiple"),
    ],
)
def test_bad_numbers_are_refused_naming_the_flag(workdir, write_study, capsys, flags, message):
    assert main(["cluster", "slurm", str(write_study()), *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (workdir / "mlruns" / "cluster").exists()


@needs_slurm
def test_a_job_slurm_refuses_is_one_line_naming_the_script_and_slurms_reason(workdir, write_study, capsys):
    assert (
        main(["cluster", "slurm", str(write_study()), "--workers", "1", "--sbatch=--partition=nope", "--submit"]) == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("error: sbatch ") and "workers.sbatch: refused:" in err and "partition" in err.lower()
    assert err.count("\n") == 1


def job_state(job: str) -> str:
    """JobState of a job (or the first task of an array) as `scontrol` reports it (kept MinJobAge seconds)."""
    out = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True).stdout
    states = [w.split("=", 1)[1] for w in out.split() if w.startswith("JobState=")]
    return states[0] if states else "GONE"


def wait_for_job(job: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = job_state(job)
        if state not in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED"):
            return state
        time.sleep(2)
    subprocess.run(["scancel", job])
    raise AssertionError(f"job {job} still {job_state(job)} after {timeout} s")


@pytest.mark.slow
@needs_slurm
def test_a_study_as_a_slurm_array_of_three_workers_then_one_conclude_job(
    workdir, write_study, capsys, monkeypatch, postgres_url
):
    import optuna

    from workbench.stores.storage import build_storage

    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the jobs inherit this environment: they run the tree under test
    study = write_study(training={"num_train_epochs": 1})
    argv = ["--storage", postgres_url, "cluster", "slurm", str(study), "--workers", "3", "--submit"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    words = out.split("submitted job array ")[1].split()
    array, conclude = words[0], words[words.index("job") + 1]
    logs = workdir / "mlruns" / "cluster" / "tiny" / "slurm" / "logs"
    state = wait_for_job(conclude, timeout=600)
    assert state == "COMPLETED", "\n".join(f"{p.name}: {p.read_text()[-800:]}" for p in sorted(logs.glob("*")))
    assert len(list(logs.glob(f"worker-{array}_*.out"))) == 3
    trials = optuna.load_study(study_name="tiny", storage=build_storage(postgres_url)).get_trials()
    assert len(trials) == 3 and {t.state.name for t in trials} == {"COMPLETE"}
    # shared stores: each new best's model went to the tracking store, the workers' folders were scratch
    assert list((workdir / "mlruns" / "trials").glob("*/trial-*")) == []
    client = tracking_client()
    versions = client.search_model_versions("name = 'tiny-classifier'")
    assert len(versions) == 1  # the workers ran with --no-register: the conclude job registered it
    best = max(trials, key=lambda t: (t.value, -t.number))
    assert versions[0].run_id == best.user_attrs["mlflow_run_id"]
    experiment = client.get_experiment_by_name("tiny")
    assert [
        r.info.run_name for r in client.search_runs([experiment.experiment_id], "attributes.status = 'RUNNING'")
    ] == []


def running_trial(db: Path) -> bool:
    """Whether a RUNNING trial has reported an evaluation (mid-trial, with steps done), read without writing
    (Optuna's own load would create tables)."""
    import contextlib
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
            query = "select 1 from trials t join trial_intermediate_values v using (trial_id) where t.state = 'RUNNING'"
            return con.execute(query).fetchone() is not None
    except sqlite3.OperationalError:  # not created yet
        return False


@pytest.mark.slow
@needs_slurm
def test_an_array_task_sent_sigterm_mid_trial_is_requeued_and_resumes_from_its_checkpoint(
    workdir, write_study, capsys, monkeypatch
):
    import optuna

    from workbench.core.keys import PREEMPTED_ATTR, RESUME_ATTR

    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    study = write_study(  # a trial of 20 epochs (a few seconds each): the signal lands mid-trial on an idle machine
        study={"n_trials": 2},
        data={"synthetic": {"n_examples": 1600, "seed": 1}},
        training={"num_train_epochs": 20, "per_device_train_batch_size": 8},
        early_stopping=None,
    )
    assert main(["cluster", "slurm", str(study), "--workers", "1", "--grace", "30", "--submit"]) == 0
    array = capsys.readouterr().out.split("submitted job array ")[1].split()[0]
    task = f"{array}_0"
    deadline = time.monotonic() + 300
    while not running_trial(workdir / "mlruns" / "optuna.db"):
        assert time.monotonic() < deadline and job_state(task) in ("PENDING", "RUNNING"), job_state(task)
        time.sleep(1)
    # `scancel --signal=TERM` alone does not reach the batch shell; --batch does (what --signal=B: sends)
    subprocess.run(["scancel", "--batch", "--signal=TERM", task], check=True)
    assert wait_for_job(task, timeout=600) == "COMPLETED"
    show = subprocess.run(["scontrol", "show", "job", task], capture_output=True, text=True).stdout
    assert "Restarts=1" in show
    log = (workdir / "mlruns" / "cluster" / "tiny" / "slurm" / "logs" / f"worker-{array}_0.out").read_text()
    assert "preempted" in log and "requeued" in log
    trials = optuna.load_study(study_name="tiny", storage="sqlite:///mlruns/optuna.db").get_trials()
    preempted = [t for t in trials if PREEMPTED_ATTR in t.user_attrs]
    resumed = [t for t in trials if RESUME_ATTR in t.user_attrs]
    assert len(preempted) == 1 and len(resumed) == 1 and resumed[0].state.name == "COMPLETE"
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(complete) == 2  # exactly n_trials: the preempted one is not counted
    assert len({t.params["training.learning_rate"] for t in complete}) == 2  # the requeued task sampled anew
