"""Faults while a study runs: a failing trial fails alone with its reason; store faults stop the study cleanly."""

from __future__ import annotations

import functools
import os
import shutil
import socket
import subprocess
import sys
import time
import weakref

import pytest
import yaml
from helpers import TINY, merge, tracking_client
from stores import refused, snapshot

from workbench.cli.commands import main

# Tests on the seeded stores are marked slow: the `seeded` fixture trains the tiny study (once per session).


def grid_study(workdir, space: dict, **changes):
    """A tiny study whose trials take each value of `space` in turn (grid sampler), nothing registered."""
    study = merge(
        TINY,
        {"study": {"n_trials": len(next(iter(space.values()))["choices"]), "sampler": {"type": "grid"}}, **changes},
    )
    study.update(search_space=space, registry={})
    path = workdir / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


def trials_by(param: str):
    import optuna

    study = optuna.load_study(study_name="tiny", storage="sqlite:///mlruns/optuna.db")
    return {t.params[param]: t for t in study.trials}


def mlflow_run(trial):
    """The MLflow run of `trial`, in the store `study run` used here."""
    return tracking_client().get_run(trial.user_attrs["mlflow_run_id"])


@pytest.mark.slow
def test_nan_loss_fails_the_trial_alone(workdir, capsys):
    path = grid_study(workdir, {"training.learning_rate": {"choices": [3.0e-3, 1.0e6]}})
    assert main(["study", "run", str(path)]) == 0
    trials = trials_by("training.learning_rate")
    assert trials[3.0e-3].state.name == "COMPLETE"
    nan = trials[1.0e6]
    assert nan.state.name == "FAIL" and "loss is nan" in nan.user_attrs["fail_reason"], nan.user_attrs
    run = mlflow_run(nan)
    assert run.info.status == "FAILED" and "loss is nan" in run.data.tags["mlflow.note.content"]
    assert "in total 1 complete, 1 fail" in capsys.readouterr().out


@pytest.mark.parametrize(
    "fault, reason",
    [
        (RuntimeError("injected fault in forward"), "RuntimeError: injected fault in forward"),
        (MemoryError(), "out of memory: MemoryError"),
        (None, "out of memory: OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 GiB"),
    ],
)
@pytest.mark.slow
def test_fault_in_model_code_fails_the_trial_alone_and_memory_is_released(fault, reason, workdir, monkeypatch, capsys):
    """Fault injection into our own model class (in-process), for trials with hidden_size 32."""
    import torch

    from workbench.model.modeling import WorkbenchForSequenceClassification as Model

    fault = fault or torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
    models, alive_at_start = [], []
    forward, init = Model.forward, Model.__init__

    @functools.wraps(forward)  # the Trainer reads forward's signature to pick the input columns
    def faulty_forward(self, *args, **kwargs):
        if self.config.hidden_size == 32:
            raise fault
        return forward(self, *args, **kwargs)

    def recording_init(self, config):
        alive_at_start.append(sum(ref() is not None for ref in models))  # earlier trials' models still alive
        init(self, config)
        models.append(weakref.ref(self))

    monkeypatch.setattr(Model, "forward", faulty_forward)
    monkeypatch.setattr(Model, "__init__", recording_init)
    path = grid_study(workdir, {"model.hidden_size": {"choices": [32, 16, 24]}})
    assert main(["study", "run", str(path)]) == 0
    trials = trials_by("model.hidden_size")
    assert {h: t.state.name for h, t in trials.items()} == {32: "FAIL", 16: "COMPLETE", 24: "COMPLETE"}
    assert trials[32].user_attrs["fail_reason"].startswith(reason), trials[32].user_attrs
    run = mlflow_run(trials[32])
    assert run.info.status == "FAILED" and run.data.tags["mlflow.note.content"].startswith(reason)
    assert alive_at_start == [0, 0, 0]  # each trial's model was freed before the next was built


@pytest.mark.slow
def test_unreachable_tracking_server_fails_fast_with_one_line(stores, write_study, workdir):
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = write_study()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("MLFLOW_HTTP_REQUEST_MAX_RETRIES", None)
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "workbench",
            "--tracking-uri",
            f"http://127.0.0.1:{port}",
            "study",
            "run",
            str(path),
            "--trials",
            "1",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=400,
    )
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith(f"error: --tracking-uri http://127.0.0.1:{port}: cannot reach the tracking store"), lines
    assert time.monotonic() - started < 300  # bounded retries (MLflow's defaults retry for minutes)
    assert snapshot(workdir) == stores  # no trial started in the Optuna store


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["study", "run", "study.yaml", "--storage", "optuna.db"], "--storage 'optuna.db': not a database URL"),
        (
            ["study", "run", "study.yaml", "--storage", "nosuchdb://x/y"],
            "--storage nosuchdb://x/y: cannot open the Optuna storage",
        ),
        (
            ["study", "run", "study.yaml", "--storage", "sqlite:///study.yaml/optuna.db"],
            "--storage sqlite:///study.yaml/optuna.db: cannot create ",
        ),
        (
            ["--tracking-uri", "nosuch://x", "study", "run", "study.yaml"],
            "--tracking-uri nosuch://x: cannot reach the tracking store",
        ),
    ],
)
@pytest.mark.slow
def test_malformed_store_urls(argv, expected, stores, write_study, workdir, capsys):
    write_study()
    assert expected in refused(capsys, argv)
    assert snapshot(workdir) == stores


def in_namespace(script: str, workdir) -> subprocess.CompletedProcess:
    """Run a shell script in a private mount namespace (real mounts, gone when it exits)."""
    if not shutil.which("unshare") or subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode:
        pytest.skip("needs unshare -rm (user + mount namespaces) to mount a read-only or full filesystem")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run(
        ["unshare", "-rm", "sh", "-ec", script], capture_output=True, text=True, env=env, cwd=workdir, timeout=500
    )


@pytest.mark.slow
def test_read_only_mlruns(stores, write_study, workdir):
    """mlruns/ bind-mounted read-only (chmod does not stop root; a read-only mount does)."""
    write_study()
    done = in_namespace(
        "mount --bind mlruns mlruns; mount -o remount,bind,ro mlruns; "
        f"{sys.executable} -m workbench study run study.yaml --trials 1",
        workdir,
    )
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "read-only" in lines[0] and "mlruns" in lines[0], lines
    assert snapshot(workdir) == stores


@pytest.mark.slow
def test_disk_full_during_a_trial_stops_the_study_cleanly(stores, write_study, workdir):
    """The trial checkpoints land on a 64 KiB tmpfs: the first save fills it."""
    write_study()
    (workdir / "mlruns/trials/tiny").mkdir(
        parents=True, exist_ok=True
    )  # the seeded copy may hold the best trial's model
    done = in_namespace(
        "mount -t tmpfs -o size=64k tmpfs mlruns/trials/tiny; "
        f"{sys.executable} -m workbench study run study.yaml --trials 2",
        workdir,
    )
    lines = [line for line in done.stderr.strip().splitlines() if not line.startswith("WARNING")]
    assert done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith("error: trial 2: disk full") and "run the same command to resume" in lines[0], lines
    after = snapshot(workdir)
    assert after["trial_states"] == stores["trial_states"] + [
        (2, "FAIL")
    ]  # the earlier trials untouched, no third trial
    import optuna

    failed = optuna.load_study(study_name="tiny", storage="sqlite:///mlruns/optuna.db").trials[2]
    assert failed.user_attrs["store_error"].startswith("disk full")  # not counted: it runs again on resume
    assert mlflow_run(failed).info.status == "FAILED"
    assert after["aliases"] == stores["aliases"]


@pytest.mark.slow
def test_registry_errors(stores, workdir, capsys):
    assert "nope: no registered model of that name" in refused(capsys, ["promote", "nope"])
    assert "no version or alias 'rival'" in refused(capsys, ["promote", "tiny-classifier", "--candidate", "rival"])
    assert "models:/nope@champion: cannot load the model" in refused(
        capsys, ["predict", "models:/nope@champion", "--text", "hi"]
    )
    assert "cannot load the model" in refused(capsys, ["predict", "models:/tiny-classifier@champion", "--text", "hi"])
    (workdir / "empty.txt").write_text("\n  \n")
    assert "--input empty.txt: the file holds no texts" in refused(
        capsys, ["predict", "models:/tiny-classifier@challenger", "--input", "empty.txt"]
    )
    assert snapshot(workdir) == stores
    tracking_client(f"sqlite:///{workdir}/mlruns/mlflow.db").delete_registered_model_alias(
        "tiny-classifier", "challenger"
    )
    before = snapshot(workdir)
    assert "no version or alias 'challenger'" in refused(capsys, ["promote", "tiny-classifier"])
    assert snapshot(workdir) == before


def test_model_loading_never_trusts_remote_code():
    import pathlib

    import workbench

    sources = "".join(p.read_text() for p in pathlib.Path(workbench.__file__).parent.glob("*.py"))
    assert "trust_remote_code=True" not in sources and "trust_remote_code" not in sources.replace(
        "no trust_remote_code", ""
    )
