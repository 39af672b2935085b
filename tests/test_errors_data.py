"""Data that does not fit the study: one line naming the key and the fix, exit 2, stores unchanged."""

from __future__ import annotations

import logging

import pytest
from stores import refused, snapshot

from workbench.cli.commands import main

# Tests on the seeded stores are marked slow: the `seeded` fixture trains the tiny study (once per session).

TEXTS = ["a charming film", "dull and tedious", "moving and bright", "a tedious mess"] * 10
LABELS = ["pos", "neg", "pos", "neg"] * 10


def csv(path, rows, header="text,label"):
    path.write_text(header + "\n" + "".join(f"{a},{b}\n" for a, b in rows))
    return path.name


def files_study(write_study, **data):
    # a new study name: a refused run must not even create it
    return write_study(study={"name": "from-files"}, data={"source": "files", **data})


@pytest.mark.slow
def test_missing_file(stores, write_study, workdir, capsys):
    path = files_study(write_study, files={"train": "nowhere.csv"})
    assert "data.files.train: file not found: " in refused(capsys, ["study", "run", str(path)])
    assert snapshot(workdir) == stores


@pytest.mark.slow
def test_not_utf8(stores, write_study, workdir, capsys):
    (workdir / "train.csv").write_bytes(
        ("text,label\n" + "".join(f"café {text},{label}\n" for text, label in zip(TEXTS, LABELS))).encode("utf-16")
    )
    path = files_study(write_study, files={"train": "train.csv"})
    assert "data.files.train: " in (err := refused(capsys, ["study", "run", str(path)])) and "UTF-8" in err, err
    assert snapshot(workdir) == stores


@pytest.mark.slow
def test_missing_text_column_lists_the_columns(stores, write_study, workdir, capsys):
    train = csv(workdir / "train.csv", zip(TEXTS, LABELS), header="sentence,label")
    path = files_study(write_study, files={"train": train})
    err = refused(capsys, ["study", "run", str(path)])
    assert "data.text_column: column 'text' not in the train data (columns: sentence, label)" in err
    path = files_study(write_study, files={"train": train}, text_column="sentence", label_column="sentiment")
    assert "data.label_column: column 'sentiment' not in the train data (columns: sentence, label)" in refused(
        capsys, ["study", "run", str(path)]
    )
    assert snapshot(workdir) == stores


@pytest.mark.slow
def test_numbers_are_not_text(stores, write_study, workdir, capsys):
    path = files_study(write_study, files={"train": csv(workdir / "train.csv", zip(range(40), LABELS))})
    assert "data.text_column: column 'text' holds int64 values, not text" in refused(
        capsys, ["study", "run", str(path)]
    )
    assert snapshot(workdir) == stores


@pytest.mark.slow
def test_empty_split(stores, write_study, workdir, capsys):
    train = csv(workdir / "train.csv", zip(TEXTS, LABELS))
    (workdir / "validation.csv").write_text("text,label\n")
    path = files_study(write_study, files={"train": train, "validation": "validation.csv"})
    err = refused(capsys, ["study", "run", str(path)])
    assert "data.files.validation: " in err and "validation.csv has no rows: give it some" in err, err
    assert snapshot(workdir) == stores


@pytest.mark.slow
def test_single_class(stores, write_study, workdir, capsys):
    path = files_study(write_study, files={"train": csv(workdir / "train.csv", ((t, "pos") for t in TEXTS))})
    assert "data.label_column: the training data has a single class (pos): a classifier needs two or more" in refused(
        capsys, ["study", "run", str(path)]
    )
    assert snapshot(workdir) == stores


@pytest.mark.slow
def test_validation_label_unseen_in_training(stores, write_study, workdir, capsys):
    train = csv(workdir / "train.csv", zip(TEXTS, LABELS))
    validation = csv(workdir / "validation.csv", [("so so", "meh"), ("great", "pos")])
    path = files_study(write_study, files={"train": train, "validation": validation})
    err = refused(capsys, ["study", "run", str(path)])
    assert (
        "data.label_column: validation labels not seen in training: meh (add examples of them to train, or drop them)"
        in err
    )
    assert snapshot(workdir) == stores


def test_empty_and_missing_texts_are_dropped_with_a_count(write_study, workdir, capsys, caplog):
    rows = list(zip(TEXTS, LABELS)) + [("", "pos"), ("   ", "neg"), ("no label", "")]
    path = files_study(write_study, files={"train": csv(workdir / "train.csv", rows)})
    with caplog.at_level(logging.WARNING, logger="workbench.data.splits"):
        assert main(["study", "run", str(path), "--trials", "0", "--no-register"]) == 0
    assert "data: dropped 3 of 43 train rows with an empty text or label" in caplog.text


@pytest.mark.slow
def test_only_empty_texts_is_refused(stores, write_study, workdir, capsys):
    path = files_study(write_study, files={"train": csv(workdir / "train.csv", [(" ", "pos"), (" ", "neg")])})
    assert "data: the train split has no rows with a text and a label: give it some" in refused(
        capsys, ["study", "run", str(path)]
    )
    assert snapshot(workdir) == stores


SPAM = ["cheap pills now", "lunch at noon", "win a prize", "see you at noon"] * 10
SPAM_LABELS = ["spam", "ham", "spam", "ham"] * 10


@pytest.mark.slow
def test_binary_metric_of_string_labels_needs_the_positive_label(stores, write_study, workdir, capsys):
    path = write_study(
        study={"name": "spam", "metric": "eval_f1"},
        data={"source": "files", "files": {"train": csv(workdir / "train.csv", zip(SPAM, SPAM_LABELS))}},
    )
    err = refused(capsys, ["study", "run", str(path)])
    assert (
        "study.metric: eval_f1 is the f1 of one positive label, and the labels (ham, spam) do not say which: "
        "set data.positive_label" in err
    ), err
    path = write_study(
        study={"name": "spam", "metric": "eval_f1"},
        data={"source": "files", "positive_label": "spma", "files": {"train": "train.csv"}},
    )
    assert "data.positive_label: 'spma' is not a label of the data (did you mean spam?) (labels: ham, spam)" in refused(
        capsys, ["study", "run", str(path)]
    )
    assert snapshot(workdir) == stores


@pytest.mark.slow
def test_per_class_metric_and_class_weights_are_checked_against_the_labels(stores, write_study, workdir, capsys):
    train = csv(workdir / "train.csv", zip(SPAM, SPAM_LABELS))
    path = write_study(
        study={"name": "spam", "metric": "eval_recall_spma"}, data={"source": "files", "files": {"train": train}}
    )
    assert (
        "study.metric: 'eval_recall_spma' is not computed for labels ham, spam (did you mean eval_recall_spam?)"
        in refused(capsys, ["study", "run", str(path)])
    )
    path = write_study(
        study={"name": "spam"}, data={"source": "files", "files": {"train": train}}, loss={"class_weights": [1, 2, 3]}
    )
    assert "loss.class_weights: 3 weights for 2 classes: give one per class, in this order: ham, spam" in refused(
        capsys, ["study", "run", str(path)]
    )
    assert snapshot(workdir) == stores
