"""The WordPiece vocabulary is learnt the same way every time: same texts, same tokenizer bytes."""

import subprocess
import sys

import pytest

from workbench.data.splits import SPECIAL_TOKENS
from workbench.data.wordpiece import learn_vocab, train_wordpiece

BUILD = """
import sys
from workbench.data.splits import build_tokenizer, load_splits
from workbench.config.spec import DataSpec, TokenizerSpec
splits = load_splits(DataSpec(synthetic={"n_examples": 600, "seed": 3}))
build_tokenizer(TokenizerSpec(vocab_size=int(sys.argv[2])), list(splits.train["text"]), 32).save_pretrained(sys.argv[1])
"""


@pytest.mark.slow
def test_two_processes_build_the_same_tokenizer_byte_for_byte(tmp_path):
    # 150 is smaller than the corpus needs: the cut falls among pieces of equal counts
    for vocab_size in ("150", "5000"):
        for name in ("a", "b"):
            subprocess.run([sys.executable, "-c", BUILD, str(tmp_path / vocab_size / name), vocab_size], check=True)
        a, b = ((tmp_path / vocab_size / name / "tokenizer.json").read_bytes() for name in ("a", "b"))
        assert a == b


def test_ties_go_to_the_pair_whose_text_sorts_first_and_the_size_is_kept():
    counts = {"dog": 3, "cat": 3, "cow": 1}
    specials = ["[PAD]", "[UNK]"]
    vocab = learn_vocab(counts, vocab_size=100, special_tokens=specials)
    assert list(vocab)[:2] == specials and sorted(vocab.values()) == list(range(len(vocab)))
    assert "##a" in vocab and "a" in vocab, "every character alone and inside a word"
    alphabet = 2 + 2 * len(set("dogcatcow"))
    # (##a ##t), (##o ##g), (c ##a), (d ##o) are each seen 3 times: the text decides, "#" sorts before letters
    assert list(vocab)[alphabet:] == ["##at", "##og", "cat", "dog", "##ow", "cow"]
    assert len(learn_vocab(counts, alphabet + 1, specials)) == alphabet + 1


def test_a_word_splits_into_learnt_pieces_and_unseen_characters_are_unknown():
    tok = train_wordpiece(["playing played player plays"] * 5 + ["the film"], 60, SPECIAL_TOKENS)
    assert tok.encode("Playing").tokens == ["[CLS]", "playing", "[SEP]"]
    assert tok.encode("play").tokens[1] == "play"
    assert tok.encode("zebra").tokens[1:-1] == ["[UNK]"], "a word with an unseen character is one [UNK], as in BERT"
