"""Warm starts: a new study's first trials are the best parameter sets of earlier studies in its storage.

`study.warm_start: {from: [OTHER, ...], top_k: K}` (or `study run --warm-start OTHER`) enqueues
the K best completed trials of each earlier study, by that study's own direction, before the
first trial of a new study, the best first across the earlier studies (`best_first`). Values
are limited to the current search space: a parameter the space lacks is dropped, a number
outside its range is clipped (and put on its step), a category that is not a choice is
dropped; the sampler samples what was dropped. The enqueued trials are real trials of the
new study, so its sampler (TPE, GP, CMA-ES) learns from their results like any other's. A
resumed study is never seeded again (study attribute WARM_START_ATTR).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from workbench.config.search_space import CategoricalSpec, ParamSpec
from workbench.config.spec import StudySpec
from workbench.core.errors import StudyFileError, did_you_mean
from workbench.core.keys import (
    METRIC_ATTR,
    RUN_ID_ATTR,
    SEEDED_FROM_RUN_ATTR,
    SEEDED_FROM_RUN_TAG,
    SEEDED_FROM_STUDY_ATTR,
    SEEDED_FROM_STUDY_TAG,
    SEEDED_FROM_TRIAL_ATTR,
    SEEDED_FROM_TRIAL_TAG,
    WARM_START_ATTR,
)
from workbench.stores.db import mask_url
from workbench.stores.storage import build_storage

if TYPE_CHECKING:
    import optuna

SEEDED_TAGS = {  # trial attribute -> tag on the seeded trial's MLflow run
    SEEDED_FROM_STUDY_ATTR: SEEDED_FROM_STUDY_TAG,
    SEEDED_FROM_TRIAL_ATTR: SEEDED_FROM_TRIAL_TAG,
    SEEDED_FROM_RUN_ATTR: SEEDED_FROM_RUN_TAG,
}
LISTED_STUDIES = 20  # names a missing-study error lists at most


@dataclass
class Seed:
    """One earlier trial's parameters, limited to the current search space."""

    study: str
    number: int
    value: float  # in the earlier study
    rank: int  # 0 for that study's best
    params: dict[str, Any]
    run_id: str | None = None
    clipped: list[tuple[str, Any, Any]] = field(default_factory=list)  # (name, was, now)
    dropped: list[tuple[str, str]] = field(default_factory=list)  # (name, why)

    @property
    def user_attrs(self) -> dict[str, Any]:
        attrs: dict[str, Any] = {SEEDED_FROM_STUDY_ATTR: self.study, SEEDED_FROM_TRIAL_ATTR: self.number}
        if self.run_id:
            attrs[SEEDED_FROM_RUN_ATTR] = self.run_id
        return attrs


def check_sources(spec: StudySpec, storage_url: str) -> None:
    """Refuse a warm start from a study the storage does not hold, before anything is written."""
    warm = spec.study.warm_start
    if warm is None:
        return
    storage = build_storage(storage_url)
    names = sorted(s.study_name for s in storage.get_all_studies())
    missing = [name for name in warm.from_ if name not in names]
    if not missing or (spec.study.name in names and not _unseeded(storage, spec.study.name)):
        return  # a resumed study is not seeded again: its earlier studies may be gone
    held = ", ".join(names[:LISTED_STUDIES]) + (
        f" and {len(names) - LISTED_STUDIES} more" if len(names) > LISTED_STUDIES else ""
    )
    unknown = ", ".join(f"{name!r}{did_you_mean(name, names)}" for name in missing)
    raise StudyFileError(
        f"study {spec.study.name!r}",
        [
            f"study.warm_start.from: no study {unknown} in the Optuna storage {mask_url(storage_url)} "
            f"({f'it holds: {held}' if names else 'it holds no study'}); name earlier studies there"
        ],
    )


def _unseeded(storage: optuna.storages.BaseStorage, name: str) -> bool:
    """True when study `name` has neither been seeded nor run a trial: `seed_new_study` would seed it."""
    study_id = storage.get_study_id_from_name(name)
    return WARM_START_ATTR not in storage.get_study_user_attrs(study_id) and storage.get_n_trials(study_id) == 0


def seed_new_study(
    study: optuna.Study, spec: StudySpec, storage_url: str, trials: int | None, show: Callable[[str], None]
) -> list[Seed]:
    """Enqueue the earlier studies' best parameter sets into `study` when it is new; returns what was enqueued.

    `trials` is how many this run will do (`--trials`), else `study.n_trials`: no more seeds
    than that are enqueued (queued trials all run). Prints one line per earlier study.
    """
    warm = spec.study.warm_start
    room = trials if trials is not None else spec.study.n_trials
    if (
        warm is None or room <= 0 or WARM_START_ATTR in study.user_attrs
    ):  # `--trials 0` leaves the seeding to a later run
        return []
    if study.get_trials(deepcopy=False):
        show(f"warm start: study {spec.study.name} already has trials; only a new study is seeded")
        return []
    study.set_user_attr(WARM_START_ATTR, {"from": list(warm.from_), "top_k": warm.top_k})  # first: never seeded twice
    storage = build_storage(storage_url)
    sources = {
        source: [
            limit_to_space(t, source, spec.space, rank)
            for rank, t in enumerate(best_trials(storage, source, warm.top_k))
        ]
        for source in warm.from_
    }
    taken, repeats = _take(best_first(sources, storage, spec), spec.space, room)
    for seed in taken:
        study.enqueue_trial(seed.params, user_attrs=seed.user_attrs)
    for source, seeds in sources.items():
        show(
            describe(source, seeds, [s for s in taken if s.study == source], [s for s in repeats if s.study == source])
        )
    return taken


def best_first(sources: dict[str, list[Seed]], storage: optuna.storages.BaseStorage, spec: StudySpec) -> list[Seed]:
    """The seeds in the order they run: by value when every earlier study scored this study's metric in its
    direction, else each study's best before any study's second best (then in `from` order).

    The best seeds run while the sampler still samples at random (its startup trials), and a
    study with `--trials N` keeps the best N rather than the first study's."""
    ranked = sorted(
        (seed for seeds in sources.values() for seed in seeds),
        key=lambda seed: (seed.rank, list(sources).index(seed.study)),
    )
    if not all(_scores_like(storage, source, spec) for source in sources):
        return ranked
    sign = -1.0 if spec.study.direction == "maximize" else 1.0
    return sorted(ranked, key=lambda seed: sign * seed.value)  # stable: equal values keep the order above


def _scores_like(storage: optuna.storages.BaseStorage, name: str, spec: StudySpec) -> bool:
    """True when study `name` was scored by this study's metric, in its direction: their values compare."""
    study_id = storage.get_study_id_from_name(name)
    metric = storage.get_study_user_attrs(study_id).get(METRIC_ATTR)
    return metric == spec.study.metric and storage.get_study_directions(study_id)[0].name.lower() == (
        spec.study.direction
    )


def best_trials(storage: optuna.storages.BaseStorage, name: str, top_k: int) -> list[optuna.trial.FrozenTrial]:
    """The `top_k` best completed trials of study `name`, best first by its own direction; ties go to the earliest."""
    from optuna.trial import TrialState

    study_id = storage.get_study_id_from_name(name)
    sign = -1.0 if storage.get_study_directions(study_id)[0].name == "MAXIMIZE" else 1.0
    done = storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.COMPLETE,))
    return sorted(done, key=lambda t: (sign * t.values[0], t.number))[:top_k]


def limit_to_space(trial: optuna.trial.FrozenTrial, source: str, space: dict[str, ParamSpec], rank: int = 0) -> Seed:
    """An earlier trial's parameters within `space`: unknown names and categories dropped, numbers clipped."""
    seed = Seed(source, trial.number, trial.values[0], rank, {}, trial.user_attrs.get(RUN_ID_ATTR))
    for name, value in trial.params.items():
        param = space.get(name)
        if param is None:
            seed.dropped.append((name, "not in the search space"))
        elif isinstance(param, CategoricalSpec):
            match = [c for c in param.choices if c == value and isinstance(c, bool) == isinstance(value, bool)]
            if match:
                seed.params[name] = match[0]
            else:
                seed.dropped.append((name, f"{_show(value)} is not a choice"))
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            seed.dropped.append((name, f"{_show(value)} is not a number"))
        else:
            seed.params[name] = now = _clip(value, param)
            if now != value:
                seed.clipped.append((name, value, now))
    return seed


def _clip(value: float, param: Any) -> float:
    """`value` within [low, high] and on the range's step; the range's own type (int or float)."""
    now = min(max(value, param.low), param.high)
    if param.step is not None:
        steps = round((now - param.low) / param.step)
        now = param.low + steps * param.step
        if now > param.high:  # Optuna lowers `high` to the last step below it
            now -= param.step
    if param.is_int:
        return int(round(now))
    return float(value) if math.isclose(now, value, rel_tol=1e-9, abs_tol=0.0) else float(now)


def _take(seeds: list[Seed], space: dict, room: int) -> tuple[list[Seed], list[Seed]]:
    """The seeds to enqueue: at most `room`, not repeating a complete parameter set already taken."""
    taken: list[Seed] = []
    repeats: list[Seed] = []
    for seed in seeds:
        complete = set(seed.params) == set(space)  # a partial set is completed by the sampler: not a repeat
        if complete and any(seed.params == other.params for other in taken):
            repeats.append(seed)
        elif len(taken) < room:
            taken.append(seed)
    return taken, repeats


def describe(source: str, seeds: list[Seed], taken: list[Seed], repeats: list[Seed]) -> str:
    """One line: what was enqueued from `source`, and what was clipped, dropped or left out."""
    if not seeds:
        return f"warm start from study {source}: no completed trials; nothing queued"
    queued = f"{len(taken)} trial{'s' * (len(taken) != 1)} queued"
    parts = [f"warm start from study {source}: {queued}" + (f" (its {_trials(taken)})" if taken else "")]
    clipped = [f"{n} {_show(was)} -> {_show(now)} (trial {s.number})" for s in taken for n, was, now in s.clipped]
    if clipped:
        parts.append("clipped " + ", ".join(clipped))
    dropped: dict[str, list[Seed]] = {}
    for s in taken:
        for name, why in s.dropped:
            dropped.setdefault(f"{name}: {why}", []).append(s)
    if dropped:
        parts.append("dropped " + ", ".join(f"{k} ({_trials(v)})" for k, v in dropped.items()))
    if repeats:
        parts.append(f"left out {_trials(repeats)} (the same values as one queued)")
    if len(taken) + len(repeats) < len(seeds):
        parts.append(f"{len(seeds) - len(taken) - len(repeats)} more left out: the study runs no more trials")
    return "; ".join(parts)


def seed_tags(user_attrs: dict[str, Any]) -> dict[str, Any]:
    """The MLflow tags of a seeded trial's run (which study and trial gave its values); empty for other trials."""
    return {tag: user_attrs[attr] for attr, tag in SEEDED_TAGS.items() if attr in user_attrs}


def _trials(seeds: list[Seed]) -> str:
    """`trial 4` or `trials 4, 1`."""
    return f"trial{'s' * (len(seeds) != 1)} " + ", ".join(str(s.number) for s in seeds)


def _show(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else repr(value)
