"""Offline, quiet libraries for every test; the shared fixtures load as plugins (tests/fixtures_*.py).

Test files import plain helpers from helpers.py, stores.py, servers.py and registry_models.py,
never from this file; fixtures reach them through `pytest_plugins`.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

pytest_plugins = [
    "fixtures_study",  # workdir, write_study
    "fixtures_stores",  # seeded, stores, new_mlflow_store, optuna_url
    "fixtures_servers",  # mlflow_server, postgres_url, own_postgres
    "fixtures_registry",  # keyword_registry
]
