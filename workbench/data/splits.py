"""Data for a study: load (synthetic, local files, hub), validate, split, tokenize once.

`load_splits` returns raw train/validation datasets (and test, when asked for: `data.holdout`)
with columns `text` and `label` (label ids) plus the label names; `build_tokenizer` trains a
WordPiece tokenizer on the training texts (or loads one); `tokenize_splits` maps train and
validation in batches. Padding happens per batch in `DataCollatorWithPadding`, never here.
`prepare_data` does all three once per study process and returns the `TrialData` every trial shares.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.config.spec import FILE_SPLITS, DataSpec, HubSpec, LossSpec, StudySpec, TokenizerSpec
from workbench.core import distributed
from workbench.core.errors import DataError, did_you_mean, first_line
from workbench.core.metrics import BINARY, default_positive, metric_names, positive_id
from workbench.core.tables import read_table
from workbench.data.holdout import split_digest, split_off_test
from workbench.data.sizes import warn_small_classes
from workbench.data.synthetic import LABELS, generate_examples
from workbench.data.wordpiece import train_wordpiece
from workbench.model.pretrained import load_tokenizer, resolve_checkpoint

if TYPE_CHECKING:
    import pandas as pd
    from datasets import Dataset
    from transformers import PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


@dataclass(frozen=True)
class Splits:
    """Raw text splits with label ids, and what they came from."""

    train: Dataset
    validation: Dataset
    label_names: tuple[str, ...]
    source: str  # where the data came from, for lineage
    digest: str  # sha256 over both splits' texts and labels
    test: Dataset | None = None  # held out of the search; scored only when a version is registered
    test_digest: str | None = None  # never logged on a trial run

    def frame(self, split: str) -> pd.DataFrame:
        """A split as a frame of `text` and `label`, labels as their names."""
        import pandas as pd

        ds = getattr(self, split)
        return pd.DataFrame({"text": list(ds["text"]), "label": [self.label_names[i] for i in ds["label"]]})


@dataclass(frozen=True)
class TrialData:
    """What every trial of a study shares: tokenized once per study process."""

    train: Dataset
    validation: Dataset
    tokenizer: PreTrainedTokenizerBase
    label_names: tuple[str, ...]
    splits: Splits  # the raw texts, for registration and lineage
    positive_label: str | None = None  # the label binary metrics are of (two classes only)
    class_weights: tuple[float, ...] | None = None  # per class id, for `loss.class_weights`


def prepare_data(spec: StudySpec, given: Any = None, prepared_dir: Path | None = None) -> TrialData:
    """Load (or take `given`), validate and tokenize the study's data once; every trial shares it.

    A `--workers` worker maps what its launcher prepared for the same spec (`prepared_dir`).
    """
    if prepared_dir is not None and given is None:
        prepared = load_prepared(prepared_dir, spec)
        if prepared is not None:
            return prepared
    # under torchrun a rank that cannot load the data fails every rank, with its reason
    splits = distributed.together(lambda: load_splits(spec.data, spec.source_dir, given))
    if distributed.is_main():  # once per study, before any trial
        warn_small_classes(splits)
    # what needs the labels, checked before anything is written: every rank sees the same labels
    positive = resolve_positive(spec.data, splits.label_names)
    check_metric(spec.study.metric, splits.label_names, positive)
    weights = class_weights(spec.loss, splits)
    if spec.model.get("pretrained"):  # a pretrained model reads text with its own tokenizer
        checkpoint = resolve_checkpoint(spec.model["pretrained"], spec.source_dir)
        tokenizer = distributed.together(lambda: load_tokenizer(checkpoint, spec.data.max_length))
    else:  # built once, by rank 0, and shared (the build is deterministic: this only saves the other ranks the time)
        texts = list(splits.train["text"])
        tokenizer = distributed.on_main(
            lambda: build_tokenizer(spec.tokenizer, texts, spec.data.max_length, spec.source_dir)
        )
    train, validation = distributed.together(lambda: tokenize_splits(splits, tokenizer, spec.data.max_length))
    return TrialData(train, validation, tokenizer, splits.label_names, splits, positive, weights)


def _data_fingerprint(spec: StudySpec) -> str:
    """What the prepared data depends on: the data, tokenizer, loss and model-choice sections."""
    sections = {
        "data": spec.data.model_dump(mode="json"),
        "tokenizer": spec.tokenizer.model_dump(mode="json"),
        "loss": spec.loss.model_dump(mode="json"),
        "pretrained": spec.model.get("pretrained"),
        "base": str(spec.source_dir),
    }
    return hashlib.sha256(json.dumps(sections, sort_keys=True, default=str).encode()).hexdigest()


def save_prepared(data: TrialData, spec: StudySpec, where: Path) -> None:
    """Save `data` (raw and tokenized train/validation, the tokenizer, the labels) for `load_prepared`.

    Never the test split: workers run trials, and no trial may see it (the launcher registers).
    """
    for name, ds in (
        ("raw_train", data.splits.train),
        ("raw_validation", data.splits.validation),
        ("train", data.train),
        ("validation", data.validation),
    ):
        ds.save_to_disk(str(where / name))
    data.tokenizer.save_pretrained(str(where / "tokenizer"))
    meta = {
        "fingerprint": _data_fingerprint(spec),
        "label_names": data.label_names,
        "source": data.splits.source,
        "digest": data.splits.digest,
        "positive_label": data.positive_label,
        "class_weights": data.class_weights,
    }
    (where / "meta.json").write_text(json.dumps(meta))  # written last: its presence says the rest is complete


def load_prepared(where: Path, spec: StudySpec) -> TrialData | None:
    """The TrialData `save_prepared` left in `where` for this spec (memory-mapped), else None."""
    from datasets import load_from_disk
    from transformers import AutoTokenizer

    try:
        meta = json.loads((where / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    if meta["fingerprint"] != _data_fingerprint(spec):
        logger.debug("prepared data in %s is for another spec: preparing again", where)
        return None
    raw_train, raw_validation, train, validation = (
        load_from_disk(str(where / n)) for n in ("raw_train", "raw_validation", "train", "validation")
    )
    labels = tuple(meta["label_names"])
    splits = Splits(raw_train, raw_validation, labels, meta["source"], meta["digest"])
    weights = tuple(meta["class_weights"]) if meta["class_weights"] is not None else None
    tokenizer = AutoTokenizer.from_pretrained(str(where / "tokenizer"), local_files_only=True)
    return TrialData(train, validation, tokenizer, labels, splits, meta["positive_label"], weights)


def resolve_positive(spec: DataSpec, label_names: Sequence[str]) -> str | None:
    """The label binary metrics are of: `data.positive_label`, else "positive" for synthetic data, 1 for labels 0/1."""
    if spec.positive_label is None:
        return "positive" if spec.source == "synthetic" else default_positive(label_names)
    if spec.positive_label not in label_names:
        raise DataError(
            f"data.positive_label: {spec.positive_label!r} is not a label of the data"
            f"{did_you_mean(spec.positive_label, label_names)} (labels: {', '.join(label_names)})"
        )
    if len(label_names) != 2:
        raise DataError(
            f"data.positive_label: the data has {len(label_names)} classes; a positive label is for two"
            " (per class: study.metric eval_f1_<label> or eval_recall_<label>)"
        )
    return spec.positive_label


def check_metric(metric: str, label_names: Sequence[str], positive: str | None) -> None:
    """DataError unless a trial computes `metric` for these labels (per-class names, binary metrics)."""
    names = ["eval_" + m for m in metric_names(label_names, positive_id(label_names, positive))]
    if metric in names:
        return
    if metric.removeprefix("eval_") in BINARY and len(label_names) == 2:
        raise DataError(
            f"study.metric: {metric} is the {metric.removeprefix('eval_')} of one positive label, and the labels"
            f" ({', '.join(label_names)}) do not say which: set data.positive_label to one of them"
        )
    raise DataError(
        f"study.metric: {metric!r} is not computed for labels {', '.join(label_names)}{did_you_mean(metric, names)}"
    )


def class_weights(spec: LossSpec, splits: Splits) -> tuple[float, ...] | None:
    """Per-class loss weights: as given, or balanced as scikit-learn's (n_samples / (n_classes * count))."""
    import numpy as np

    n = len(splits.label_names)
    if spec.class_weights is None:
        return None
    if spec.class_weights == "balanced":
        counts = np.bincount(np.asarray(splits.train["label"]), minlength=n)
        return tuple(float(w) for w in np.where(counts > 0, counts.sum() / (n * np.maximum(counts, 1)), 0.0))
    if len(spec.class_weights) != n:
        raise DataError(
            f"loss.class_weights: {len(spec.class_weights)} weights for {n} classes: give one per class,"
            f" in this order: {', '.join(splits.label_names)}"
        )
    return tuple(float(w) for w in spec.class_weights)


def load_splits(spec: DataSpec, base_dir: str | Path = ".", given: Any = None) -> Splits:
    """Load the study's data (or take `given`, data made in Python) and return validated train/validation splits."""
    from datasets import DatasetDict

    if given is not None:
        raw, source = _from_python(given, spec), f"python:{type(given).__name__}"
    elif spec.source == "python":
        raise DataError("data.source: python: pass the data itself, workbench.run_study(spec, data=...)")
    elif spec.source == "synthetic":
        raw, source = _load_synthetic(spec), f"synthetic(n={spec.synthetic.n_examples}, seed={spec.synthetic.seed})"
    elif spec.source == "files":
        raw, source = _load_files(spec, Path(base_dir)), ", ".join(f"{k}={v}" for k, v in spec.files.items())
    else:
        hub = spec.hub_dataset
        raw, source = _load_hub(hub), f"hub:{hub.path}" + (f"/{hub.name}" if hub.name else "")
    kept = ("train", "validation") if spec.source == "hub" else FILE_SPLITS  # a hub test split may hide its labels
    raw = DatasetDict({name: _select_columns(ds, spec, name) for name, ds in raw.items() if name in kept})
    raw = DatasetDict({name: _drop_empty(ds, name) for name, ds in raw.items()})
    for name, ds in raw.items():
        if len(ds) == 0:
            raise DataError(f"data: the {name} split has no rows with a text and a label: give it some")
    label_names, raw = _encode_labels(raw, spec)
    if spec.test_fraction is not None and "test" in raw:
        raise DataError("data.test_fraction: the data given has a test split already: choose one")
    if spec.test_fraction is not None:  # before validation: train and validation do not depend on it
        raw["train"], raw["test"] = split_off_test(raw["train"], spec)
    if "validation" not in raw:
        raw.update(_split_validation(raw["train"], spec))
    if spec.max_train_examples is not None and len(raw["train"]) > spec.max_train_examples:
        raw["train"] = _subset(raw["train"], spec.max_train_examples, spec.seed)
    test = raw.get("test")
    splits = Splits(
        raw["train"], raw["validation"], label_names, source, _digest(raw), test, split_digest(test) if test else None
    )
    for name in ("train", "validation"):
        if len(getattr(splits, name)) == 0:
            raise DataError(f"data: the {name} split has no rows with a text and a label: give it some")
    return splits


def _from_python(given: Any, spec: DataSpec):
    """A DatasetDict from a datasets.Dataset/DatasetDict, a pandas DataFrame, a torch Dataset yielding
    (text, label) or {text, label}, or a dict of those by split name."""
    from datasets import DatasetDict

    if isinstance(given, (DatasetDict, dict)):
        unknown = sorted(set(given) - set(FILE_SPLITS))
        if "train" not in given or unknown:
            raise DataError(
                "data: give the splits as {'train': ..., 'validation': ..., 'test': ...} (validation and test"
                f" optional; got {', '.join(map(str, given))})"
            )
        return DatasetDict({name: _as_dataset(part, spec) for name, part in given.items()})
    return DatasetDict({"train": _as_dataset(given, spec)})


def _as_dataset(part: Any, spec: DataSpec):
    from datasets import Dataset

    if isinstance(part, Dataset):
        return part
    if hasattr(part, "to_dict") and hasattr(part, "columns"):  # a pandas DataFrame
        return Dataset.from_pandas(part, preserve_index=False)
    if not (hasattr(part, "__len__") and hasattr(part, "__getitem__")):
        raise DataError(
            f"data: a {type(part).__name__} is not a dataset: give a datasets.Dataset, a DataFrame or a torch Dataset"
        )
    rows = [part[i] for i in range(len(part))]  # a map-style torch Dataset, as the tutorial writes one
    if rows and not isinstance(rows[0], dict):
        rows = [dict(zip((spec.text_column, spec.label_column), row)) for row in rows]
    return Dataset.from_list([{k: _plain(v) for k, v in row.items()} for row in rows])


def _plain(value: Any) -> Any:
    """A tensor or numpy scalar (a label from a torch Dataset) as a Python value."""
    return value.item() if hasattr(value, "item") and getattr(value, "ndim", 1) == 0 else value


def _load_synthetic(spec: DataSpec):
    from datasets import Dataset, DatasetDict

    s = spec.synthetic
    data = generate_examples(s.n_examples, seed=s.seed, label_noise=s.label_noise)
    data["label"] = [LABELS[i] for i in data["label"]]
    return DatasetDict({"train": Dataset.from_dict(data)})


def _load_files(spec: DataSpec, base_dir: Path):
    from datasets import Dataset, DatasetDict

    out = {}
    for split, name in spec.files.items():
        path = Path(name) if Path(name).is_absolute() else base_dir / name
        frame = read_table(path, f"data.files.{split}")
        if frame.empty:
            raise DataError(f"data.files.{split}: {path} has no rows: give it some")
        out[split] = Dataset.from_pandas(frame, preserve_index=False)
    return DatasetDict(out)


def _load_hub(hub: HubSpec):
    from datasets import load_dataset

    try:
        return load_dataset(hub.path, hub.name, revision=hub.revision)
    except Exception as e:  # no network, unknown name, gated dataset...
        raise DataError(f"data.hub: cannot load {hub.path!r}: {first_line(e)}") from None


def _select_columns(ds: Dataset, spec: DataSpec, split: str) -> Dataset:
    present = list(ds.column_names)
    for key, column in (("text_column", spec.text_column), ("label_column", spec.label_column)):
        if column not in present:
            raise DataError(f"data.{key}: column {column!r} not in the {split} data (columns: {', '.join(present)})")
    dtype = getattr(ds.features[spec.text_column], "dtype", None)
    if dtype not in ("string", "large_string", "null"):
        raise DataError(
            f"data.text_column: column {spec.text_column!r} holds {dtype or 'structured'} values, not text: "
            "name the text column"
        )
    ds = ds.select_columns([spec.text_column, spec.label_column])
    mapping = {spec.text_column: "text", spec.label_column: "label"}
    return ds.rename_columns({k: v for k, v in mapping.items() if k != v})


def _drop_empty(ds: Dataset, split: str) -> Dataset:
    """Rows with a missing or blank text, or a missing label, are dropped with a count."""

    def ok(text, label) -> bool:
        if label is None or (isinstance(label, float) and math.isnan(label)):
            return False
        return isinstance(text, str) and text.strip() != ""

    kept = ds.filter(lambda b: [ok(text, label) for text, label in zip(b["text"], b["label"])], batched=True)
    if len(kept) < len(ds):
        logger.warning(
            "data: dropped %d of %d %s rows with an empty text or label", len(ds) - len(kept), len(ds), split
        )
    return kept


def _encode_labels(raw, spec: DataSpec):
    """Map labels to ids 0..k-1: class names kept when the data has them, else sorted values."""
    from datasets import ClassLabel

    feature = raw["train"].features["label"]
    if isinstance(feature, ClassLabel):
        names = tuple(feature.names)
        seen = set(raw["train"]["label"])
        for split in _held_out(raw):
            if not set(raw[split]["label"]) <= set(range(len(names))):
                raise DataError(f"data.label_column: the {split} split has labels outside {names}")
    else:
        values = sorted({_label_key(v) for v in raw["train"]["label"]})
        names = tuple(str(v) for v in values)
        index = {str(v): i for i, v in enumerate(values)}
        for split in _held_out(raw):
            unseen = sorted({str(_label_key(v)) for v in raw[split]["label"]} - set(index))
            if unseen:
                raise DataError(
                    f"data.label_column: {split} labels not seen in training: {', '.join(unseen[:5])}"
                    " (add examples of them to train, or drop them)"
                )
        encode = lambda b: {"label": [index[str(_label_key(v))] for v in b["label"]]}  # noqa: E731
        raw = raw.map(encode, batched=True)
        raw = raw.cast_column("label", ClassLabel(names=list(names)))
        seen = set(range(len(names)))
    if len(names) < 2 or len(seen) < 2:
        raise DataError(
            f"data.label_column: the training data has a single class ({names[0]}): a classifier needs two or more"
        )
    return names, raw


def _held_out(raw) -> list[str]:
    return [split for split in ("validation", "test") if split in raw]


def _label_key(value: Any) -> Any:
    # 1.0 and 1 (pandas reads int labels with gaps as floats) are the same class
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _split_validation(train: Dataset, spec: DataSpec):
    from datasets import DatasetDict

    try:
        parts = train.train_test_split(test_size=spec.validation_fraction, seed=spec.seed, stratify_by_column="label")
    except ValueError:  # a class too small to stratify: fall back to a plain seeded split
        parts = train.train_test_split(test_size=spec.validation_fraction, seed=spec.seed)
    return DatasetDict({"train": parts["train"], "validation": parts["test"]})


def _subset(train: Dataset, n: int, seed: int) -> Dataset:
    """`n` training rows, seeded and stratified by label (a plain seeded sample when a class is too small)."""
    try:
        return train.train_test_split(train_size=n, seed=seed, stratify_by_column="label")["train"]
    except ValueError:
        return train.shuffle(seed=seed).select(range(n))


def _digest(raw) -> str:
    h = hashlib.sha256()
    for name in ("train", "validation"):
        h.update(json.dumps([list(raw[name]["text"]), list(raw[name]["label"])]).encode())
    return h.hexdigest()


def build_tokenizer(
    spec: TokenizerSpec, texts: list[str], max_length: int, base_dir: str | Path = "."
) -> PreTrainedTokenizerBase:
    """Train a WordPiece tokenizer on `texts` (deterministically), or load the local one at `spec.path`."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if spec.path is not None:
        path = Path(spec.path) if Path(spec.path).is_absolute() else Path(base_dir) / spec.path
        try:
            return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError) as e:
            raise DataError(f"tokenizer.path: cannot load a tokenizer from {path}: {first_line(e)}") from None
    tok = train_wordpiece(texts, spec.vocab_size, SPECIAL_TOKENS)  # the same texts give the same bytes
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=max_length,
    )


def tokenize_splits(splits: Splits, tokenizer: PreTrainedTokenizerBase, max_length: int) -> tuple[Dataset, Dataset]:
    """Both splits tokenized once, in batches, truncated to `max_length`, unpadded."""

    def encode(batch):
        return tokenizer(batch["text"], truncation=True, max_length=max_length)

    train = splits.train.map(encode, batched=True, remove_columns=["text"])
    validation = splits.validation.map(encode, batched=True, remove_columns=["text"])
    return train, validation
