"""Shared fixtures: a tiny study (seconds per trial) and stores in a temporary directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

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


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """Run in a fresh directory: the default stores land in tmp_path/mlruns."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


@pytest.fixture
def write_study(workdir):
    """write_study(**changes) -> path of a tiny study file with `changes` merged in."""

    def write(name: str = "study.yaml", **changes) -> Path:
        path = workdir / name
        path.write_text(yaml.safe_dump(merge(TINY, changes), sort_keys=False))
        return path

    return write
