"""Pruners a study file can name: Optuna's, Wilcoxon's among them, and a patience around any of them."""

from __future__ import annotations

import optuna
import pytest
from helpers import TINY, merge

from workbench.config.study_file import validate_study
from workbench.stores.storage import build_pruner


def pruner_of(pruner: dict) -> optuna.pruners.BasePruner:
    return build_pruner(validate_study(merge(TINY, {"study": {"pruner": pruner}})))


def pruned_at(pruner: optuna.pruners.BasePruner, curves: list[list[float]]) -> list[int | None]:
    """Each curve reported evaluation by evaluation in a maximized study: where it was pruned (1-based), or None."""
    study = optuna.create_study(direction="maximize", pruner=pruner)
    stops: list[int | None] = []
    for curve in curves:
        trial = study.ask()
        stop = None
        for step, value in enumerate(curve, start=1):
            trial.report(value, step)
            if trial.should_prune():
                stop = step
                break
        stops.append(stop)
        study.tell(trial, state=optuna.trial.TrialState.PRUNED) if stop else study.tell(trial, curve[-1])
    return stops


def test_patience_alone_prunes_a_trial_that_falls_from_its_best():
    pruner = pruner_of({"type": "none", "patience": 2})
    # Optuna's PatientPruner: pruned once the last patience + 1 evaluations are all below the best before them
    curves = [[0.5, 0.6, 0.7, 0.65, 0.6, 0.6, 0.6], [0.5, 0.6, 0.7, 0.7, 0.7, 0.7], [0.5, 0.6, 0.7, 0.8, 0.9]]
    assert pruned_at(pruner, curves) == [6, None, None], "a plateau or a climb goes on"


def test_patience_around_a_pruner_waits_before_it_may_prune():
    curves = [[0.8, 0.9, 0.9, 0.9], [0.5, 0.6, 0.55, 0.5]]  # the second trial is below the first at every step
    assert pruned_at(pruner_of({"type": "median", "n_startup_trials": 1}), curves) == [None, 1]
    patient = pruner_of({"type": "median", "n_startup_trials": 1, "patience": 1})
    assert isinstance(patient, optuna.pruners.PatientPruner)
    assert pruned_at(patient, curves) == [None, 4], "pruned only once it has fallen from its best"


def test_wilcoxon_is_a_pruner_type():
    assert isinstance(pruner_of({"type": "wilcoxon", "p_threshold": 0.05}), optuna.pruners.WilcoxonPruner)


@pytest.mark.parametrize("pruner", [{"type": "median", "patience": 2, "min_delta": 0.01}, {"type": "hyperband"}])
def test_the_pruner_keys_given_are_the_parent_runs_params(pruner):
    spec = validate_study(merge(TINY, {"study": {"pruner": pruner}}))
    assert spec.study.pruner.logged == {k: v for k, v in pruner.items() if k != "type"}


def test_a_study_file_without_a_pruner_gets_the_patient_median_the_pruning_benchmark_chose():
    raw = merge(TINY, {})
    del raw["study"]["pruner"]
    pruner = build_pruner(validate_study(raw))
    assert isinstance(pruner, optuna.pruners.PatientPruner)
    # three startup trials, no pruning at the first evaluation, and never before a trial falls from its best
    startup = [0.8, 0.9, 0.9, 0.9]
    curves = [startup, startup, startup, [0.5, 0.6, 0.55, 0.5], [0.5, 0.6, 0.7, 0.8]]
    assert pruned_at(pruner, curves) == [None, None, None, 4, None]
