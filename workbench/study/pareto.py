"""Several objectives at the end of a study: every Pareto-optimal trial becomes a version, one becomes @challenger.

Each version is tagged with its objective values, costs and the study's constraints
(`stores.shipping.version_tags`); `registry.choose` (default: the best on the first objective)
picks the one that gets the alias.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from workbench.config.spec import StudySpec
from workbench.core.keys import BEST_METRICS_ATTR, CHALLENGER_TRIAL_TAG, RUN_ID_ATTR
from workbench.data.splits import TrialData
from workbench.stores.registry import CHALLENGER, register_best
from workbench.stores.shipping import choose, version_tags
from workbench.stores.storage import pareto_front


def candidate_values(spec: StudySpec, trial: Any) -> dict[str, float]:
    """Every number `registry.choose` may read of a trial: its objective values, costs and best eval metrics."""
    values = {k: float(v) for k, v in (trial.user_attrs.get(BEST_METRICS_ATTR) or {}).items()}  # eval_* of its best
    costs = {k: v for k, v in trial.user_attrs.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    values.update({k: float(v) for k, v in costs.items()})
    values.update({g.metric: v for g, v in zip(spec.study.goals, trial.values or ())})
    return values


def register_front(
    spec: StudySpec,
    study: Any,
    data: TrialData,
    tracking: Any,
    trial_dir: Callable[[int], Path],
    say: Callable[[str], None] = lambda line: None,
) -> str | None:
    """Register each Pareto-optimal trial (once: a resumed study skips those already registered) and alias the one
    `registry.choose` picks @challenger; returns "NAME version N" of that one, or None. `say` gets one line."""
    front = pareto_front(study)
    name, client = spec.registry.model_name or "", tracking.client
    versions: list[str | None] = []
    for trial in front:
        register_best(
            spec, trial, data, tracking, trial_dir(trial.number), alias=False, extra_tags=version_tags(spec, trial)
        )
        versions.append(_version_of(client, name, trial.user_attrs.get(RUN_ID_ATTR)))
    kept = [(t, v) for t, v in zip(front, versions) if v is not None]
    if not kept:
        return None
    picked = choose([candidate_values(spec, t) for t, _ in kept], spec.registry.choose, spec.study.goals[0])
    numbers = ", ".join(v for _, v in kept)
    if picked is None:
        say(f"Pareto front: {name} versions {numbers}; none meets registry.choose.where: @challenger not moved")
        return None
    trial, version = kept[picked]
    client.set_registered_model_alias(name, CHALLENGER, version)
    tracking.parent.set_tags({CHALLENGER_TRIAL_TAG: trial.number})
    rule = "registry.choose" if spec.registry.choose else f"the best {spec.study.metric}"
    say(f"Pareto front: {name} versions {numbers}; {rule} picks version {version} (trial {trial.number})")
    return f"{name} version {version}"


def _version_of(client, name: str, run_id: str | None) -> str | None:
    """The version registered from `run_id` (the latest, if several)."""
    if not run_id:
        return None
    found = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    return str(max(int(v.version) for v in found)) if found else None
