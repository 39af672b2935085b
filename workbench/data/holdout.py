"""The test split: held out of the search, it scores each registered version once, when it is registered.

It comes from `data.files.test` (or a `test` split given in Python), or is split off train by
`data.test_fraction` (stratified by label, seeded by `data.seed`) before validation is, so the
train and validation splits stay the same whatever is asked of the test split later. Trials
never see it: only `Splits.test` holds it, `TrialData` tokenizes train and validation only, and
`save_prepared` leaves it out of what `--workers` workers map.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

from workbench.config.spec import DataSpec

if TYPE_CHECKING:
    from datasets import Dataset


def split_off_test(train: Dataset, spec: DataSpec) -> tuple[Dataset, Dataset]:
    """(train without the test split, the test split): `spec.test_fraction` of train, stratified and seeded."""
    try:
        parts = train.train_test_split(test_size=spec.test_fraction, seed=spec.seed, stratify_by_column="label")
    except ValueError:  # a class too small to stratify: a plain seeded split (the small-data check warns)
        parts = train.train_test_split(test_size=spec.test_fraction, seed=spec.seed)
    return parts["train"], parts["test"]


def split_digest(ds: Dataset) -> str:
    """sha256 over one split's texts and label ids: the test split's identity, kept apart from the trials' digest."""
    return hashlib.sha256(json.dumps([list(ds["text"]), list(ds["label"])]).encode()).hexdigest()
