"""Lineage on every trial run, and `workbench reproduce` re-running a trial from its record."""

from __future__ import annotations

import json

import pytest
from helpers import tracking_client, trial_runs

from workbench.cli.commands import main


@pytest.mark.slow
def refused_line(capsys, argv) -> str:
    assert main(argv) == 2
    return capsys.readouterr().err


@pytest.mark.slow
def test_trial_run_records_lineage_and_reproduces(write_study, workdir, capsys):
    import workbench
    from workbench.trial.lineage import git_commit

    study = write_study(
        study={"metric": "eval_loss", "direction": "minimize", "n_trials": 1}, training={"num_train_epochs": 1}
    )
    assert main(["study", "run", str(study), "--no-register"]) == 0
    capsys.readouterr()
    uri = f"sqlite:///{workdir}/mlruns/mlflow.db"
    client = tracking_client(uri)
    (found,) = trial_runs(client)
    run_id = found.info.run_id
    trial = client.get_run(run_id)  # with its inputs
    assert trial.info.status == "FINISHED", trial.data.tags.get("mlflow.note.content")

    # data: both splits as MLflow dataset inputs with the study's digest and a source
    digest = trial.data.tags["workbench.data_digest"]
    inputs = {d.tags[0].value: d.dataset for d in trial.inputs.dataset_inputs}
    assert set(inputs) == {"training", "validation"}
    assert {d.digest for d in inputs.values()} == {digest[:36]} and all(d.source for d in inputs.values())
    assert json.loads(inputs["validation"].profile)["num_rows"] == 48  # 20% of 240 examples
    # the resolved spec, with the sampled learning rate and the seeds
    record = json.loads((workdir / client.download_artifacts(run_id, "trial_spec.json", str(workdir))).read_text())
    assert record["spec"]["training"]["learning_rate"] == pytest.approx(
        float(trial.data.params["training.learning_rate"])
    )
    assert record["spec"]["training"]["seed"] == 0 and record["data"]["digest"] == digest
    assert trial.data.tags["workbench.version"] == workbench.__version__
    if git_commit():
        assert trial.data.tags["workbench.git_commit"] == git_commit()
    requirements = (workdir / client.download_artifacts(run_id, "requirements.txt", str(workdir))).read_text()
    assert any(line.startswith("torch==") for line in requirements.splitlines())
    assert "tokenizer/tokenizer.json" in {a.path for a in client.list_artifacts(run_id, "tokenizer")}

    assert main(["reproduce", "tiny:0", "--tracking-uri", uri]) == 0  # STUDY:TRIAL finds the run
    out = capsys.readouterr().out
    assert f"reproducing run {run_id} (study tiny, trial 0)" in out and "training:" in out, "progress while it works"
    assert f"run {run_id}: eval_loss recorded" in out and "matches within 1e-06" in out
    assert client.get_run(run_id).data.tags["workbench.reproduced.matches"] == "True"
    assert "has no trial 5" in refused_line(capsys, ["--tracking-uri", uri, "reproduce", "tiny:5"])

    parent = trial.data.tags["mlflow.parentRunId"]
    assert main(["--tracking-uri", uri, "reproduce", parent]) == 2
    assert "has no trial_spec.json" in capsys.readouterr().err


def test_dataset_sources_name_the_files_the_hub_dataset_or_the_generator(tmp_path):
    from workbench.config.study_file import validate_study
    from workbench.trial.lineage import _source

    (tmp_path / "train.csv").write_text("text,label\na,x\n")
    study = {"study": {"name": "s"}, "source_dir": str(tmp_path)}
    files = _source(validate_study({**study, "data": {"source": "files", "files": {"train": "train.csv"}}}))
    assert files.to_dict()["uri"].endswith(str(tmp_path / "train.csv"))
    hub = _source(validate_study({**study, "data": {"source": "hub", "hub": {"path": "glue", "name": "sst2"}}}))
    assert (hub.path, hub.config_name) == ("glue", "sst2")
    synthetic = _source(validate_study({**study, "data": {"synthetic": {"seed": 3}}}))
    assert '"seed":3' in synthetic.to_dict()["tags"]["workbench.synthetic"]
