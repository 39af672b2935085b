"""The deterministic WordPiece vocabulary (workbench.data.wordpiece) against the `tokenizers` WordPieceTrainer.

Run from the repository root: `PYTHONPATH=$PWD python benchmarks/tokenizer.py [--sst2 ../shared/data/sst2]`.
Prints, for each way: build time, whether two builds give the same bytes, on SST-2 dev the
unknown-token rate and tokens per sentence, and on the demo study's data one fixed trial's
eval accuracy and F1 (same model, arguments and seeds; only the tokenizer differs).
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from pathlib import Path


def hf_wordpiece(texts, vocab_size, special_tokens):
    """What workbench used before: the library's trainer (ties broken in hash-map order)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=list(special_tokens), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return tok


def builders():
    from workbench.data.wordpiece import train_wordpiece

    return {"tokenizers WordPieceTrainer": hf_wordpiece, "workbench deterministic": train_wordpiece}


def sst2(root: Path, vocab_size: int) -> None:
    import pandas as pd

    from workbench.data.splits import SPECIAL_TOKENS

    read = lambda name: list(pd.read_csv(root / name, sep="\t", quoting=3)["sentence"].astype(str))  # noqa: E731
    train, dev = read("train.tsv"), read("dev.tsv")
    print(
        f"SST-2: tokenizer trained on {len(train)} train sentences (vocab {vocab_size}), "
        f"measured on {len(dev)} dev sentences"
    )
    for name, build in builders().items():
        started = time.perf_counter()
        tok = build(train, vocab_size, SPECIAL_TOKENS)
        seconds = time.perf_counter() - started
        again = build(train, vocab_size, SPECIAL_TOKENS)
        same = tok.to_str() == again.to_str()
        unk = tok.token_to_id("[UNK]")
        encoded = [e.ids[1:-1] for e in tok.encode_batch(dev)]  # without [CLS] and [SEP]
        tokens = sum(len(ids) for ids in encoded)
        unknown = sum(ids.count(unk) for ids in encoded)
        print(
            f"  {name:<28} {seconds:5.1f} s, vocab {tok.get_vocab_size()}, two builds identical: {same}, "
            f"unknown {100 * unknown / tokens:.3f}% of tokens, {tokens / len(dev):.2f} tokens/sentence"
        )


def demo_trial(study: Path, repeats: int) -> None:
    """One fixed trial of the demo study per tokenizer: same model, arguments and seeds."""
    from transformers import PreTrainedTokenizerFast

    from workbench.config.builders import build_training_args
    from workbench.config.study_file import apply_overrides, load_study_file
    from workbench.data.splits import SPECIAL_TOKENS, TrialData, load_splits, tokenize_splits
    from workbench.trial.training import build_trainer

    spec = load_study_file(study, {"training.num_train_epochs": 4})
    splits = load_splits(spec.data)
    texts = list(splits.train["text"])
    print(
        f"demo study data: {len(splits.train)} train / {len(splits.validation)} validation, model {spec.model}, "
        f"lr {spec.training['learning_rate']}, 4 epochs"
    )
    for name, build in builders().items():
        scores = []
        for attempt in range(repeats):
            spec = apply_overrides(spec, {"training.seed": attempt})  # a new tokenizer build and a new seed per run
            tok = build(texts, spec.tokenizer.vocab_size, SPECIAL_TOKENS)
            digest = hashlib.sha256(tok.to_str().encode()).hexdigest()[:12]
            tokenizer = PreTrainedTokenizerFast(
                tokenizer_object=tok,
                unk_token="[UNK]",
                pad_token="[PAD]",
                cls_token="[CLS]",
                sep_token="[SEP]",
                mask_token="[MASK]",
                model_max_length=spec.data.max_length,
            )
            data = TrialData(
                *tokenize_splits(splits, tokenizer, spec.data.max_length),
                tokenizer,
                splits.label_names,
                splits,
                "positive",
            )
            with tempfile.TemporaryDirectory() as tmp:
                trainer = build_trainer(spec, data, build_training_args(spec, tmp), [])
                trainer.train()
                metrics = trainer.evaluate()
            scores.append((metrics["eval_accuracy"], metrics["eval_f1"]))
            print(
                f"  {name:<28} seed {attempt}: tokenizer {digest}, eval_accuracy {metrics['eval_accuracy']:.4f}, "
                f"eval_f1 {metrics['eval_f1']:.4f}"
            )
        accuracy, f1 = (sum(v) / len(v) for v in zip(*scores))
        print(f"  {name:<28} mean of {repeats}: eval_accuracy {accuracy:.4f}, eval_f1 {f1:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sst2", type=Path, default=Path("../shared/data/sst2"))
    parser.add_argument("--vocab-size", type=int, default=4000)
    parser.add_argument("--study", type=Path, default=Path("studies/demo.yaml"))
    parser.add_argument(
        "--repeats", type=int, default=3, help="trials per tokenizer on the demo data (training.seed 0, 1, ...)"
    )
    args = parser.parse_args()
    if args.sst2.is_dir() and args.sst2.name:
        sst2(args.sst2, args.vocab_size)
    demo_trial(args.study, args.repeats)


if __name__ == "__main__":
    main()
