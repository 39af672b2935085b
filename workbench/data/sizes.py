"""Warnings about data too small to trust: classes with too few examples to learn from, or to score on.

`warn_small_classes` runs once per study, before any trial (in `prepare_data`); the study runs
anyway, but the user sees which class of which split is short, and by how much.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from workbench.data.splits import Splits

logger = logging.getLogger(__name__)

MIN_TRAIN_PER_CLASS = 10  # examples of a class below which a model can hardly learn it
MIN_EVAL_PER_CLASS = 5  # examples of a class below which its scores are noise


def small_classes(splits: Splits) -> list[str]:
    """One line per split with a class under its minimum: the split, the classes and their counts."""
    lines = []
    for split, minimum, why in (
        ("train", MIN_TRAIN_PER_CLASS, "too few to learn from"),
        ("validation", MIN_EVAL_PER_CLASS, "too few to score on: trials are chosen on noise"),
        ("test", MIN_EVAL_PER_CLASS, "too few to score on: the test scores are noise"),
    ):
        ds = getattr(splits, split)
        if ds is None:
            continue
        counts = Counter(ds["label"])
        short = [(name, counts.get(i, 0)) for i, name in enumerate(splits.label_names) if counts.get(i, 0) < minimum]
        if short:
            listed = ", ".join(f"{n} {_noun(n) if i == 0 else ''}of {name!r}" for i, (name, n) in enumerate(short))
            note = "; the study runs anyway" if split == "train" else ""
            lines.append(f"data: the {split} split has only {listed} (fewer than {minimum} per class: {why}){note}")
    return lines


def _noun(n: int) -> str:
    return "example " if n == 1 else "examples "


def warn_small_classes(splits: Splits) -> None:
    """Log each of `small_classes` as a warning (the CLI prints warnings on the console)."""
    for line in small_classes(splits):
        logger.warning(line)
