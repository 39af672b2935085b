"""Predict labelled texts with a loaded classifier and score them: the one "predict -> score" step.

`lifecycle.evaluation.score_model` (evaluate, promote) loads a registered model and calls it;
`stores.holdout` calls it on the test split when a version is registered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from workbench.core.metrics import classification_metrics, default_positive, positive_id


@dataclass(frozen=True)
class Scores:
    """One model's predictions on labelled texts, and its metrics there."""

    names: list[str]  # the model's label names, by class id
    labels: np.ndarray  # true class ids (n,)
    probabilities: np.ndarray  # (n, num_classes)
    metrics: dict[str, float]  # `metrics.classification_metrics`, without the eval_ prefix
    positive: int | None = None  # class id binary f1/precision/recall are of

    @property
    def predictions(self) -> np.ndarray:
        return self.probabilities.argmax(-1)


def score_classifier(classifier: Any, texts: list[str], labels: np.ndarray, positive: str | None = None) -> Scores:
    """Predict `texts` with `classifier` (a `WorkbenchClassifier`) and score them against class ids `labels`.

    `positive` is the label binary f1/precision/recall are of (default: `1` for labels 0/1).
    """
    names = list(classifier.labels)
    probabilities = classifier.predict_proba(texts)
    positive_index = positive_id(names, positive if positive is not None else default_positive(names))
    metrics = classification_metrics(labels, probabilities, names, positive_index)
    return Scores(names, np.asarray(labels), probabilities, metrics, positive_index)
