"""Data pipeline: training samples/s of our data path over the tutorial's, on SST-2 text.

Ours (what `workbench.data.splits` and our `TrainingArguments` defaults do): tokenize the split once
with `datasets.map(batched=True)`, truncated, unpadded; draw batches of like-length examples
(`train_sampling_strategy: group_by_length`, HF's `LengthGroupedSampler`, as the Trainer builds
it) and pad each to its longest example with `DataCollatorWithPadding`.
The tutorial's: a `torch.utils.data.Dataset` whose `__getitem__` tokenizes one text and pads
it to 128 tokens. Each side is timed from raw text to the end of `epochs` epochs of training
steps (forward, backward, AdamW) of the demo's model over the same examples, tokenization
included (ours once, as a study does for all its trials; the tutorial's on every access);
the same tokenizer, model initialisation, batch size and order, one torch thread. Medians of
interleaved repeats.

    PYTHONPATH=. python benchmarks/data_pipeline.py [--examples 4096] [--epochs 3] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import Figure, median, quiet, sst2_missing, sst2_texts

PAD_TO = 128  # the tutorial's fixed length
BATCH = 32


HIDDEN = {"hidden_size": 64, "num_layers": 2, "num_heads": 2}  # the demo study's model


def _model(tokenizer):
    import torch

    from workbench.model.modeling import WorkbenchConfig, WorkbenchForSequenceClassification

    torch.manual_seed(0)
    config = WorkbenchConfig(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        max_position_embeddings=PAD_TO,
        dropout=0.1,
        **HIDDEN,
    )
    return WorkbenchForSequenceClassification(config)


def _train(model, loader, epochs: int) -> int:
    import torch

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    seen = 0
    for _ in range(epochs):
        for batch in loader:
            loss = model(**batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            seen += len(batch["labels"])
    return seen


def ours(texts, labels, tokenizer, epochs: int) -> float:
    """Seconds from raw text to `epochs` trained epochs: batched map once, like-length batches, dynamic padding."""
    import torch
    from datasets import Dataset
    from transformers import DataCollatorWithPadding
    from transformers.trainer_pt_utils import LengthGroupedSampler

    start = time.perf_counter()
    ds = Dataset.from_dict({"text": texts, "label": labels})
    ds = ds.map(
        lambda b: tokenizer(b["text"], truncation=True, max_length=PAD_TO), batched=True, remove_columns=["text"]
    )
    ds = ds.rename_column("label", "labels")
    torch.manual_seed(0)  # the sampler shuffles with torch's global generator, as in a trial
    sampler = LengthGroupedSampler(BATCH, dataset=ds, model_input_name="input_ids")
    loader = torch.utils.data.DataLoader(
        ds, batch_size=BATCH, collate_fn=DataCollatorWithPadding(tokenizer), sampler=sampler
    )
    _train(_model(tokenizer), loader, epochs)
    return time.perf_counter() - start


def tutorial(texts, labels, tokenizer, epochs: int) -> float:
    """Seconds from raw text to `epochs` trained epochs: tokenize per item, pad every example to 128."""
    import torch

    class TextDataset(torch.utils.data.Dataset):
        def __len__(self):
            return len(texts)

        def __getitem__(self, i):
            enc = tokenizer(texts[i], truncation=True, max_length=PAD_TO, padding="max_length", return_tensors="pt")
            return {
                "input_ids": enc["input_ids"][0],
                "attention_mask": enc["attention_mask"][0],
                "labels": torch.tensor(labels[i]),
            }

    start = time.perf_counter()
    loader = torch.utils.data.DataLoader(
        TextDataset(), batch_size=BATCH, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    _train(_model(tokenizer), loader, epochs)
    return time.perf_counter() - start


def measure(examples: int, epochs: int, repeats: int, show=print) -> tuple[float, float, float]:
    """(ratio, our samples/s, the tutorial's samples/s), medians of `repeats` interleaved pairs."""
    import torch

    from workbench.config.spec import TokenizerSpec
    from workbench.data.splits import build_tokenizer

    quiet()
    # One thread on both sides: on a shared machine two threads' barrier waits (a descheduled
    # thread holds the other up at every op) cost the same per op, big or small, and flatten the gap.
    torch.set_num_threads(1)
    texts, labels = sst2_texts(examples)
    tokenizer = build_tokenizer(TokenizerSpec(vocab_size=8000), texts, PAD_TO)
    for run in (ours, tutorial):  # warm-up, not timed: the first pass pays for imports and torch's lazy set-up
        run(texts[: BATCH * 2], labels[: BATCH * 2], tokenizer, 1)
    rates: dict[str, list[float]] = {"ours": [], "tutorial": []}
    for i in range(repeats):
        for name, run in (("ours", ours), ("tutorial", tutorial)):
            seconds = run(texts, labels, tokenizer, epochs)
            rates[name].append(examples * epochs / seconds)
        show(f"  repeat {i}: ours {rates['ours'][-1]:.0f} samples/s, tutorial {rates['tutorial'][-1]:.0f} samples/s")
    ratio = median(o / t for o, t in zip(rates["ours"], rates["tutorial"]))
    return ratio, median(rates["ours"]), median(rates["tutorial"])


def figures(quick: bool, show=print) -> list[Figure]:
    missing = sst2_missing()
    if missing:
        return [Figure("data_pipeline", None, ">= 5", "x samples/s", missing)]
    examples, epochs, repeats = (1024, 2, 3) if quick else (4096, 3, 3)
    ratio, mine, theirs = measure(examples, epochs, repeats, show)
    note = (
        f"SST-2 first {examples} train rows, {epochs} epochs incl. tokenization, demo model; "
        f"{mine:.0f} vs {theirs:.0f} samples/s; median of {repeats}"
    )
    return [Figure("data_pipeline", ratio, ">= 5", "x samples/s", note)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=4096)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--hidden", type=int, help="a wider model than the demo's (hidden size; 4 layers, 4 heads)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if sst2_missing():
        print(sst2_missing())
        return
    if args.hidden:
        HIDDEN.update(hidden_size=args.hidden, num_layers=4, num_heads=4)
    ratio, mine, theirs = measure(args.examples, args.epochs, args.repeats)
    print(f"data_pipeline: {ratio:.2f}x ({mine:.0f} vs {theirs:.0f} samples/s)")


if __name__ == "__main__":
    main()
