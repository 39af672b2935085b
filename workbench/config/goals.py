"""What a study file asks of the model it ships: objectives, constraints, the choice among versions, selection.

`check_goals` reads the raw study file and returns one problem per mistake (metric names with
did-you-mean, a first objective that training cannot follow, samplers that cannot do several
objectives); pydantic (`spec.py`) has already checked the shapes.
"""

from __future__ import annotations

from typing import Any

from workbench.config.spec import COST_METRICS, METRICS, MULTI_OBJECTIVE_SAMPLERS, PER_CLASS_METRICS
from workbench.core.errors import did_you_mean


def is_known_metric(name: Any) -> bool:
    """An eval metric a trial computes (per-class names are checked against the labels later) or a cost it measures."""
    return isinstance(name, str) and (name in METRICS or name in COST_METRICS or is_per_class(name))


def is_per_class(name: str) -> bool:
    return any(name.startswith(p) and name != p for p in PER_CLASS_METRICS)


def check_goals(raw: dict[str, Any]) -> list[str]:
    """Every problem with study.objectives, study.constraints, registry.choose and selection, as `key: fix` lines."""
    study = _mapping(raw.get("study"))
    objectives = study.get("objectives")
    problems = []
    if isinstance(objectives, list):
        problems += _check_objectives(objectives, _mapping(study.get("sampler")).get("type", "tpe"))
        if len(objectives) > 1 and raw.get("selection") is not None:
            problems.append("selection: retraining with seeds ranks by one objective: use it with study.metric")
    for key in _mapping(study.get("constraints")):
        problems += _metric_problem(f"study.constraints.{key}", key)
    choose = _mapping(_mapping(raw.get("registry")).get("choose"))
    for goal in ("maximize", "minimize"):
        if isinstance(choose.get(goal), str):
            problems += _metric_problem(f"registry.choose.{goal}", choose[goal])
    for key in _mapping(choose.get("where")):
        problems += _metric_problem(f"registry.choose.where.{key}", key)
    if choose and not (isinstance(objectives, list) and len(objectives) > 1):
        problems.append("registry.choose: picks among Pareto-optimal versions: give study.objectives (two or more)")
    return problems


def _check_objectives(objectives: list, sampler: str) -> list[str]:
    problems = []
    names = [o.get("metric") for o in objectives if isinstance(o, dict)]
    for i, name in enumerate(names):
        problems += _metric_problem(f"study.objectives[{i}].metric", name)
    if names and is_known_metric(names[0]) and names[0] in COST_METRICS:
        problems.append(
            f"study.objectives[0].metric: {names[0]} is measured after training; training, early stopping and the "
            "best checkpoint follow the first objective: put an eval_* metric first"
        )
    repeated = sorted({n for n in names if isinstance(n, str) and names.count(n) > 1})
    if repeated:
        problems.append(f"study.objectives: {', '.join(repeated)} given twice: give each metric once")
    if len(objectives) > 1 and sampler not in MULTI_OBJECTIVE_SAMPLERS:
        problems.append(
            f"study.sampler.type: {sampler} optimizes one objective "
            f"(choose one of {', '.join(MULTI_OBJECTIVE_SAMPLERS)})"
        )
    if not objectives:
        problems.append("study.objectives: empty: give at least one {metric: ..., direction: ...}")
    return problems


def _metric_problem(key: str, name: Any) -> list[str]:
    if is_known_metric(name):
        return []
    known = [*METRICS, *COST_METRICS]
    choices = ", ".join([*known, *(p + "<label>" for p in PER_CLASS_METRICS)])
    return [
        f"{key}: {name!r} is not computed or measured by a trial "
        f"(choose one of {choices}){did_you_mean(str(name), known)}"
    ]


def _mapping(value: Any) -> dict:
    return value if isinstance(value, dict) else {}
