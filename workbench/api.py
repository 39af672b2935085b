"""The Python API, for notebooks and scripts: `load_study_spec`, `run_study` and `conclude_study`.

    import workbench
    spec = workbench.load_study_spec("studies/demo.yaml", study={"n_trials": 4})
    result = workbench.run_study(spec)
    result.trials            # a pandas DataFrame, one row per trial
    result.best_params, result.best_value, result.model_uri

Nothing here calls `sys.exit`; errors are `workbench.core.errors.WorkbenchError`s with a message
that names the key and the fix. The command line is a thin layer over these two functions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.config.spec import StudySpec
from workbench.config.study_file import apply_overrides, load_study_file, validate_study
from workbench.core import distributed
from workbench.core.errors import WorkbenchError
from workbench.core.progress import StudyProgress
from workbench.stores.storage import best_trial, build_storage, resolve_storage
from workbench.study.session import RunOptions, StudyOutcome, run_session
from workbench.study.session import conclude_study as _conclude_study


def load_study_spec(source: str | Path | dict, /, **overrides: Any) -> StudySpec:
    """A validated study spec from a YAML file or a dict shaped like one.

    `overrides` set values on top, by section (`training={"num_train_epochs": 1}`) or by dotted
    key with `__` for the dots (`training__num_train_epochs=1`).
    """
    dotted = {}
    for key, value in overrides.items():
        if isinstance(value, dict) and key != "search_space":
            dotted.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            dotted[key.replace("__", ".")] = value
    if isinstance(source, dict):
        spec = validate_study({"source_dir": str(Path.cwd()), **source}, "<dict>")
        return apply_overrides(spec, dotted) if dotted else spec
    return load_study_file(source, dotted)


@dataclass(frozen=True)
class StudyResult:
    """What a study holds after a run: its best trial, every trial as a DataFrame, the registered version."""

    study_name: str
    metric: str
    trials_run: int  # by this call
    best_trial: Any  # optuna FrozenTrial, or None when no trial completed
    trials: Any  # pandas DataFrame: number, state, value, params_*, duration, ...
    registered: str | None  # "NAME version N" when this call registered a version

    @property
    def best_value(self) -> float | None:
        return self.best_trial.values[0] if self.best_trial is not None else None

    @property
    def best_params(self) -> dict[str, Any]:
        return dict(self.best_trial.params) if self.best_trial is not None else {}

    @property
    def model_uri(self) -> str | None:
        """`models:/NAME/N` of the version this call registered, for `mlflow.pyfunc.load_model`."""
        if not self.registered:
            return None
        name, _, version = self.registered.rpartition(" version ")
        return f"models:/{name}/{version}"


def run_study(
    spec: StudySpec,
    *,
    trials: int | None = None,
    storage: str | None = None,
    tracking_uri: str | None = None,
    data: Any = None,
    register: bool = True,
    progress: Callable[[str], None] | StudyProgress = print,
) -> StudyResult:
    """Run (or resume) `spec` until its n_trials, or `trials` more; returns a StudyResult.

    `data` replaces the study file's data: a `datasets.Dataset` / `DatasetDict`, a pandas
    DataFrame, or a `torch.utils.data.Dataset` yielding (text, label) or {text, label}; or a dict
    {"train": ..., "validation": ...} of those. Its digest is recorded like a file's.
    """
    if trials is not None and trials < 0:
        raise WorkbenchError(f"--trials {trials}: must be 0 or more")
    if data is not None:
        spec = apply_overrides(spec, {"data.source": "python"})
    options = RunOptions(storage=storage, tracking_uri=tracking_uri, add_trials=trials, register=register)
    outcome = run_session(spec, options, progress, data)
    if not distributed.is_main():  # under torchrun rank 0 owns the study; the other ranks only trained
        return StudyResult(spec.study.name, spec.study.metric, outcome.trials_run, None, None, None)
    return result_of(spec, outcome, storage)


def conclude_study(
    spec: StudySpec,
    *,
    storage: str | None = None,
    tracking_uri: str | None = None,
    register: bool = True,
    progress: Callable[[str], None] | StudyProgress = print,
) -> StudyResult:
    """Conclude a study whose trials ran elsewhere (workers on a cluster): summary, plots, registration.

    Runs on any machine that reaches both stores; a second call registers nothing new.
    """
    options = RunOptions(storage=storage, tracking_uri=tracking_uri, register=register)
    return result_of(spec, _conclude_study(spec, options, progress), storage)


def result_of(spec: StudySpec, outcome: StudyOutcome, storage: str | None = None) -> StudyResult:
    """The StudyResult of a finished run, read back from the study's storage."""
    import optuna

    study = optuna.load_study(study_name=spec.study.name, storage=build_storage(resolve_storage(storage)))
    frame = study.trials_dataframe(
        attrs=("number", "state", "value", "params", "datetime_start", "duration", "user_attrs")
    )
    return StudyResult(
        spec.study.name, spec.study.metric, outcome.trials_run, best_trial(study), frame, outcome.registered
    )
