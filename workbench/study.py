"""The Optuna study lifecycle: storage, sampler, pruner, the objective and failure handling.

`run_study(spec, options)` opens (or resumes) the study, prepares the data once, runs trials
until the study's target is met, and registers the best model. Under torchrun, rank 0 owns
the study and the others follow each trial it starts.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from workbench import distributed
from workbench.db import driver_url
from workbench.errors import StoreError, StudyFileError, first_line
from workbench.search_space import describe_space, grid_of, suggest_params
from workbench.study_file import PRUNERS, SAMPLERS, StudySpec, apply_overrides

if TYPE_CHECKING:
    import optuna

    from workbench.training import TrialData

logger = logging.getLogger(__name__)

DEFAULT_STORAGE = "sqlite:///mlruns/optuna.db"
# A worker killed mid-trial is noticed after GRACE_S seconds without a heartbeat (every HEARTBEAT_S).
HEARTBEAT_S = int(os.environ.get("WORKBENCH_HEARTBEAT_S", "10"))
GRACE_S = int(os.environ.get("WORKBENCH_GRACE_S", "60"))
WAIT_POLL_S = 1.0  # how often a worker with nothing to do looks again: it exits as soon as the study is done
SPACE_ATTR = "workbench.search_space"
METRIC_ATTR = "workbench.metric"
WORKER_ENV = "WORKBENCH_WORKER_ID"  # set by `study run --workers` in each worker process


@dataclass(frozen=True)
class RunOptions:
    storage: Optional[str] = None  # Optuna storage URL; default sqlite:///mlruns/optuna.db
    tracking_uri: Optional[str] = None  # MLflow tracking URI; default sqlite:///mlruns/mlflow.db
    add_trials: Optional[int] = None  # run this many more trials instead of filling up to n_trials
    workdir: Path = Path("mlruns/trials")  # trial checkpoints and saved best models
    register: bool = True


@dataclass
class StudyOutcome:
    study_name: str
    trials_run: int = 0
    states: dict[str, int] = field(default_factory=dict)
    best_value: Optional[float] = None
    best_trial: Optional[int] = None
    registered: Optional[str] = None  # "NAME version N" when a version was registered


def resolve_storage(explicit: Optional[str] = None) -> str:
    from workbench.tracking import absolute_sqlite

    return absolute_sqlite(explicit or DEFAULT_STORAGE, "--storage")


def build_storage(url: str) -> optuna.storages.BaseStorage:
    """An RDB storage with heartbeats, so a killed worker's trial is failed and retried."""
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    if "://" not in url:
        raise StoreError(f"--storage {url!r}: not a database URL (e.g. sqlite:///mlruns/optuna.db or postgresql://...)")
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    try:
        with _quiet_experimental():
            return RDBStorage(
                driver_url(url),
                engine_kwargs=engine_kwargs,
                heartbeat_interval=HEARTBEAT_S,
                grace_period=GRACE_S,
                heartbeat_stale_trial_callback=_retry_and_close_run(RetryHeartbeatStaleTrialCallback(max_retry=2)),
            )
    except Exception as e:  # sqlalchemy errors: bad URL, server down, missing driver
        raise StoreError(f"--storage {url}: cannot open the Optuna storage: {first_line(e)}") from None


def _retry_and_close_run(retry: Callable) -> Callable:
    """Stale-trial callback: queue the retry, then end the dead worker's MLflow run (else it stays RUNNING)."""

    def callback(study, trial) -> None:
        retry(study, trial)
        run_id = trial.user_attrs.get("mlflow_run_id")
        if run_id:
            from workbench.tracking import end_stale_run

            end_stale_run(run_id, f"Worker lost: no heartbeat for {GRACE_S}s; trial {trial.number} is retried")

    return callback


def build_sampler(spec: StudySpec) -> optuna.samplers.BaseSampler:
    import optuna

    sampler = spec.study.sampler
    cls = getattr(optuna.samplers, SAMPLERS[sampler.type])
    options = dict(sampler.options)
    worker = os.environ.get(WORKER_ENV)
    if worker and options.get("seed") is not None:  # same seed in every worker: they would all sample the same trials
        options["seed"] = options["seed"] + int(worker)
    if sampler.type == "grid":
        return cls(grid_of(spec.space), **options)
    with _quiet_experimental():
        return cls(**options)


def build_pruner(spec: StudySpec) -> optuna.pruners.BasePruner:
    import optuna

    pruner = spec.study.pruner
    return getattr(optuna.pruners, PRUNERS[pruner.type])(**pruner.options)


def open_study(spec: StudySpec, storage_url: str) -> optuna.Study:
    """Create the study, or load it when it exists and matches the study file."""
    import optuna

    storage = build_storage(storage_url)
    _check_stored(spec, storage)
    study = optuna.create_study(
        storage=storage,
        study_name=spec.study.name,
        direction=spec.study.direction,
        sampler=build_sampler(spec),
        pruner=build_pruner(spec),
        load_if_exists=True,
    )
    if SPACE_ATTR not in study.user_attrs:
        study.set_user_attr(SPACE_ATTR, describe_space(spec.space))
        study.set_user_attr(METRIC_ATTR, spec.study.metric)
    return study


def _check_stored(spec: StudySpec, storage) -> None:
    """A resumed study must keep its direction, metric and search space: never silently mix."""
    try:
        study_id = storage.get_study_id_from_name(spec.study.name)
    except KeyError:
        return
    stored_direction = storage.get_study_directions(study_id)[0].name.lower()
    attrs = storage.get_study_user_attrs(study_id)
    problems = []
    if stored_direction != spec.study.direction:
        problems.append(f"study.direction: {spec.study.direction} differs from the stored study ({stored_direction})")
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
        elif t.state != TrialState.FAIL or "fail_reason" in t.user_attrs:
            finished += 1
    return TrialCounts(finished, running, queued)


@dataclass
class OpenedStores:
    """A study's Optuna study and MLflow parent run, opened by the process that owns them."""

    study: Any
    tracking: Any
    storage_url: str
    tracking_uri: str
    counts: TrialCounts  # the study's trials before this run
    target: int  # the study's total once this run is over


def check_stores(spec: StudySpec, options: RunOptions) -> tuple[str, str]:
    """Every store check, before the first write: a refused run changes nothing. Returns the URLs."""
    from workbench.tracking import check_sqlite_writable, check_tracking_store, resolve_tracking_uri

    storage_url = resolve_storage(options.storage)
    tracking_uri = resolve_tracking_uri(options.tracking_uri)
    if storage_url.startswith("sqlite:///"):
        check_sqlite_writable(storage_url, "--storage")
    _check_stored(spec, build_storage(storage_url))
    check_tracking_store(tracking_uri)
    return storage_url, tracking_uri


def open_stores(spec: StudySpec, options: RunOptions, storage_url: str, tracking_uri: str) -> OpenedStores:
    """Create or resume the Optuna study, the MLflow experiment and parent run; fix the target."""
    from workbench.tracking import StudyTracking, configure_mlflow

    study = open_study(spec, storage_url)
    configure_mlflow(tracking_uri)
    tracking = StudyTracking(tracking_uri, spec.study.name)
    tracking.parent.log_dict(spec.to_dict(), "study_spec.json")
    fail_stale(study)
    counts = count_trials(study)
    target = counts.counted + options.add_trials if options.add_trials is not None else spec.study.n_trials
    return OpenedStores(study, tracking, storage_url, tracking_uri, counts, target)


def run_study(spec: StudySpec, options: RunOptions = RunOptions(), progress: Callable[[str], None] = print) -> StudyOutcome:
    """Run or resume a study until its trial target is met; returns what happened."""
    distributed.init_distributed()
    distributed.set_threads()
    main = distributed.is_main()
    outcome = StudyOutcome(spec.study.name)
    opened: dict[str, Any] = {}  # rank 0's stores; the other ranks hold none

    def check() -> None:
        opened["urls"] = check_stores(spec, options)

    def open_() -> None:
        stores = opened["stores"] = open_stores(spec, options, *opened["urls"])
        summary = stores.counts.summary(stores.target)
        progress(f"study {spec.study.name}: {summary} (optuna {stores.storage_url}, mlflow {stores.tracking_uri})")

    distributed.on_main(check)
    data = prepare_data(spec)  # before any write too: bad data leaves no empty study or RUNNING run behind
    distributed.on_main(open_)
    stores = opened.get("stores")
    study, tracking, target = (stores.study, stores.tracking, stores.target) if stores else (None, None, 0)
    runner = TrialRunner(spec, data, tracking, options.workdir / spec.study.name)
    status = "FINISHED"
    concludes = main and WORKER_ENV not in os.environ  # a worker of `--workers` leaves this to its launcher
    try:
        while distributed.on_main(lambda: _wait_for_work(study, target)):
            if main:
                study.optimize(runner.objective, n_trials=1, catch=(Exception,), callbacks=[runner.after_trial(progress)])
                if runner.diverged is not None:  # recorded as failed; the other ranks cannot go on
                    raise runner.diverged
                if runner.fatal is not None:  # a store or disk fault: this trial failed, the next would too
                    status = "FAILED"
                    raise runner.fatal
            else:
                runner.follow()
            outcome.trials_run += 1
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    except BaseException:
        status = "FAILED"
        raise
    finally:
        if concludes:
            _quietly(tracking.finish, status)
    if WORKER_ENV not in os.environ:  # a worker of `--workers` leaves this to its launcher
        # once, by rank 0, after every rank finished its trials
        distributed.on_main(lambda: conclude_study(spec, study, data, tracking, runner, options, outcome))
    distributed.shutdown_distributed()
    return outcome


def conclude_study(spec: StudySpec, study, data: TrialData, tracking, runner: TrialRunner, options: RunOptions, outcome: StudyOutcome) -> None:
    """Summarise the study on its parent run, register the best model, keep only its directory."""
    _summarise(study, spec, tracking, outcome)
    if options.register and spec.registry.model_name and outcome.best_trial is not None:
        from workbench.registry import register_best

        outcome.registered = register_best(spec, study, data, tracking, runner.trial_dir(outcome.best_trial))
    runner.clean_up(keep=outcome.best_trial, study=study)


def _wait_for_work(study, target: int) -> bool:
    """True when a trial should start here; waits while other workers' trials may still fail and need a retry."""
    while True:
        fail_stale(study)
        counts = count_trials(study)
        if counts.queued or counts.counted < target:
            return True
        if not counts.running:
            return False
        time.sleep(WAIT_POLL_S)  # a running trial of a killed worker turns FAIL (and is retried) after GRACE_S


def fail_stale(study) -> None:
    """Mark trials whose worker stopped sending heartbeats FAIL (and retry them); see build_storage."""
    import optuna

    with _quiet_experimental():
        optuna.storages.fail_stale_trials(study)


def prepare_data(spec: StudySpec) -> TrialData:
    """Load, validate and tokenize the study's data once; every trial shares it."""
    from workbench.data import build_tokenizer, load_splits, tokenize_splits
    from workbench.training import TrialData

    # under torchrun a rank that cannot load the data fails every rank, with its reason
    splits = distributed.together(lambda: load_splits(spec.data, spec.source_dir))
    # WordPiece training breaks frequency ties in no fixed order: every rank takes rank 0's vocabulary
    tokenizer = distributed.on_main(
        lambda: build_tokenizer(spec.tokenizer, list(splits.train["text"]), spec.data.max_length, spec.source_dir)
    )
    train, validation = distributed.together(lambda: tokenize_splits(splits, tokenizer, spec.data.max_length))
    return TrialData(train, validation, tokenizer, splits.label_names, splits)


class TrialRunner:
    """The objective and its bookkeeping: one MLflow run per trial, failures recorded once."""

    def __init__(self, spec: StudySpec, data: TrialData, tracking, workdir: Path):
        self.spec = spec
        self.data = data
        self.tracking = tracking
        self.workdir = workdir
        self.space = spec.space
        self.started = 0.0
        self.diverged: Optional[distributed.RanksDiverged] = None  # set when the ranks lost step
        self.fatal: Optional[Exception] = None  # set when a trial fails for a reason that stops the study
        self.lineage = None  # lineage.StudyLineage, built by the first trial (rank 0)

    def trial_dir(self, number: int) -> Path:
        return self.workdir / f"trial-{number}"

    def objective(self, trial: Any) -> float:
        """suggest -> build -> train -> return the best evaluation of the study metric.

        Under torchrun every rank calls it (rank 0 through Optuna with the trial, the others
        through `follow` with None): rank 0 samples the parameters and opens the trial's run,
        every rank trains the same configuration, rank 0 records the outcome once.
        """
        import optuna

        from workbench.lineage import log_trial_lineage, study_lineage
        from workbench.tracking import NullTrialRun, TrialRun
        from workbench.training import train_trial

        self.started = time.monotonic()
        main = distributed.is_main()

        def start() -> tuple[int, dict[str, Any], str]:  # rank 0 only
            params = suggest_params(trial, self.space)
            try:
                run = self.tracking.start_trial_run(trial.number, params)
            except StoreError as e:
                self.fatal = e
                trial.set_user_attr("store_error", str(e))  # not counted: the trial is run again on resume
                raise
            trial.set_user_attr("mlflow_run_id", run.run_id)
            trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")  # where it ran, for the logs and tests
            return trial.number, params, run.run_id

        number, params, run_id = distributed.on_main(start)
        run = TrialRun(self.tracking.client, run_id) if main else NullTrialRun()
        label = f"rank {distributed.rank()} trial {number}"
        logger.info("%s params %s", label, json.dumps(params, sort_keys=True))
        state = "FAIL"
        try:
            trial_spec = distributed.together(lambda: apply_overrides(self.spec, params))

            def record_lineage() -> None:  # rank 0 only: what `reproduce` needs
                if self.lineage is None:
                    self.lineage = study_lineage(self.spec, self.data)
                log_trial_lineage(run, trial_spec, self.data, self.lineage)

            distributed.on_main(record_lineage)
            result = train_trial(trial_spec, self.data, trial, run, self.trial_dir(number), is_main=main, label=label)

            def finish() -> None:  # rank 0 only; inside the try: a store fault fails the trial, never leaves it COMPLETE
                run.log_metrics({f"best_{self.spec.study.metric}": result.value}, step=result.evaluations)
                run.end("COMPLETE")

            distributed.on_main(finish)
            state = f"COMPLETE {self.spec.study.metric}={result.value!r}"
            return result.value
        except optuna.TrialPruned as e:
            state = "PRUNED"
            try:
                run.end("PRUNED", note=f"Pruned by {self.spec.study.pruner.type} pruner: {e}")
            except StoreError as store:
                self.fatal = store
            raise
        except Exception as e:
            reason, self.fatal = classify_failure(e, number)
            state = f"FAIL {reason}"
            if isinstance(e, distributed.RanksDiverged):
                self.diverged = e
            if main:
                # store faults are not the trial's doing: they are not counted and run again on resume
                _quietly(trial.set_user_attr, "store_error" if self.fatal else "fail_reason", reason)
            if not isinstance(e, StoreError):  # a tracking store that just failed would only be retried again
                _quietly(run.end, "FAIL", note=reason)
            raise
        except KeyboardInterrupt:
            state = "KILLED"
            if main:
                trial.set_user_attr("interrupted", True)
            _quietly(run.end, "KILLED", note="Interrupted (Ctrl-C)")
            raise
        finally:
            logger.info("%s %s", label, state)

    def follow(self) -> None:
        """A non-zero rank's share of one trial: same code path, no Optuna or MLflow writes."""
        try:
            self.objective(None)
        except distributed.RanksDiverged:
            raise
        except Exception:  # pruned or failed on every rank together; rank 0 records how
            pass

    def after_trial(self, progress: Callable[[str], None]):
        """Optuna callback: one progress line per trial, the parent run's curve, checkpoint clean-up."""

        def callback(study, frozen) -> None:
            state = frozen.state.name
            seconds = time.monotonic() - self.started
            value = f"{self.spec.study.metric}={frozen.value:.4f}" if frozen.value is not None else ""
            release_memory()  # the trial's model, optimizer and batches, before the next trial allocates
            reason = frozen.user_attrs.get("fail_reason", "") or frozen.user_attrs.get("store_error", "")
            params = ", ".join(f"{k.split('.')[-1]}={_short(v)}" for k, v in frozen.params.items())
            progress(f"  trial {frozen.number:>3} {state:<8} {value or reason}  ({params}) {seconds:.1f}s")
            best = best_trial(study)
            if frozen.value is not None and best is not None and self.fatal is None:
                self.tracking.parent.log_metrics(
                    {self.spec.study.metric: frozen.value, f"best_{self.spec.study.metric}": best.value}, step=frozen.number
                )
            if best is None or best.number != frozen.number:
                shutil.rmtree(self.trial_dir(frozen.number), ignore_errors=True)

        return callback

    def clean_up(self, keep: Optional[int], study=None) -> None:
        """Remove every trial directory but the best trial's saved model and those of running trials."""
        if not self.workdir.exists():
            return
        running = set()
        if study is not None:  # other workers may be training in this directory right now
            from optuna.trial import TrialState

            running = {f"trial-{t.number}" for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
        for path in self.workdir.iterdir():
            if path.name != f"trial-{keep}" and path.name not in running:
                shutil.rmtree(path, ignore_errors=True)


def classify_failure(e: BaseException, number: int) -> tuple[str, Optional[Exception]]:
    """A failed trial's reason, and the error that must stop the study (store down, disk full) or None."""
    reason = distributed.failure_reason(e)
    if isinstance(e, StoreError):
        return str(e), StoreError(f"trial {number}: {e}")
    if _is_disk_full(e):
        return f"disk full: {first_line(e)}", StoreError(
            f"trial {number}: disk full ({first_line(e)}): free space under mlruns/ and run the same command to resume"
        )
    if _is_out_of_memory(e):
        return f"out of memory: {reason}", None
    return reason, None


def _chain(e: BaseException):
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def _is_disk_full(e: BaseException) -> bool:
    import errno

    words = ("no space left on device", "storagefull", "database or disk is full", "disk quota exceeded")
    return any(
        getattr(x, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or any(w in str(x).lower() for w in words) for x in _chain(e)
    )


def _is_out_of_memory(e: BaseException) -> bool:
    import torch

    words = ("out of memory", "can't allocate memory", "cannot allocate memory")
    return any(isinstance(x, (MemoryError, torch.OutOfMemoryError)) or any(w in str(x).lower() for w in words) for x in _chain(e))


def release_memory() -> None:
    """Free what a finished trial left: reference cycles (Trainer, callbacks) and cached CUDA blocks."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _quietly(call: Callable, *args, **kwargs) -> None:
    """Bookkeeping after a failure must not hide the failure itself."""
    try:
        call(*args, **kwargs)
    except Exception as e:
        logger.warning("could not record the failure: %s", first_line(e))


def best_trial(study) -> Optional[Any]:
    """The best completed trial; ties go to the earliest trial.

    Optuna's own `study.best_trial` leaves ties to the database's row order, which PostgreSQL
    does not fix: two workers could each see the other's trial as best and both delete their
    saved model. Every caller decides with this one rule.
    """
    from optuna.trial import TrialState

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not done:
        return None
    sign = -1.0 if study.direction.name == "MAXIMIZE" else 1.0
    return min(done, key=lambda t: (sign * t.value, t.number))


def _summarise(study, spec: StudySpec, tracking, outcome: StudyOutcome) -> None:
    from collections import Counter

    outcome.states = dict(Counter(t.state.name for t in study.get_trials(deepcopy=False)))
    best = best_trial(study)
    if best is not None:
        outcome.best_value, outcome.best_trial = best.value, best.number
        tracking.parent.set_tags({"best_trial": best.number, f"best_{spec.study.metric}": best.value})
        tracking.parent.log_dict({"number": best.number, "value": best.value, "params": best.params}, "best_trial.json")
    _log_plots(study, tracking)


def _log_plots(study, tracking) -> None:
    """Optimization history and parameter importances as pictures on the parent run."""
    import tempfile

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from optuna.visualization import matplotlib as ovm
    except ImportError:
        return
    plots = {"optimization_history.png": ovm.plot_optimization_history, "intermediate_values.png": ovm.plot_intermediate_values}
    if sum(t.state.name == "COMPLETE" for t in study.get_trials(deepcopy=False)) >= 2 and best_trial(study).params:
        plots["param_importances.png"] = ovm.plot_param_importances
    with tempfile.TemporaryDirectory() as tmp, _quiet_experimental():
        for name, plot in plots.items():
            try:
                ax = plot(study)
                ax.figure.savefig(Path(tmp) / name, bbox_inches="tight", dpi=100)
                plt.close(ax.figure)
                tracking.client.log_artifact(tracking.parent_run_id, str(Path(tmp) / name), "plots")
            except Exception as e:  # a plot is a nicety: never fail a study over it
                logger.warning("could not draw %s: %s", name, first_line(e))


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


class _quiet_experimental:
    """Optuna marks heartbeats, GP and grid helpers experimental; the warning is noise here."""

    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        from optuna.exceptions import ExperimentalWarning

        warnings.simplefilter("ignore", ExperimentalWarning)

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)
