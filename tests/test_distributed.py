"""Trials in DDP under a real `torchrun` on CPU (gloo): the same study command, no hang."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from collections import defaultdict
from pathlib import Path

import pytest
import yaml
from helpers import tracking_client, trial_runs

REPO = Path(__file__).resolve().parent.parent
HANG_S = 420  # the study test uses ~70 s of CPU (2.5-3 min on a shared, loaded 2-core box); past this it hung
PARAMS_LINE = re.compile(r"rank (\d+) trial (\d+) params (\{.*\})$", re.M)
EVAL_LINE = re.compile(r"rank (\d+) trial (\d+) evaluation (\d+): eval_accuracy=(\S+)( -> pruned)?$", re.M)
END_LINE = re.compile(r"rank (\d+) trial (\d+) (COMPLETE|PRUNED|FAIL)\b(.*)$", re.M)


def torchrun(args: list[str], cwd: Path, env_extra: dict[str, str] | None = None, timeout: float = HANG_S):
    """`torchrun --standalone --nproc_per_node=2 ARGS`; kills the whole process group on a hang."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", **(env_extra or {}))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]
    proc = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        import psutil  # torchrun starts each rank in a session of its own: kill them one by one

        for child in psutil.Process(proc.pid).children(recursive=True):
            child.kill()
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"torchrun hung for {timeout}s\n--- stdout\n{out[-3000:]}\n--- stderr\n{err[-3000:]}")
    return proc.returncode, out, err


@pytest.mark.slow
def test_study_under_torchrun_trains_every_trial_on_both_ranks(write_study, workdir):
    # grid over 4 points, 3 trials (seed 4 draws one of each outcome): num_heads 3 does not
    # divide hidden_size 16 (fails while building the model); 2 epochs reach the threshold
    # pruner's second evaluation, where an untrained model (lr 1e-6) is below 0.99 (pruned)
    path = write_study(
        study={
            "sampler": {"type": "grid", "seed": 4},
            "pruner": {"type": "threshold", "lower": 0.99, "n_warmup_steps": 2},
        },
        training={"learning_rate": 1.0e-6},
    )
    study = yaml.safe_load(path.read_text())
    study["search_space"] = {"model.num_heads": {"choices": [2, 3]}, "training.num_train_epochs": {"choices": [1, 2]}}
    path.write_text(yaml.safe_dump(study, sort_keys=False))

    rc, out, err = torchrun(["-m", "workbench", "--debug", "study", "run", str(path)], cwd=workdir)
    assert rc == 0, f"exit {rc}\n--- stdout\n{out[-3000:]}\n--- stderr\n{err[-5000:]}"

    import optuna

    trials = optuna.load_study(study_name="tiny", storage="sqlite:///mlruns/optuna.db").get_trials()
    assert len(trials) == 3

    def expected(params: dict) -> str:
        if params["model.num_heads"] == 3:
            return "FAIL"
        return "PRUNED" if params["training.num_train_epochs"] == 2 else "COMPLETE"

    states = {t.number: t.state.name for t in trials}
    assert states == {t.number: expected(t.params) for t in trials}
    assert sorted(states.values()) == ["COMPLETE", "FAIL", "PRUNED"]
    failed = next(t for t in trials if t.state.name == "FAIL")
    assert "divisible by num_heads (3)" in failed.user_attrs["fail_reason"]

    client = tracking_client()
    runs = trial_runs(client)
    assert len(runs) == 3, "one nested run per trial, not one per rank"
    status = {int(r.data.tags["optuna.trial.number"]): r.info.status for r in runs}
    assert status == {n: {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAIL": "FAILED"}[s] for n, s in states.items()}
    versions = client.search_model_versions("name='tiny-classifier'")
    assert len(versions) == 1 and out.count("registered tiny-classifier version 1") == 1

    # each rank says what it trained: the same parameters (Optuna's), the same evaluations, the same end
    params, evals, ends = defaultdict(dict), defaultdict(lambda: defaultdict(list)), defaultdict(dict)
    for rank, number, text in PARAMS_LINE.findall(err):
        params[int(number)][int(rank)] = yaml.safe_load(text)
    for rank, number, _, value, pruned in EVAL_LINE.findall(err):
        evals[int(number)][int(rank)].append((float(value), bool(pruned)))
    for rank, number, state, _ in END_LINE.findall(err):
        ends[int(number)][int(rank)] = state
    for t in trials:
        assert params[t.number] == {0: t.params, 1: t.params}, (
            f"trial {t.number}: ranks trained different configurations"
        )
        assert ends[t.number] == {0: t.state.name, 1: t.state.name}
        assert evals[t.number][0] == evals[t.number][1], f"trial {t.number}: ranks saw different evaluations"
    pruned = next(t for t in trials if t.state.name == "PRUNED")
    assert [p for _, p in evals[pruned.number][1]] == [False, True], "both ranks stop at the second evaluation"
    assert len(evals[next(t for t in trials if t.state.name == "COMPLETE").number][0]) == 1


SYNC_SCRIPT = textwrap.dedent(
    """
    import torch, torch.distributed as dist
    from workbench.core import distributed

    distributed.init_distributed()
    def build():
        if distributed.rank() == 1:
            raise ValueError("no data on this node")
    try:
        distributed.together(build)
    except (ValueError, distributed.SharedFailure) as e:  # its own error on rank 1, shared on rank 0
        print(f"rank {distributed.rank()} agreed: {distributed.failure_reason(e)}", flush=True)
    def log_to_mlflow():  # rank 0 only, like every Optuna and MLflow call
        raise ConnectionError("tracking server unreachable")
    try:
        distributed.on_main(log_to_mlflow)
    except (ConnectionError, distributed.SharedFailure) as e:  # its own error on rank 0, shared on rank 1
        print(f"rank {distributed.rank()} shared: {distributed.failure_reason(e)}", flush=True)
    distributed.together(lambda: None)  # the ranks go on in step
    def step():  # rank 1 fails inside a step; rank 0 waits for its gradients
        if distributed.rank() == 1:
            raise RuntimeError("CUDA out of memory")
        dist.all_reduce(torch.ones(4))
    distributed.together(step)
    print("never reached", flush=True)
    """
)


@pytest.mark.slow
def test_a_failure_on_one_rank_reaches_every_rank_or_stops_the_job(tmp_path):
    script = tmp_path / "sync.py"
    script.write_text(SYNC_SCRIPT)
    rc, out, err = torchrun([str(script)], cwd=tmp_path, env_extra={"WORKBENCH_SYNC_TIMEOUT_S": "5"}, timeout=120)
    # before training: the failure on rank 1 reaches rank 0 with its reason, and both go on
    assert "rank 0 agreed: rank 1: ValueError: no data on this node" in out
    assert "rank 1 agreed: ValueError: no data on this node" in out
    # rank 0's Optuna/MLflow failure reaches the other ranks instead of leaving them waiting
    assert "rank 0 shared: ConnectionError: tracking server unreachable" in out
    assert "rank 1 shared: ConnectionError: tracking server unreachable" in out
    # inside a step: rank 0 can never learn of it, so rank 1 stops the job instead of leaving it waiting
    assert rc != 0 and "never reached" not in out
    assert "rank 1: RuntimeError: CUDA out of memory; the ranks can no longer train in step" in err


STEP_FAULT_SCRIPT = textwrap.dedent(
    """
    import functools, sys, time
    from workbench import cli
    from workbench.core import distributed
    from workbench.model.modeling import WorkbenchForSequenceClassification

    forward, calls = WorkbenchForSequenceClassification.forward, []
    @functools.wraps(forward)  # the Trainer keeps the columns forward's signature names
    def failing_forward(self, *args, **kwargs):  # rank 1 only, in its third training step
        if self.training and distributed.rank() == 1:
            calls.append(1)
            if len(calls) == 3:
                print(f"fault at {time.time()}", file=sys.stderr, flush=True)
                raise RuntimeError("injected fault in a training step")
        return forward(self, *args, **kwargs)
    WorkbenchForSequenceClassification.forward = failing_forward
    sys.argv = ["workbench", "study", "run", sys.argv[1]]
    cli.run()  # what `torchrun -m workbench study run FILE` calls
    """
)


@pytest.mark.slow
def test_a_rank_failing_inside_a_training_step_ends_the_job_within_seconds_with_its_reason(write_study, workdir):
    import time

    script = workdir / "step_fault.py"
    script.write_text(STEP_FAULT_SCRIPT)
    path = write_study(training={"num_train_epochs": 3})
    rc, out, err = torchrun([str(script), str(path)], cwd=workdir, timeout=240)  # WORKBENCH_SYNC_TIMEOUT_S stays 300 s
    ended = time.time()
    assert rc != 0, out[-3000:] + err[-3000:]
    assert re.search(r"rank\s*: 1 \(local_rank: 1\)\s*exitcode\s*: 1 ", err), err[
        -3000:
    ]  # rank 1 stopped the job, with our exit code
    assert "rank 1: RuntimeError: injected fault in a training step; the ranks can no longer train in step" in err
    fault_at = float(re.search(r"fault at (\S+)", err).group(1))
    assert ended - fault_at < 30, f"the job took {ended - fault_at:.0f} s to stop\n{err[-3000:]}"


@pytest.mark.slow
def test_sigterm_to_a_torchrun_job_saves_the_trial_once_and_the_requeued_job_resumes_it(write_study, workdir):
    """What a preempted multi-GPU array task sees: SIGTERM to torchrun (its agent forwards it to every rank)."""
    import signal
    import time

    import optuna
    from helpers import evaluations_of_running_trial

    epochs = 20  # no early stopping: the trial is still training when the signal lands
    path = write_study(
        study={"name": "ddp-preempt", "n_trials": 1},
        training={"num_train_epochs": epochs},
        # 30 steps an epoch on each rank: the signal, sent after evaluation 2, lands mid-epoch 3 (a preemption
        # at an epoch's last step skips that epoch's evaluation and the resumed run starts the next epoch)
        data={"synthetic": {"n_examples": 3000}},
        early_stopping=None,
    )
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    command += ["-m", "workbench", "study", "run", str(path)]
    log = workdir / "first.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(command, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + HANG_S
        while evaluations_of_running_trial(workdir / "mlruns" / "optuna.db", 0) < 2:
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)  # the ranks save, queue the retry and exit within torchrun's grace period
    finally:
        if proc.poll() is None:
            proc.kill()
    printed = log.read_text()
    assert "preempted (SIGTERM): trial 0 saved at step" in printed, printed[-3000:]
    assert "Traceback" not in printed.split("preempted (SIGTERM)")[0], printed[-3000:]

    storage = f"sqlite:///{workdir}/mlruns/optuna.db"
    first = optuna.load_study(study_name="ddp-preempt", storage=storage).trials[0]
    assert first.state.name == "FAIL" and first.user_attrs["preempted"].startswith("preempted at step ")
    checkpoint = Path(optuna.load_study(study_name="ddp-preempt", storage=storage).trials[1].user_attrs["resume_from"])
    assert (checkpoint / "trainer_state.json").is_file()  # saved once, by rank 0, at the step every rank agreed on

    rc, out, err = torchrun(["-m", "workbench", "study", "run", str(path)], cwd=workdir)  # the requeued job
    assert rc == 0, f"exit {rc}\n--- stdout\n{out[-3000:]}\n--- stderr\n{err[-3000:]}"
    trials = optuna.load_study(study_name="ddp-preempt", storage=storage).trials
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE"]
    retry = trials[1]
    assert retry.user_attrs["retry_of"] == 0 and retry.params == first.params
    assert sorted(first.intermediate_values) + sorted(retry.intermediate_values) == list(range(1, epochs + 1))
