"""What a version records about the model it ships, and the rule that picks @challenger (pure functions)."""

from __future__ import annotations

import json

import optuna
from helpers import TINY, merge

from workbench.config.spec import ChooseSpec, ObjectiveSpec
from workbench.config.study_file import validate_study
from workbench.stores.shipping import choose, recorded_breaches, version_tags
from workbench.stores.storage import best_trial

FIRST = ObjectiveSpec(metric="eval_f1", direction="maximize")
FRONT = [
    {"eval_f1": 0.90, "latency_ms": 30.0},
    {"eval_f1": 0.85, "latency_ms": 12.0},
    {"eval_f1": 0.80, "latency_ms": 5.0},
]


def test_choose_takes_the_best_among_those_its_where_allows():
    assert choose(FRONT, None, FIRST) == 0, "default: the first objective's best"
    rule = ChooseSpec(maximize="eval_f1", where={"latency_ms": {"max": 20}})
    assert choose(FRONT, rule, FIRST) == 1
    assert choose(FRONT, ChooseSpec(minimize="latency_ms"), FIRST) == 2
    assert choose(FRONT, ChooseSpec(maximize="eval_f1", where={"latency_ms": {"max": 1}}), FIRST) is None


def test_recorded_breaches_read_the_constraints_and_costs_of_a_version():
    tags = {"workbench.constraints": json.dumps({"latency_ms": {"max": 20}}), "workbench.cost.latency_ms": "31.5"}
    assert recorded_breaches(tags) == ["latency_ms 31.5 outside max 20"]
    assert recorded_breaches({**tags, "workbench.cost.latency_ms": "19"}) == []
    assert recorded_breaches({"workbench.constraints": json.dumps({"params": {"min": 1}})}) == [
        "params not recorded (constraint min 1)"
    ]
    assert recorded_breaches({}) == []


def trial(number: int, value: float, params: float, limit: float = 20000):
    return optuna.trial.create_trial(
        value=value, user_attrs={"params": params}, system_attrs={"constraints:params": params - limit}
    )


def test_best_trial_is_the_best_feasible_one_and_its_version_records_the_constraints():
    study = optuna.create_study(direction="maximize")
    study.add_trials([trial(0, 0.9, 45000), trial(1, 0.8, 6000), trial(2, 0.7, 5000)])
    best = best_trial(study)
    assert best.number == 1, "trial 0 scores higher but breaks params <= 20000"
    spec = validate_study(merge(TINY, {"study": {"constraints": {"params": {"max": 20000}}}}))
    tags = version_tags(spec, best)
    assert tags["workbench.cost.params"] == 6000
    assert recorded_breaches({k: str(v) for k, v in tags.items()}) == []
