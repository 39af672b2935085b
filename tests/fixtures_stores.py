"""Fixtures: a seeded pair of stores (the tiny study, trained once per session), copied per test."""

from __future__ import annotations

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
    from workbench.cli.commands import main

    root = Path(tempfile.mkdtemp(prefix="workbench-seeded-"))
    with pytest.MonkeyPatch.context() as mp:  # session scope: the function-scoped `monkeypatch` cannot reach here
        mp.chdir(root)
        for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
            # unset while seeding; set first so that leaving the block also drops what main exports
            # (mlflow.set_tracking_uri / set_registry_uri), restoring the value from before if there was one
            mp.setenv(name, "")
            mp.delenv(name)
        seed(root, main)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def stores(seeded, workdir):
    """The seeded stores copied into this test's directory; returns their snapshot before the test."""
    copy_stores(seeded, workdir)
    return snapshot(workdir)
