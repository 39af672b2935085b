"""The Optuna side of a study: storage, sampler, pruner, open/resume checks, trial counts, the best trial.

One RDB storage (SQLite by default, PostgreSQL for many machines) with heartbeats, so the
trial of a worker that died is failed and retried. `best_trial` is the one rule every
caller uses to decide which trial won.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from workbench.config.search_space import describe_space, grid_of
from workbench.config.spec import PRUNERS, SAMPLERS, StudySpec
from workbench.core import distributed, settings
from workbench.core.errors import StoreError, StudyFileError, error_chain, first_line
from workbench.core.keys import FAIL_REASON_ATTR, METRIC_ATTR, OBJECTIVES_ATTR, RUN_ID_ATTR, SPACE_ATTR
from workbench.stores.db import absolute_sqlite, default_sqlite, driver_url, existing_sqlite, mask_url
from workbench.stores.journal import absolute_journal, build_journal_storage, is_journal
from workbench.stores.retrying import RetryingRDBStorage, lost_connection
from workbench.stores.tracking import end_stale_run

if TYPE_CHECKING:
    import optuna

logger = logging.getLogger(__name__)

DEFAULT_STORAGE = default_sqlite("optuna")


def resolve_storage(explicit: str | None = None) -> str:
    """--storage, else $WORKBENCH_STORAGE (keeps a password out of `ps`), else the local SQLite store."""
    given = explicit or settings.WORKBENCH_STORAGE.get()
    if given and is_journal(given):
        return absolute_journal(given)
    return absolute_sqlite(given or DEFAULT_STORAGE, "--storage")


def open_storage_readonly(explicit: str | None = None) -> optuna.storages.BaseStorage:
    """The Optuna storage for a command that only reads: no file, folder or table is created."""
    from optuna.storages import RDBStorage

    if explicit is not None and is_journal(explicit):
        return build_journal_storage(explicit, create=False)
    url = existing_sqlite(explicit or DEFAULT_STORAGE, "--storage", "Optuna study store")
    if "://" not in url:
        raise StoreError(f"--storage {url!r}: not a database URL (e.g. {DEFAULT_STORAGE} or postgresql://...)")
    try:
        return RDBStorage(driver_url(url), skip_table_creation=True)
    except Exception as e:  # sqlalchemy errors: bad URL, server down, missing driver, not an Optuna database
        raise StoreError(f"--storage {url}: cannot open the Optuna storage: {first_line(e)}") from None


@contextmanager
def quiet_experimental():
    """Optuna marks heartbeats, GP and grid helpers experimental; the warning is noise here."""
    import warnings

    from optuna.exceptions import ExperimentalWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        yield


TABLE_RACE_TRIES = 5  # workers that start together on an empty database race to create Optuna's tables


def build_storage(url: str) -> optuna.storages.BaseStorage:
    """An RDB storage with heartbeats, so a killed worker's trial is failed and retried; a server's is
    a RetryingRDBStorage, whose calls wait up to $WORKBENCH_RECONNECT_S for the server to come back."""
    if is_journal(url):  # no heartbeats there: a killed worker's trial stays RUNNING
        return build_journal_storage(url)
    if "://" not in url:
        raise StoreError(
            f"--storage {mask_url(url)!r}: not a database URL "
            f"(e.g. {DEFAULT_STORAGE}, postgresql://... or journal:PATH)"
        )
    try:
        for attempt in range(TABLE_RACE_TRIES):
            try:
                return _open_rdb(url)
            except Exception as e:
                if attempt == TABLE_RACE_TRIES - 1 or not _lost_table_race(e):
                    raise
                time.sleep(0.5 * (attempt + 1))  # another worker is creating the tables: they are there soon
    except Exception as e:  # sqlalchemy errors: bad URL, server down, missing driver
        raise StoreError(f"--storage {mask_url(url)}: cannot open the Optuna storage: {first_line(e)}") from None
    raise AssertionError("unreachable: the last attempt returns or raises")


def _open_rdb(url: str) -> optuna.storages.RDBStorage:
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    sqlite = url.startswith("sqlite")
    with quiet_experimental():
        options: dict[str, Any] = {
            "engine_kwargs": {"connect_args": {"timeout": 60}} if sqlite else {"pool_pre_ping": True},
            "heartbeat_interval": settings.WORKBENCH_HEARTBEAT_S.get(),
            "grace_period": settings.WORKBENCH_GRACE_S.get(),
            "heartbeat_stale_trial_callback": _retry_and_close_run(RetryHeartbeatStaleTrialCallback(max_retry=2)),
        }
        if sqlite:  # a SQLite file cannot lose its connection
            return RDBStorage(driver_url(url), **options)
        reconnect_s = settings.WORKBENCH_RECONNECT_S.get()
        return RetryingRDBStorage(driver_url(url), reconnect_s=reconnect_s, shown_url=mask_url(url), **options)


def _lost_table_race(e: BaseException) -> bool:
    """True when workers starting together on an empty database raced to create Optuna's tables, and this one lost."""
    words = ("duplicate key value", "already exists", "unique constraint")
    return any(w in str(x).lower() for x in error_chain(e) for w in words)


def store_outage(e: BaseException, url: str) -> StoreError | None:
    """The error that stops a study whose Optuna storage stayed unreachable past $WORKBENCH_RECONNECT_S, or None."""
    lost = lost_connection(e)
    if lost is None:
        return None
    return StoreError(
        f"--storage {mask_url(url)}: unreachable for over {settings.WORKBENCH_RECONNECT_S.get():g} s ({lost}): "
        "run the same command to resume the study"
    )


@contextmanager
def outage_stops_study(url: str):
    """Inside the block, a storage unreachable past $WORKBENCH_RECONNECT_S raises one StoreError (exit 2, resumable)."""
    try:
        yield
    except Exception as e:  # Optuna's own bookkeeping can fail on the way out (an UnboundLocalError): look at the chain
        error = store_outage(e, url)
        if error is None:
            raise
        raise error from None


def _retry_and_close_run(retry: Callable) -> Callable:
    """Stale-trial callback: queue the retry, then end the dead worker's MLflow run (else it stays RUNNING)."""

    def callback(study, trial) -> None:
        retry(study, trial)
        run_id = trial.user_attrs.get(RUN_ID_ATTR)
        if run_id:
            grace_s = settings.WORKBENCH_GRACE_S.get()
            end_stale_run(run_id, f"Worker lost: no heartbeat for {grace_s}s; trial {trial.number} is retried")

    return callback


def build_sampler(spec: StudySpec) -> optuna.samplers.BaseSampler:
    import optuna

    sampler = spec.study.sampler
    cls = getattr(optuna.samplers, SAMPLERS[sampler.type])
    options = dict(sampler.options)
    worker = distributed.worker_id()
    if (
        worker is not None and options.get("seed") is not None
    ):  # same seed in every worker: they would all sample the same trials
        options["seed"] = options["seed"] + worker
    if sampler.type == "grid":
        return cls(grid_of(spec.space), **options)
    with quiet_experimental():
        return cls(**options)


def build_pruner(spec: StudySpec) -> optuna.pruners.BasePruner:
    import optuna

    pruner = spec.study.pruner
    with quiet_experimental():  # WilcoxonPruner and PatientPruner are experimental in Optuna
        chosen = getattr(optuna.pruners, PRUNERS[pruner.type])(**pruner.options)
        if pruner.patience is None:
            return chosen
        wrapped = None if pruner.type == "none" else chosen
        return optuna.pruners.PatientPruner(wrapped, patience=pruner.patience, min_delta=pruner.min_delta)


def open_study(spec: StudySpec, storage_url: str) -> optuna.Study:
    """Create the study, or load it when it exists and matches the study file."""
    import optuna

    storage = build_storage(storage_url)
    check_stored(spec, storage)
    study = optuna.create_study(
        storage=storage,
        study_name=spec.study.name,
        directions=[goal.direction for goal in spec.study.goals],
        sampler=build_sampler(spec),
        # Optuna cannot prune several objectives (Trial.report raises): no pruner then
        pruner=optuna.pruners.NopPruner() if spec.study.multi_objective else build_pruner(spec),
        load_if_exists=True,
    )
    if SPACE_ATTR not in study.user_attrs:
        study.set_user_attr(SPACE_ATTR, describe_space(spec.space))
        study.set_user_attr(METRIC_ATTR, spec.study.metric)
    if spec.study.multi_objective and OBJECTIVES_ATTR not in study.user_attrs:
        study.set_user_attr(OBJECTIVES_ATTR, [goal.metric for goal in spec.study.goals])
        with quiet_experimental():  # trials_dataframe() then has values_eval_f1, values_latency_ms, ...
            study.set_metric_names([goal.metric for goal in spec.study.goals])
    return study


def check_stored(spec: StudySpec, storage) -> None:
    """A resumed study must keep its direction, metric and search space: never silently mix."""
    try:
        study_id = storage.get_study_id_from_name(spec.study.name)
    except KeyError:
        return
    stored_directions = [d.name.lower() for d in storage.get_study_directions(study_id)]
    attrs = storage.get_study_user_attrs(study_id)
    problems = []
    directions = [goal.direction for goal in spec.study.goals]
    if stored_directions != directions:
        problems.append(
            f"study.direction: {', '.join(directions)} differs from the stored study ({', '.join(stored_directions)})"
        )
    names = [goal.metric for goal in spec.study.goals]
    if len(names) > 1 and attrs.get(OBJECTIVES_ATTR, names) != names:
        problems.append(f"study.objectives: {', '.join(names)} differ from the stored study's")
    if attrs.get(METRIC_ATTR, spec.study.metric) != spec.study.metric:
        problems.append(f"study.metric: {spec.study.metric} differs from the stored study ({attrs[METRIC_ATTR]})")
    stored_space = attrs.get(SPACE_ATTR)
    if stored_space is not None and stored_space != describe_space(spec.space):
        new = describe_space(spec.space)
        changed = sorted(k for k in set(stored_space) | set(new) if stored_space.get(k) != new.get(k))
        problems.append(f"search_space: {', '.join(changed)} differ from the stored study")
    if problems:
        problems.append(f"rename study.name to start a new study, or restore the file that created {spec.study.name!r}")
        raise StudyFileError(f"study {spec.study.name!r}", problems)


@dataclass(frozen=True)
class TrialCounts:
    """A study's trials as its target sees them, from one read of the storage.

    A trial that failed because its worker died or was interrupted does not count: it is
    retried (heartbeat) or replaced by a new one.
    """

    finished: int  # complete, pruned, or failed for a reason of its own
    running: int
    queued: int  # WAITING: enqueued by hand, or a retry of a dead worker's trial

    @property
    def counted(self) -> int:
        """Trials that count toward the target: a running or queued trial will finish."""
        return self.finished + self.running + self.queued

    def summary(self, target: int) -> str:
        """`3/12 trials done`, and how many more are running or queued, if any."""
        others = ", ".join(f"{n} {what}" for n, what in ((self.running, "running"), (self.queued, "queued")) if n)
        return f"{self.finished}/{target} trials done" + (f" ({others})" if others else "")


def count_trials(study: optuna.Study) -> TrialCounts:
    from optuna.trial import TrialState

    finished = running = queued = 0
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.RUNNING:
            running += 1
        elif t.state == TrialState.WAITING:
            queued += 1
        elif t.state != TrialState.FAIL or FAIL_REASON_ATTR in t.user_attrs:
            finished += 1
    return TrialCounts(finished, running, queued)


def fail_stale(study) -> None:
    """Mark trials whose worker stopped sending heartbeats FAIL (and retry them); see build_storage."""
    import optuna

    with quiet_experimental():
        optuna.storages.fail_stale_trials(study)


def running_trials(study) -> set[int]:
    from optuna.trial import TrialState

    return {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}


def best_trial(study) -> Any | None:
    """The best completed trial (a FrozenTrial); ties go to the earliest trial.

    Optuna's own `study.best_trial` leaves ties to the database's row order, which PostgreSQL
    does not fix: two workers could each see the other's trial as best and both delete their
    saved model. Every caller decides with this one rule.
    """
    ranked = ranked_trials(study)
    return ranked[0] if ranked else None


def ranked_trials(study) -> list:
    """Completed trials that met the study's constraints, best first on the (first) objective, ties by number;
    with several objectives, only those on the Pareto front."""
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if is_feasible(t)]
    if len(study.directions) > 1:
        done = pareto_front(study)
    sign = -1.0 if study.directions[0].name == "MAXIMIZE" else 1.0
    return sorted(done, key=lambda t: (sign * t.values[0], t.number))


def kept_trials(study, top_k: int = 1) -> set[int]:
    """Trials whose saved models may still be registered: the Pareto front, else the `top_k` best."""
    ranked = ranked_trials(study)
    return {t.number for t in (ranked if len(study.directions) > 1 else ranked[:top_k])}


def is_feasible(trial) -> bool:
    """A trial meets every constraint it was given (Optuna's rule: each constraint value <= 0)."""
    return all(v <= 0.0 for v in trial.constraints.values())


def objective_names(study) -> list[str]:
    """The study's objective metrics, in order (one: the study metric)."""
    return list(study.user_attrs.get(OBJECTIVES_ATTR) or [study.user_attrs.get(METRIC_ATTR, "objective")])


def pareto_front(study) -> list:
    """The feasible trials no other feasible trial beats on every objective, by trial number (Optuna's best_trials)."""
    return sorted(study.best_trials, key=lambda t: t.number)
