"""Every environment variable workbench reads, as a typed object with its default and meaning.

As mlflow keeps its own in `mlflow/environment_variables.py`. A setting is read when `.get()` is
called, never at import, so a process that changes the environment sees the new value. The
README's "Settings" section lists them all (a test keeps the two in step).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from workbench.core.errors import SettingError

T = TypeVar("T")


@dataclass(frozen=True)
class Setting(Generic[T]):
    """One environment variable: `name`, the `type` its text parses to, its `default`, what it means."""

    name: str
    type: Callable[[str], T]
    default: T
    meaning: str

    def get(self) -> T:
        """The variable's value now, parsed; the default when it is unset or empty."""
        raw = os.environ.get(self.name, "")
        if not raw:
            return self.default
        try:
            return self.type(raw)
        except ValueError:
            kind = getattr(self.type, "__name__", "valid")
            fix = "unset it" if self.default is None else f"unset it for the default, {self.default!r}"
            raise SettingError(f"${self.name}={raw!r}: not {'an' if kind == 'int' else 'a'} {kind}: {fix}") from None


# --- Stores ----------------------------------------------------------------------------------
WORKBENCH_STORAGE: Setting[str | None] = Setting(
    "WORKBENCH_STORAGE",
    str,
    None,
    "the Optuna storage URL when --storage is not given (keeps a password out of `ps`); "
    "default sqlite:///mlruns/optuna.db",
)
# A worker killed mid-trial is noticed after GRACE_S seconds without a heartbeat (every HEARTBEAT_S).
WORKBENCH_HEARTBEAT_S = Setting(
    "WORKBENCH_HEARTBEAT_S", int, 10, "seconds between a running trial's heartbeats in the Optuna storage"
)
WORKBENCH_GRACE_S = Setting(
    "WORKBENCH_GRACE_S",
    int,
    60,
    "seconds without a heartbeat after which a running trial is failed and retried (its worker died)",
)
WORKBENCH_RECONNECT_S = Setting(
    "WORKBENCH_RECONNECT_S",
    float,
    60.0,
    "seconds a lost Optuna database connection is retried before the study stops (resumable)",
)

# --- Processes: --workers and torchrun -------------------------------------------------------
WORKBENCH_WORKER_ID: Setting[int | None] = Setting(
    "WORKBENCH_WORKER_ID", int, None, "this process's worker id; set by `study run --workers` in each worker"
)
WORKBENCH_WORKERS = Setting(
    "WORKBENCH_WORKERS", int, 1, "how many workers share this machine's cores; set by `study run --workers`"
)
WORKBENCH_SYNC_TIMEOUT_S = Setting(
    "WORKBENCH_SYNC_TIMEOUT_S",
    float,
    300.0,
    "seconds a torchrun rank waits for the others outside a training step, then stops the job",
)
WORKBENCH_STEP_WAIT_S = Setting(
    "WORKBENCH_STEP_WAIT_S",
    float,
    10.0,
    "seconds a torchrun rank that failed inside a training step waits for the others, then stops the job",
)

# --- Read too: other tools' variables, with their meaning for workbench ----------------------
MLFLOW_TRACKING_URI: Setting[str | None] = Setting(
    "MLFLOW_TRACKING_URI",
    str,
    None,
    "MLflow's: the tracking store when --tracking-uri is not given; default sqlite:///mlruns/mlflow.db",
)
MLFLOW_BACKEND_STORE_URI: Setting[str | None] = Setting(
    "MLFLOW_BACKEND_STORE_URI",
    str,
    None,
    "MLflow's: `workbench server`'s database when --backend-store-uri is not given; default sqlite:///mlruns/mlflow.db",
)
WORLD_SIZE = Setting("WORLD_SIZE", int, 1, "torchrun's: how many ranks train each trial together")
RANK = Setting("RANK", int, 0, "torchrun's: this process's rank; rank 0 alone talks to Optuna and MLflow")
LOCAL_RANK = Setting("LOCAL_RANK", int, 0, "torchrun's: this process's rank on its machine (its GPU)")
LOCAL_WORLD_SIZE: Setting[int | None] = Setting(
    "LOCAL_WORLD_SIZE", int, None, "torchrun's: ranks on this machine, sharing its cores (else WORKBENCH_WORKERS)"
)

SETTINGS: tuple[Setting, ...] = tuple(v for v in tuple(globals().values()) if isinstance(v, Setting))
