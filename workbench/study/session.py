"""One study's lifecycle, as a recipe: open -> run trials -> conclude.

`StudySession` is driven the same way by the plain command, by each torchrun rank, and by
the `--workers` launcher (which opens and concludes, while its worker processes run the
trials). `open` checks both stores and the data before it writes anything, so a refused
study leaves nothing behind; `conclude` summarises the study on its parent run, registers the
best model and keeps only that trial's directory.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.config.search_space import describe_space
from workbench.config.study_file import StudySpec
from workbench.core import distributed
from workbench.core.errors import Preempted, first_line
from workbench.core.progress import StudyProgress, StudyState, as_progress
from workbench.data.splits import TrialData, prepare_data
from workbench.stores.db import STORE_DIR, check_sqlite_writable, mask_url
from workbench.stores.registry import register_best
from workbench.stores.shipping import version_tags
from workbench.stores.storage import (
    ELAPSED_ATTR,
    TrialCounts,
    best_trial,
    build_storage,
    check_stored,
    count_trials,
    fail_stale,
    open_study,
    outage_stops_study,
    resolve_storage,
    running_trials,
)
from workbench.stores.tracking import (
    StudyTracking,
    adopt_moved_store,
    check_tracking_store,
    configure_mlflow,
    resolve_tracking_uri,
)
from workbench.study.pareto import register_front
from workbench.study.plots import log_study_plots
from workbench.study.selection import register_selected, select_by_seeds, selection_lines
from workbench.trial.objective import TrialRunner, long_lived_frozen

logger = logging.getLogger(__name__)

WAIT_POLL_S = 1.0  # how often a worker with nothing to do looks again: it exits as soon as the study is done


@dataclass(frozen=True)
class RunOptions:
    storage: str | None = None  # Optuna storage URL; default sqlite:///mlruns/optuna.db
    tracking_uri: str | None = None  # MLflow tracking URI; default sqlite:///mlruns/mlflow.db
    add_trials: int | None = None  # run this many more trials instead of filling up to n_trials
    workdir: Path = Path(STORE_DIR) / "trials"  # trial checkpoints and saved best models
    register: bool = True


@dataclass
class StudyOutcome:
    study_name: str
    trials_run: int = 0
    states: dict[str, int] = field(default_factory=dict)
    best_value: float | None = None
    best_trial: int | None = None
    registered: str | None = None  # "NAME version N" when a version was registered


@dataclass
class OpenedStores:
    """A study's Optuna study and MLflow parent run, opened by the process that owns them (rank 0)."""

    study: Any
    tracking: StudyTracking
    storage_url: str
    tracking_uri: str
    counts: TrialCounts  # the study's trials before this run
    target: int  # the study's total once this run is over
    elapsed_before: float = 0.0  # seconds the study ran in earlier sessions
    opened_at: float = field(default_factory=time.monotonic)

    def elapsed(self) -> float:
        """Wall time the study has run, this session included."""
        return self.elapsed_before + time.monotonic() - self.opened_at


class StudySession:
    """A study from open to conclude; rank 0 holds the stores, every rank holds the data."""

    def __init__(
        self,
        spec: StudySpec,
        options: RunOptions = RunOptions(),
        progress: Callable[[str], None] | StudyProgress = print,
        data: Any = None,
    ):
        self.spec = spec
        self.given_data = data  # data made in Python (workbench.run_study(data=...)), else the spec's source
        self.options = options
        self.progress = as_progress(progress)  # plain lines, quiet, or a live display
        self.outcome = StudyOutcome(spec.study.name)
        self.stores: OpenedStores | None = None  # rank 0 only
        self.data: TrialData | None = None
        self.runner: TrialRunner | None = None

    def open(self) -> None:
        """Check both stores and the data, then create or resume the study: a refused study writes nothing."""
        urls = distributed.on_main(self._check_stores)
        self.data = prepare_data(self.spec, self.given_data)  # bad data leaves no empty study or RUNNING run behind
        distributed.on_main(lambda: self._open_stores(*urls))
        tracking = self.stores.tracking if self.stores else None
        self.runner = TrialRunner(
            self.spec, self.data, tracking, self.options.workdir / self.spec.study.name, self.progress
        )
        self.ask_lock = AskLock(self.options.workdir / f".{self.spec.study.name}.ask.lock")
        self.runner.on_start = self.ask_lock.release

    def _check_stores(self) -> tuple[str, str]:
        storage_url = resolve_storage(self.options.storage)
        tracking_uri = resolve_tracking_uri(self.options.tracking_uri)
        if storage_url.startswith("sqlite:///"):
            check_sqlite_writable(storage_url, "--storage")
        check_stored(self.spec, build_storage(storage_url))
        check_tracking_store(tracking_uri)
        adopt_moved_store(tracking_uri)  # a copied mlruns/ never writes into the original's folder
        return storage_url, tracking_uri

    def _open_stores(self, storage_url: str, tracking_uri: str) -> None:
        study = open_study(self.spec, storage_url)
        configure_mlflow(tracking_uri)
        tracking = StudyTracking(tracking_uri, self.spec.study.name)
        tracking.parent.log_dict(self.spec.to_dict(), "study_spec.json")
        self._log_study_params(tracking)
        fail_stale(study)
        counts = count_trials(study)
        add = self.options.add_trials
        target = counts.counted + add if add is not None else self.spec.study.n_trials
        elapsed = float(study.user_attrs.get(ELAPSED_ATTR, 0.0))
        self.stores = OpenedStores(study, tracking, storage_url, tracking_uri, counts, target, elapsed)

    def _log_study_params(self, tracking: StudyTracking) -> None:
        """The search space, sampler, pruner and objective as the parent run's params (once: params never change)."""
        study = self.spec.study
        params = {
            "metric": study.metric,
            "direction": study.direction,
            "sampler": study.sampler.type,
            "pruner": study.pruner.type,
        }
        params.update({f"sampler.{k}": v for k, v in study.sampler.options.items()})
        params.update({f"pruner.{k}": v for k, v in study.pruner.options.items()})
        params.update({f"search_space.{k}": v for k, v in describe_space(self.spec.space).items()})
        logged = tracking.client.get_run(tracking.parent_run_id).data.params
        changed = sorted(
            k for k in params if k in logged and logged[k] != str(params[k]) and not isinstance(params[k], dict)
        )
        if (
            changed
        ):  # a resumed study with another sampler seed, say: the first values stay, the spec artifact has the new
            logger.info("study params changed since the study started (kept as first logged): %s", ", ".join(changed))
        tracking.parent.log_params({k: v for k, v in params.items() if k not in logged})

    def headline(self, workers: str | None = None) -> str:
        """`study NAME: 3/12 trials done (stores)`, or `; WORKERS` instead: the first line; no password shown."""
        s = self.stores
        where = f"; {workers}" if workers else f" (optuna {mask_url(s.storage_url)}, mlflow {mask_url(s.tracking_uri)})"
        return f"study {self.spec.study.name}: {s.counts.summary(s.target)}{where}"

    def report_state(self) -> None:
        """Rank 0: tell the progress display the study's counts and best value (one read of the storage)."""
        study = self.stores.study
        counts, best = count_trials(study), best_trial(study)
        states = Counter(t.state.name for t in study.get_trials(deepcopy=False))
        self.progress.update(
            StudyState(
                self.spec.study.name,
                self.spec.study.metric,
                counts.finished,
                self.stores.target,
                dict(states),
                best.values[0] if best is not None else None,
                best.number if best is not None else None,
            )
        )

    def run_trials(self) -> None:
        """Trials until the target is met: rank 0 runs each through Optuna, the other ranks follow it."""
        with long_lived_frozen(), outage_stops_study(self.stores.storage_url if self.stores else ""):
            while distributed.on_main(self._wait_for_work):
                if distributed.is_main():
                    self._run_one()
                else:
                    self.runner.follow()
                self.outcome.trials_run += 1

    def out_of_time(self) -> bool:
        """True once the study's time budget (`study.timeout`, over every session) is spent."""
        timeout = self.spec.study.timeout
        return timeout is not None and self.stores.elapsed() >= timeout

    def _run_one(self) -> None:
        runner, study = self.runner, self.stores.study
        try:
            study.optimize(runner.objective, n_trials=1, catch=(Exception,), callbacks=[runner.after_trial()])
        finally:
            self.ask_lock.release()  # already released when the trial started; not when the ask failed
        study.set_user_attr(ELAPSED_ATTR, self.stores.elapsed())
        self.report_state()
        if runner.diverged is not None:  # recorded as failed; the other ranks cannot go on
            raise runner.diverged
        if runner.fatal is not None:  # a store or disk fault: this trial failed, the next would too
            raise runner.fatal
        if runner.preempted is not None:  # SIGTERM: the trial's retry is queued; leave within the grace period
            raise runner.preempted

    def _wait_for_work(self) -> bool:
        """True when a trial should start here; waits while other workers' trials may still fail and need a retry.

        Workers on this machine count the trials and ask for one under one lock (`AskLock`): a
        count and an ask of two workers in between would start a trial past the target. On True
        the lock is held until the trial exists (TrialRunner.on_start releases it).
        """
        while True:
            self.ask_lock.acquire()
            try:
                go = self._work_now()
            except BaseException:
                self.ask_lock.release()
                raise
            if go:
                return True
            self.ask_lock.release()
            if go is False:
                return False
            time.sleep(WAIT_POLL_S)  # a running trial of a killed worker turns FAIL (and is retried) after GRACE_S

    def _work_now(self) -> bool | None:
        """True: start a trial; False: the study is done here; None: wait for other workers' trials."""
        study, target = self.stores.study, self.stores.target
        if distributed.preempted():
            raise Preempted("preempted (SIGTERM) between trials; run the same command to resume")
        if self.out_of_time():
            self.progress.line(
                f"study {self.spec.study.name}: its time budget of {self.spec.study.timeout:g} s is spent; no new trial"
            )
            return False
        fail_stale(study)
        counts = count_trials(study)
        if counts.queued or counts.counted < target:
            return True
        return None if counts.running else False

    @contextmanager
    def parent_run(self, closes: bool = True):
        """The block's outcome ends the study's parent run: FINISHED, KILLED (Ctrl-C) or FAILED."""
        status = "FINISHED"
        try:
            yield
        except (KeyboardInterrupt, Preempted):
            status = "KILLED"
            raise
        except BaseException:
            status = "FAILED"
            raise
        finally:
            if closes and self.stores is not None:
                try:
                    self.stores.tracking.finish(status)
                except Exception as e:  # must not hide the failure that ended the block
                    logger.warning("could not end the study's run: %s", first_line(e))

    def conclude(self) -> StudyOutcome:
        """Once, by rank 0, after every trial: summary, plots, registration, clean-up."""
        distributed.on_main(self._conclude)
        return self.outcome

    def _conclude(self) -> None:
        study, tracking, outcome = self.stores.study, self.stores.tracking, self.outcome
        outcome.states = dict(Counter(t.state.name for t in study.get_trials(deepcopy=False)))
        best = best_trial(study)
        if best is not None:
            outcome.best_value, outcome.best_trial = best.values[0], best.number
            tracking.parent.set_tags({"best_trial": best.number, f"best_{self.spec.study.metric}": best.values[0]})
            tracking.parent.log_dict(
                {"number": best.number, "value": best.values[0], "values": best.values, "params": best.params},
                "best_trial.json",
            )
        log_study_plots(study, tracking, self.spec.study.metric)
        if best is None and self.spec.study.constraints and outcome.states.get("COMPLETE"):
            self.progress.line(f"study {self.spec.study.name}: no completed trial meets study.constraints")
        if self.options.register and self.spec.registry.model_name and best is not None:
            outcome.registered = self._register(study, best)
        # other workers may be training in this directory right now
        self.runner.clean_up(keep=outcome.best_trial, running=running_trials(study))

    def _register(self, study, best) -> str | None:
        """The model to ship: the Pareto front (several objectives), the best by mean over seeds (`selection`),
        or the best trial."""
        assert self.stores is not None and self.runner is not None and self.data is not None  # opened: rank 0
        spec, data, tracking, trial_dir = self.spec, self.data, self.stores.tracking, self.runner.trial_dir
        if spec.study.multi_objective:
            return register_front(spec, study, data, tracking, trial_dir, self.progress.line)
        if spec.selection is not None and not distributed.is_distributed():  # retrains run in this one process
            self.progress.line(
                f"selection: retraining the {spec.selection.top_k} best trials "
                f"with {spec.selection.seeds} more seeds each"
            )
            selected = select_by_seeds(spec, study, data, tracking, trial_dir, self.runner.workdir)
            if selected is not None:
                for line in selection_lines(selected, spec.study.metric):
                    self.progress.line(line)
                return register_selected(spec, selected, data, tracking)
        return register_best(spec, best, data, tracking, trial_dir(best.number), extra_tags=version_tags(spec, best))


class AskLock:
    """An exclusive file lock (flock) that workers of one machine take to count the trials and ask for one."""

    def __init__(self, path: Path):
        self.path = path
        self.file = None

    def acquire(self) -> None:
        import fcntl

        if self.file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.file = open(self.path, "a")
        fcntl.flock(self.file, fcntl.LOCK_EX)

    def release(self) -> None:
        import fcntl

        if self.file is not None:
            fcntl.flock(self.file, fcntl.LOCK_UN)  # unlocking what is not locked is harmless


def run_study(
    spec: StudySpec,
    options: RunOptions = RunOptions(),
    progress: Callable[[str], None] | StudyProgress = print,
    data: Any = None,
) -> StudyOutcome:
    """Run or resume a study until its trial target is met; returns what happened.

    A worker of `--workers` runs trials only: its launcher owns the parent run and the conclusion.
    """
    distributed.init_distributed()
    distributed.set_threads()
    session = StudySession(spec, options, progress, data)
    session.open()
    distributed.on_main(lambda: session.progress.line(session.headline()))
    distributed.on_main(session.report_state)
    launched = distributed.worker_id() is not None
    try:
        with session.parent_run(closes=not launched):
            session.run_trials()
    finally:
        session.progress.close()  # the live display stops before the summary lines (or the error) print
    if not launched:
        session.conclude()
    distributed.shutdown_distributed()
    return session.outcome
