"""The trial's `TrainerCallback`: on every evaluation, log to MLflow, report to Optuna, prune.

It holds the trial and the trial's MLflow run; it never opens a run. Under DDP every rank
runs it: `trial.report` and `trial.should_prune` are then collectives (TorchDistributedTrial)
that every rank calls in the same order, and the run is a do-nothing stand-in off rank 0.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Optional

from transformers import TrainerCallback

from workbench.workers import stop_requested

if TYPE_CHECKING:
    from workbench.tracking import TrialRun


class NonFiniteLoss(RuntimeError):
    """Training produced a NaN or infinite loss; the trial fails with this reason."""


class TrialCallback(TrainerCallback):
    def __init__(self, trial: Any, run: TrialRun, metric: str, maximize: bool):
        self.trial = trial
        self.run = run
        self.metric = metric
        self.maximize = maximize
        self.evaluations = 0  # Optuna step: comparable across trials, unlike global_step
        self.best: Optional[float] = None  # best value of `metric` so far
        self.pruned_at: Optional[int] = None  # evaluation index where the pruner stopped the trial

    def on_step_end(self, args, state, control, **kwargs):
        if stop_requested():  # a Ctrl-C that Python swallowed in a finalizer: stop at a safe point
            raise KeyboardInterrupt

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise NonFiniteLoss(f"training loss is {float(loss)} at step {state.global_step}")

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        metrics = metrics or {}
        numbers = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        self.run.log_metrics(numbers, step=state.global_step)
        loss = numbers.get("eval_loss")
        if loss is not None and not math.isfinite(loss):
            raise NonFiniteLoss(f"eval_loss is {loss} at step {state.global_step}")
        if self.metric not in numbers:
            raise KeyError(f"metric {self.metric!r} was not computed (got {', '.join(sorted(numbers))})")
        value = numbers[self.metric]
        if self.best is None or (value > self.best if self.maximize else value < self.best):
            self.best = value
        self.evaluations += 1
        self.trial.report(value, self.evaluations)
        if self.trial.should_prune():
            self.pruned_at = self.evaluations
            control.should_training_stop = True
        return control
