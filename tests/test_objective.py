"""classify_failure: a failed trial's reason, and whether the failure must stop the study."""

from __future__ import annotations

import errno
import sqlite3

import pytest
import torch
from sqlalchemy.exc import OperationalError

from workbench.core.errors import StoreError
from workbench.trial.objective import classify_failure


def test_a_plain_error_fails_the_trial_alone():
    assert classify_failure(ValueError("bad learning rate"), 3) == ("ValueError: bad learning rate", None)


@pytest.mark.parametrize(
    "error",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        MemoryError(),
        RuntimeError("DefaultCPUAllocator: can't allocate memory"),
    ],
)
def test_out_of_memory_fails_the_trial_alone_and_says_so(error):
    reason, stop = classify_failure(error, 3)
    assert reason.startswith("out of memory: ") and stop is None


@pytest.mark.parametrize(
    "error",
    [OSError(errno.ENOSPC, "No space left on device"), sqlite3.OperationalError("database or disk is full")],
)
def test_a_full_disk_stops_the_study(error):
    reason, stop = classify_failure(error, 3)
    assert reason.startswith("disk full: ")
    assert isinstance(stop, StoreError)
    assert str(stop).startswith("trial 3: disk full (") and str(stop).endswith("and run the same command to resume")


def test_a_store_error_stops_the_study_naming_the_trial():
    reason, stop = classify_failure(StoreError("tracking store: log_batch failed: read-only"), 4)
    assert reason == "tracking store: log_batch failed: read-only"
    assert isinstance(stop, StoreError) and str(stop) == "trial 4: tracking store: log_batch failed: read-only"


def test_an_optuna_storage_that_stayed_unreachable_stops_the_study(monkeypatch):
    monkeypatch.setenv("WORKBENCH_RECONNECT_S", "60")
    cut = OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))
    try:
        raise RuntimeError("set_trial_state_values failed") from cut
    except RuntimeError as e:
        reason, stop = classify_failure(e, 5)
    assert reason == "Optuna storage unreachable: server closed the connection unexpectedly"
    assert str(stop) == (
        "trial 5: the Optuna storage stayed unreachable for over 60 s (server closed the connection unexpectedly): "
        "run the same command to resume"
    )
