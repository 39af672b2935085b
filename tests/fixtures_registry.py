"""Fixture: registered versions of a tiny keyword classifier, trained once per session."""

from __future__ import annotations

import pytest
from registry_models import build_registry


@pytest.fixture(scope="session")
def keyword_registry(tmp_path_factory):
    """Four registered versions of a tiny keyword classifier, trained once (tests/registry_models.py)."""
    return build_registry(tmp_path_factory.mktemp("registry"))
