"""The objective of a study and its bookkeeping: one MLflow run per trial, each failure recorded once.

`TrialRunner.objective` reads suggest -> build -> train -> return. Under torchrun every rank
calls it (rank 0 through Optuna with the trial, the others through `follow`): rank 0 samples
the parameters and opens the trial's run, every rank trains the same configuration, rank 0
records the outcome.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import socket
import time
from collections.abc import Callable, Collection
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from workbench.config.search_space import suggest_params
from workbench.config.study_file import StudySpec, apply_overrides
from workbench.core import distributed, settings
from workbench.core.errors import Preempted, StoreError, TrialFailed, error_chain, first_line
from workbench.core.keys import (
    FAIL_REASON_ATTR,
    INTERRUPTED_ATTR,
    MODEL_URI_ATTR,
    PREEMPTED_ATTR,
    RESUME_ATTR,
    RETRY_OF_ATTR,
    RETRY_OF_RUN_TAG,
    RETRY_OF_TRIAL_TAG,
    RETRY_RUN_ATTR,
    RUN_ID_ATTR,
    STORE_ERROR_ATTR,
    WORKER_ATTR,
)
from workbench.core.progress import StudyProgress
from workbench.data.splits import TrialData
from workbench.stores.registry import log_model_dir, remove_logged_model
from workbench.stores.storage import best_trial, kept_trials, lost_connection
from workbench.stores.tracking import NullTrialRun, StudyTracking, TrialRun
from workbench.stores.warm_start import seed_tags
from workbench.trial.lineage import StudyLineage, log_trial_lineage, study_lineage
from workbench.trial.outcome import objective_values, record_outcome
from workbench.trial.training import TrialPreempted, TrialResult, train_trial

logger = logging.getLogger(__name__)


class TrialRunner:
    """The objective Optuna calls, the failures it records, and the trial directories it keeps."""

    def __init__(
        self,
        spec: StudySpec,
        data: TrialData,
        tracking: StudyTracking | None,
        workdir: Path,
        progress: StudyProgress | None = None,
        on_start: Callable[[], None] = lambda: None,
        publish_models: bool = False,
    ):
        self.spec = spec
        self.data = data
        self.tracking = tracking  # None on DDP ranks other than 0
        self.workdir = workdir
        self.started = 0.0
        self.current: int | None = None  # the number of the trial this process runs now (rank 0)
        self.lineage: StudyLineage | None = None  # built by the first trial (rank 0)
        self.on_start = on_start  # called once the trial exists (the session releases its AskLock)
        # the best-so-far trial's model goes to the tracking store: any machine can register it
        self.publish_models = publish_models
        self.progress = progress if progress is not None else StudyProgress()  # rank 0 reports to it

    def trial_dir(self, number: int) -> Path:
        return self.workdir / f"trial-{number}"

    def objective(self, trial: Any) -> float | tuple[float, ...]:
        """suggest -> build -> train -> return the best evaluation of the study metric (one per objective).

        The trial's own failure is recorded and raised as `TrialFailed` (the study goes on);
        what stops the study (a store down, a full disk, SIGTERM, ranks out of step) is raised as itself.
        """
        import optuna

        self.started = time.monotonic()
        number, params, run_id, resume = distributed.on_main(lambda: self._start(trial))
        run = TrialRun(self.tracking_of_main().client, run_id) if distributed.is_main() else NullTrialRun()
        label = f"rank {distributed.rank()} trial {number}"
        logger.info("%s params %s", label, json.dumps(params, sort_keys=True))
        if distributed.is_main():
            self.progress.trial_started(number)
        on_evaluation = lambda index, value: self.progress.evaluation(number, index, value)  # noqa: E731
        state = "FAIL"
        try:
            trial_spec = distributed.together(lambda: apply_overrides(self.spec, params))
            distributed.on_main(lambda: self._record_lineage(run, trial_spec))
            result = train_trial(
                trial_spec,
                self.data,
                trial,
                run,
                self.trial_dir(number),
                is_main=distributed.is_main(),
                label=label,
                on_evaluation=on_evaluation,
                resume_from=Path(resume) if resume else None,
            )
            values = objective_values(self.spec, result)
            distributed.on_main(lambda: self._complete(trial, run, result))  # a store fault here fails the trial
            state = f"COMPLETE {self.spec.study.metric}={result.value!r}"
            return values
        except optuna.TrialPruned as e:
            state = "PRUNED"
            self._end_pruned(trial, run, e)
            raise
        except TrialPreempted as e:
            state, preempted = f"PREEMPTED at step {e.step}", e
            distributed.on_main(lambda: self._record_preemption(trial, run, preempted))
            raise Preempted(
                f"preempted (SIGTERM): trial {number} saved at step {e.step} and queued for a retry; "
                "run the same command to resume"
            ) from e
        except Exception as e:
            reason, stops = self._record_failure(trial, run, number, e)
            state = "FAIL " + reason
            if stops is not None:
                raise stops from e
            raise TrialFailed(reason) from e
        except KeyboardInterrupt:
            state = "KILLED"
            self._record_interrupt(trial, run)
            raise
        finally:
            logger.info("%s %s", label, state)

    def _start(self, trial) -> tuple[int, dict[str, Any], str, str | None]:
        """Rank 0: sample the parameters and open the trial's run; a preempted trial's retry gets its checkpoint."""
        self.on_start()  # the trial exists: other workers' counts include it
        self.current = trial.number
        params = suggest_params(trial, self.spec.space)
        try:
            run = self.tracking_of_main().start_trial_run(trial.number, params)
        except StoreError as e:  # raised as itself: it stops the study
            trial.set_user_attr(STORE_ERROR_ATTR, str(e))  # not counted: the trial is run again on resume
            raise
        trial.set_user_attr(RUN_ID_ATTR, run.run_id)
        trial.set_user_attr(
            WORKER_ATTR, f"{socket.gethostname()}:{os.getpid()}"
        )  # where it ran, for the logs and tests
        if seeded := seed_tags(trial.user_attrs):  # a warm start's trial: the study and trial its values came from
            run.set_tags(seeded)
        resume = trial.user_attrs.get(RESUME_ATTR)
        if resume is not None:
            run.set_tags(
                {
                    RETRY_OF_TRIAL_TAG: trial.user_attrs.get(RETRY_OF_ATTR),
                    RETRY_OF_RUN_TAG: trial.user_attrs.get(RETRY_RUN_ATTR),
                }
            )
            if not Path(resume, "trainer_state.json").is_file():  # another machine, or cleaned up: train from step 0
                logger.warning("trial %d: checkpoint %s not found; training from the start", trial.number, resume)
                resume = None
        return trial.number, params, run.run_id, resume

    def _record_preemption(self, trial, run: TrialRun, e: TrialPreempted) -> None:
        """Rank 0: the trial failed as preempted (not counted); a retry with its params resumes from its checkpoint."""
        reason = str(e)
        _quietly(trial.set_user_attr, PREEMPTED_ATTR, reason)
        retry = {RESUME_ATTR: str(e.checkpoint.resolve()), RETRY_OF_ATTR: trial.number, RETRY_RUN_ATTR: run.run_id}
        trial.study.enqueue_trial(trial.params, user_attrs=retry)
        _quietly(
            run.end,
            "KILLED",
            note=f"Preempted (SIGTERM) at step {e.step}: a retry of trial {trial.number} resumes from {e.checkpoint}",
        )

    def _record_lineage(self, run: TrialRun, trial_spec: StudySpec) -> None:
        """Rank 0: what `reproduce` needs."""
        if self.lineage is None:
            self.lineage = study_lineage(self.spec, self.data)
        log_trial_lineage(run, trial_spec, self.data, self.lineage)

    def _complete(self, trial, run: TrialRun, result: TrialResult) -> None:
        record_outcome(trial, run, self.spec, result)  # costs, constraints, feasibility: before Optuna is told
        if self.publish_models and result.value is not None:
            previous = best_trial(trial.study)  # one read of the storage for both the test and the clean-up
            if self._beats(previous, result.value):
                self._publish_model(trial, run, previous)
        run.end("COMPLETE")  # `objective` and `best_<metric>` were logged with each evaluation (TrialCallback)

    def _beats(self, best, value: float) -> bool:
        if best is None or best.value is None:
            return True
        return value > best.value if self.spec.study.direction == "maximize" else value < best.value

    def _publish_model(self, trial, run: TrialRun, previous) -> None:
        """Log the new best trial's model to the tracking store (its run's LoggedModel); remove the one it beat.

        The study's best model then outlives the machine that trained it (an array task that ended).
        """
        model_dir = self.trial_dir(trial.number) / "model"
        uri = log_model_dir(model_dir, self.data.splits.frame("validation"), run_id=run.run_id)
        trial.set_user_attr(MODEL_URI_ATTR, uri)
        if previous is not None and MODEL_URI_ATTR in previous.user_attrs:
            remove_logged_model(self.tracking_of_main().client, previous.user_attrs[MODEL_URI_ATTR])

    def _end_pruned(self, trial, run: TrialRun, e: BaseException) -> None:
        note = (
            f"Pruned by the {self.spec.study.pruner.type} pruner ({e}): stopped early on purpose, not a failure; "
            f"`objective` is the best {self.spec.study.metric} it reached"
        )
        try:
            run.end("PRUNED", note=note)
        except StoreError as store:  # the tracking store is down: the next trial would fail too
            if distributed.is_main():
                _quietly(trial.set_user_attr, STORE_ERROR_ATTR, str(store))
            raise

    def _record_failure(self, trial, run: TrialRun, number: int, e: Exception) -> tuple[str, Exception | None]:
        """Record why the trial failed (once, by rank 0); returns the reason, and the error that stops the study."""
        reason, stops = classify_failure(e, number)
        if isinstance(e, distributed.RanksDiverged):
            stops = e  # the other ranks cannot go on
        if distributed.is_main():
            # store faults are not the trial's doing: they are not counted and run again on resume
            _quietly(
                trial.set_user_attr, STORE_ERROR_ATTR if isinstance(stops, StoreError) else FAIL_REASON_ATTR, reason
            )
        if not isinstance(e, StoreError):  # a tracking store that just failed would only be retried again
            _quietly(run.end, "FAIL", note=reason)
        return reason, stops

    def _record_interrupt(self, trial, run: TrialRun) -> None:
        if distributed.is_main():
            trial.set_user_attr(INTERRUPTED_ATTR, True)
        _quietly(run.end, "KILLED", note="Interrupted (Ctrl-C)")

    def follow(self) -> None:
        """A non-zero rank's share of one trial: same code path, no Optuna or MLflow writes."""
        try:
            self.objective(None)
        except (distributed.RanksDiverged, Preempted):  # every rank leaves: rank 0 queued the trial's retry
            raise
        except Exception:  # pruned or failed on every rank together; rank 0 records how
            pass

    def tracking_of_main(self) -> StudyTracking:
        if self.tracking is None:
            raise RuntimeError("only rank 0 holds the study's tracking")
        return self.tracking

    def after_trial(self):
        """Optuna callback for a trial that ended and the study goes on: `finish_trial`."""
        return lambda study, frozen: self.finish_trial(study, frozen)

    def finish_stopped_trial(self, study) -> None:
        """The trial that stopped the study (its error left `optimize`): its line, and nothing more."""
        if self.current is None:
            return
        frozen = next((t for t in study.get_trials(deepcopy=False) if t.number == self.current), None)
        if frozen is not None:
            self.finish_trial(study, frozen, study_goes_on=False)

    def finish_trial(self, study, frozen, study_goes_on: bool = True) -> None:
        """One progress line per trial, the parent run's curve, checkpoint clean-up."""
        self.current = None
        seconds = time.monotonic() - self.started
        value = f"{self.spec.study.metric}={frozen.values[0]:.4f}" if frozen.values else ""
        release_memory()  # the trial's model, optimizer and batches, before the next trial allocates
        reasons = (FAIL_REASON_ATTR, STORE_ERROR_ATTR, PREEMPTED_ATTR)
        reason = next((frozen.user_attrs[k] for k in reasons if k in frozen.user_attrs), "")
        params = ", ".join(f"{k.split('.')[-1]}={_short(v)}" for k, v in frozen.params.items())
        line = f"  trial {frozen.number:>3} {frozen.state.name:<8} {value or reason}  ({params}) {seconds:.1f}s"
        self.progress.trial_finished(frozen.number, frozen.state.name, line)
        if not study_goes_on:
            return
        best = best_trial(study)
        if frozen.values and best is not None:
            self.tracking_of_main().parent.log_metrics(
                {self.spec.study.metric: frozen.values[0], f"best_{self.spec.study.metric}": best.values[0]},
                step=frozen.number,
            )
        top_k = self.spec.selection.top_k if self.spec.selection else 1
        if self.publish_models or frozen.number not in kept_trials(study, top_k):  # local files are scratch then
            shutil.rmtree(self.trial_dir(frozen.number), ignore_errors=True)

    def clean_up(self, keep: int | None, running: Collection[int] = frozenset()) -> None:
        """Remove every trial directory but the best trial's and those of `running` trials (other workers')."""
        if not self.workdir.exists():
            return
        kept = {f"trial-{n}" for n in {keep, *running} if n is not None}
        for path in self.workdir.iterdir():
            if path.name not in kept:
                shutil.rmtree(path, ignore_errors=True)


def classify_failure(e: BaseException, number: int) -> tuple[str, Exception | None]:
    """A failed trial's reason, and the error that must stop the study (store down, disk full) or None."""
    reason = distributed.failure_reason(e)
    if isinstance(e, StoreError):
        return str(e), StoreError(f"trial {number}: {e}")
    lost = lost_connection(e)
    if lost is not None:  # the Optuna storage stayed unreachable (workbench.stores.storage retried it)
        return f"Optuna storage unreachable: {lost}", StoreError(
            f"trial {number}: the Optuna storage stayed unreachable for over "
            f"{settings.WORKBENCH_RECONNECT_S.get():g} s ({lost}): run the same command to resume"
        )
    if _is_disk_full(e):
        return f"disk full: {first_line(e)}", StoreError(
            f"trial {number}: disk full ({first_line(e)}): free space under mlruns/ and run the same command to resume"
        )
    if _is_out_of_memory(e):
        return f"out of memory: {reason}", None
    return reason, None


def _is_disk_full(e: BaseException) -> bool:
    words = ("no space left on device", "storagefull", "database or disk is full", "disk quota exceeded")
    return any(
        getattr(x, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or any(w in str(x).lower() for w in words)
        for x in error_chain(e)
    )


def _is_out_of_memory(e: BaseException) -> bool:
    import torch

    words = ("out of memory", "can't allocate memory", "cannot allocate memory")
    return any(
        isinstance(x, (MemoryError, torch.OutOfMemoryError)) or any(w in str(x).lower() for w in words)
        for x in error_chain(e)
    )


@contextmanager
def long_lived_frozen():
    """Trials run with what is alive now (libraries, data, stores) out of the collector's sight.

    `gc.freeze` keeps those ~700k objects out of every collection, so `release_memory` after
    each trial scans only what trials allocated (1.2 s -> ~0 s a trial on 2 CPU cores).
    Unfrozen at the end: a process that goes on (tests, notebooks) can collect all of it again.
    """
    import gc

    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


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


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
