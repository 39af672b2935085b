"""Fixtures: a fresh working directory per test, the tiny study written into it, and a tiny pretrained BERT."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from helpers import TINY, merge, save_tiny_bert


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """Run in a fresh directory: the default stores land in tmp_path/mlruns."""
    monkeypatch.chdir(tmp_path)
    # a store named in the environment the tests run in must not be written to
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    return tmp_path


@pytest.fixture
def write_study(workdir):
    """write_study(**changes) -> path of a tiny study file with `changes` merged in."""

    def write(name: str = "study.yaml", **changes) -> Path:
        path = workdir / name
        path.write_text(yaml.safe_dump(merge(TINY, changes), sort_keys=False))
        return path

    return write


@pytest.fixture
def tiny_bert(workdir) -> Path:
    """A tiny BERT checkpoint saved at workdir/tiny-bert (`model.pretrained: tiny-bert` in a study there)."""
    return save_tiny_bert(workdir / "tiny-bert")
