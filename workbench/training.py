"""One trial's training: TrainingArguments, model and Trainer from a resolved spec.

`build_*` functions only construct; `train_trial` runs the Trainer and returns the trial's
value (the best evaluation of the study metric, the checkpoint `load_best_model_at_end`
restores), or raises `optuna.TrialPruned`.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from workbench.study_file import StudySpec

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedTokenizerBase, Trainer, TrainingArguments

    from workbench.data import Splits
    from workbench.modeling import WorkbenchConfig, WorkbenchForSequenceClassification
    from workbench.tracking import TrialRun

# Sensible defaults a study file may override (defaults < study file < CLI < trial params).
TRAINING_DEFAULTS: dict[str, Any] = {
    "eval_strategy": "epoch",
    "save_strategy": "epoch",
    "logging_strategy": "epoch",
    "load_best_model_at_end": True,
    "save_total_limit": 1,  # the best checkpoint is always kept in addition
    "save_only_model": True,  # no optimizer state: trials are not resumed mid-way
    "logging_nan_inf_filter": False,  # a NaN loss must be seen, not averaged away
    "num_train_epochs": 3,
    "per_device_train_batch_size": 32,
    "per_device_eval_batch_size": 128,
    "seed": 42,
}
# Owned by workbench: metrics go to MLflow through our callback, progress is ours.
TRAINING_FORCED: dict[str, Any] = {"report_to": "none", "disable_tqdm": True, "ddp_find_unused_parameters": False}


@dataclass(frozen=True)
class TrialData:
    """What every trial of a study shares: tokenized once per study process."""

    train: Dataset
    validation: Dataset
    tokenizer: PreTrainedTokenizerBase
    label_names: tuple[str, ...]
    splits: Splits  # the raw texts, for registration and lineage


def build_training_args(spec: StudySpec, output_dir: str | Path) -> TrainingArguments:
    """TrainingArguments from the study's `training:` section, our defaults and the study metric."""
    import torch
    from transformers import TrainingArguments

    defaults = dict(TRAINING_DEFAULTS)
    if "eval_strategy" in spec.training:  # checkpoints and logs follow the evaluations the study asks for
        for key in ("save_strategy", "logging_strategy"):
            defaults[key] = spec.training["eval_strategy"]
        if "eval_steps" in spec.training:
            defaults["save_steps"] = defaults["logging_steps"] = spec.training["eval_steps"]
    values = {**defaults, **spec.training, **TRAINING_FORCED}
    values["metric_for_best_model"] = spec.study.metric
    values["greater_is_better"] = spec.study.direction == "maximize"
    if not torch.cuda.is_available():
        values.setdefault("use_cpu", True)  # under torchrun on CPU, otherwise each rank trains alone
    return TrainingArguments(output_dir=str(output_dir), **values)


def build_model_config(spec: StudySpec, data: Optional[TrialData] = None) -> WorkbenchConfig:
    """The model's config from the study's `model:` section, sized to the tokenizer and labels when given."""
    from workbench.modeling import WorkbenchConfig

    sized: dict[str, Any] = {"max_position_embeddings": max(spec.data.max_length, 8)}
    labels: tuple[str, ...] = ("0", "1")  # stand-in labels when checking a study file before data exists
    if data is not None:
        # a trained WordPiece vocabulary can be smaller than asked: size from the tokenizer
        sized.update(vocab_size=len(data.tokenizer), pad_token_id=data.tokenizer.pad_token_id)
        labels = data.label_names
    return WorkbenchConfig(
        **{
            **sized,
            **spec.model,
            "id2label": dict(enumerate(labels)),
            "label2id": {name: i for i, name in enumerate(labels)},
        }
    )


def build_model(spec: StudySpec, data: TrialData) -> WorkbenchForSequenceClassification:
    """A freshly initialised model sized to the tokenizer and the labels."""
    from workbench.modeling import WorkbenchForSequenceClassification

    return WorkbenchForSequenceClassification(build_model_config(spec, data))


def compute_metrics(eval_pred) -> dict[str, float]:
    """Accuracy, F1, precision and recall of the Trainer's predictions (eval_loss is its own)."""
    from workbench.metrics import classification_metrics, softmax

    logits = eval_pred.predictions[0] if isinstance(eval_pred.predictions, tuple) else eval_pred.predictions
    metrics = classification_metrics(eval_pred.label_ids, softmax(logits.astype(np.float64)))
    metrics.pop("loss")
    return metrics


def build_trainer(spec: StudySpec, data: TrialData, args: TrainingArguments, callbacks: list) -> Trainer:
    from transformers import DataCollatorWithPadding, EarlyStoppingCallback, PrinterCallback, Trainer, set_seed

    if spec.early_stopping is not None:
        # fresh per trial: the callback carries its patience counter
        stopper = EarlyStoppingCallback(spec.early_stopping.patience, spec.early_stopping.threshold)
        callbacks = [stopper, *callbacks]
    set_seed(args.seed)  # the initial weights too, not only the data order: a trial reproduces from its record
    trainer = Trainer(
        model=build_model(spec, data),
        args=args,
        train_dataset=data.train,
        eval_dataset=data.validation,
        data_collator=DataCollatorWithPadding(data.tokenizer),
        processing_class=data.tokenizer,
        compute_metrics=compute_metrics,
        callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)  # metrics go to MLflow; progress is one line per trial
    return trainer


@dataclass(frozen=True)
class TrialResult:
    value: float  # best evaluation of the study metric
    evaluations: int
    model_dir: Optional[Path]  # saved best model + tokenizer (rank 0 only)


def train_trial(
    spec: StudySpec, data: TrialData, trial: Any, run: TrialRun, trial_dir: Path, *, is_main: bool = True, label: str = "trial"
) -> TrialResult:
    """Train one trial; returns its result or raises optuna.TrialPruned. Cleans checkpoints up.

    Under DDP every rank calls it: a failure on any rank while building or training fails the
    trial on every rank, and rank 0 saves the model once every rank has finished training.
    """
    import optuna

    from workbench import distributed
    from workbench.callbacks import TrialCallback

    reporter = TrialCallback(trial, run, spec.study.metric, maximize=spec.study.direction == "maximize", label=label)
    try:
        trainer = distributed.together(
            lambda: build_trainer(spec, data, build_training_args(spec, trial_dir / "checkpoints"), [reporter])
        )
        distributed.on_main(lambda: run.log_params(_params(trainer)))
        distributed.together(trainer.train)
        if reporter.pruned_at is not None:  # the same evaluation on every rank: the decision was shared
            raise optuna.TrialPruned(f"pruned at evaluation {reporter.pruned_at}")
        if reporter.best is None:
            raise RuntimeError("the trial never evaluated: set training.eval_strategy to 'epoch' or 'steps'")
        model_dir = trial_dir / "model"
        distributed.on_main(lambda: save_model(trainer, model_dir))  # the best checkpoint, restored at the end
        return TrialResult(reporter.best, reporter.evaluations, model_dir if is_main else None)
    finally:
        # after `together(trainer.train)`: no rank still loads the best checkpoint from here
        shutil.rmtree(trial_dir / "checkpoints", ignore_errors=True)


def save_model(trainer: Trainer, model_dir: Path) -> None:
    """The trained model and tokenizer, readable by a tracking server run by another user."""
    trainer.save_model(str(model_dir))
    (model_dir / "training_args.bin").unlink(missing_ok=True)  # a pickle; the args are logged as params
    readable(model_dir)


def _params(trainer: Trainer) -> dict[str, Any]:
    """The resolved model config and training arguments, as `model.*` / `training.*` params."""
    config = trainer.model.config.to_dict()
    config = {k: v for k, v in config.items() if k not in ("id2label", "label2id", "transformers_version", "architectures")}
    params = {f"model.{k}": v for k, v in config.items()}
    params.update({f"training.{k}": v for k, v in trainer.args.to_dict().items() if not k.startswith("_")})
    return params


def readable(path: Path) -> None:
    """save_pretrained writes files 0600; a tracking server run by another user must read them."""
    for p in [path, *path.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
