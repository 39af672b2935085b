"""Builders of the Hugging Face objects a spec describes: `TrainingArguments` and the model config.

They only construct. The study file's checks and every trial build through them, so a study
file is refused for exactly what would fail in a trial.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.config.spec import StudySpec
from workbench.core.errors import DataError
from workbench.model.adapters import DEFAULT_METHOD, METHOD_KEY, add_adapters, check_adapters, peft_fields
from workbench.model.modeling import WorkbenchConfig, WorkbenchForSequenceClassification
from workbench.model.pretrained import load_config, resolve_checkpoint
from workbench.model.user_code import import_object

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedTokenizerBase, TrainingArguments

# Sensible defaults a study file may override (defaults < study file < CLI < trial params).
TRAINING_DEFAULTS: dict[str, Any] = {
    "eval_strategy": "epoch",
    "save_strategy": "epoch",
    "logging_strategy": "epoch",
    "load_best_model_at_end": True,
    "save_total_limit": 1,  # the best checkpoint is always kept in addition
    "save_only_model": True,  # no optimizer state: trials are not resumed mid-way
    "logging_nan_inf_filter": False,  # a NaN loss must be seen, not averaged away
    "log_level_replica": "error",  # Trainer sets this on DDP ranks > 0; "warning" let load reports through
    "num_train_epochs": 3,
    "per_device_train_batch_size": 32,
    "per_device_eval_batch_size": 128,
    # batches of like-length texts, each padded to its longest: real text (SST-2) pads ~3x fewer tokens than random
    "train_sampling_strategy": "group_by_length",
    "seed": 42,
}
# Owned by workbench: metrics go to MLflow through our callback, progress is ours.
TRAINING_FORCED: dict[str, Any] = {"report_to": "none", "disable_tqdm": True, "ddp_find_unused_parameters": False}
STAND_IN_LABELS = ("0", "1")  # when a study file is checked before its data is loaded
MODEL_KEYS = (
    "pretrained",
    "class",
    "config_class",
    "peft",
)  # keys of `model:` that choose the model (and its adapters); the others are config fields
# Config entries that are bookkeeping, not hyperparameters a study file sets
CONFIG_INTERNALS = {
    "architectures",
    "id2label",
    "label2id",
    "transformers_version",
    "_name_or_path",
    "model_type",
    "torch_dtype",
    "dtype",
}


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


def build_model_config(
    spec: StudySpec, tokenizer: PreTrainedTokenizerBase | None = None, label_names: Sequence[str] = STAND_IN_LABELS
) -> PretrainedConfig:
    """The model's config from the study's `model:` section, sized to the tokenizer and labels when given.

    A pretrained checkpoint's own config takes the other `model.*` keys as overrides; the
    classification head is sized to the labels either way.
    """
    fields = {k: v for k, v in spec.model.items() if k not in MODEL_KEYS}
    if spec.model.get("pretrained"):
        checkpoint = resolve_checkpoint(spec.model["pretrained"], spec.source_dir)
        return load_config(checkpoint, **fields, num_labels=len(label_names), **label_maps(label_names))
    config_class = model_classes(spec.model, spec.source_dir)[1]
    sized: dict[str, Any] = {}
    if "max_position_embeddings" in _init_fields(config_class):
        sized["max_position_embeddings"] = max(spec.data.max_length, 8)
    if tokenizer is not None:
        # a trained WordPiece vocabulary can be smaller than asked: size from the tokenizer
        sized.update(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
    return config_class(**{**sized, **fields, **label_maps(label_names)})


def build_model(spec: StudySpec, tokenizer: PreTrainedTokenizerBase, label_names: Sequence[str]) -> Any:
    """The trial's model: the pretrained weights with a new head, or a freshly initialised model (ours or the user's);
    a PreTrainedModel, or peft's PeftModel around one with the adapters of `model.peft`."""
    config = build_model_config(spec, tokenizer, label_names)
    if spec.model.get("pretrained"):
        from transformers import AutoModelForSequenceClassification

        checkpoint = resolve_checkpoint(spec.model["pretrained"], spec.source_dir)
        model = AutoModelForSequenceClassification.from_pretrained(checkpoint.location, config=config)
    else:
        model = model_classes(spec.model, spec.source_dir)[0](config)
    return add_adapters(model, spec.model["peft"]) if spec.model.get("peft") is not None else model


def check_model_adapters(spec: StudySpec) -> None:
    """Raise what `build_model` would for `model.peft`, on the model's skeleton (meta device: no weights loaded)."""
    if spec.model.get("peft") is None:  # `peft: {}` is LoRA with peft's defaults
        return
    config = build_model_config(spec)
    if spec.model.get("pretrained"):
        from transformers import AutoModelForSequenceClassification

        check_adapters(lambda: AutoModelForSequenceClassification.from_config(config), spec.model["peft"])
    else:
        check_adapters(lambda: model_classes(spec.model, spec.source_dir)[0](config), spec.model["peft"])


def model_classes(model: dict[str, Any], base_dir: str) -> tuple[type, type]:
    """(model class, config class): workbench's encoder, or the user's `model.class` (and `model.config_class`)."""
    if not model.get("class"):
        return WorkbenchForSequenceClassification, WorkbenchConfig
    from transformers import PretrainedConfig, PreTrainedModel

    cls = import_object(model["class"], base_dir, "model.class")
    if not (isinstance(cls, type) and issubclass(cls, PreTrainedModel)):
        raise DataError(f"model.class: {model['class']} is not a transformers PreTrainedModel subclass")
    if model.get("config_class"):
        config_class = import_object(model["config_class"], base_dir, "model.config_class")
    else:
        config_class = cls.config_class
    if (
        not (isinstance(config_class, type) and issubclass(config_class, PretrainedConfig))
        or config_class is PretrainedConfig
    ):
        raise DataError(
            f"model.config_class: {model['class']} names no config class of its own: "
            "set config_class on it, or model.config_class"
        )
    return cls, config_class


def _init_fields(config_class: type) -> list[str]:
    """The keyword arguments the config class's constructor names (not *args, **kwargs)."""
    skip = (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
    return [n for n, p in inspect.signature(config_class).parameters.items() if p.kind not in skip]


@dataclass(frozen=True)
class FieldSchema:
    """The fields a study-file section may set, and their types (for checks before any trial runs)."""

    owner: str  # named in errors: "WorkbenchConfig", "TrainingArguments", "BertConfig of <checkpoint>"
    fields: tuple[str, ...]
    types: dict[str, Any]  # field -> its type, where it can be checked


def model_schema(model: dict[str, Any], base_dir: str) -> FieldSchema:
    """What `model:` may set: the fields of the config class, or of the pretrained checkpoint's config."""
    if model.get("pretrained"):
        return _pretrained_schema(str(model["pretrained"]), str(base_dir))
    config_class = model_classes(model, base_dir)[1]
    try:
        signature = inspect.signature(config_class, eval_str=True)
        hints = {n: p.annotation for n, p in signature.parameters.items() if p.annotation is not p.empty}
    except Exception:  # a user's annotations that do not resolve: left to the real constructor
        hints = {}
    fields = _init_fields(config_class) + [
        "num_labels",
        "id2label",
        "label2id",
        "problem_type",
    ]  # PretrainedConfig's own
    return FieldSchema(config_class.__name__, tuple(fields), hints)


@lru_cache(maxsize=8)
def _pretrained_schema(name: str, base_dir: str) -> FieldSchema:
    config = load_config(resolve_checkpoint(name, base_dir))
    values = {k: v for k, v in config.to_dict().items() if k not in CONFIG_INTERNALS}
    types = {k: float if type(v) is float else type(v) for k, v in values.items() if type(v) in (int, float, bool, str)}
    return FieldSchema(f"{type(config).__name__} of {name}", tuple(sorted(values)), types)


def peft_schema(peft: dict[str, Any]) -> FieldSchema:
    """What `model.peft` may set: `method` and the fields of peft's config class for it (LoraConfig for lora)."""
    owner, fields, types = peft_fields(peft.get(METHOD_KEY, DEFAULT_METHOD))
    return FieldSchema(owner, fields, types)


def training_schema() -> FieldSchema:
    import dataclasses

    from transformers import TrainingArguments

    fields = tuple(f.name for f in dataclasses.fields(TrainingArguments) if f.init and f.name != "output_dir")
    return FieldSchema("TrainingArguments", fields, typing.get_type_hints(TrainingArguments))


def label_maps(label_names: Sequence[str]) -> dict[str, dict]:
    """`id2label` and `label2id` for a config: the model speaks the data's label names."""
    return {"id2label": dict(enumerate(label_names)), "label2id": {name: i for i, name in enumerate(label_names)}}
