"""A WordPiece tokenizer trained the same way every time: same texts and size, same bytes.

The `tokenizers` WordPieceTrainer breaks frequency ties in hash-map order
(huggingface/tokenizers#1794), so two runs of one study got different vocabularies. Here the
vocabulary is learnt by the same algorithm (byte-pair merges of the most frequent adjacent
pieces, `##` marking a piece inside a word) with every tie broken by the pieces' text, and
handed to `tokenizers.models.WordPiece`; normalizer, pre-tokenizer and post-processor are
BERT's.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tokenizers import Tokenizer

PREFIX = "##"  # marks a piece that continues a word


def train_wordpiece(
    texts: Iterable[str], vocab_size: int, special_tokens: Sequence[str], unk_token: str = "[UNK]"
) -> Tokenizer:
    """A BERT-style WordPiece tokenizer (lower-cased) whose vocabulary is learnt from `texts`.

    Holds at most `vocab_size` tokens: the special tokens, every character seen (alone and
    as a `##` piece), then merged pieces in the order they were learnt.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    normalizer, pre_tokenizer = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    counts = count_words(texts, normalizer, pre_tokenizer)
    vocab = learn_vocab(counts, vocab_size, special_tokens)
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token=unk_token, continuing_subword_prefix=PREFIX))
    tok.normalizer, tok.pre_tokenizer, tok.decoder = normalizer, pre_tokenizer, decoders.WordPiece(prefix=PREFIX)
    tok.add_special_tokens(list(special_tokens))
    cls, sep = vocab["[CLS]"], vocab["[SEP]"]
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return tok


def count_words(texts: Iterable[str], normalizer, pre_tokenizer) -> Counter:
    """How often each word occurs, after normalization and pre-tokenization."""
    counts: Counter = Counter()
    for text in texts:
        counts.update(word for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    return counts


def learn_vocab(counts: dict[str, int], vocab_size: int, special_tokens: Sequence[str]) -> dict[str, int]:
    """token -> id: special tokens, the alphabet (sorted), then byte-pair merges until `vocab_size`.

    Each step merges the most frequent adjacent pair; equal counts go to the pair whose text
    sorts first, so the result depends on nothing but `counts` and `vocab_size`.
    """
    chars = sorted({c for word in counts for c in word})
    tokens = list(dict.fromkeys([*special_tokens, *chars, *(PREFIX + c for c in chars)]))
    vocab = {token: i for i, token in enumerate(tokens)}
    words = sorted(counts)
    pieces = [[w[0], *(PREFIX + c for c in w[1:])] for w in words]
    freq = [counts[w] for w in words]
    pairs: Counter = Counter()
    where: defaultdict = defaultdict(set)  # pair -> indices of the words that hold it
    for i, symbols in enumerate(pieces):
        for pair in zip(symbols, symbols[1:]):
            pairs[pair] += freq[i]
            where[pair].add(i)
    heap = [(-n, pair) for pair, n in pairs.items()]
    heapq.heapify(heap)
    while len(vocab) < vocab_size and heap:
        n, pair = heapq.heappop(heap)
        if pairs.get(pair, 0) != -n or n == 0:
            continue  # a stale entry: the pair's count changed since it was pushed
        merged = pair[0] + pair[1][len(PREFIX) :]
        vocab.setdefault(merged, len(vocab))
        changed = set()
        for i in sorted(where.pop(pair)):
            changed |= _merge_in_word(i, pieces, freq[i], pair, merged, pairs, where)
        for p in sorted(changed):
            if pairs.get(p, 0) > 0:
                heapq.heappush(heap, (-pairs[p], p))
    return vocab


def _merge_in_word(
    i: int, pieces: list[list[str]], n: int, pair: tuple[str, str], merged: str, pairs: Counter, where
) -> set:
    """Merge `pair` everywhere in word `i` (seen `n` times), updating the pair counts; returns the pairs touched."""
    old = pieces[i]
    for p in zip(old, old[1:]):
        pairs[p] -= n
    new, k = [], 0
    while k < len(old):
        if k + 1 < len(old) and (old[k], old[k + 1]) == pair:
            new.append(merged)
            k += 2
        else:
            new.append(old[k])
            k += 1
    pieces[i] = new
    before, after = set(zip(old, old[1:])), set(zip(new, new[1:]))
    for p in zip(new, new[1:]):
        pairs[p] += n
    for p in before - after:
        where[p].discard(i)
    for p in after:
        where[p].add(i)
    pairs.pop(pair, None)
    return before | after
