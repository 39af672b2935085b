"""The Python API: load_study_spec + run_study in one interpreter, with data made in Python."""

from __future__ import annotations

import pytest
from helpers import TINY, tracking_client

import workbench
from workbench.data.synthetic import LABELS, generate_examples

pytestmark = pytest.mark.slow


def test_run_study_twice_in_one_interpreter_returns_the_trials_as_a_dataframe(workdir):
    import mlflow
    import pandas as pd

    spec = workbench.load_study_spec(TINY, study={"name": "api", "n_trials": 2}, training__num_train_epochs=1)
    assert spec.training["num_train_epochs"] == 1 and spec.study.n_trials == 2
    first = workbench.run_study(spec, progress=lambda line: None)
    assert first.trials_run == 2 and list(first.trials["number"]) == [0, 1]
    assert set(first.trials["state"]) == {"COMPLETE"}
    assert first.best_value == max(first.trials["value"])
    assert set(first.best_params) == {"training.learning_rate"}
    assert (
        first.trials.loc[first.best_trial.number, "params_training.learning_rate"]
        == first.best_params["training.learning_rate"]
    )
    assert first.model_uri == "models:/tiny-classifier/1"
    predicted = mlflow.pyfunc.load_model(first.model_uri).predict(pd.DataFrame({"text": ["a charming, moving film"]}))
    assert predicted["label"][0] in LABELS

    second = workbench.run_study(spec, trials=1, progress=lambda line: None)  # the same interpreter, the same study
    assert second.trials_run == 1 and list(second.trials["number"]) == [0, 1, 2]
    assert second.best_value == max(second.trials["value"])


def test_a_study_run_from_another_folder_keeps_both_its_stores_there(workdir, monkeypatch):
    spec = workbench.load_study_spec(TINY, study={"n_trials": 1}, training__num_train_epochs=1, search_space={})
    workbench.run_study(spec, register=False, progress=lambda line: None)
    (workdir / "other").mkdir()
    monkeypatch.chdir(workdir / "other")
    other = workbench.run_study(spec, register=False, progress=lambda line: None)
    assert other.trials_run == 1 and list(other.trials["number"]) == [0], "a new study in the other folder's storage"
    for folder in (workdir, workdir / "other"):  # each folder's MLflow store holds its own study's runs, no more
        client = tracking_client(f"sqlite:///{folder}/mlruns/mlflow.db")
        runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
        assert sorted(r.data.tags.get("optuna.trial.number", "parent") for r in runs) == ["0", "parent"], folder


def test_a_torch_dataset_is_studied_and_its_digest_recorded(workdir):
    import torch

    examples = generate_examples(200, seed=5)

    class Reviews(torch.utils.data.Dataset):  # as the tutorial writes one: (text, label) per item
        def __len__(self):
            return len(examples["text"])

        def __getitem__(self, i):
            return examples["text"][i], torch.tensor(examples["label"][i])

    spec = workbench.load_study_spec(TINY, study={"name": "torch-data", "n_trials": 1}, search_space={})
    result = workbench.run_study(spec, data=Reviews(), register=False, progress=lambda line: None)
    assert list(result.trials["state"]) == ["COMPLETE"]
    client = tracking_client()
    run = client.get_run(result.best_trial.user_attrs["mlflow_run_id"])
    assert run.data.tags["workbench.data_source"] == "python:Reviews"
    assert len(run.data.tags["workbench.data_digest"]) == 64
    assert {d.dataset.name for d in run.inputs.dataset_inputs} == {"train", "validation"}


def test_bad_python_data_is_one_clear_error(workdir):
    spec = workbench.load_study_spec(TINY, study={"name": "bad-data"})
    with pytest.raises(workbench.WorkbenchError, match="is not a dataset"):
        workbench.run_study(spec, data=42, progress=lambda line: None)


def test_a_cnn_study_with_a_searched_bag_of_tokens_registers_a_model_that_serves(workdir):
    import mlflow
    import pandas as pd

    spec = workbench.load_study_spec(
        TINY,
        study={"name": "cnn", "n_trials": 2, "sampler": {"type": "grid"}},
        model={"encoder": "cnn", "kernel_sizes": [2, 3], "hidden_size": 16},
        search_space={"model.bag_of_tokens": {"choices": [False, True]}},
    )
    result = workbench.run_study(spec, progress=lambda line: None)
    assert set(result.trials["state"]) == {"COMPLETE"}
    assert sorted(result.trials["params_model.bag_of_tokens"]) == [False, True]
    model = mlflow.pyfunc.load_model(result.model_uri)
    predicted = model.predict(pd.DataFrame({"text": ["a charming, moving film", "dull"]}))
    assert list(predicted["label"]) and set(predicted["label"]) <= set(LABELS)
    served = model.unwrap_python_model().model  # the classifier as the registry loaded it back
    assert served.config.encoder == "cnn" and served.config.kernel_sizes == [2, 3]
    assert served.config.bag_of_tokens == result.best_params["model.bag_of_tokens"]
    assert (served.bag is not None) == served.config.bag_of_tokens
