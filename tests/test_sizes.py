"""Small data warns once, before any trial, naming the split, the class and its count; the study still runs."""

from __future__ import annotations

import logging

import pandas as pd

from workbench.config.study_file import validate_study
from workbench.data.splits import prepare_data


def test_a_class_too_small_to_learn_from_is_named_with_its_count(tmp_path, caplog):
    texts = [f"a fine film number {i}" for i in range(40)] + [f"a dull film number {i}" for i in range(3)]
    labels = ["good"] * 40 + ["bad"] * 3
    pd.DataFrame({"text": texts, "label": labels}).to_csv(tmp_path / "train.csv", index=False)
    pd.DataFrame({"text": texts[:20] + texts[-3:], "label": labels[:20] + labels[-3:]}).to_csv(
        tmp_path / "validation.csv", index=False
    )
    data = {"source": "files", "files": {"train": "train.csv", "validation": "validation.csv"}}
    spec = validate_study(
        {"study": {"name": "small"}, "data": data, "tokenizer": {"vocab_size": 100}, "source_dir": str(tmp_path)}
    )
    with caplog.at_level(logging.WARNING, logger="workbench.data"):
        prepare_data(spec)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "data: the train split has only 3 examples of 'bad' (fewer than 10 per class: too few to learn from);"
        " the study runs anyway",
        "data: the validation split has only 3 examples of 'bad' (fewer than 5 per class: too few to score on:"
        " trials are chosen on noise)",
    ]


def test_enough_data_warns_nothing(caplog):
    spec = validate_study(
        {"study": {"name": "enough"}, "data": {"synthetic": {"n_examples": 200}}, "tokenizer": {"vocab_size": 100}}
    )
    with caplog.at_level(logging.WARNING, logger="workbench.data"):
        prepare_data(spec)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
