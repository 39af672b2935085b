"""`workbench evaluate`: metrics, per-class report and pictures in an MLflow run linked to the version."""

from __future__ import annotations

import re

import pytest
import yaml
from helpers import tracking_client

from workbench.cli.commands import main


@pytest.mark.slow
def test_evaluate_logs_metrics_and_pictures_linked_to_the_version(keyword_registry, capsys):
    import pandas as pd
    from sklearn.metrics import accuracy_score

    from workbench.model.inference import load_model

    name, uri = keyword_registry.name, keyword_registry.tracking_uri
    assert (
        main(["--tracking-uri", uri, "evaluate", f"models:/{name}/1", "--data", str(keyword_registry.validation_csv)])
        == 0
    )
    out = capsys.readouterr().out
    client = tracking_client(keyword_registry.tracking_uri)
    version = client.get_model_version(name, "1")
    run_id = version.tags["workbench.evaluation_run"]
    assert f"logged to MLflow run {run_id} (linked to version 1)" in out
    assert re.search(r"^\s+negative\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+\d+$", out, re.M)  # per-class rows
    assert re.search(r"^\s+positive\s+", out, re.M)

    # the logged accuracy is the model's, computed here independently on the same file
    frame = pd.read_csv(keyword_registry.validation_csv)
    predicted = load_model(f"models:/{name}/1").predict(frame[["text"]])["label"]
    run = client.get_run(run_id)
    assert run.data.metrics["eval_accuracy"] == pytest.approx(accuracy_score(frame["label"], predicted))
    assert f"accuracy   {run.data.metrics['eval_accuracy']:.4f}" in out
    assert {"eval_f1", "eval_precision", "eval_recall", "eval_loss"} <= set(run.data.metrics)
    assert {a.path for a in client.list_artifacts(run_id)} >= {
        "confusion_matrix.png",
        "calibration.png",
        "classification_report.json",
    }
    assert run.data.tags["workbench.model_version"] == "1" and run.data.tags["workbench.role"] == "evaluation"
    # not a trial: no Optuna tags, its own name and description, never found by the UI's trial filter
    assert not any(key.startswith("optuna.") for key in run.data.tags), run.data.tags
    assert run.info.run_name == f"evaluate-{name}-v1" and "not a trial" in run.data.tags["mlflow.note.content"]
    trials = client.search_runs([run.info.experiment_id], "tags.`workbench.role` = 'trial'")
    assert run_id not in {r.info.run_id for r in trials}
    assert [d.dataset.name for d in run.inputs.dataset_inputs] == ["evaluation"]
    assert [f"models:/{m.model_id}" for m in run.inputs.model_inputs] == [version.source]  # the logged model
    assert client.get_logged_model(run.inputs.model_inputs[0].model_id).metrics  # its page shows the metrics


@pytest.mark.slow
def test_evaluate_on_a_study_file_uses_its_validation_split(keyword_registry, capsys, tmp_path):
    root = keyword_registry.root
    study = {
        "study": {"name": "keywords"},
        "data": {
            "source": "files",
            "files": {"train": str(root / "train.csv"), "validation": str(root / "validation.csv")},
        },
    }
    path = tmp_path / "keywords.yaml"
    path.write_text(yaml.safe_dump(study))
    uri, name = keyword_registry.tracking_uri, keyword_registry.name
    assert main(["--tracking-uri", uri, "evaluate", f"models:/{name}/2", "--data", str(path)]) == 0
    out = capsys.readouterr().out
    assert "100 examples from" in out and "(validation split)" in out
    assert main(["--tracking-uri", uri, "evaluate", f"models:/{name}/2", "--data", str(tmp_path / "missing.csv")]) == 2
    assert "--data: file not found" in capsys.readouterr().err
