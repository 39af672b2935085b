"""Adapters (LoRA and the other PEFT methods) on a sequence classifier, through Hugging Face's `peft`.

`model.peft` in a study file: `method` names peft's config class (`lora` -> `LoraConfig`,
`ia3` -> `IA3Config`, ...); every other key is a field of that class. The backbone stays
frozen but for the adapters; the classification head trains in full (`modules_to_save`).
The trained model is saved with the adapters merged into the backbone, so it serves without
`peft`. `peft` is an optional extra, imported only when a study asks for it.
"""

from __future__ import annotations

import dataclasses
import typing
import warnings
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from workbench.core.errors import DataError, did_you_mean, first_line

if TYPE_CHECKING:
    from torch import nn

PEFT_EXTRA = 'pip install -e ".[peft]"'
METHOD_KEY, DEFAULT_METHOD = "method", "lora"
# PeftConfig fields workbench sets (or peft fills in): not a study file's to give
OWNED_FIELDS = {
    "task_type",
    "peft_type",
    "auto_mapping",
    "peft_version",
    "base_model_name_or_path",
    "revision",
    "inference_mode",
}
# peft's own head names for task_type=SEQ_CLS (PeftModelForSequenceClassification)
SEQ_CLS_HEADS = ("classifier", "score")


def import_peft() -> Any:
    """The `peft` module, or a DataError naming the extra that installs it."""
    try:
        import peft
    except ImportError:
        raise DataError(f"model.peft: needs the peft library, an optional extra: {PEFT_EXTRA}") from None
    return peft


@lru_cache(maxsize=1)
def _config_classes() -> dict[str, type]:
    """Method name (peft's PeftType, lower case: lora, ia3, loha, ...) -> its config class."""
    import_peft()
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    return {str(getattr(t, "value", t)).lower(): cls for t, cls in PEFT_TYPE_TO_CONFIG_MAPPING.items()}


def config_class(method: Any) -> type:
    """peft's config class for `method`; prompt-learning methods are refused (nothing to merge into the backbone)."""
    classes = _config_classes()  # first: a DataError naming the extra when peft is not installed
    from peft.config import PromptLearningConfig

    name = str(method).lower()
    if name not in classes:
        raise DataError(
            f"model.peft.method: {method!r} is not a peft method{did_you_mean(name, list(classes))} "
            "(lora, ia3, loha, lokr, oft, ...: peft's PeftType names)"
        )
    cls = classes[name]
    if issubclass(cls, PromptLearningConfig) or name == "adaption_prompt":
        raise DataError(
            f"model.peft.method: {name} is a prompt-learning method: its weights cannot be merged into the "
            "backbone for serving; choose one that adapts the backbone's layers (lora, ia3, loha, lokr, ...)"
        )
    return cls


def peft_fields(method: Any) -> tuple[str, tuple[str, ...], dict[str, Any]]:
    """(config class name, the fields a study file may set, their types) for `model.peft` with `method`."""
    cls = config_class(method)
    fields = tuple(f.name for f in dataclasses.fields(cls) if f.init and f.name not in OWNED_FIELDS)
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # annotations that do not resolve: left to the real constructor
        hints = {}
    return cls.__name__, (METHOD_KEY, *fields), {k: hints[k] for k in fields if k in hints}


def build_peft_config(peft_spec: dict[str, Any], head: Sequence[str]) -> Any:
    """peft's config from `model.peft`; the `head` modules (and any `modules_to_save`) train in full."""
    values = {k: v for k, v in peft_spec.items() if k != METHOD_KEY}
    cls = config_class(peft_spec.get(METHOD_KEY, DEFAULT_METHOD))
    modules = sorted({*(values.pop("modules_to_save", None) or []), *head})
    if "modules_to_save" not in {f.name for f in dataclasses.fields(cls)}:
        raise DataError(f"model.peft.method: {cls.__name__} cannot train the classification head: choose lora")
    return cls(**values, modules_to_save=modules or None)


def head_modules(model: nn.Module) -> list[str]:
    """The classification head: the top-level modules beside the backbone (`base_model_prefix`), else peft's names."""
    children = dict(model.named_children())
    prefix = getattr(model, "base_model_prefix", "")
    if prefix and prefix in children:
        return [n for n, m in children.items() if n != prefix and _holds_weights(m)]
    return [n for n in SEQ_CLS_HEADS if n in children]


def add_adapters(model: nn.Module, peft_spec: dict[str, Any]) -> Any:
    """`model` wrapped by peft with the adapters of `model.peft`; a DataError naming the key when they do not fit."""
    import_peft()
    from peft import get_peft_model
    from peft.utils.error import NoMatchingPeftModuleError

    head = head_modules(model)
    if not head and not peft_spec.get("modules_to_save"):
        raise DataError(
            f"model.peft.modules_to_save: no classification head found in {type(model).__name__} "
            f"(its top-level modules: {', '.join(n for n, _ in model.named_children())}): name it there"
        )
    config = build_peft_config(peft_spec, head)
    names = module_names(model)  # before peft changes the model in place
    try:
        with warnings.catch_warnings():  # peft 0.21 reads transformers 5's deprecated `is_gradient_checkpointing`
            warnings.filterwarnings("ignore", ".*is_gradient_checkpointing", FutureWarning)
            return get_peft_model(model, config)
    except NoMatchingPeftModuleError:
        targets = peft_spec.get("target_modules", config.target_modules)
        raise DataError(
            f"model.peft.target_modules: {targets!r} matches no module of {type(model).__name__} "
            f"(its modules: {', '.join(names)})"
        ) from None
    except (ValueError, TypeError) as e:  # peft's own checks of the config against the model
        raise DataError(f"model.peft: {first_line(e)}") from None


def check_adapters(build_empty_model: typing.Callable[[], nn.Module], peft_spec: dict[str, Any]) -> None:
    """Raise what `add_adapters` would, on a model built on the meta device (no memory, ~20 ms for MiniLM)."""
    import torch

    with torch.device("meta"):
        model = build_empty_model()
    add_adapters(model, peft_spec)


def module_names(model: nn.Module) -> list[str]:
    """Short names (`query`, `dense`) of the modules holding weights: what `target_modules` may name."""
    names = {name.rpartition(".")[2] for name, m in model.named_modules() if name and _holds_weights(m, recurse=False)}
    return sorted(names)


def _holds_weights(module: nn.Module, recurse: bool = True) -> bool:
    return next(module.parameters(recurse=recurse), None) is not None


def merged(model: Any) -> Any:
    """The model to save: a peft model's adapters merged into its backbone (served without peft); others as they are."""
    if not hasattr(model, "merge_and_unload") or not hasattr(model, "peft_config"):
        return model
    return model.merge_and_unload()


def parameter_counts(model: Any) -> dict[str, float]:
    """`params` and `trainable_params` of the model as trained (peft's count: adapters and the head's copy included)."""
    if hasattr(model, "get_nb_trainable_parameters"):
        trainable, total = model.get_nb_trainable_parameters()
    else:
        total = sum(p.numel() for p in model.parameters())
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"params": float(total), "trainable_params": float(trainable)}


def peft_params(model: Any, defaults: bool = False) -> dict[str, Any]:
    """The adapters' method and config as `model.peft.*` params (peft's defaults for that method, with `defaults`)."""
    configs = getattr(model, "peft_config", None)
    if not configs:
        return {}
    config = next(iter(configs.values()))
    values = (type(config)() if defaults else config).to_dict()
    values = {METHOD_KEY: config.peft_type.value.lower(), **{k: v for k, v in values.items() if k not in OWNED_FIELDS}}
    return {f"model.peft.{k}": v for k, v in values.items()}
