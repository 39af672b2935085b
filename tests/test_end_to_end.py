"""The whole flow a user runs: study -> nested MLflow runs -> registered version -> predict in a
fresh process -> promote."""

import json
import os
import subprocess
import sys

import pytest
from helpers import study_runs, tracking_client, trial_runs

from workbench.cli.commands import main


def run_cli(*args, cwd):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run(
        [sys.executable, "-m", "workbench", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
def test_study_to_registered_model_to_prediction_to_promotion(write_study, workdir, capsys):
    path = write_study(study={"n_trials": 2})
    assert main(["study", "run", str(path)]) == 0
    printed = capsys.readouterr()
    out = printed.out
    assert "registered tiny-classifier version 1 as @challenger" in out
    assert (
        "Successfully registered" not in printed.err + out and "Created version" not in printed.err + out
    )  # said once, by us

    client = tracking_client()
    parent = study_runs(client)[0]
    trials = trial_runs(client)
    assert len(trials) == 2
    assert {r.data.tags["mlflow.parentRunId"] for r in trials} == {parent.info.run_id}
    for run in trials:
        assert len(client.get_metric_history(run.info.run_id, "eval_loss")) == 2
    plots = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert "plots/optimization_history.png" in plots

    version = client.get_model_version_by_alias("tiny-classifier", "challenger")
    with open(client.download_artifacts(parent.info.run_id, "best_trial.json", str(workdir))) as f:
        best = json.load(f)
    assert version.tags["workbench.trial"] == str(best["number"])
    assert version.tags["workbench.metric"] == "eval_accuracy"
    assert float(version.tags["workbench.value"]) == pytest.approx(best["value"])
    assert not list(workdir.glob("mlruns/trials/tiny/trial-*/checkpoints")), "checkpoints are cleaned up"

    # a fresh process loads the registered model by alias and predicts on raw strings
    texts = workdir / "texts.txt"
    texts.write_text("the film is truly charming\nthe plot is dull\n")
    result = run_cli(
        "predict", "models:/tiny-classifier@challenger", "--input", str(texts), "--output", "out.jsonl", cwd=workdir
    )
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in (workdir / "out.jsonl").read_text().splitlines()]
    assert [r["text"] for r in rows] == ["the film is truly charming", "the plot is dull"]
    for row in rows:
        assert row["label"] in ("negative", "positive")
        assert row["proba_negative"] + row["proba_positive"] == pytest.approx(1.0, abs=1e-5)
    assert "Traceback" not in result.stderr

    # first promotion: no champion yet
    assert main(["promote", "tiny-classifier"]) == 0
    assert "is now @champion" in capsys.readouterr().out
    assert client.get_model_version_by_alias("tiny-classifier", "champion").version == version.version


def test_help_answers_without_importing_heavy_libraries():
    heavy = ("torch", "transformers", "mlflow", "optuna", "datasets")
    code = f"import sys, workbench.cli.commands as c; c.build_parser(); print([m for m in {heavy} if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "[]"
    result = subprocess.run([sys.executable, "-m", "workbench", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "study" in result.stdout and "promote" in result.stdout
