"""The Optuna storage that outlasts a database server's restart: `RetryingRDBStorage`.

Optuna's `RDBStorage` fails a call as soon as its connection is cut or refused. This subclass
overrides each call a study makes (through Optuna's `_CachedStorage`, Optuna 5.x) and each of
ours, and sends it to `super()` through one helper, `_retried`, which retries it for
`reconnect_s` seconds. `pool_pre_ping` replaces the connections the server cut once it is back;
the retries bridge the time it is down (a restart, a failover), so the running trial, its
heartbeat thread and the study go on. `tests/test_storage.py` checks that every override still
names an `RDBStorage` method with the same parameters.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Container, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from optuna.storages import RDBStorage
from typing_extensions import override

from workbench.core.errors import error_chain, first_line

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution
    from optuna.study import StudyDirection
    from optuna.study._frozen import FrozenStudy
    from optuna.trial import FrozenTrial, TrialState

logger = logging.getLogger(__name__)

T = TypeVar("T")
FIRST_PAUSE_S, LONGEST_PAUSE_S = 0.5, 5.0  # between tries: doubled after each


def lost_connection(e: BaseException) -> str | None:
    """The driver's message when `e` comes from a database connection cut or refused (a server down,
    shutting down, starting or full), else None."""
    from sqlalchemy.exc import DBAPIError, OperationalError

    for x in error_chain(e):
        if isinstance(x, OperationalError) or (isinstance(x, DBAPIError) and x.connection_invalidated):
            return first_line(x.orig) if x.orig is not None and str(x.orig).strip() else first_line(x)
    return None


class RetryingRDBStorage(RDBStorage):
    """An `RDBStorage` whose calls are retried with backoff while the database server cannot be reached.

    A write cut off at its commit may have landed: a retried `set_trial_state_values` then finds
    the trial finished and raises, which fails that trial alone.
    """

    def __init__(self, url: str, *, reconnect_s: float, shown_url: str, **kwargs: Any) -> None:
        """`url` and `kwargs` as RDBStorage takes them; `shown_url` (the URL, masked) names the store in warnings."""
        self.reconnect_s = reconnect_s  # set before RDBStorage's own __init__, which may call the overrides
        self.shown_url = shown_url
        super().__init__(url, **kwargs)

    def _retried(self, call: Callable[..., T], *args: Any) -> T:
        """`call(*args)`, tried again while it fails for a lost connection, until `reconnect_s` have passed."""
        deadline, pause = time.monotonic() + self.reconnect_s, FIRST_PAUSE_S
        while True:
            try:
                return call(*args)
            except Exception as e:
                lost = lost_connection(e)
                if lost is None or time.monotonic() + pause > deadline:
                    raise
                if pause == FIRST_PAUSE_S:  # once per call
                    logger.warning(
                        "Optuna storage %s unreachable (%s): retrying for up to %g s",
                        self.shown_url,
                        lost,
                        self.reconnect_s,
                    )
                time.sleep(pause)
                pause = min(2 * pause, LONGEST_PAUSE_S)

    @override
    def record_heartbeat(self, trial_id: int) -> None:
        """Retried; a beat the outage outlasted is skipped, not raised: Optuna's heartbeat thread would die of it."""
        try:
            self._retried(super().record_heartbeat, trial_id)
        except Exception as e:
            lost = lost_connection(e)
            if lost is None:
                raise
            logger.warning("heartbeat of trial id %d skipped: %s", trial_id, lost)

    # Studies
    @override
    def create_new_study(self, directions: Sequence[StudyDirection], study_name: str | None = None) -> int:
        return self._retried(super().create_new_study, directions, study_name)

    @override
    def delete_study(self, study_id: int) -> None:
        self._retried(super().delete_study, study_id)

    @override
    def get_all_studies(self) -> list[FrozenStudy]:
        return self._retried(super().get_all_studies)

    @override
    def get_study_id_from_name(self, study_name: str) -> int:
        return self._retried(super().get_study_id_from_name, study_name)

    @override
    def get_study_name_from_id(self, study_id: int) -> str:
        return self._retried(super().get_study_name_from_id, study_id)

    @override
    def get_study_directions(self, study_id: int) -> list[StudyDirection]:
        return self._retried(super().get_study_directions, study_id)

    @override
    def get_study_user_attrs(self, study_id: int) -> dict[str, Any]:
        return self._retried(super().get_study_user_attrs, study_id)

    @override
    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        return self._retried(super().get_study_system_attrs, study_id)

    @override
    def set_study_user_attr(self, study_id: int, key: str, value: Any) -> None:
        self._retried(super().set_study_user_attr, study_id, key, value)

    @override
    def set_study_system_attr(self, study_id: int, key: str, value: Any) -> None:
        self._retried(super().set_study_system_attr, study_id, key, value)

    # Trials
    @override
    def _create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> FrozenTrial:
        return self._retried(super()._create_new_trial, study_id, template_trial)

    @override
    def _set_trial_param(
        self,
        trial_id: int,
        param_name: str,
        param_value_internal: float,
        distribution: BaseDistribution,
        previous_distribution: BaseDistribution | None,
    ) -> None:
        self._retried(
            super()._set_trial_param, trial_id, param_name, param_value_internal, distribution, previous_distribution
        )

    @override
    def set_trial_state_values(self, trial_id: int, state: TrialState, values: Sequence[float] | None = None) -> bool:
        return self._retried(super().set_trial_state_values, trial_id, state, values)

    @override
    def set_trial_intermediate_value(self, trial_id: int, step: int, intermediate_value: float) -> None:
        self._retried(super().set_trial_intermediate_value, trial_id, step, intermediate_value)

    @override
    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._retried(super().set_trial_user_attr, trial_id, key, value)

    @override
    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._retried(super().set_trial_system_attr, trial_id, key, value)

    @override
    def get_trial(self, trial_id: int) -> FrozenTrial:
        return self._retried(super().get_trial, trial_id)

    @override
    def _get_trials(
        self,
        study_id: int,
        states: Container[TrialState] | None,
        included_trial_ids: set[int],
        trial_id_greater_than: int,
    ) -> list[FrozenTrial]:
        return self._retried(super()._get_trials, study_id, states, included_trial_ids, trial_id_greater_than)

    @override
    def _get_best_trial_id(self, study_id: int, direction: StudyDirection) -> int:
        return self._retried(super()._get_best_trial_id, study_id, direction)

    @override
    def get_trial_id_from_study_id_trial_number(self, study_id: int, trial_number: int) -> int:
        return self._retried(super().get_trial_id_from_study_id_trial_number, study_id, trial_number)

    @override
    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        return self._retried(super()._get_stale_trial_ids, study_id)
