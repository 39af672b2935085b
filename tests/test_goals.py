"""study.objectives, study.constraints, registry.choose and selection in a study file: accepted forms and refusals."""

from __future__ import annotations

import pytest
from helpers import TINY, merge

from workbench.config.spec import BoundSpec
from workbench.config.study_file import apply_overrides, validate_study
from workbench.core.errors import StudyFileError

TWO = [{"metric": "eval_f1", "direction": "maximize"}, {"metric": "latency_ms", "direction": "minimize"}]


def objectives_study(objectives=TWO, **changes) -> dict:
    raw = merge(TINY, changes)
    raw["study"] = {k: v for k, v in raw["study"].items() if k not in ("metric", "direction")}
    raw["study"]["objectives"] = objectives
    return raw


def problems(raw: dict) -> str:
    with pytest.raises(StudyFileError) as e:
        validate_study(raw, "x.yaml")
    return str(e.value)


def test_objectives_lead_with_the_first_and_survive_a_trial_override():
    spec = validate_study(objectives_study())
    assert (spec.study.metric, spec.study.direction, spec.study.multi_objective) == ("eval_f1", "maximize", True)
    trial = apply_overrides(spec, {"training.learning_rate": 0.002})  # dumps and validates again
    assert [g.metric for g in trial.study.goals] == ["eval_f1", "latency_ms"]
    assert "metric" not in spec.to_dict()["study"], "the logged spec holds one form"


def test_both_forms_unknown_metrics_and_a_cost_first_are_refused_with_the_fix():
    both = objectives_study()
    both["study"]["metric"] = "eval_f1"
    assert "give study.objectives or study.metric/direction, not both" in problems(both)
    typo = objectives_study([TWO[0], {"metric": "latncy_ms", "direction": "minimize"}])
    assert "study.objectives[1].metric: 'latncy_ms' is not computed or measured" in problems(typo)
    assert "(did you mean latency_ms?)" in problems(typo)
    first = objectives_study(list(reversed(TWO)))
    assert "study.objectives[0].metric: latency_ms is measured after training" in problems(first)
    cmaes = objectives_study(study={"sampler": {"type": "cmaes"}})
    assert "study.sampler.type: cmaes optimizes one objective" in problems(cmaes)


def test_constraints_choose_and_selection_are_checked():
    assert "study.constraints.parms: 'parms' is not computed" in problems(
        merge(TINY, {"study": {"constraints": {"parms": {"max": 5}}}})
    )
    assert "give min, max or both" in problems(merge(TINY, {"study": {"constraints": {"params": {}}}}))
    assert "registry.choose: picks among Pareto-optimal versions" in problems(
        merge(TINY, {"registry": {"choose": {"maximize": "eval_f1"}}})
    )
    assert "give one of maximize or minimize" in problems(
        objectives_study(registry={"choose": {"maximize": "eval_f1", "minimize": "latency_ms"}})
    )
    assert "selection: retraining with seeds ranks by one objective" in problems(
        objectives_study(selection={"top_k": 2, "seeds": 2})
    )
    spec = validate_study(
        merge(TINY, {"study": {"constraints": {"latency_ms": {"max": 20}}}, "selection": {"top_k": 2}})
    )
    assert spec.selection.top_k == 2 and spec.selection.seeds == 2


def test_stop_at_is_one_metric_s_value_and_follows_its_direction():
    assert "stop_at is a value of one metric" in problems(objectives_study(study={"stop_at": 0.9}))
    maximize = validate_study(merge(TINY, {"study": {"metric": "eval_f1", "direction": "maximize", "stop_at": 0.9}}))
    assert maximize.study.reached(0.9) and not maximize.study.reached(0.89)
    minimize = validate_study(merge(TINY, {"study": {"metric": "eval_loss", "direction": "minimize", "stop_at": 0.3}}))
    assert minimize.study.reached(0.29) and not minimize.study.reached(0.31)
    assert not validate_study(TINY).study.reached(1.0), "no stop_at: never good enough"


def test_a_bound_says_how_far_a_value_lies_outside_it():
    bound = BoundSpec(min=0.5, max=20)
    assert (bound.excess(10), bound.excess(25), bound.excess(0.25)) == (0.0, 5.0, 0.25)
