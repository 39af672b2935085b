"""Offline, quiet libraries for every test; the shared fixtures load as plugins (tests/fixtures_*.py).

Test files import plain helpers from helpers.py, stores.py, servers.py and registry_models.py,
never from this file; fixtures reach them through `pytest_plugins`.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

pytest_plugins = [
    "fixtures_study",  # workdir, write_study, tiny_bert
    "fixtures_stores",  # seeded, stores, new_mlflow_store, optuna_url
    "fixtures_servers",  # mlflow_server, postgres_url, own_postgres
    "fixtures_registry",  # keyword_registry
]


@pytest.fixture(autouse=True)
def signals_as_the_test_found_them():
    """A command run in this process (`main([...])`) installs its SIGINT/SIGTERM handlers and may note a
    SIGTERM; the next test starts with the default handlers and no preemption noted, as a new process would."""
    import signal

    from workbench.core import distributed

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, handler in before.items():
        signal.signal(s, handler)
    distributed._preempted.clear()
    distributed._stop_requested.clear()
