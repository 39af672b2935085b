"""The Optuna side of a study, on real SQLite storages: trial counts, the best trial, the retrying
storage (its overrides still Optuna's, a transient fault retried, a lasting one our error)."""

from __future__ import annotations

import inspect
import sqlite3
import threading
import time

import optuna
import pytest
from optuna.storages import RDBStorage
from optuna.trial import TrialState, create_trial

from workbench.core import settings
from workbench.core.errors import StoreError
from workbench.core.keys import FAIL_REASON_ATTR
from workbench.stores import storage
from workbench.stores.retrying import RetryingRDBStorage
from workbench.stores.storage import TrialCounts, best_trial, build_storage, count_trials

optuna.logging.set_verbosity(optuna.logging.ERROR)


def parameters(function) -> list[tuple[str, object, object]]:
    """What a caller passes: each parameter's name, kind and default (annotations are spelled differently)."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


def new_study(url: str, direction: str = "maximize") -> optuna.Study:
    return optuna.create_study(storage=url, study_name="s", direction=direction)


def test_every_retried_call_overrides_an_rdbstorage_method_of_the_same_parameters():
    overrides = {name: f for name, f in vars(RetryingRDBStorage).items() if getattr(f, "__override__", False)}
    assert len(overrides) == 22  # every call a study makes through Optuna's _CachedStorage, and ours
    for name, override in overrides.items():
        assert callable(getattr(RDBStorage, name, None)), f"optuna's RDBStorage has no {name} any more"
        assert parameters(override) == parameters(getattr(RDBStorage, name)), f"RDBStorage.{name} changed"
        assert f"self._retried(super().{name}" in "".join(inspect.getsource(override).split()), f"{name} is not retried"


def test_count_trials_counts_a_failure_of_the_trials_own_but_not_a_lost_worker(optuna_url):
    study = new_study(optuna_url)
    study.tell(study.ask(), 0.5)
    study.tell(study.ask(), state=TrialState.PRUNED)
    own = study.ask()
    own.set_user_attr(FAIL_REASON_ATTR, "ValueError: bad")
    study.tell(own, state=TrialState.FAIL)
    study.tell(study.ask(), state=TrialState.FAIL)  # a dead worker's or an interrupted trial: retried instead
    study.ask()  # running
    study.enqueue_trial({})
    counts = count_trials(study)
    assert counts == TrialCounts(finished=3, running=1, queued=1)
    assert counts.counted == 5
    assert counts.summary(10) == "3/10 trials done (1 running, 1 queued)"
    assert TrialCounts(2, 0, 0).summary(4) == "2/4 trials done"


@pytest.mark.parametrize(
    ("direction", "values", "best"), [("maximize", [0.5, 0.9, 0.9], 1), ("minimize", [0.3, 0.1, 0.1], 1)]
)
def test_best_trial_is_the_best_completed_value_and_a_tie_goes_to_the_earliest(optuna_url, direction, values, best):
    study = new_study(optuna_url, direction)
    assert best_trial(study) is None
    study.add_trial(
        create_trial(state=TrialState.PRUNED, intermediate_values={1: 10.0 if direction == "maximize" else -10.0})
    )
    for value in values:
        study.add_trial(create_trial(value=value))
    study.add_trial(create_trial(state=TrialState.FAIL))
    found = best_trial(study)
    assert found.number == best + 1  # trial 0 is the pruned one: never the best, whatever it reported
    assert found.value == values[best]


def test_a_sqlite_storage_keeps_optunas_class_and_the_heartbeat_settings(optuna_url):
    built = build_storage(optuna_url)
    assert type(built) is RDBStorage  # a file cannot lose its connection: nothing to retry
    assert built.heartbeat_interval == settings.WORKBENCH_HEARTBEAT_S.get()
    assert built.grace_period == settings.WORKBENCH_GRACE_S.get()


def test_a_database_servers_storage_is_the_retrying_one(postgres_url):
    built = build_storage(postgres_url)
    assert isinstance(built, RetryingRDBStorage)
    assert built.reconnect_s == settings.WORKBENCH_RECONNECT_S.get()
    assert built.heartbeat_interval == settings.WORKBENCH_HEARTBEAT_S.get()


class Locked:
    """An exclusive lock on a SQLite file, as a server that refuses connections: every other connection fails."""

    def __init__(self, path):
        self.con = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.con.execute("begin exclusive")

    def release(self, after_s: float = 0.0) -> None:
        threading.Timer(after_s, self.con.close).start()  # closing rolls the open transaction back


def retrying(url: str, reconnect_s: float) -> tuple[RetryingRDBStorage, int]:
    """A retrying storage on a SQLite file (connections fail at once when locked) and the id of a study in it."""
    retried = RetryingRDBStorage(
        url, reconnect_s=reconnect_s, shown_url=url, engine_kwargs={"connect_args": {"timeout": 0}}
    )
    return retried, retried.create_new_study([optuna.study.StudyDirection.MAXIMIZE], "s")


def test_a_call_is_retried_while_the_database_is_unreachable(optuna_url, tmp_path, caplog):
    retried, study_id = retrying(optuna_url, reconnect_s=5)
    Locked(tmp_path / "optuna.db").release(after_s=0.2)
    started = time.monotonic()
    retried.set_study_user_attr(study_id, "k", 1)
    assert 0.2 < time.monotonic() - started < 1.0  # one pause of 0.5 s
    assert retried.get_study_user_attrs(study_id) == {"k": 1}
    warned = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]
    assert warned == [f"Optuna storage {optuna_url} unreachable (database is locked): retrying for up to 5 s"]


def test_a_lasting_outage_raises_our_error_after_reconnect_s(optuna_url, tmp_path, monkeypatch):
    monkeypatch.setenv(settings.WORKBENCH_RECONNECT_S.name, "0.6")
    retried, study_id = retrying(optuna_url, reconnect_s=settings.WORKBENCH_RECONNECT_S.get())
    lock = Locked(tmp_path / "optuna.db")
    started = time.monotonic()
    with pytest.raises(StoreError) as raised, storage.outage_stops_study(optuna_url):
        retried.set_study_user_attr(study_id, "k", 1)
    assert 0.5 <= time.monotonic() - started < 0.6 + 0.5  # tried again after 0.5 s; a second pause would pass 0.6 s
    assert str(raised.value) == (
        f"--storage {optuna_url}: unreachable for over 0.6 s (database is locked): "
        "run the same command to resume the study"
    )
    lock.release()


def test_other_errors_are_not_retried_and_a_heartbeat_the_outage_outlasts_is_skipped(optuna_url, tmp_path, caplog):
    retried, study_id = retrying(optuna_url, reconnect_s=0.1)
    started = time.monotonic()
    with pytest.raises(KeyError):
        retried.get_study_id_from_name("no such study")
    assert time.monotonic() - started < 0.3
    trial_id = retried.create_new_trial(study_id)
    lock = Locked(tmp_path / "optuna.db")
    retried.record_heartbeat(trial_id)  # Optuna's heartbeat thread would die of an error
    lock.release()
    assert f"heartbeat of trial id {trial_id} skipped: database is locked" in caplog.text
