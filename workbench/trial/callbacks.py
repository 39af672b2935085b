"""The trial's `TrainerCallback`: on every evaluation, log to MLflow, report to Optuna, prune;
on SIGTERM, save a resumable checkpoint and stop.

It holds the trial and the trial's MLflow run; it never opens a run. Under DDP every rank
runs it and sees the same metrics (the Trainer gathers predictions from all ranks), but only
rank 0 holds the trial and a real run: the report, the prune decision or the reason they
failed reach every rank in one broadcast (`distributed.on_main`), so all ranks stop at the
same evaluation.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from transformers import TrainerCallback

from workbench.core import distributed
from workbench.core.keys import OBJECTIVE_METRIC

if TYPE_CHECKING:
    from workbench.stores.tracking import TrialRun

logger = logging.getLogger(__name__)


class NonFiniteLoss(RuntimeError):
    """Training produced a NaN or infinite loss; the trial fails with this reason."""


class TrialCallback(TrainerCallback):
    def __init__(
        self,
        trial: Any,
        run: TrialRun,
        metric: str,
        maximize: bool,
        label: str = "trial",
        on_evaluation: Callable[[int, float], None] | None = None,
    ):
        self.trial = trial  # the Optuna trial on rank 0, None on the other ranks
        self.run = run
        self.metric = metric
        self.maximize = maximize
        self.label = label  # "rank R trial N" in the per-evaluation debug line
        self.evaluations = 0  # Optuna step: comparable across trials, unlike global_step
        self.best: float | None = None  # best value of `metric` so far
        self.pruned_at: int | None = None  # evaluation index where the pruner stopped the trial
        self.on_evaluation = on_evaluation  # (evaluation index, value) on rank 0: the live progress display
        self.preempted_at: int | None = None  # global step of the checkpoint saved on SIGTERM
        self.reports = True  # False with several objectives: Optuna's Trial.report raises there, nothing prunes

    def on_train_begin(self, args, state, control, **kwargs):
        """A trial resumed from a checkpoint goes on counting from its evaluations (the Trainer restored `state`)."""
        values = [e[self.metric] for e in state.log_history if self.metric in e]
        if values:
            self.evaluations = len(values)
            self.best = max(values) if self.maximize else min(values)

    def on_step_end(self, args, state, control, **kwargs):
        if distributed.stop_requested():  # a Ctrl-C that Python swallowed in a finalizer: stop at a safe point
            raise KeyboardInterrupt
        if self.preempted_at is None and distributed.any_rank(distributed.preempted()):  # every rank, the same step
            # save this step's checkpoint, then stop: WorkbenchTrainer saves it resumable and keeps it
            control.should_save = control.should_training_stop = True
            self.preempted_at = state.global_step

    def on_epoch_end(self, args, state, control, **kwargs):
        if self.preempted_at is not None:  # stopped mid-epoch: no extra evaluation or save inside the grace period
            control.should_evaluate = control.should_save = False

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")  # averaged over all ranks: every rank sees the same value
        if loss is not None and not math.isfinite(float(loss)):
            raise NonFiniteLoss(f"training loss is {float(loss)} at step {state.global_step}")

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        metrics = metrics or {}
        numbers = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        loss = numbers.get("eval_loss")
        problem: Exception | None = None
        if loss is not None and not math.isfinite(loss):
            problem = NonFiniteLoss(f"eval_loss is {loss} at step {state.global_step}")
        elif self.metric not in numbers:
            problem = KeyError(f"metric {self.metric!r} was not computed (got {', '.join(sorted(numbers))})")
        value = numbers.get(self.metric, math.nan)
        if problem is None:
            if self.best is None or (value > self.best if self.maximize else value < self.best):
                self.best = value
            self.evaluations += 1

        logged = dict(numbers)
        if problem is None:  # the score so far, under one name in every run (a pruned run keeps its best)
            logged.update({OBJECTIVE_METRIC: self.best, f"best_{self.metric}": self.best})

        def log_report_prune() -> bool:  # rank 0 only
            self.run.log_metrics(logged, step=state.global_step)
            if problem is not None or not self.reports:
                return False
            self.trial.report(value, self.evaluations)
            return bool(self.trial.should_prune())

        prune = distributed.on_main(log_report_prune)
        if problem is not None:
            raise problem
        logger.info(
            "%s evaluation %d: %s=%r%s", self.label, self.evaluations, self.metric, value, " -> pruned" if prune else ""
        )
        if self.on_evaluation is not None and distributed.is_main():
            self.on_evaluation(self.evaluations, value)
        if prune:
            self.pruned_at = self.evaluations
            control.should_training_stop = True
        return control
