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
from workbench.core.errors import Preempted, StoreError, TrialFailed, first_line
from workbench.core.keys import ELAPSED_ATTR
from workbench.core.progress import StudyProgress, StudyState, as_progress
from workbench.data.splits import TrialData, prepare_data
from workbench.stores.ask_lock import AskLock, ask_lock_for
from workbench.stores.db import STORE_DIR, check_sqlite_writable, mask_url
from workbench.stores.registry import register_best
from workbench.stores.shipping import version_tags
from workbench.stores.storage import (
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
from workbench.stores.warm_start import check_sources, seed_new_study
from workbench.study.pareto import register_front
from workbench.study.plots import log_study_plots
from workbench.study.selection import register_selected, select_by_seeds, selection_is_current, selection_lines
from workbench.trial.objective import TrialRunner, long_lived_frozen

logger = logging.getLogger(__name__)

PREEMPTED_BETWEEN_TRIALS = "preempted (SIGTERM) between trials; run the same command to resume"
WAIT_POLL_S = 1.0  # how often a worker with nothing to do looks again: it exits as soon as the study is done


@dataclass(frozen=True)
class RunOptions:
    storage: str | None = None  # Optuna storage URL; default sqlite:///mlruns/optuna.db
    tracking_uri: str | None = None  # MLflow tracking URI; default sqlite:///mlruns/mlflow.db
    add_trials: int | None = None  # run this many more trials instead of filling up to n_trials
    workdir: Path = Path(STORE_DIR) / "trials"  # trial checkpoints and saved best models
    register: bool = True
    launched: bool = False  # a worker of a launcher (`--workers`): it runs trials; the launcher concludes
    prepared: Path | None = None  # data its launcher prepared for this spec (`data.save_prepared`), to map


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
    ask_lock: AskLock | None = None  # the lock the stores were opened under; the workers ask under it too

    def elapsed(self) -> float:
        """Wall time the study has run, this session included."""
        return self.elapsed_before + time.monotonic() - self.opened_at


class StudySession:
    """A study from open to conclude; rank 0 holds the stores, every rank holds the data.

    Built whole by `StudySession.open`; `stores` answers on rank 0 only (the other ranks of a
    torchrun job train what rank 0 samples and never touch a store).
    """

    def __init__(
        self,
        spec: StudySpec,
        options: RunOptions,
        progress: StudyProgress,
        data: TrialData,
        stores: OpenedStores | None,
    ):
        self.spec = spec
        self.options = options
        self.progress = progress  # plain lines, quiet, or a live display
        self.outcome = StudyOutcome(spec.study.name)
        self.data = data
        self._stores = stores  # rank 0 only
        storage_url = stores.storage_url if stores is not None else ""
        lock = stores.ask_lock if stores is not None else None
        self.ask_lock = lock or ask_lock_for(storage_url, spec.study.name, options.workdir)
        tracking = stores.tracking if stores is not None else None
        self.runner = TrialRunner(
            spec,
            data,
            tracking,
            options.workdir / spec.study.name,
            progress,
            on_start=self.ask_lock.release,
            publish_models=shares_machines(storage_url),
        )

    @classmethod
    def open(
        cls,
        spec: StudySpec,
        options: RunOptions = RunOptions(),
        progress: Callable[[str], None] | StudyProgress = print,
        data: Any = None,
    ) -> StudySession:
        """Check both stores and the data, then create or resume the study: a refused study writes nothing.

        `data`: data made in Python (`workbench.run_study(data=...)`), else the spec's source.
        """
        urls = distributed.on_main(lambda: _check_stores(spec, options))
        prepared = prepare_data(spec, data, options.prepared)  # bad data leaves no empty study or RUNNING run
        opened: list[OpenedStores] = []  # rank 0's: the other ranks get no copy of a study or a client
        shown = as_progress(progress)
        distributed.on_main(lambda: opened.append(_open_stores(spec, options, *urls, shown.line)))
        return cls(spec, options, shown, prepared, opened[0] if opened else None)

    @property
    def stores(self) -> OpenedStores:
        """The study's Optuna study and MLflow parent run (rank 0)."""
        if self._stores is None:
            raise RuntimeError("only rank 0 holds the study's stores")
        return self._stores

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
        storage_url = self.stores.storage_url if distributed.is_main() else ""
        with long_lived_frozen(), outage_stops_study(storage_url):
            while True:
                if distributed.any_rank(distributed.preempted()):  # every rank leaves, with the same error
                    raise Preempted(PREEMPTED_BETWEEN_TRIALS)
                if not distributed.on_main(self._wait_for_work):
                    return
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
        """One trial through Optuna. Its own failure is caught there (TrialFailed); what else it raises
        stops the study (a store or disk fault, SIGTERM with the retry queued, ranks out of step)."""
        runner, study = self.runner, self.stores.study
        try:
            study.optimize(runner.objective, n_trials=1, catch=(TrialFailed,), callbacks=[runner.after_trial()])
        except Exception:
            runner.finish_stopped_trial(study)
            self._record_elapsed()
            raise
        finally:
            self.ask_lock.release()  # already released when the trial started; not when the ask failed
        self._record_elapsed()

    def _record_elapsed(self) -> None:
        self.stores.study.set_user_attr(ELAPSED_ATTR, self.stores.elapsed())
        self.report_state()

    def _wait_for_work(self) -> bool:
        """True when a trial should start here; waits while other workers' trials may still fail and need a retry.

        Workers count the trials and ask for one under one lock (`stores.ask_lock`, which covers
        every worker that reaches the storage): a count and an ask of two workers in between would
        start a trial past the target. On True the lock is held until the trial exists
        (TrialRunner.on_start releases it).
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
            raise Preempted(PREEMPTED_BETWEEN_TRIALS)
        if self.out_of_time():
            self.progress.line(
                f"study {self.spec.study.name}: its time budget of {self.spec.study.timeout:g} s is spent; no new trial"
            )
            return False
        if self._good_enough():
            return False
        fail_stale(study)
        counts = count_trials(study)
        if counts.queued or counts.counted < target:
            return True
        return None if counts.running else False

    def _good_enough(self) -> bool:
        """True, said once, when the best trial has reached `study.stop_at`."""
        section = self.spec.study
        best = best_trial(self.stores.study) if section.stop_at is not None else None
        if best is None or not section.reached(best.values[0]):
            return False
        self.progress.line(
            f"study {section.name}: trial {best.number} reached {section.metric} {best.values[0]:.4g} "
            f"(study.stop_at {section.stop_at:g}); no new trial"
        )
        return True

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
            if closes and self._stores is not None:
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
        if spec.selection is not None and selection_is_current(study, spec.selection.top_k):
            self.progress.line("selection: the best trials are those already retrained and registered; nothing new")
            return None
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


def _check_stores(spec: StudySpec, options: RunOptions) -> tuple[str, str]:
    storage_url = resolve_storage(options.storage)
    tracking_uri = resolve_tracking_uri(options.tracking_uri)
    if storage_url.startswith("sqlite:///"):
        check_sqlite_writable(storage_url, "--storage")
    check_stored(spec, build_storage(storage_url))
    check_sources(spec, storage_url)  # a warm start's earlier studies exist
    check_tracking_store(tracking_uri)
    adopt_moved_store(tracking_uri)  # a copied mlruns/ never writes into the original's folder
    return storage_url, tracking_uri


def _open_stores(
    spec: StudySpec, options: RunOptions, storage_url: str, tracking_uri: str, say: Callable[[str], None]
) -> OpenedStores:
    study = open_study(spec, storage_url)
    seed_new_study(study, spec, storage_url, options.add_trials, say)  # a warm start: earlier studies' best first
    configure_mlflow(tracking_uri)
    ask_lock = ask_lock_for(storage_url, spec.study.name, options.workdir)
    # Machines starting one study at once: one at a time finds or creates its parent run and logs its params.
    # MLflow's store reads, then inserts, a run's params: two writers at once collide on a key.
    ask_lock.acquire()
    try:
        tracking = StudyTracking(tracking_uri, spec.study.name)
        tracking.parent.log_dict(spec.to_dict(), "study_spec.json")
        _log_study_params(spec, tracking)
    finally:
        ask_lock.release()
    fail_stale(study)
    counts = count_trials(study)
    add = options.add_trials
    target = counts.counted + add if add is not None else spec.study.n_trials
    elapsed = float(study.user_attrs.get(ELAPSED_ATTR, 0.0))
    return OpenedStores(study, tracking, storage_url, tracking_uri, counts, target, elapsed, ask_lock=ask_lock)


def _log_study_params(spec: StudySpec, tracking: StudyTracking) -> None:
    """The search space, sampler, pruner and objective as the parent run's params (once: params never change)."""
    study = spec.study
    params: dict[str, Any] = {
        "metric": study.metric,
        "direction": study.direction,
        "sampler": study.sampler.type,
        "pruner": study.pruner.type,
    }
    params.update({f"sampler.{k}": v for k, v in study.sampler.options.items()})
    params.update({f"pruner.{k}": v for k, v in study.pruner.logged.items()})
    params.update({f"search_space.{k}": v for k, v in describe_space(spec.space).items()})
    logged = tracking.client.get_run(tracking.parent_run_id).data.params
    changed = sorted(
        k for k in params if k in logged and logged[k] != str(params[k]) and not isinstance(params[k], dict)
    )
    if changed:  # a resumed study with another sampler seed, say: the first values stay, the spec artifact has the new
        logger.info("study params changed since the study started (kept as first logged): %s", ", ".join(changed))
    tracking.parent.log_params({k: v for k, v in params.items() if k not in logged})


def run_session(
    spec: StudySpec,
    options: RunOptions = RunOptions(),
    progress: Callable[[str], None] | StudyProgress = print,
    data: Any = None,
) -> StudyOutcome:
    """Run or resume a study until its trial target is met; returns what happened.

    A worker of `--workers` (`options.launched`) runs trials only: its launcher owns the parent
    run and the conclusion.
    """
    distributed.init_distributed()
    distributed.set_threads()
    session = StudySession.open(spec, options, progress, data)
    distributed.on_main(lambda: session.progress.line(session.headline()))
    distributed.on_main(session.report_state)
    try:
        with session.parent_run(closes=not options.launched):
            session.run_trials()
    finally:
        session.progress.close()  # the live display stops before the summary lines (or the error) print
    if not options.launched:
        session.conclude()
    distributed.shutdown_distributed()
    return session.outcome


def conclude_study(
    spec: StudySpec,
    options: RunOptions = RunOptions(),
    progress: Callable[[str], None] | StudyProgress = print,
) -> StudyOutcome:
    """What a launcher does once its workers have exited, from any machine that reaches the stores:
    the summary, the plots, the registration of the best model (once, however often it runs).

    The study must exist; trials still running elsewhere are reported and left alone.
    """
    distributed.set_threads()
    require_study(spec.study.name, resolve_storage(options.storage))
    session = StudySession.open(spec, options, progress)
    stores = session.stores
    fail_stale(stores.study)
    counts = count_trials(stores.study)
    session.progress.line(session.headline())
    if counts.running or counts.queued:
        session.progress.line(
            f"study {spec.study.name}: {counts.running} trials still running and {counts.queued} queued elsewhere; "
            "concluding with the trials that have ended"
        )
    with session.parent_run():
        pass  # the study's parent run ends FINISHED
    return session.conclude()


def shares_machines(storage_url: str) -> bool:
    """True for a storage other machines can reach (not SQLite): their workers may conclude the study.

    Then each new best trial's model is logged to the tracking store as it completes, and local
    trial folders are scratch: a few seconds per new best, instead of a model lost with its node.
    """
    return bool(storage_url) and not storage_url.startswith("sqlite")


def require_study(name: str, storage_url: str) -> None:
    """Refuse, naming the stored studies, when `name` is not in the storage."""
    import optuna

    stored = optuna.get_all_study_names(build_storage(storage_url))
    if name not in stored:
        known = ", ".join(sorted(stored)) or "none"
        raise StoreError(
            f"study {name!r}: not in the Optuna storage {mask_url(storage_url)} (studies there: {known}); "
            "check --storage or run the study first"
        )
