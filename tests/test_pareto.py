"""Several objectives, end to end: a two-objective study on the demo generator, its Pareto front in `study show
--json`, a version per Pareto-optimal trial tagged with its objective values, and `registry.choose`."""

from __future__ import annotations

import json

import pytest
from helpers import TINY, merge, study_run_in, tracking_client

from workbench.cli.commands import main

pytestmark = pytest.mark.slow

TWO_OBJECTIVES = {
    "study": {
        "name": "front",
        "objectives": [
            {"metric": "eval_accuracy", "direction": "maximize"},
            {"metric": "params", "direction": "minimize"},  # exact: the front does not depend on the machine's load
        ],
        "n_trials": 3,
        "sampler": {"type": "nsga2", "seed": 0},
        "pruner": {"type": "none"},
    },
    "training": {"num_train_epochs": 2},
    "search_space": {"model.hidden_size": {"choices": [8, 16, 32]}, "training.learning_rate": {"choices": [5.0e-3]}},
    "registry": {
        "model_name": "front-classifier",
        "choose": {"minimize": "params", "where": {"eval_loss": {"max": 5}}},
    },
}


@pytest.fixture(scope="module")
def front_study(tmp_path_factory):
    """The study, run once for the module; its folder."""
    raw = merge(TINY, TWO_OBJECTIVES)
    raw["study"] = {k: v for k, v in raw["study"].items() if k not in ("metric", "direction")}
    with study_run_in(tmp_path_factory.mktemp("front"), "front", raw) as folder:
        yield folder


def show_json(capsys) -> dict:
    capsys.readouterr()
    assert main(["study", "show", "front", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_study_show_marks_the_pareto_front(front_study, capsys, monkeypatch):
    monkeypatch.chdir(front_study)
    view = show_json(capsys)
    assert view["objectives"] == ["eval_accuracy", "params"]
    trials = {t["number"]: t for t in view["trials"]}
    assert set(view["pareto_front"]) == {n for n, t in trials.items() if t["pareto"]}
    for t in trials.values():  # a trial is on the front exactly when no other trial beats it on both
        (acc, params) = t["values"]
        beaten = any(
            o["values"][0] >= acc and o["values"][1] <= params and o["values"] != t["values"] for o in trials.values()
        )
        assert t["pareto"] == (not beaten)
        assert t["costs"]["params"] == params and t["costs"]["latency_ms"] > 0 and t["costs"]["size_mb"] > 0
    capsys.readouterr()
    assert main(["study", "show", "front"]) == 0
    table = capsys.readouterr().out
    assert "eval_accuracy (maximize), params (minimize)" in table and "+ on the Pareto front" in table


def test_each_pareto_trial_is_a_version_and_choose_picks_the_challenger(front_study, capsys, monkeypatch):
    monkeypatch.chdir(front_study)
    view = show_json(capsys)
    client = tracking_client()
    versions = client.search_model_versions("name = 'front-classifier'")
    assert sorted(int(v.tags["workbench.trial"]) for v in versions) == sorted(view["pareto_front"])
    for v in versions:
        trial = next(t for t in view["trials"] if t["number"] == int(v.tags["workbench.trial"]))
        assert float(v.tags["workbench.objective.eval_accuracy"]) == pytest.approx(trial["values"][0])
        assert float(v.tags["workbench.objective.params"]) == trial["values"][1]
    smallest = min((t for t in view["trials"] if t["pareto"]), key=lambda t: t["values"][1])
    challenger = client.get_model_version_by_alias("front-classifier", "challenger")
    assert challenger.tags["workbench.trial"] == str(smallest["number"]), "registry.choose: minimize params"
    plots = {a.path for a in client.list_artifacts(view_parent(client), "plots")}
    assert {"plots/pareto_front.png", "plots/study.html"} <= plots


def view_parent(client) -> str:
    experiment = client.get_experiment_by_name("front")
    (run,) = client.search_runs([experiment.experiment_id], "tags.`workbench.role` = 'study'")
    return run.info.run_id
