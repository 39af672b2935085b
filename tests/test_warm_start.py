"""Warm starts: a new study's first trials are the best of earlier studies, limited to its search space.

Earlier studies are made with `optuna.create_trial` in a real SQLite storage (no training),
except for the one test that runs seeded trials and reads their MLflow runs.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import TINY, merge, tracking_client, trial_runs
from stores import refused, snapshot

from workbench.cli.commands import main
from workbench.config.study_file import validate_study
from workbench.core.errors import StudyFileError
from workbench.core.keys import METRIC_ATTR
from workbench.stores.storage import build_storage, open_study
from workbench.stores.warm_start import check_sources, seed_new_study

SPACE = {
    "training.learning_rate": {"low": 1.0e-3, "high": 1.0e-2, "log": True},
    "training.weight_decay": {"low": 0.0, "high": 0.1, "step": 0.02},
    "model.num_layers": {"low": 1, "high": 3},
    "model.pooling": {"choices": ["mean", "cls"]},
}


@pytest.fixture(scope="module")
def empty_storage(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("optuna") / "optuna.db"
    build_storage(f"sqlite:///{path}")  # the tables, made once: a new SQLite storage costs ~1 s of schema work
    return path


@pytest.fixture
def url(workdir, empty_storage) -> str:
    """The Optuna storage `study run` uses in `workdir`, empty."""
    (workdir / "mlruns").mkdir()
    shutil.copy(empty_storage, workdir / "mlruns" / "optuna.db")
    return f"sqlite:///{workdir}/mlruns/optuna.db"


def earlier_study(
    url: str, name: str, trials: list[tuple[dict, float]], direction: str = "maximize", metric: str | None = None
) -> None:
    """A finished study `name`: one COMPLETE trial per (params, value), numbered in order; `metric`: the study
    metric workbench records on its studies (none: a study made elsewhere)."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    def distribution(name: str, value):
        if isinstance(value, str):  # one list of choices for the whole study, as Optuna requires
            return CategoricalDistribution(sorted({p[name] for p, _ in trials if name in p}))
        return IntDistribution(0, 100) if isinstance(value, int) else FloatDistribution(0.0, 1.0)

    study = optuna.create_study(study_name=name, storage=url, direction=direction)
    if metric:
        study.set_user_attr(METRIC_ATTR, metric)
    for number, (params, value) in enumerate(trials):
        dists = {k: distribution(k, v) for k, v in params.items()}
        attrs = {"mlflow_run_id": f"run-of-{name}-{number}"}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=value, user_attrs=attrs))


def new_study(url: str, warm_start: dict, trials: int | None = None):
    """Open and seed the study of a study file with `warm_start`, as `study run` does; returns it and the lines."""
    spec = validate_study(
        merge(TINY, {"study": {"name": "new", "n_trials": 6, "warm_start": warm_start}, "search_space": SPACE})
    )
    lines: list[str] = []
    check_sources(spec, url)
    study_ = open_study(spec, url)
    seed_new_study(study_, spec, url, trials, lines.append)
    return study_, lines


def queued(study) -> list[tuple[dict, dict]]:
    """(fixed params, user attrs) of each WAITING trial, in the order they will run."""
    from optuna.trial import TrialState

    return [
        (t.system_attrs["fixed_params"], t.user_attrs)
        for t in sorted(study.get_trials(states=(TrialState.WAITING,)), key=lambda t: t.number)
    ]


def test_a_new_study_queues_the_best_trials_of_each_earlier_study_by_its_own_direction(url):
    lr = "training.learning_rate"
    earlier_study(url, "acc", [({lr: 0.002}, 0.7), ({lr: 0.004}, 0.9), ({lr: 0.003}, 0.8)], "maximize")
    earlier_study(url, "loss", [({lr: 0.005}, 0.3), ({lr: 0.006}, 0.1), ({lr: 0.007}, 0.2)], "minimize")

    study, lines = new_study(url, {"from": ["acc", "loss"], "top_k": 2})

    # values of other metrics do not compare: each study's best before either's second best
    assert [params for params, _ in queued(study)] == [{lr: 0.004}, {lr: 0.006}, {lr: 0.003}, {lr: 0.007}]
    assert queued(study)[0][1] == {
        "seeded_from_study": "acc",
        "seeded_from_trial": 1,
        "seeded_from_run": "run-of-acc-1",
    }
    assert [attrs["seeded_from_trial"] for _, attrs in queued(study)] == [1, 1, 2, 2]
    assert lines == [
        "warm start from study acc: 2 trials queued (its trials 1, 2)",
        "warm start from study loss: 2 trials queued (its trials 1, 2)",
    ]


def test_earlier_studies_of_the_same_metric_queue_their_best_first_and_a_short_run_keeps_the_best(url):
    lr = "training.learning_rate"
    earlier_study(url, "week-1", [({lr: 0.002}, 0.70), ({lr: 0.003}, 0.72)], metric="eval_accuracy")
    earlier_study(url, "week-2", [({lr: 0.004}, 0.80), ({lr: 0.005}, 0.75)], metric="eval_accuracy")

    study, lines = new_study(url, {"from": ["week-1", "week-2"], "top_k": 2}, trials=3)

    assert [(attrs["seeded_from_study"], params[lr]) for params, attrs in queued(study)] == [
        ("week-2", 0.004),
        ("week-2", 0.005),
        ("week-1", 0.003),
    ]
    assert lines == [
        "warm start from study week-1: 1 trial queued (its trial 1); 1 more left out: the study runs no more trials",
        "warm start from study week-2: 2 trials queued (its trials 0, 1)",
    ]


def test_values_outside_the_search_space_are_clipped_or_dropped_and_the_output_says_which(url):
    best = {
        "training.learning_rate": 0.05,  # above high 1e-2: clipped
        "training.weight_decay": 0.05,  # between steps of 0.02: put on the nearest, 0.04
        "model.num_layers": 6,  # above high 3: clipped
        "model.pooling": "max",  # not a choice: dropped, the sampler picks one
        "model.hidden_size": 64,  # not searched any more: dropped
    }
    second = {"training.learning_rate": 0.0001, "model.num_layers": 2, "model.pooling": "cls"}
    earlier_study(url, "old", [(best, 0.9), (second, 0.8)])

    study, lines = new_study(url, {"from": "old"})

    assert [params for params, _ in queued(study)] == [
        {"training.learning_rate": 0.01, "training.weight_decay": 0.04, "model.num_layers": 3},
        {"training.learning_rate": 0.001, "model.num_layers": 2, "model.pooling": "cls"},
    ]
    assert lines == [
        "warm start from study old: 2 trials queued (its trials 0, 1); clipped training.learning_rate 0.05 -> 0.01 "
        "(trial 0), training.weight_decay 0.05 -> 0.04 (trial 0), model.num_layers 6 -> 3 (trial 0), "
        "training.learning_rate 0.0001 -> 0.001 (trial 1); dropped model.pooling: 'max' is not a choice (trial 0), "
        "model.hidden_size: not in the search space (trial 0)"
    ]


def test_seeds_stop_at_the_trials_the_run_will_do_and_a_repeated_parameter_set_is_left_out(url):
    same = {
        "training.learning_rate": 0.002,
        "training.weight_decay": 0.02,
        "model.num_layers": 1,
        "model.pooling": "cls",
    }
    earlier_study(url, "a", [(same, 0.9)])
    earlier_study(
        url, "b", [(same, 0.9), ({**same, "model.num_layers": 2}, 0.8), ({**same, "model.num_layers": 3}, 0.7)]
    )

    study, lines = new_study(url, {"from": ["a", "b"]}, trials=2)

    assert [params["model.num_layers"] for params, _ in queued(study)] == [1, 2]
    assert lines[1] == (
        "warm start from study b: 1 trial queued (its trial 1); left out trial 0 (the same values as one queued); "
        "1 more left out: the study runs no more trials"
    )


def test_a_resumed_study_is_not_seeded_again_and_needs_its_earlier_study_no_more(url):
    import optuna

    earlier_study(url, "old", [({"training.learning_rate": 0.002}, 0.9)])
    new_study(url, {"from": "old"})
    optuna.delete_study(study_name="old", storage=url)  # gone since: a resumed study does not need it

    study, lines = new_study(url, {"from": "old", "top_k": 5})  # resumed, with another top_k

    assert len(study.trials) == 1 and lines == []


def test_a_study_that_already_has_trials_is_not_seeded(url):
    earlier_study(url, "old", [({"training.learning_rate": 0.002}, 0.9)])
    earlier_study(url, "new", [({"training.learning_rate": 0.003}, 0.5)])

    study, lines = new_study(url, {"from": "old"})

    assert len(study.trials) == 1
    assert lines == ["warm start: study new already has trials; only a new study is seeded"]


def test_an_earlier_study_without_completed_trials_queues_nothing(url):
    earlier_study(url, "empty", [])

    study, lines = new_study(url, {"from": "empty"})

    assert study.trials == [] and lines == ["warm start from study empty: no completed trials; nothing queued"]


def test_a_missing_earlier_study_is_one_line_naming_it_and_the_studies_there_and_writes_nothing(
    url, workdir, write_study, capsys
):
    earlier_study(url, "demo-old", [({"training.learning_rate": 0.002}, 0.9)])
    path = write_study()
    before = snapshot(workdir)

    err = refused(capsys, ["study", "run", str(path), "--warm-start", "demo-odl", "--warm-start", "other"])

    assert err == (
        "error: study 'tiny': study.warm_start.from: no study 'demo-odl' (did you mean demo-old?), 'other' in the "
        f"Optuna storage sqlite:///{workdir}/mlruns/optuna.db (it holds: demo-old); name earlier studies there"
    )
    assert snapshot(workdir) == before and before["mlflow.db"] is None


GRID = {"training.learning_rate": {"choices": [1.0e-3, 2.0e-3]}}  # a space the grid sampler takes


@pytest.mark.parametrize(
    "study, problem",
    [
        (
            {"warm_start": {"from": "old", "top_k": 0}},
            "study.warm_start.top_k: Input should be greater than or equal to 1",
        ),
        ({"warm_start": {"from": "old", "topk": 2}}, "study.warm_start.topk: unknown key (did you mean top_k?)"),
        ({"warm_start": {"top_k": 2}}, "study.warm_start.from: Field required"),
        (
            {"warm_start": {"from": ["old", "tiny"]}},
            "study.warm_start.from: 'tiny' is this study itself: name earlier studies",
        ),
        (
            {"warm_start": {"from": "old"}, "sampler": {"type": "grid"}},
            "study.warm_start: the grid sampler tries every combination anyway: remove warm_start",
        ),
    ],
)
def test_warm_start_keys_are_checked_with_the_study_file(study, problem):
    with pytest.raises(StudyFileError) as e:
        validate_study(merge(TINY, {"study": study, "search_space": GRID}), "x.yaml")
    assert str(e.value) == f"x.yaml: {problem}"


@pytest.mark.slow
def test_a_seeded_trial_runs_with_its_values_and_its_run_names_where_they_came_from(url, write_study, capsys):
    import optuna

    earlier_study(url, "old", [({"training.learning_rate": 0.004}, 0.9)])
    path = write_study(study={"n_trials": 1}, registry={})

    assert main(["study", "run", str(path), "--warm-start", "old"]) == 0
    assert "warm start from study old: 1 trial queued (its trial 0)" in capsys.readouterr().out
    assert main(["study", "run", str(path), "--trials", "1"]) == 0  # resumed: sampled, not seeded again
    assert "warm start" not in capsys.readouterr().out

    trials = optuna.load_study(study_name="tiny", storage="sqlite:///mlruns/optuna.db").trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    assert trials[0].params == {"training.learning_rate": 0.004}
    assert trials[0].user_attrs["seeded_from_study"] == "old" and "seeded_from_study" not in trials[1].user_attrs
    runs = {r.data.tags["optuna.trial.number"]: r.data.tags for r in trial_runs(tracking_client())}
    assert {k: v for k, v in runs["0"].items() if k.startswith("workbench.seeded")} == {
        "workbench.seeded_from_study": "old",
        "workbench.seeded_from_trial": "0",
        "workbench.seeded_from_run": "run-of-old-0",
    }
    assert not any(k.startswith("workbench.seeded") for k in runs["1"])
