"""One trial's training: TrainingArguments, model and Trainer from a resolved spec.

`build_*` functions only construct; `train_trial` runs the Trainer and returns the trial's
value (the best evaluation of the study metric, the checkpoint `load_best_model_at_end`
restores), or raises `optuna.TrialPruned`.
"""

from __future__ import annotations

import copy
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from transformers import Trainer
from typing_extensions import override

from workbench.config.builders import build_model, build_training_args
from workbench.config.study_file import StudySpec
from workbench.core import distributed
from workbench.core.metrics import classification_metrics, label_key, positive_id
from workbench.data.splits import TrialData
from workbench.model.adapters import merged, parameter_counts, peft_params
from workbench.model.user_code import write_model_class
from workbench.trial.callbacks import TrialCallback
from workbench.trial.costs import LATENCY_TEXTS, measure_costs

if TYPE_CHECKING:
    from transformers import TrainingArguments

    from workbench.stores.tracking import TrialRun


def compute_metrics(
    eval_pred, label_names: Sequence[str] | None = None, positive: int | None = None
) -> dict[str, float]:
    """`metrics.classification_metrics` of the Trainer's predictions (eval_loss is its own); `positive`: a class id."""
    from scipy.special import softmax

    logits = eval_pred.predictions[0] if isinstance(eval_pred.predictions, tuple) else eval_pred.predictions
    metrics = classification_metrics(
        eval_pred.label_ids, softmax(logits.astype(np.float64), axis=-1), label_names, positive
    )
    metrics.pop("loss")
    return metrics


class WorkbenchTrainer(Trainer):
    """The Trainer of every trial: the checkpoint its TrialCallback asks for on SIGTERM is saved to resume from.

    Its methods that replace the Trainer's are marked `@override`; `tests/test_training.py` checks each
    still exists on the installed transformers with the same parameters.
    """

    @override
    def _save_checkpoint(self, model, trial):
        if self._saving_preempted():
            # with the optimizer, scheduler and RNG state (what resuming needs), and kept: with save_total_limit 1
            # the end of train() deletes every checkpoint but the best. A copy: the trial's arguments stay as logged.
            self.args = copy.copy(self.args)
            self.args.save_only_model = False
            self.args.save_total_limit = None
        super()._save_checkpoint(model, trial)

    def _saving_preempted(self) -> bool:
        """True while saving the checkpoint a TrialCallback asked for on SIGTERM (at this very step)."""
        return any(
            isinstance(c, TrialCallback) and c.preempted_at == self.state.global_step
            for c in self.callback_handler.callbacks
        )


class WeightedLossTrainer(WorkbenchTrainer):
    """A Trainer whose loss is class-weighted, optionally label-smoothed, cross-entropy over the logits."""

    loss_is_scaled_for_ga = False  # a per-batch mean: the Trainer divides it by the accumulation steps

    def __init__(self, *args, class_weights: Sequence[float] | None = None, label_smoothing: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.class_weights = tuple(class_weights) if class_weights is not None else None
        self.label_smoothing = label_smoothing

    @override
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        import torch
        import torch.nn.functional as F

        inputs = dict(inputs)
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        # on the logits' device: each DDP rank, GPU or CPU, weighs its own batch
        weight = (
            torch.tensor(self.class_weights, dtype=logits.dtype, device=logits.device) if self.class_weights else None
        )
        loss = F.cross_entropy(
            logits.view(-1, logits.shape[-1]), labels.view(-1), weight=weight, label_smoothing=self.label_smoothing
        )
        return (loss, outputs) if return_outputs else loss


def build_trainer(spec: StudySpec, data: TrialData, args: TrainingArguments, callbacks: list) -> Trainer:
    from transformers import DataCollatorWithPadding, EarlyStoppingCallback, PrinterCallback, set_seed

    if spec.early_stopping is not None:
        # fresh per trial: the callback carries its patience counter
        stopper = EarlyStoppingCallback(spec.early_stopping.patience, spec.early_stopping.threshold)
        callbacks = [stopper, *callbacks]
    set_seed(args.seed)  # the initial weights too, not only the data order: a trial reproduces from its record
    loss: dict[str, Any] = (
        {"class_weights": data.class_weights, "label_smoothing": spec.loss.label_smoothing} if spec.loss.custom else {}
    )
    trainer = (WeightedLossTrainer if spec.loss.custom else WorkbenchTrainer)(
        **loss,
        model=build_model(spec, data.tokenizer, data.label_names),
        args=args,
        train_dataset=data.train,
        eval_dataset=data.validation,
        data_collator=DataCollatorWithPadding(data.tokenizer, pad_to_multiple_of=spec.data.pad_to_multiple_of),
        processing_class=data.tokenizer,
        compute_metrics=partial(
            compute_metrics, label_names=data.label_names, positive=positive_id(data.label_names, data.positive_label)
        ),
        callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)  # metrics go to MLflow; progress is one line per trial
    return trainer


class TrialPreempted(Exception):
    """SIGTERM stopped training after saving a checkpoint (optimizer state included) to resume from."""

    def __init__(self, step: int, checkpoint: Path):
        super().__init__(f"preempted at step {step}")
        self.step = step
        self.checkpoint = checkpoint


@dataclass(frozen=True)
class TrialResult:
    value: float  # best evaluation of the study metric
    evaluations: int
    model_dir: Path | None  # saved best model + tokenizer (rank 0 only)
    costs: dict[str, float] = field(default_factory=dict)  # workbench.trial.costs, measured on rank 0
    metrics: dict[str, float] = field(default_factory=dict)  # eval metrics of the best evaluation


def train_trial(
    spec: StudySpec,
    data: TrialData,
    trial: Any,
    run: TrialRun,
    trial_dir: Path,
    *,
    is_main: bool = True,
    label: str = "trial",
    on_evaluation: Callable[[int, float], None] | None = None,
    resume_from: Path | None = None,
) -> TrialResult:
    """Train one trial (from `resume_from`, a checkpoint, when given); returns its result, or raises
    optuna.TrialPruned, or TrialPreempted (its checkpoints kept). Cleans checkpoints up.

    `on_evaluation(index, value)` is called on rank 0 after each evaluation (the live display).
    Under DDP every rank calls it: a failure on any rank while building or training fails the
    trial on every rank, and rank 0 saves the model once every rank has finished training.
    """
    import optuna

    maximize = spec.study.direction == "maximize"
    reporter = TrialCallback(trial, run, spec.study.metric, maximize, label=label, on_evaluation=on_evaluation)
    reporter.reports = not spec.study.multi_objective  # Optuna cannot prune (nor take reports of) several objectives
    keep_checkpoints = False
    try:
        trainer = distributed.together(
            lambda: build_trainer(spec, data, build_training_args(spec, trial_dir / "checkpoints"), [reporter])
        )
        distributed.on_main(lambda: log_params(run, trainer, spec))
        resume = str(resume_from) if resume_from is not None else None
        # a rank failing alone in a step stops the job within seconds
        started = time.monotonic()
        distributed.together(lambda: trainer.train(resume_from_checkpoint=resume), in_step=True)
        train_seconds = time.monotonic() - started
        if reporter.preempted_at is not None:
            keep_checkpoints = True
            raise TrialPreempted(
                reporter.preempted_at, trial_dir / "checkpoints" / f"checkpoint-{reporter.preempted_at}"
            )
        if reporter.pruned_at is not None:  # the same evaluation on every rank: the decision was shared
            raise optuna.TrialPruned(f"pruned at evaluation {reporter.pruned_at}")
        if reporter.best is None:
            raise RuntimeError("the trial never evaluated: set training.eval_strategy to 'epoch' or 'steps'")
        model_dir = trial_dir / "model"
        counts = parameter_counts(trainer.model)  # as trained: saving merges a LoRA adapter into the backbone
        distributed.on_main(
            lambda: save_model(trainer, model_dir, spec.model.get("class"))
        )  # the best checkpoint, restored at the end
        costs = distributed.on_main(lambda: log_costs(run, trainer, data, model_dir, spec, train_seconds, counts))
        best = best_metrics(trainer.state.log_history, spec.study.metric, reporter.best)
        return TrialResult(reporter.best, reporter.evaluations, model_dir if is_main else None, costs, best)
    finally:
        # after `together(trainer.train)`: no rank still loads the best checkpoint from here
        if not keep_checkpoints:
            shutil.rmtree(trial_dir / "checkpoints", ignore_errors=True)


def log_costs(
    run: TrialRun,
    trainer: Trainer,
    data: TrialData,
    model_dir: Path,
    spec: StudySpec,
    train_seconds: float,
    counts: dict[str, float],
) -> dict[str, float]:
    """Rank 0: measure what the trained model costs and log it as metrics on the trial's run."""
    texts = data.splits.validation[:LATENCY_TEXTS]["text"]  # a fixed sample: the same texts time every trial
    model, tokenizer, length = trainer.model, data.tokenizer, spec.data.max_length
    costs = measure_costs(model, tokenizer, model_dir, texts, length, train_seconds, counts)
    run.log_metrics(costs, step=trainer.state.global_step)
    return costs


def best_metrics(history: list[dict], metric: str, best: float | None) -> dict[str, float]:
    """The eval metrics of the first evaluation that reached `best` (the checkpoint load_best_model_at_end keeps)."""
    for entry in history:
        if metric in entry and entry[metric] == best:
            timing = ("_runtime", "_per_second")  # how long evaluating took, not what the model is
            return {
                k: float(v)
                for k, v in entry.items()
                if k.startswith("eval_") and isinstance(v, (int, float)) and not k.endswith(timing)
            }
    return {}


def save_model(trainer: Trainer, model_dir: Path, model_class: str | None = None) -> None:
    """The trained model and tokenizer (and the user's model class, if any), readable by a server run by another user.

    Adapters are merged into the backbone first: the saved model is a plain transformers one, served without peft.
    """
    model = merged(trainer.model)  # in place: training is over, the trainer is not used again
    if model is trainer.model:
        trainer.save_model(str(model_dir))
    else:
        model.save_pretrained(str(model_dir))
        if trainer.processing_class is not None:
            trainer.processing_class.save_pretrained(str(model_dir))
    if model_class:
        write_model_class(model_dir, model_class)
    (model_dir / "training_args.bin").unlink(missing_ok=True)  # a pickle; the args are logged as params
    readable(model_dir)


def log_params(run: TrialRun, trainer: Trainer, spec: StudySpec) -> None:
    """The searched parameters and every value that differs from its default as params (a short list the
    MLflow UI can show); every resolved value in `resolved_params.json`."""
    full = _params(trainer)
    defaults = _default_params(trainer)
    shown = {
        k: v for k, v in full.items() if k in spec.space or (k not in UNSHOWN_PARAMS and _differs(v, defaults.get(k)))
    }
    run.log_params(shown)
    run.log_dict(full, "resolved_params.json")
    run.log_metrics(parameter_counts(trainer.model), step=0)


# Filled in by the library itself, never a choice of the study: only in resolved_params.json.
UNSHOWN_PARAMS = {"training.hub_token", "training.accelerator_config", "training.output_dir"}


def _params(trainer: Trainer) -> dict[str, Any]:
    """The resolved model config and training arguments, as `model.*` / `training.*` params."""
    model: Any = trainer.model  # a PreTrainedModel, or peft's wrapper around one (both have .config)
    config = model.config.to_dict()
    config = {
        k: v for k, v in config.items() if k not in ("id2label", "label2id", "transformers_version", "architectures")
    }
    params = {f"model.{k}": v for k, v in config.items()}
    params.update(peft_params(model))
    params.update({f"training.{k}": v for k, v in trainer.args.to_dict().items() if not k.startswith("_")})
    if isinstance(trainer, WeightedLossTrainer):
        names = model.config.id2label
        params.update(
            {f"loss.class_weight.{label_key(names[i])}": w for i, w in enumerate(trainer.class_weights or ())}
        )
        params["loss.label_smoothing"] = trainer.label_smoothing
    return params


def _default_params(trainer: Trainer) -> dict[str, Any]:
    """The defaults of the model config class and of TrainingArguments' fields (no object built: cheap, no effects)."""
    import dataclasses

    model: Any = trainer.model
    try:
        out = {f"model.{k}": v for k, v in type(model.config)().to_dict().items()}
    except Exception:  # a user's config class that needs arguments: every model value is shown
        out = {}
    out.update(peft_params(model, defaults=True))
    for f in dataclasses.fields(type(trainer.args)):
        if f.default is not dataclasses.MISSING:
            out[f"training.{f.name}"] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f"training.{f.name}"] = f.default_factory()
    return out


def _differs(value: Any, default: Any) -> bool:
    empty: tuple[Any, ...] = (None, False, "", "none", [], {})
    if value in empty and default in empty:
        return False
    return str(getattr(value, "value", value)) != str(getattr(default, "value", default))


def readable(path: Path) -> None:
    """save_pretrained writes files 0600; a tracking server run by another user must read them."""
    for p in [path, *path.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
