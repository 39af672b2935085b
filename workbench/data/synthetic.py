"""A seeded generator of labelled movie-review sentences with a compositional rule.

Bag-of-words is not enough: negation flips a clause ("not charming"), and in a contrast the
clause after "but" (or the main clause around "although") decides the label. A model needs
word order and some capacity to learn that, so learning rate and size matter in a study;
`label_noise` flips a fraction of labels so no trial reaches 100%.
"""

from __future__ import annotations

import random

LABELS = ("negative", "positive")

POSITIVE = "charming moving brilliant delightful gripping witty tender stunning clever heartfelt superb vivid".split()
NEGATIVE = "dull tedious clumsy bland shallow messy dreary lifeless predictable hollow awkward forgettable".split()
NOUNS = "film story plot cast script score ending dialogue pacing direction camera work performance".split()
NEGATIONS = ("not", "never", "hardly", "far from")
INTENSIFIERS = ("very", "truly", "rather", "quite", "remarkably", "")
OPENERS = ("", "", "honestly,", "overall,", "in the end,", "to be fair,", "i think")


def _clause(rng: random.Random) -> tuple[str, int]:
    """One clause and its polarity (1 positive, 0 negative)."""
    positive = rng.random() < 0.5
    adjective = rng.choice(POSITIVE if positive else NEGATIVE)
    negated = rng.random() < 0.3
    intensifier = rng.choice(INTENSIFIERS)
    noun = rng.choice(NOUNS)
    words = ["the", noun, "is"] + ([rng.choice(NEGATIONS)] if negated else []) + [intensifier, adjective]
    return " ".join(w for w in words if w), int(positive != negated)


def generate_examples(n: int, seed: int = 0, label_noise: float = 0.05) -> dict[str, list]:
    """`n` sentences with labels 0/1; returns {"text": [...], "label": [...]}."""
    rng = random.Random(seed)
    texts, labels = [], []
    for _ in range(n):
        first, p1 = _clause(rng)
        second, p2 = _clause(rng)
        shape = rng.random()
        if shape < 0.4:
            text, label = first, p1
        elif shape < 0.7:
            text, label = f"{first}, but {second}", p2
        elif shape < 0.85:
            text, label = f"although {first}, {second}", p2
        else:
            text, label = f"{first}, although {second}", p1
        opener = rng.choice(OPENERS)
        if rng.random() < label_noise:
            label = 1 - label
        texts.append(f"{opener} {text}".strip())
        labels.append(label)
    return {"text": texts, "label": labels}
