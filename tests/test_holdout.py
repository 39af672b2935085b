"""The test split: where it comes from, that no trial sees it, and that each registered version is scored on it.

Fast tests read the data directly; the slow ones share one store holding two tiny studies (a
test split from `data.test_fraction` and one from `data.files.test`), each run and registered once.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers import TINY, merge, tracking_client, trial_runs

from workbench.config.spec import DataSpec
from workbench.core.errors import DataError, StudyFileError
from workbench.data.splits import load_splits
from workbench.data.synthetic import LABELS, generate_examples


def synthetic_csv(path: Path, n: int, seed: int) -> str:
    data = generate_examples(n, seed=seed)
    pd.DataFrame({"text": data["text"], "label": [LABELS[i] for i in data["label"]]}).to_csv(path, index=False)
    return path.name


def test_test_fraction_is_split_off_stratified_and_seeded_before_validation():
    spec = DataSpec(synthetic={"n_examples": 500}, test_fraction=0.2)
    splits = load_splits(spec)
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (320, 80, 100)
    assert abs(sum(splits.test["label"]) / 100 - sum(splits.train["label"]) / 320) < 0.02, "stratified by label"
    again = load_splits(spec)
    assert again.test["text"] == splits.test["text"] and again.test_digest == splits.test_digest
    other_seed = load_splits(spec.model_copy(update={"seed": 1}))
    assert other_seed.test["text"] != splits.test["text"], "seeded by data.seed"
    assert splits.test_digest not in (splits.digest, None)
    without = load_splits(DataSpec(synthetic={"n_examples": 500}))
    assert without.test is None and without.test_digest is None


def test_test_split_from_a_file_is_loaded_beside_train_and_validation(tmp_path):
    files = {
        "train": synthetic_csv(tmp_path / "train.csv", 120, 0),
        "validation": synthetic_csv(tmp_path / "validation.csv", 40, 1),
        "test": synthetic_csv(tmp_path / "test.csv", 30, 2),
    }
    splits = load_splits(DataSpec(source="files", files=files), tmp_path)
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (120, 40, 30)
    assert splits.frame("test")["label"].tolist() == pd.read_csv(tmp_path / "test.csv")["label"].tolist()
    # a test file without validation: validation still comes from train, and the test file is whole
    splits = load_splits(DataSpec(source="files", files={"train": files["train"], "test": files["test"]}), tmp_path)
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (96, 24, 30)


def test_a_test_label_unseen_in_training_is_refused(tmp_path):
    train = synthetic_csv(tmp_path / "train.csv", 60, 0)
    pd.DataFrame({"text": ["a new kind of film"] * 3, "label": ["neutral"] * 3}).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DataError, match="test labels not seen in training: neutral"):
        load_splits(DataSpec(source="files", files={"train": train, "test": "t.csv"}), tmp_path)


def test_data_given_in_python_may_hold_a_test_split():
    frame = pd.DataFrame(generate_examples(100, seed=0))
    splits = load_splits(DataSpec(source="python"), given={"train": frame[:80], "test": frame[80:]})
    assert len(splits.test) == 20 and len(splits.train) + len(splits.validation) == 80
    with pytest.raises(DataError, match="data.test_fraction: the data given has a test split already: choose one"):
        load_splits(DataSpec(source="python", test_fraction=0.2), given={"train": frame[:80], "test": frame[80:]})


@pytest.mark.parametrize(
    "data, problem",
    [
        (
            {"source": "files", "files": {"train": "a.csv", "tset": "b.csv"}},
            "data: files.tset: not a split (did you mean test?): the splits are train, validation, test",
        ),
        (
            {"source": "files", "files": {"train": "a.csv", "test": "b.csv"}, "test_fraction": 0.2},
            "data: test_fraction and files.test both give a test split: choose one",
        ),
        ({"test_fraction": 1.0}, "data.test_fraction: Input should be less than 1"),
    ],
)
def test_a_wrong_test_split_in_the_study_file_is_one_clear_problem(data, problem):
    from workbench.config.study_file import validate_study

    with pytest.raises(StudyFileError) as e:
        validate_study({"study": {"name": "x"}, "data": data}, "x.yaml")
    assert problem in str(e.value)


def test_forked_workers_prepared_data_holds_no_test_split(tmp_path):
    from workbench.config.study_file import validate_study
    from workbench.data.splits import prepare_data, save_prepared

    spec = validate_study(
        {
            "study": {"name": "x"},
            "data": {"synthetic": {"n_examples": 100}, "test_fraction": 0.2},
            "tokenizer": {"vocab_size": 100},
        }
    )
    made = prepare_data(spec)
    assert len(made.splits.test) == 20, "the launcher holds it, for registration"
    save_prepared(made, spec, tmp_path)
    saved = "".join(str(p) for p in tmp_path.rglob("*"))
    assert made.splits.test_digest not in saved and "test" not in saved.replace(str(tmp_path), "")
    loaded = prepare_data(spec, prepared_dir=tmp_path)
    assert loaded.splits.test is None and loaded.splits.test_digest is None
    assert loaded.splits.digest == made.splits.digest


# ---- a study with a test split, run and registered once per module ---------------------------------------------

STUDIES = {  # study name -> its registered model
    "tiny": "tiny-classifier",  # data.test_fraction
    "tiny-files": "tiny-files-classifier",  # data.files.test
}


@pytest.fixture(scope="module")
def held_out():
    """A store with two tiny studies registered: one splits its test set off train, one reads it from a file."""
    from workbench.cli.commands import main

    root = Path(tempfile.mkdtemp(prefix="workbench-holdout-"))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
            mp.setenv(name, "")
            mp.delenv(name)
        files = {
            "train": synthetic_csv(root / "train.csv", 160, 0),
            "validation": synthetic_csv(root / "validation.csv", 50, 1),
            "test": synthetic_csv(root / "test.csv", 60, 2),
        }
        changes = {
            "tiny": {"study": {"n_trials": 2}, "data": {"test_fraction": 0.2}},
            "tiny-files": {
                "study": {"name": "tiny-files", "n_trials": 1},
                "data": {"source": "files", "files": files, "positive_label": "positive"},
                "registry": {"model_name": STUDIES["tiny-files"]},
            },
        }
        for name, change in changes.items():
            path = root / f"{name}.yaml"
            path.write_text(yaml.safe_dump(merge(TINY, change), sort_keys=False))
            assert main(["study", "run", str(path)]) == 0
        yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def in_store(held_out, monkeypatch):
    monkeypatch.chdir(held_out)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    return held_out


def _test_digest(root: Path, study: str) -> str:
    from workbench.config.study_file import load_study_file

    spec = load_study_file(root / f"{study}.yaml")
    return load_splits(spec.data, spec.source_dir).test_digest


@pytest.mark.slow
@pytest.mark.parametrize("study", STUDIES)
def test_no_trial_run_records_the_test_split(in_store, study):
    client = tracking_client()
    digest = _test_digest(in_store, study)
    runs = trial_runs(client, study)
    assert runs
    for run in runs:
        inputs = [d.dataset for d in run.inputs.dataset_inputs]
        assert {d.name for d in inputs} == {"train", "validation"}
        recorded = [d.digest for d in inputs] + list(run.data.tags.values()) + list(run.data.params.values())
        assert not any(digest[:16] in value for value in recorded), f"trial run {run.info.run_name} records test data"


@pytest.mark.slow
@pytest.mark.parametrize("study", STUDIES)
def test_the_registered_version_is_scored_on_the_test_split(in_store, study):
    client = tracking_client()
    version = client.get_model_version_by_alias(STUDIES[study], "challenger")
    tags = version.tags
    assert tags["workbench.test_digest"] == _test_digest(in_store, study)
    assert int(tags["workbench.test_examples"]) == (48 if study == "tiny" else 60)
    for name in ("test_accuracy", "test_f1", "test_loss", "test_f1_macro"):
        assert 0 <= float(tags[name]) < 10
    metrics = client.get_run(version.run_id).data.metrics
    assert metrics["test_accuracy"] == pytest.approx(float(tags["test_accuracy"]))
    assert "eval_accuracy" in metrics and "test_recall_positive" in metrics
    assert "on validation" in version.description and "test_accuracy = " in version.description


@pytest.mark.slow
def test_study_show_gives_the_test_score_beside_the_validation_score(in_store, capsys):
    from workbench.cli.commands import main

    assert main(["study", "show", "tiny", "--json"]) == 0
    (row,) = [r for r in json.loads(capsys.readouterr().out)["registry"] if "challenger" in r["aliases"]]
    version = tracking_client().get_model_version("tiny-classifier", row["version"])
    assert row["validation"] == pytest.approx(float(version.tags["workbench.value"]))
    assert row["test"]["test_accuracy"] == pytest.approx(float(version.tags["test_accuracy"]))
    assert main(["study", "show", "tiny"]) == 0
    line = next(li for li in capsys.readouterr().out.splitlines() if "@challenger" in li)
    assert f"eval_accuracy {row['validation']:.4f} on validation, {row['test']['test_accuracy']:.4f} on test" in line


@pytest.mark.slow
def test_promote_and_evaluate_use_the_test_split_and_say_when_there_is_none(in_store, capsys):
    from workbench.cli.commands import main
    from workbench.core.keys import VERSION_METRIC_TAG as METRIC_TAG
    from workbench.stores.registry import register_model_dir

    assert main(["promote", "tiny-classifier", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "data      the version's test data: 48 examples" in out and "WOULD PROMOTE" in out
    assert main(["evaluate", "models:/tiny-classifier@challenger"]) == 0
    assert "on 48 examples from the version's test data" in capsys.readouterr().out

    # the same model registered without a test split: scored on validation, and the output says so
    (model_dir,) = (in_store / "mlruns" / "trials" / "tiny").glob("trial-*/model")
    validation = load_splits(DataSpec(synthetic=TINY["data"]["synthetic"], test_fraction=0.2)).frame("validation")
    tags = {METRIC_TAG: "eval_accuracy"}
    version = register_model_dir("tiny-classifier", model_dir, validation, tags, None)
    assert main(["promote", "tiny-classifier", "--candidate", str(version), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "the version's validation data (it has no test split: the data it was chosen on): 39 examples" in out
