"""`workbench study list` and `study show`: what a user reads, as a table, JSON and CSV, on real stores."""

from __future__ import annotations

import csv
import io
import json

import pytest
from stores import refused, snapshot

from workbench.cli.commands import main
from workbench.stores.tracking import mlflow_client


def run_cli(capsys, argv: list[str]) -> str:
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


@pytest.mark.slow
def test_study_list_as_table_json_and_csv(stores, workdir, capsys):
    table = run_cli(capsys, ["study", "list"])
    assert "tiny" in table and "maximize eval_accuracy" in table and "2 trials (2 complete)" in table
    [study] = json.loads(run_cli(capsys, ["study", "list", "--json"]))
    assert study["name"] == "tiny" and study["trials"] == 2 and study["states"] == {"COMPLETE": 2}
    assert study["best_trial"] in (0, 1) and 0 <= study["best_value"] <= 1 and study["last_activity"]
    [row] = list(csv.DictReader(io.StringIO(run_cli(capsys, ["study", "list", "--csv"]))))
    assert row["study"] == "tiny" and row["complete"] == "2" and row["pruned"] == "0"
    assert float(row["best_value"]) == pytest.approx(study["best_value"])
    assert snapshot(workdir) == stores, "a view changes nothing"


@pytest.mark.slow
def test_study_show_marks_the_best_trial_and_states_the_registry(stores, workdir, capsys):
    view = json.loads(run_cli(capsys, ["study", "show", "tiny", "--json"]))
    client = mlflow_client(f"sqlite:///{workdir}/mlruns/mlflow.db")
    runs = {r.info.run_id: r for r in client.search_runs([client.get_experiment_by_name("tiny").experiment_id])}
    assert [t["number"] for t in view["trials"]] == [0, 1]
    best = next(t for t in view["trials"] if t["best"])
    assert best["number"] == view["best_trial"] and best["score"] == view["best_value"]
    for trial in view["trials"]:
        assert trial["state"] == "COMPLETE" and trial["evaluations"] == 2 and trial["duration_s"] > 0
        assert set(trial["params"]) == {"training.learning_rate"}
        assert runs[trial["run_id"]].data.tags["optuna.trial.number"] == str(trial["number"])
    assert view["registry"] == [
        {
            "model": "tiny-classifier",
            "version": "1",
            "trial": view["best_trial"],
            "aliases": ["challenger"],
            "validation": view["best_value"],
            "test": {},  # the tiny study has no test split
        }
    ]
    origin = client.get_model_version("tiny-classifier", "1").description
    assert origin.startswith(f"From study 'tiny', trial {view['best_trial']}: eval_accuracy = {view['best_value']:.4f}")

    table = run_cli(capsys, ["study", "show", "tiny"])
    best_line = next(line for line in table.splitlines() if line.startswith("*"))
    assert best_line.split()[1] == str(view["best_trial"]) and best["run_id"] in best_line
    assert "learning_rate" in table and "tiny-classifier v1 @challenger" in table
    assert f"eval_accuracy {view['best_value']:.4f} on validation, no test split" in table
    rows = list(csv.DictReader(io.StringIO(run_cli(capsys, ["study", "show", "tiny", "--csv"]))))
    assert [r["best"] for r in rows].count("True") == 1 and "training.learning_rate" in rows[0]
    assert snapshot(workdir) == stores


@pytest.mark.slow
def test_global_options_after_the_subcommand(stores, workdir, capsys):
    uri = f"sqlite:///{workdir}/mlruns/mlflow.db"
    storage = f"sqlite:///{workdir}/mlruns/optuna.db"
    before = json.loads(
        run_cli(capsys, ["--tracking-uri", uri, "--storage", storage, "study", "show", "tiny", "--json"])
    )
    after = json.loads(
        run_cli(capsys, ["study", "show", "tiny", "--json", "--tracking-uri", uri, "--storage", storage])
    )
    assert before == after


def test_missing_stores_are_named_and_never_created(workdir, capsys):
    assert "no Optuna study store at " + str(workdir / "mlruns" / "optuna.db") in refused(capsys, ["study", "list"])
    assert "--storage" in refused(capsys, ["study", "show", "tiny", "--storage", "sqlite:///elsewhere/optuna.db"])
    assert list(workdir.iterdir()) == [], "a read-only command created a file or folder"


@pytest.mark.slow
def test_unknown_study_suggests_a_name(stores, workdir, capsys):
    assert "did you mean tiny?" in refused(capsys, ["study", "show", "tiy"])


@pytest.mark.slow
def test_registry_unknown_when_the_tracking_store_is_missing(stores, workdir, capsys):
    (workdir / "mlruns" / "mlflow.db").unlink()
    out = run_cli(capsys, ["study", "show", "tiny"])
    assert "registry: unknown" in out and "no MLflow tracking store at" in out
    assert not (workdir / "mlruns" / "mlflow.db").exists()


@pytest.mark.slow
def test_pruned_trial_has_a_score_and_is_not_a_failure(write_study, workdir, capsys):
    # 1 epoch: one evaluation, before the pruner's warm-up ends -> COMPLETE; 2 epochs: pruned at its second
    path = write_study(
        study={
            "n_trials": 2,
            "sampler": {"type": "grid"},
            "pruner": {"type": "threshold", "lower": 0.99, "n_warmup_steps": 2},
        },
        search_space={"training.num_train_epochs": {"choices": [1, 2]}},
        registry={},
    )
    run_cli(capsys, ["study", "run", str(path)])
    view = json.loads(run_cli(capsys, ["study", "show", "tiny", "--json"]))
    client = mlflow_client(f"sqlite:///{workdir}/mlruns/mlflow.db")
    states = {}
    for trial in view["trials"]:
        run = client.get_run(trial["run_id"])
        states[trial["state"]] = run.info.status
        history = client.get_metric_history(trial["run_id"], "eval_accuracy")
        assert (
            run.data.metrics["objective"]
            == pytest.approx(trial["score"])
            == pytest.approx(max(m.value for m in history))
        )
        assert run.data.metrics["best_eval_accuracy"] == pytest.approx(trial["score"])
        assert trial["evaluations"] == len(history)
    assert states == {"COMPLETE": "FINISHED", "PRUNED": "FINISHED"}
    pruned = client.get_run(next(t["run_id"] for t in view["trials"] if t["state"] == "PRUNED"))
    assert pruned.data.tags["optuna.trial.state"] == "PRUNED"
    assert (
        "not a failure" in pruned.data.tags["mlflow.note.content"]
        and "threshold" in pruned.data.tags["mlflow.note.content"]
    )
    assert "PRUNED" in run_cli(capsys, ["study", "show", "tiny"])


@pytest.mark.slow
def test_workbench_ui_serves_this_folders_store_on_loopback_and_stops_with_its_server(stores, workdir):
    import os
    import signal
    import subprocess
    import sys
    import urllib.request
    from pathlib import Path

    from servers import free_port, wait_until_up

    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    with open(workdir / "ui.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "workbench", "ui", "--port", str(port)],
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until_up(f"http://127.0.0.1:{port}/health", proc, 120, workdir / "ui.log")
        assert f"MLflow UI: http://127.0.0.1:{port}" in (workdir / "ui.log").read_text()
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/ajax-api/2.0/mlflow/experiments/get-by-name?experiment_name=tiny"
        ) as r:
            experiment = json.loads(r.read())["experiment"]
        assert {"key": "mlflow.experimentKind", "value": "custom_model_development"} in experiment["tags"], (
            "model-training mode"
        )
        proc.send_signal(signal.SIGTERM)  # to workbench alone: it must take its mlflow server down with it
        assert proc.wait(timeout=60) == 0
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.slow
def test_the_study_in_mlflow_params_a_person_can_read(write_study, workdir, capsys):
    path = write_study(study={"n_trials": 1, "pruner": {"type": "median", "n_warmup_steps": 1}}, registry={})
    run_cli(capsys, ["study", "run", str(path)])
    client = mlflow_client(f"sqlite:///{workdir}/mlruns/mlflow.db")
    experiment = client.get_experiment_by_name("tiny")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    runs = client.search_runs([experiment.experiment_id])
    parent = next(r for r in runs if r.data.tags.get("workbench.role") == "study")
    trial = next(r for r in runs if r.data.tags.get("workbench.role") == "trial")
    assert parent.data.params["sampler"] == "random" and parent.data.params["sampler.seed"] == "0"
    assert parent.data.params["pruner"] == "median" and parent.data.params["pruner.n_warmup_steps"] == "1"
    assert json.loads(parent.data.params["search_space.training.learning_rate"]) == {
        "low": 0.001,
        "high": 0.005,
        "log": True,
    }
    params = trial.data.params
    assert (
        "training.learning_rate" in params
        and params["model.hidden_size"] == "16"
        and params["training.num_train_epochs"] == "2"
    )
    assert "training.hub_token" not in params and "training.fsdp" not in params and len(params) < 40, sorted(params)
    resolved = json.loads(
        (workdir / client.download_artifacts(trial.info.run_id, "resolved_params.json", str(workdir))).read_text()
    )
    assert "training.fsdp" in resolved and len(resolved) > 100
    assert trial.data.metrics["objective"] == trial.data.metrics["best_eval_accuracy"]
