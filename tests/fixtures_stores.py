"""Fixtures: a seeded pair of stores (the tiny study, trained once per session), copied per test."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from stores import copy_stores, seed, snapshot


@pytest.fixture(scope="session")
def seeded():
    """A store holding the tiny study (2 trials) and a registered version, made once per session.

    Outside pytest's numbered temp dirs: another pytest session on the machine rotates those away.
    """
    from workbench.cli import main

    root = Path(tempfile.mkdtemp(prefix="workbench-seeded-"))
    cwd, uri = os.getcwd(), os.environ.pop("MLFLOW_TRACKING_URI", None)  # mlflow.set_tracking_uri exports it
    os.chdir(root)
    try:
        seed(root, main)
    finally:
        os.chdir(cwd)
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        if uri is not None:
            os.environ["MLFLOW_TRACKING_URI"] = uri
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def stores(seeded, workdir):
    """The seeded stores copied into this test's directory; returns their snapshot before the test."""
    copy_stores(seeded, workdir)
    return snapshot(workdir)
