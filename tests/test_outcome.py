"""Constraints on one objective, end to end: pruning still works, infeasible trials are marked (trial attr, run tag,
`study show`), only a feasible trial is registered, and `promote` refuses a version breaking a recorded constraint."""

from __future__ import annotations

import json

import pytest
from helpers import TINY, merge, study_run_in, tracking_client, trial_runs

from workbench.cli.commands import main
from workbench.config.study_file import validate_study
from workbench.trial.outcome import broken_constraints, objective_values
from workbench.trial.training import TrialResult, best_metrics

CONSTRAINED = {
    "study": {
        "name": "bounded",
        "n_trials": 4,
        "sampler": {"type": "grid", "seed": 0},
        # prunes the trial whose accuracy starts below 0.45 (hidden 64, lr 2.5e-3: 0.375 at the first evaluation)
        "pruner": {"type": "threshold", "lower": 0.45, "n_warmup_steps": 0},
        "constraints": {"params": {"max": 20000}},  # hidden 16: ~6k parameters; hidden 64: ~45k
    },
    "search_space": {
        "model.hidden_size": {"choices": [16, 64]},
        "training.learning_rate": {"choices": [2.5e-3, 4.7e-3]},
    },
    "registry": {"model_name": "bounded-classifier"},
}


@pytest.fixture(scope="module")
def bounded_study(tmp_path_factory):
    with study_run_in(tmp_path_factory.mktemp("bounded"), "bounded", merge(TINY, CONSTRAINED)) as folder:
        yield folder


@pytest.mark.slow
def test_constraints_mark_infeasible_trials_keep_pruning_and_register_a_feasible_one(
    bounded_study, capsys, monkeypatch
):
    monkeypatch.chdir(bounded_study)
    capsys.readouterr()
    assert main(["study", "show", "bounded", "--json"]) == 0
    trials = {t["number"]: t for t in json.loads(capsys.readouterr().out)["trials"]}
    states = [t["state"] for t in trials.values()]
    assert "PRUNED" in states, "a constrained single-objective study still prunes"
    done = [t for t in trials.values() if t["state"] == "COMPLETE"]
    assert {t["feasible"] for t in done} == {True, False}
    assert all(t["feasible"] == (t["costs"]["params"] <= 20000) for t in done)
    client = tracking_client()
    tags = {
        r.data.tags["optuna.trial.number"]: r.data.tags.get("workbench.feasible") for r in trial_runs(client, "bounded")
    }
    assert {tags[str(t["number"])] for t in done} == {"True", "False"}
    (version,) = client.search_model_versions("name = 'bounded-classifier'")
    registered = trials[int(version.tags["workbench.trial"])]
    assert registered["feasible"] is True
    assert json.loads(version.tags["workbench.constraints"]) == {"params": {"max": 20000}}
    assert float(version.tags["workbench.cost.params"]) == registered["costs"]["params"]
    assert main(["study", "show", "bounded"]) == 0
    assert "feasible" in capsys.readouterr().out


@pytest.mark.slow
def test_promote_refuses_a_version_that_breaks_a_constraint_recorded_with_it(bounded_study, capsys, monkeypatch):
    monkeypatch.chdir(bounded_study)
    client = tracking_client()
    client.set_model_version_tag("bounded-classifier", "1", "workbench.cost.params", "45000")  # as if measured so
    assert main(["promote", "bounded-classifier"]) == 1
    err = capsys.readouterr().err
    assert "breaks a constraint recorded with it (params 45000 outside max 20000)" in err
    assert client.get_registered_model("bounded-classifier").aliases.get("champion") is None


def test_objective_values_read_the_best_checkpoint_and_constraints_say_how_far_off():
    history = [
        {"eval_f1": 0.7, "eval_loss": 0.6},
        {"loss": 0.5},
        {"eval_f1": 0.8, "eval_loss": 0.4, "eval_runtime": 2.0},
    ]
    best = best_metrics(history, "eval_f1", 0.8)
    assert best == {"eval_f1": 0.8, "eval_loss": 0.4}, "the best evaluation's metrics, not how long it took"
    raw = merge(TINY, {"study": {"constraints": {"latency_ms": {"max": 20}}}})
    raw["study"] = {k: v for k, v in raw["study"].items() if k not in ("metric", "direction")}
    raw["study"]["objectives"] = [
        {"metric": "eval_f1", "direction": "maximize"},
        {"metric": "eval_loss", "direction": "minimize"},
        {"metric": "latency_ms", "direction": "minimize"},
    ]
    spec = validate_study(raw)
    result = TrialResult(0.8, 3, None, {"latency_ms": 31.5, "params": 5000.0}, best)
    assert objective_values(spec, result) == (0.8, 0.4, 31.5)
    assert broken_constraints(spec.study.constraints, {"latency_ms": 31.5}) == {"latency_ms": 11.5}
    assert broken_constraints(spec.study.constraints, {}) == {"latency_ms": float("inf")}
