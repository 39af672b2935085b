import pandas as pd
import pytest

from workbench.config.spec import DataSpec, TokenizerSpec
from workbench.data.splits import build_tokenizer, load_splits, tokenize_splits
from workbench.data.synthetic import generate_examples


def test_synthetic_data_is_seeded_and_has_signal():
    a = generate_examples(300, seed=3)
    assert a == generate_examples(300, seed=3)
    assert a != generate_examples(300, seed=4)
    share = sum(a["label"]) / len(a["label"])
    assert 0.35 < share < 0.65, "both classes are well represented"
    assert any(" but " in t for t in a["text"]) and any("not" in t.split() for t in a["text"])


def test_synthetic_split_is_stratified_and_labelled():
    splits = load_splits(DataSpec(synthetic={"n_examples": 500}, validation_fraction=0.2))
    assert splits.label_names == ("negative", "positive")
    assert len(splits.train) == 400 and len(splits.validation) == 100
    train_share = sum(splits.train["label"]) / len(splits.train)
    val_share = sum(splits.validation["label"]) / len(splits.validation)
    assert abs(train_share - val_share) < 0.02
    assert load_splits(DataSpec(synthetic={"n_examples": 500})).digest == splits.digest


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_local_files_with_string_labels_and_own_column_names(tmp_path, suffix):
    frame = pd.DataFrame(
        {
            "review": ["great film", "awful plot", "lovely cast", "boring", "", "fine work"] * 5,
            "sentiment": ["pos", "neg", "pos", "neg", "pos", "pos"] * 5,
        }
    )
    path = tmp_path / f"train{suffix}"
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".tsv":
        frame.to_csv(path, index=False, sep="\t")
    elif suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_parquet(path)
    spec = DataSpec(source="files", files={"train": path.name}, text_column="review", label_column="sentiment")
    splits = load_splits(spec, tmp_path)
    assert splits.label_names == ("neg", "pos")
    assert len(splits.train) + len(splits.validation) == 25, "the 5 empty texts are dropped"
    assert set(splits.train.column_names) == {"text", "label"}


def test_trained_tokenizer_and_batched_tokenization():
    splits = load_splits(DataSpec(synthetic={"n_examples": 200}))
    tokenizer = build_tokenizer(TokenizerSpec(vocab_size=5000), list(splits.train["text"]), 16)
    assert len(tokenizer) < 5000, "a small corpus gives a smaller vocabulary than asked"
    encoded = tokenizer("the film is charming")
    assert encoded["input_ids"][0] == tokenizer.cls_token_id and encoded["input_ids"][-1] == tokenizer.sep_token_id
    assert tokenizer.unk_token_id not in encoded["input_ids"]
    train, validation = tokenize_splits(splits, tokenizer, 16)
    lengths = {len(ids) for ids in train["input_ids"]}
    assert max(lengths) <= 16 and len(lengths) > 1, "truncated, not padded"
    assert "label" in validation.column_names


def test_local_tokenizer_directory(tmp_path):
    splits = load_splits(DataSpec(synthetic={"n_examples": 100}))
    trained = build_tokenizer(TokenizerSpec(), list(splits.train["text"]), 32)
    trained.save_pretrained(tmp_path / "tok")
    loaded = build_tokenizer(TokenizerSpec(path="tok"), [], 32, tmp_path)
    assert loaded("the plot is dull")["input_ids"] == trained("the plot is dull")["input_ids"]


def test_many_imbalanced_classes_with_non_ascii_text_split_stratified(tmp_path):
    rows = []
    for k in range(21):  # 21 classes, from 60 rows down to 4
        rows += [
            {"text": f"crème brûlée &amp; café n°{k} — 東京 {i}", "topic": f"topic-{k:02d}"}
            for i in range(max(4, 60 - 3 * k))
        ]
    pd.DataFrame(rows).to_parquet(tmp_path / "train.parquet")
    spec = DataSpec(source="files", files={"train": "train.parquet"}, label_column="topic", validation_fraction=0.25)
    splits = load_splits(spec, tmp_path)
    assert len(splits.label_names) == 21 and splits.label_names[0] == "topic-00"
    assert set(splits.validation["label"]) == set(range(21)), "every class, even a 4-row one, reaches validation"
    assert "東京" in splits.train["text"][0] and "&amp;" in splits.train["text"][0]  # text kept as written
    subset = load_splits(spec.model_copy(update={"max_train_examples": 200}), tmp_path)
    assert len(subset.train) == 200 and subset.validation["text"] == splits.validation["text"]
    assert set(subset.train["label"]) == set(range(21)), "the subset is stratified"


def test_a_launchers_prepared_data_is_what_its_workers_load_and_only_for_the_same_spec(tmp_path):
    """`--workers`: the launcher saves the data it prepared; a worker of the same spec maps it, no tokenizing."""
    from workbench.config.study_file import apply_overrides, validate_study
    from workbench.data.splits import prepare_data, save_prepared

    spec = validate_study(
        {
            "study": {"name": "shared", "metric": "eval_f1_macro"},
            "data": {"synthetic": {"n_examples": 300}},
            "tokenizer": {"vocab_size": 200},
            "loss": {"class_weights": "balanced"},
        }
    )
    made = prepare_data(spec)
    save_prepared(made, spec, tmp_path)

    loaded = prepare_data(spec, prepared_dir=tmp_path)
    assert loaded.train.column_names == made.train.column_names
    assert all(
        list(loaded.train[c]) == list(made.train[c]) and list(loaded.validation[c]) == list(made.validation[c])
        for c in made.train.column_names
    )
    assert (
        list(loaded.splits.train["text"]) == list(made.splits.train["text"])
        and loaded.splits.digest == made.splits.digest
    )
    assert loaded.tokenizer.get_vocab() == made.tokenizer.get_vocab() and loaded.tokenizer(
        "a good film"
    ) == made.tokenizer("a good film")
    assert (loaded.label_names, loaded.positive_label, loaded.class_weights) == (
        made.label_names,
        made.positive_label,
        made.class_weights,
    )

    other = apply_overrides(spec, {"tokenizer.vocab_size": 150})  # another spec prepares its own
    assert prepare_data(other, prepared_dir=tmp_path).tokenizer.get_vocab() != made.tokenizer.get_vocab()
