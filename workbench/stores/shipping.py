"""What a registered version records about the model it ships, and the rule that picks @challenger among several.

A version made from a trial carries that trial's objective values, its costs and the study's
constraints as tags; `recorded_breaches` reads them back (promotion refuses a candidate that
breaks a constraint recorded with it). `choose` picks one version among the Pareto-optimal ones.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from workbench.config.spec import COST_METRICS, BoundSpec, ChooseSpec, ObjectiveSpec, StudySpec
from workbench.core.keys import CONSTRAINTS_TAG, PARETO_TAG, VERSION_METRIC_TAG, VERSION_VALUE_TAG
from workbench.core.keys import COST_TAG_PREFIX as COST_TAG
from workbench.core.keys import OBJECTIVE_TAG_PREFIX as OBJECTIVE_TAG

# Version tags (a prefix is followed by a metric name).


def version_tags(spec: StudySpec, trial: Any) -> dict[str, Any]:
    """Tags recording a trial's objective values, costs and the constraints it was held to."""
    tags: dict[str, Any] = {}
    goals = spec.study.goals
    if len(goals) > 1:
        tags.update({OBJECTIVE_TAG + g.metric: v for g, v in zip(goals, trial.values or ())})
        tags[PARETO_TAG] = True
    tags.update({COST_TAG + name: trial.user_attrs[name] for name in COST_METRICS if name in trial.user_attrs})
    if spec.study.constraints:
        bounds = {k: b.model_dump(exclude_none=True) for k, b in spec.study.constraints.items()}
        tags[CONSTRAINTS_TAG] = json.dumps(bounds, sort_keys=True)
    return tags


def recorded_values(tags: dict[str, str]) -> dict[str, float]:
    """metric -> value, from a version's objective, cost and study-metric tags."""
    values: dict[str, float] = {}
    for key, text in tags.items():
        for prefix in (OBJECTIVE_TAG, COST_TAG):
            if key.startswith(prefix):
                values[key.removeprefix(prefix)] = _float(text)
    if VERSION_METRIC_TAG in tags and VERSION_VALUE_TAG in tags:
        values.setdefault(tags[VERSION_METRIC_TAG], _float(tags[VERSION_VALUE_TAG]))
    return values


def recorded_breaches(tags: dict[str, str]) -> list[str]:
    """`latency_ms 31.2 > max 20` for each constraint recorded on a version that its recorded values break."""
    if CONSTRAINTS_TAG not in tags:
        return []
    values = recorded_values(tags)
    out = []
    for name, raw in sorted(json.loads(tags[CONSTRAINTS_TAG]).items()):
        bound = BoundSpec(**raw)
        value = values.get(name)
        if value is None or math.isnan(value):
            out.append(f"{name} not recorded (constraint {_describe(bound)})")
        elif bound.excess(value) > 0:
            out.append(f"{name} {value:g} outside {_describe(bound)}")
    return out


def choose(candidates: Sequence[dict[str, float]], rule: ChooseSpec | None, first: ObjectiveSpec) -> int | None:
    """Index of the candidate `rule` picks (the best on its metric among those its `where` allows; ties: the
    earliest), or, without a rule, the best on the first objective. None when no candidate qualifies."""
    metric = rule.metric if rule else first.metric
    maximize = (rule.maximize is not None) if rule else first.direction == "maximize"
    where = rule.where if rule else {}
    allowed = [
        i
        for i, values in enumerate(candidates)
        if metric in values and all(k in values and b.excess(values[k]) == 0 for k, b in where.items())
    ]
    if not allowed:
        return None
    sign = -1.0 if maximize else 1.0
    return min(allowed, key=lambda i: (sign * candidates[i][metric], i))


def _describe(bound: BoundSpec) -> str:
    parts = [
        f"min {bound.min:g}" if bound.min is not None else "",
        f"max {bound.max:g}" if bound.max is not None else "",
    ]
    return " and ".join(p for p in parts if p)


def _float(text: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan
