"""Plain helpers the tests import (fixtures come from the fixtures_*.py plugins, see conftest.py)."""

from __future__ import annotations

# A study that runs in seconds per trial; tests merge their changes into it.
TINY = {
    "study": {
        "name": "tiny",
        "metric": "eval_accuracy",
        "direction": "maximize",
        "n_trials": 3,
        "sampler": {"type": "random", "seed": 0},
        "pruner": {"type": "none"},
    },
    "data": {"source": "synthetic", "synthetic": {"n_examples": 240, "seed": 1}, "max_length": 32},
    "tokenizer": {"vocab_size": 300},
    "model": {"hidden_size": 16, "num_layers": 1, "num_heads": 2, "dropout": 0.0},
    "training": {"num_train_epochs": 2, "per_device_train_batch_size": 32, "learning_rate": 3.0e-3, "seed": 0},
    "search_space": {"training.learning_rate": {"low": 1.0e-3, "high": 5.0e-3, "log": True}},
    "registry": {"model_name": "tiny-classifier"},
}


def merge(base: dict, changes: dict) -> dict:
    """Sections merge key by key; `search_space` is replaced whole."""
    out = dict(base)
    for key, value in changes.items():
        nested = isinstance(value, dict) and isinstance(out.get(key), dict) and key != "search_space"
        out[key] = merge(out[key], value) if nested else value
    return out
