"""A version's score on the study's test split, taken once, when the version is registered.

The scores become `test_*` metrics on the run the version came from (the trial's run: its
`eval_*` metrics are the validation scores it was chosen on), and tags on the version
(`test_accuracy`, `test_f1`, ...). The test split travels with the version as its
`test_data` artifact, so `promote` and `evaluate` score on it from anywhere the tracking store
is reachable. Its digest is a tag of the version, never of a trial run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from workbench.core.keys import VERSION_TEST_DIGEST_TAG, VERSION_TEST_EXAMPLES_TAG
from workbench.core.metrics import SUMMARY
from workbench.data.splits import TrialData
from workbench.model.inference import WorkbenchClassifier
from workbench.model.scoring import score_classifier

TEST_PREFIX = "test_"  # metric names on the run and tag names on the version: test_accuracy, test_f1, ...


@dataclass(frozen=True)
class HoldoutScores:
    """A model's metrics on the test split (names without a prefix), and the split itself."""

    metrics: dict[str, float]
    n_examples: int
    digest: str
    frame: Any  # pandas frame of `text` and `label` (names): logged with the version

    def tags(self, study_metric: str) -> dict[str, str]:
        """The version's tags: the summary metrics and the study metric's test counterpart, the digest, the count."""
        wanted = {*SUMMARY, study_metric.removeprefix("eval_")}
        tags = {TEST_PREFIX + k: str(v) for k, v in self.metrics.items() if k in wanted}
        return {**tags, VERSION_TEST_DIGEST_TAG: self.digest, VERSION_TEST_EXAMPLES_TAG: str(self.n_examples)}

    def describe(self, study_metric: str) -> str:
        """One sentence for the version's description, beside its validation score."""
        names = dict.fromkeys((study_metric.removeprefix("eval_"), "accuracy"))  # the study metric first, once
        scores = ", ".join(f"{TEST_PREFIX}{n} = {self.metrics[n]:.4f}" for n in names if n in self.metrics)
        return f"On the test split ({self.n_examples} examples the search never saw): {scores}."


def score_test_split(model_dir: Path, data: TrialData) -> HoldoutScores | None:
    """The saved model in `model_dir` scored on the study's test split; None when the study has none."""
    splits = data.splits
    if splits.test is None or splits.test_digest is None:
        return None
    classifier = WorkbenchClassifier().load(model_dir)
    frame = splits.frame("test")
    index = {name: i for i, name in enumerate(classifier.labels)}
    labels = np.array([index[label] for label in frame["label"]])
    scores = score_classifier(classifier, list(frame["text"]), labels, data.positive_label)
    return HoldoutScores(scores.metrics, len(frame), splits.test_digest, frame)


def log_test_metrics(client, run_id: str, scores: HoldoutScores) -> None:
    """`test_*` metrics on the version's run, beside the `eval_*` it was chosen by."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [Metric(TEST_PREFIX + k, v, now, 0) for k, v in scores.metrics.items()]
    client.log_batch(run_id, metrics=metrics)
