"""The Optuna side of a study: storage, sampler, pruner, open/resume checks, trial counts, the best trial.

One RDB storage (SQLite by default, PostgreSQL for many machines) with heartbeats, so the
trial of a worker that died is failed and retried. `best_trial` is the one rule every
caller uses to decide which trial won.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from workbench.config.search_space import describe_space, grid_of
from workbench.config.spec import PRUNERS, SAMPLERS, StudySpec
from workbench.core import distributed
from workbench.core.errors import StoreError, StudyFileError, error_chain, first_line
from workbench.stores.db import absolute_sqlite, default_sqlite, driver_url, existing_sqlite, mask_url
from workbench.stores.tracking import end_stale_run

if TYPE_CHECKING:
    import optuna

logger = logging.getLogger(__name__)

DEFAULT_STORAGE = default_sqlite("optuna")
STORAGE_ENV = "WORKBENCH_STORAGE"  # the Optuna storage URL when --storage is not given (how --workers passes it)
# A worker killed mid-trial is noticed after GRACE_S seconds without a heartbeat (every HEARTBEAT_S).
HEARTBEAT_S = int(os.environ.get("WORKBENCH_HEARTBEAT_S", "10"))
GRACE_S = int(os.environ.get("WORKBENCH_GRACE_S", "60"))
# A database server that restarts (connections cut, refused meanwhile) is retried this long, then the call fails.
RECONNECT_S = float(os.environ.get("WORKBENCH_RECONNECT_S", "60"))
# The RDBStorage methods a study calls (through Optuna's _CachedStorage, Optuna 5.0) and ours: each retried on a lost connection.
RETRIED_CALLS = (
    "create_new_study",
    "delete_study",
    "get_all_studies",
    "get_study_id_from_name",
    "get_study_name_from_id",
    "get_study_directions",
    "get_study_user_attrs",
    "get_study_system_attrs",
    "set_study_user_attr",
    "set_study_system_attr",
    "_create_new_trial",
    "_set_trial_param",
    "set_trial_state_values",
    "set_trial_intermediate_value",
    "set_trial_user_attr",
    "set_trial_system_attr",
    "get_trial",
    "_get_trials",
    "_get_best_trial_id",
    "get_trial_id_from_study_id_trial_number",
    "record_heartbeat",
    "_get_stale_trial_ids",
)
# Study attributes: what a resumed study must keep.
SPACE_ATTR = "workbench.search_space"
METRIC_ATTR = "workbench.metric"
OBJECTIVES_ATTR = "workbench.objectives"  # several objectives: their metric names, in order
ELAPSED_ATTR = "workbench.elapsed_s"  # wall time the study has run, over every session: study.timeout counts it
# Trial attributes: the trial's MLflow run, where it ran, and why it did not complete.
RUN_ID_ATTR = "mlflow_run_id"
WORKER_ATTR = "worker"
FAIL_REASON_ATTR = "fail_reason"  # the trial's own failure: it counts toward the target
STORE_ERROR_ATTR = "store_error"  # a store fault, not the trial's doing: run again on resume
INTERRUPTED_ATTR = "interrupted"
PREEMPTED_ATTR = "preempted"  # "preempted at step S": SIGTERM; not counted, its retry is queued
RESUME_ATTR = "resume_from"  # on a queued retry: the checkpoint directory it resumes from
RETRY_OF_ATTR = "retry_of"  # on a queued retry: the number of the preempted trial
RETRY_RUN_ATTR = "retry_of_run"  # on a queued retry: the preempted trial's MLflow run id


def resolve_storage(explicit: str | None = None) -> str:
    """--storage, else $WORKBENCH_STORAGE (keeps a password out of `ps`), else the local SQLite store."""
    return absolute_sqlite(explicit or os.environ.get(STORAGE_ENV) or DEFAULT_STORAGE, "--storage")


def open_storage_readonly(explicit: str | None = None) -> optuna.storages.BaseStorage:
    """The Optuna storage for a command that only reads: no file, folder or table is created."""
    from optuna.storages import RDBStorage

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


def build_storage(url: str) -> optuna.storages.BaseStorage:
    """An RDB storage with heartbeats, so a killed worker's trial is failed and retried."""
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    if "://" not in url:
        raise StoreError(
            f"--storage {mask_url(url)!r}: not a database URL (e.g. {DEFAULT_STORAGE} or postgresql://...)"
        )
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    try:
        with quiet_experimental():
            storage = RDBStorage(
                driver_url(url),
                engine_kwargs=engine_kwargs,
                heartbeat_interval=HEARTBEAT_S,
                grace_period=GRACE_S,
                heartbeat_stale_trial_callback=_retry_and_close_run(RetryHeartbeatStaleTrialCallback(max_retry=2)),
            )
    except Exception as e:  # sqlalchemy errors: bad URL, server down, missing driver
        raise StoreError(f"--storage {mask_url(url)}: cannot open the Optuna storage: {first_line(e)}") from None
    if not url.startswith("sqlite"):  # a server can restart; a SQLite file cannot lose its connection
        for name in RETRIED_CALLS:
            setattr(storage, name, _reconnecting(getattr(storage, name), mask_url(url)))
        storage.record_heartbeat = _beat_or_skip(storage.record_heartbeat)
    return storage


def _reconnecting(call: Callable, where: str) -> Callable:
    """`call`, retried with backoff for up to RECONNECT_S seconds while the database server cannot be reached.

    pool_pre_ping replaces connections the server cut once it is back; this bridges the time it is
    down (a restart, a failover), so the running trial, its heartbeat thread and the study go on.
    A write cut off at its commit may have landed: a retried `set_trial_state_values` then finds
    the trial finished and raises, which fails that trial alone.
    """

    @functools.wraps(call)
    def retried(*args, **kwargs):
        deadline, pause = time.monotonic() + RECONNECT_S, 0.5
        while True:
            try:
                return call(*args, **kwargs)
            except Exception as e:
                lost = lost_connection(e)
                if lost is None or time.monotonic() + pause > deadline:
                    raise
                if pause == 0.5:  # once per call
                    logger.warning(
                        "Optuna storage %s unreachable (%s): retrying for up to %g s", where, lost, RECONNECT_S
                    )
                time.sleep(pause)
                pause = min(2 * pause, 5.0)

    return retried


def _beat_or_skip(record_heartbeat: Callable) -> Callable:
    """A heartbeat that the outage outlasted is skipped, not raised: Optuna's heartbeat thread would die of it."""

    @functools.wraps(record_heartbeat)
    def beat(trial_id: int) -> None:
        try:
            record_heartbeat(trial_id)
        except Exception as e:
            if lost_connection(e) is None:
                raise
            logger.warning("heartbeat of trial id %d skipped: %s", trial_id, lost_connection(e))

    return beat


def lost_connection(e: BaseException) -> str | None:
    """The driver's message when `e` comes from a database connection cut or refused (a server down,
    shutting down, starting or full), else None."""
    from sqlalchemy.exc import DBAPIError, OperationalError

    for x in error_chain(e):
        if isinstance(x, OperationalError) or (isinstance(x, DBAPIError) and x.connection_invalidated):
            return first_line(x.orig) if x.orig is not None and str(x.orig).strip() else first_line(x)
    return None


def store_outage(e: BaseException, url: str) -> StoreError | None:
    """The error that stops a study whose Optuna storage stayed unreachable past RECONNECT_S, or None for other errors."""
    lost = lost_connection(e)
    if lost is None:
        return None
    return StoreError(
        f"--storage {mask_url(url)}: unreachable for over {RECONNECT_S:g} s ({lost}): run the same command to resume the study"
    )


@contextmanager
def outage_stops_study(url: str):
    """Inside the block, an Optuna storage unreachable past RECONNECT_S raises one StoreError (exit 2, resumable)."""
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
            end_stale_run(run_id, f"Worker lost: no heartbeat for {GRACE_S}s; trial {trial.number} is retried")

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
    return getattr(optuna.pruners, PRUNERS[pruner.type])(**pruner.options)


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
