"""Seeds before registering: retrain the top configurations with more seeds, register by mean, ship a typical seed."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import yaml
from helpers import TINY, merge, tracking_client

from workbench.cli.commands import main
from workbench.study.selection import (
    Configuration,
    SeedRun,
    closest_to_mean,
    noise_note,
    paired_p_value,
    rank_configurations,
)


def config(number: int, scores: list[float]) -> Configuration:
    runs = [SeedRun(seed, score, None, None) for seed, score in enumerate(scores)]
    return Configuration(SimpleNamespace(number=number), runs)


def test_the_run_shipped_is_the_one_closest_to_the_mean_not_the_luckiest():
    assert closest_to_mean([0.90, 0.80, 0.82]) == 2  # mean 0.84
    assert closest_to_mean([0.5, 0.7]) == 0, "ties: the earliest"


def test_configurations_rank_by_mean_and_a_paired_test_says_when_the_top_two_are_noise():
    lucky, steady = config(3, [0.95, 0.70, 0.72]), config(5, [0.80, 0.81, 0.79])
    ranked = rank_configurations([lucky, steady], maximize=True)
    assert [c.trial.number for c in ranked] == [5, 3], "0.80 on average beats one lucky 0.95"
    assert ranked[0].sd == pytest.approx(0.01)
    note = noise_note(ranked[0], ranked[1], "eval_f1")
    assert note.startswith(
        "trials 5 and 3 are within noise: mean eval_f1 0.8000 vs 0.7900 over 3 seeds, paired t-test p"
    )
    clear = noise_note(config(1, [0.90, 0.91, 0.92]), config(2, [0.70, 0.70, 0.73]), "eval_f1")
    assert clear == ""
    assert paired_p_value([0.8, 0.8], [0.8, 0.8]) == 1.0 and math.isnan(paired_p_value([0.8], [0.7]))


SELECTED = {
    "study": {"name": "seeds", "n_trials": 3},
    "training": {"num_train_epochs": 1},
    "selection": {"top_k": 2, "seeds": 2},
    "registry": {"model_name": "seeds-classifier"},
}


@pytest.mark.slow
def test_selection_retrains_the_top_two_with_two_seeds_and_registers_by_mean(workdir, capsys):
    (workdir / "seeds.yaml").write_text(yaml.safe_dump(merge(TINY, SELECTED), sort_keys=False))
    assert main(["study", "run", "seeds.yaml"]) == 0
    out = capsys.readouterr().out
    client = tracking_client()
    experiment = client.get_experiment_by_name("seeds")
    (parent,) = client.search_runs([experiment.experiment_id], "tags.`workbench.role` = 'study'")
    retrains = client.search_runs([experiment.experiment_id], "tags.`workbench.role` = 'retrain'")
    assert len(retrains) == 4, "2 configurations x 2 more seeds"
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in retrains)
    assert sorted(r.data.tags["workbench.seed"] for r in retrains) == ["1", "1", "2", "2"]  # training.seed 0 + 1, 2
    tags = parent.data.tags
    per_trial = {k.split(".")[2]: json.loads(v) for k, v in tags.items() if k.endswith(".scores")}
    assert len(per_trial) == 2 and all(len(scores) == 3 for scores in per_trial.values())
    means = {t: sum(s) / 3 for t, s in per_trial.items()}
    chosen = tags["workbench.selection.chosen_trial"]
    assert means[f"trial_{chosen}"] == max(means.values()), "the configuration best on average"
    version = client.get_model_version_by_alias("seeds-classifier", "challenger")
    assert version.tags["workbench.trial"] == chosen
    scores = json.loads(version.tags["workbench.selection.scores"])
    mean = float(version.tags["workbench.selection.eval_accuracy_mean"])
    assert float(version.tags["workbench.value"]) == scores[closest_to_mean(scores)] and mean == pytest.approx(
        sum(scores) / 3
    )
    assert parent.data.metrics[f"selection.trial_{chosen}.eval_accuracy_sd"] >= 0
    assert f"trial {chosen}: eval_accuracy {mean:.4f} ± " in out
    capsys.readouterr()
    assert main(["study", "show", "seeds"]) == 0
    assert "mean±sd (seeds)" in capsys.readouterr().out

    # concluding the finished study again (a second `study conclude`, a resume) retrains and registers nothing
    assert main(["study", "conclude", "seeds.yaml"]) == 0
    assert "already retrained and registered; nothing new" in capsys.readouterr().out
    assert len(client.search_runs([experiment.experiment_id], "tags.`workbench.role` = 'retrain'")) == 4
    assert len(client.search_model_versions("name = 'seeds-classifier'")) == 1
