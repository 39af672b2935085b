"""Study metrics: any eval_* a trial computes, per class by label name, binary ones of a stated positive label."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest

from workbench.cli.commands import main
from workbench.core.metrics import classification_metrics, metric_names
from workbench.lifecycle.promotion import _resampled
from workbench.stores.tracking import mlflow_client, resolve_tracking_uri

TOPICS = {
    "sports": "goal match team coach league score".split(),
    "politics": "vote senate law election party minister".split(),
    "tech/science": "chip software robot laptop code network".split(),
}
FILLER = "the a today news report said new big first".split()


def topic_frame(n: int, seed: int, topics=TOPICS) -> pd.DataFrame:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.choice(sorted(topics))
        words = rng.sample(FILLER, 3) + rng.sample(topics[label], 2)
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": label})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("classes,positive", [(2, 0), (2, 1), (3, None)])
def test_promotion_resamples_every_metric_as_the_trial_computes_it(classes, positive):
    rng = np.random.default_rng(classes)
    labels = rng.integers(0, classes, 300)
    probabilities = rng.dirichlet(np.ones(classes), 300)
    names = ["neg", "pos"] if classes == 2 else ["a", "b", "c/d"]
    computed = classification_metrics(labels, probabilities, names, positive)
    identity = np.arange(len(labels))[None, :]
    assert set(computed) == set(metric_names(names, positive))
    for name, value in computed.items():
        assert _resampled(name, labels, probabilities, identity, names, positive)[0] == pytest.approx(value), name


def trial_run(name: str):
    client = mlflow_client(resolve_tracking_uri())
    experiment = client.get_experiment_by_name(name)
    (run,) = client.search_runs([experiment.experiment_id], "tags.`workbench.role` = 'trial'")
    return client, run


def value(name: str) -> float:
    import optuna

    from workbench.stores.storage import resolve_storage

    return optuna.load_study(study_name=name, storage=resolve_storage()).trials[0].value


def files_study(write_study, workdir, name, metric, frame, **data):
    frame.to_csv(workdir / f"{name}.csv", index=False)
    return write_study(
        f"{name}.yaml",
        study={"name": name, "metric": metric, "n_trials": 1},
        data={"source": "files", "files": {"train": f"{name}.csv"}, **data},
        search_space={},
    )


@pytest.mark.slow
def test_string_multi_class_labels_with_macro_f1_and_a_per_class_metric(write_study, workdir):
    frame = topic_frame(240, seed=0)
    assert (
        main(
            ["study", "run", str(files_study(write_study, workdir, "topics", "eval_f1_macro", frame)), "--no-register"]
        )
        == 0
    )
    client, run = trial_run("topics")
    for key in ("eval_f1_sports", "eval_recall_politics", "eval_f1_tech_science", "eval_f1_weighted", "eval_f1"):
        assert key in run.data.metrics, key
    history = client.get_metric_history(run.info.run_id, "eval_f1_macro")
    assert value("topics") == pytest.approx(max(m.value for m in history)), "the trial's value is its best macro F1"
    path = files_study(write_study, workdir, "recall", "eval_recall_tech_science", frame)
    assert main(["study", "run", str(path), "--no-register"]) == 0
    client, run = trial_run("recall")
    assert value("recall") == pytest.approx(
        max(m.value for m in client.get_metric_history(run.info.run_id, "eval_recall_tech_science"))
    )


@pytest.mark.slow
def test_binary_string_labels_score_the_stated_positive_label(write_study, workdir):
    frame = topic_frame(240, seed=1, topics={"ham": TOPICS["sports"], "spam": TOPICS["politics"]})
    # "spam" sorts last, "ham" first: the binary F1 follows the stated label, not the order
    path = files_study(write_study, workdir, "spam", "eval_f1", frame, positive_label="ham")
    assert main(["study", "run", str(path), "--no-register"]) == 0
    client, run = trial_run("spam")
    history = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "eval_f1")}
    assert history == {m.step: m.value for m in client.get_metric_history(run.info.run_id, "eval_f1_ham")}
    assert value("spam") == pytest.approx(max(history.values()))
