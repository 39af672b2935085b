"""A finished trial's outcome as Optuna sees it: its objective values and whether it met the study's constraints.

The first objective is the best evaluation of the study metric (what training followed); the
others are read from the costs and the eval metrics of that same best checkpoint.
"""

from __future__ import annotations

from typing import Any

from workbench.config.spec import BoundSpec, StudySpec
from workbench.core.keys import BEST_METRICS_ATTR, BROKEN_ATTR, FEASIBLE_ATTR, FEASIBLE_TAG
from workbench.stores.tracking import TrialRun
from workbench.trial.costs import record_costs
from workbench.trial.training import TrialResult

# Trial user attr and run tag: False when a completed trial broke a constraint (the reasons in CONSTRAINTS_BROKEN)


def measured(result: TrialResult) -> dict[str, float]:
    """Every number a trial produced that objectives and constraints may name."""
    return {**result.metrics, **result.costs, "objective": result.value}


def objective_values(spec: StudySpec, result: TrialResult) -> float | tuple[float, ...]:
    """What the objective returns: one float, or one value per objective (the first is the trial's best)."""
    if not spec.study.multi_objective:
        return result.value
    values = measured(result)
    rest = []
    for goal in spec.study.goals[1:]:
        if goal.metric not in values:
            raise KeyError(f"objective {goal.metric!r} was not measured (got {', '.join(sorted(values))})")
        rest.append(values[goal.metric])
    return (result.value, *rest)


def broken_constraints(constraints: dict[str, BoundSpec], values: dict[str, float]) -> dict[str, float]:
    """metric -> how far it lies outside its bounds, for every constraint (0 when met; a missing metric breaks it)."""
    return {name: bound.excess(values[name]) if name in values else float("inf") for name, bound in constraints.items()}


def record_outcome(trial: Any, run: TrialRun, spec: StudySpec, result: TrialResult) -> bool:
    """Rank 0: costs as user attrs, each constraint to Optuna (the sampler learns from them), feasibility
    marked on the trial and its run; returns whether the trial is feasible."""
    record_costs(trial, result.costs)
    trial.set_user_attr(BEST_METRICS_ATTR, result.metrics)
    constraints = spec.study.constraints
    if not constraints:
        return True
    excess = broken_constraints(constraints, measured(result))
    for name, value in excess.items():
        trial.set_constraint(name, min(value, 1e300))  # Optuna refuses NaN; a huge number still reads "broken"
    broken = {k: v for k, v in excess.items() if v > 0}
    trial.set_user_attr(FEASIBLE_ATTR, not broken)
    if broken:
        trial.set_user_attr(BROKEN_ATTR, ", ".join(f"{k} off by {v:.4g}" for k, v in broken.items()))
    run.set_tags({FEASIBLE_TAG: not broken})
    return not broken
