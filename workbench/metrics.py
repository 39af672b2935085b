"""Classification metrics, shared by trials (`compute_metrics`) and model evaluation."""

from __future__ import annotations

import numpy as np


def classification_metrics(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """loss, accuracy, f1, precision, recall (binary for two classes, else macro-averaged).

    `labels` are class ids (n,); `probabilities` are (n, num_classes) and sum to 1 per row.
    """
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    labels = np.asarray(labels)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    predictions = probabilities.argmax(-1)
    average = "binary" if probabilities.shape[-1] == 2 else "macro"
    precision, recall, f1, _ = precision_recall_fscore_support(labels, predictions, average=average, zero_division=0)
    picked = probabilities[np.arange(len(labels)), labels]
    return {
        "loss": float(-np.log(np.clip(picked, 1e-12, 1.0)).mean()),
        "accuracy": float(accuracy_score(labels, predictions)),
        "f1": float(f1),
        "precision": float(precision),
        "recall": float(recall),
    }
