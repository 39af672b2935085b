"""Classification metrics, shared by trials (`compute_metrics`), model evaluation and promotion.

Names are the Trainer's, without its `eval_` prefix: `loss`, `accuracy`, `f1_macro`,
`f1_weighted`, per class `f1_<label>` and `recall_<label>`, and `f1`/`precision`/`recall`:
those of the positive label on two classes (absent when none is named), macro-averaged on more.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

SUMMARY = ("loss", "accuracy", "f1", "precision", "recall", "f1_macro", "f1_weighted")
BINARY = ("f1", "precision", "recall")  # of the positive label on two classes
PER_CLASS = ("f1", "recall")  # `f1_<label>`, `recall_<label>`


def label_key(name: str) -> str:
    """A label name as it appears in a metric name: what MLflow refuses (`/`, `:`, `&`...) becomes `_`."""
    return re.sub(r"[^\w.\- ]", "_", str(name))


def per_class_names(label_names: Sequence[str]) -> list[str]:
    """`f1_<label>` and `recall_<label>` for every label, without the `eval_` prefix."""
    return [f"{kind}_{label_key(name)}" for kind in PER_CLASS for name in label_names]


def metric_names(label_names: Sequence[str], positive: int | None) -> list[str]:
    """Every metric `classification_metrics` computes for these labels, without the `eval_` prefix."""
    binary_missing = len(label_names) == 2 and positive is None
    return [m for m in SUMMARY if not (binary_missing and m in BINARY)] + per_class_names(label_names)


def classification_metrics(
    labels: np.ndarray,
    probabilities: np.ndarray,
    label_names: Sequence[str] | None = None,
    positive: int | None = None,
) -> dict[str, float]:
    """The metrics `metric_names` lists, from class ids (n,) and probabilities (n, num_classes).

    `positive` is the class id binary `f1`/`precision`/`recall` are of; on two classes they are
    left out when it is None (never guessed from the labels' order). Every class counts in the
    averages, also one absent from `labels` (its scores are 0).
    """
    from sklearn.metrics import precision_recall_fscore_support

    labels = np.asarray(labels)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    k = probabilities.shape[-1]
    names = list(label_names) if label_names is not None else [str(i) for i in range(k)]
    predictions = probabilities.argmax(-1)
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predictions, labels=list(range(k)), average=None, zero_division=0
    )
    picked = probabilities[np.arange(len(labels)), labels]
    out = {
        f"{kind}_{label_key(name)}": float(v[i])
        for kind, v in (("f1", f1), ("recall", recall))
        for i, name in enumerate(names)
    }
    out.update(
        loss=float(-np.log(np.clip(picked, 1e-12, 1.0)).mean()),
        accuracy=float((predictions == labels).mean()),
        f1_macro=float(f1.mean()),
        f1_weighted=float((f1 * support).sum() / max(support.sum(), 1)),
    )
    if k > 2:
        out.update(f1=float(f1.mean()), precision=float(precision.mean()), recall=float(recall.mean()))
    elif positive is not None:
        out.update(f1=float(f1[positive]), precision=float(precision[positive]), recall=float(recall[positive]))
    return out


def default_positive(label_names: Sequence[str]) -> str | None:
    """The positive label when none is stated: `1` for integer labels 0/1, else none."""
    return "1" if tuple(label_names) == ("0", "1") else None


def positive_id(label_names: Sequence[str], positive: str | None) -> int | None:
    """The class id of `positive` on two classes; None on more, or when it is None or unknown."""
    names = [str(n) for n in label_names]
    return names.index(str(positive)) if len(names) == 2 and positive is not None and str(positive) in names else None
