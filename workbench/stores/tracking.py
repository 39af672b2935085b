"""The only module that opens MLflow runs: one parent run per study, one nested run per trial.

`StudyTracking` finds or creates the study's experiment and parent run (found again on
resume by its tag) and starts trial runs under it. `NullTrialRun` stands in where nothing
may be logged (DDP ranks other than 0), so the training code path stays the same.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.core import settings
from workbench.core.errors import StoreError, first_line
from workbench.core.keys import (
    EXPERIMENT_KIND_TAG,
    EXPERIMENT_KIND_TRAINING,
    NOTE_TAG,
    PARENT_RUN_TAG,
    ROLE_STUDY,
    ROLE_TAG,
    ROLE_TRIAL,
    RUN_STATE_TAG,
    RUN_STUDY_TAG,
    RUN_TRIAL_TAG,
)
from workbench.stores.db import absolute_sqlite, check_sqlite_writable, default_sqlite, existing_sqlite, mask_url
from workbench.stores.moved_store import experiment_places, forget_artifact_places, rewrite_artifact_places

if TYPE_CHECKING:
    from mlflow import MlflowClient

logger = logging.getLogger(__name__)

DEFAULT_TRACKING_URI = default_sqlite("mlflow")
# Optuna trial state -> MLflow run status. A pruned trial did its job (the pruner stopped it early):
# FINISHED, told apart by its state tag and description; KILLED is kept for Ctrl-C.
RUN_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAIL": "FAILED", "KILLED": "KILLED"}
# The MLflow UI's mode for an experiment (3.x): model training, not GenAI traces and prompts.
EXPERIMENT_KIND = {EXPERIMENT_KIND_TAG: EXPERIMENT_KIND_TRAINING}


def resolve_tracking_uri(explicit: str | None = None) -> str:
    """--tracking-uri, else MLFLOW_TRACKING_URI, else the local SQLite store under mlruns/."""
    uri = explicit or settings.MLFLOW_TRACKING_URI.get() or DEFAULT_TRACKING_URI
    return absolute_sqlite(uri, "--tracking-uri")


def resolve_existing_tracking_uri(explicit: str | None = None) -> str:
    """As resolve_tracking_uri, for commands that only read: a missing SQLite store is an error, never created."""
    uri = explicit or settings.MLFLOW_TRACKING_URI.get() or DEFAULT_TRACKING_URI
    return existing_sqlite(uri, "--tracking-uri", "MLflow tracking store")


# The fail-fast check before a study: MLflow's own default retries for minutes.
PREFLIGHT_HTTP = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}


def check_tracking_store(tracking_uri: str) -> None:
    """Raise StoreError, before anything is written, when the tracking store cannot be used."""
    if tracking_uri.startswith("sqlite:///"):
        check_sqlite_writable(tracking_uri, "--tracking-uri")
        return
    saved = {k: os.environ.get(k) for k in PREFLIGHT_HTTP}
    os.environ.update({k: v for k, v in PREFLIGHT_HTTP.items() if saved[k] is None})  # the user's settings win
    try:
        mlflow_client(tracking_uri).search_experiments(max_results=1)
    except Exception as e:  # connection refused, DNS, unknown scheme, HTTP errors
        raise StoreError(
            f"--tracking-uri {mask_url(tracking_uri)}: cannot reach the tracking store: {_reason(e)}"
        ) from None
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)


def _reason(e: BaseException) -> str:
    """The useful line of an MLflow/requests error (the root cause, e.g. 'Connection refused')."""
    text = first_line(e)
    for hint in ("Connection refused", "Name or service not known", "timed out", "Max retries exceeded"):
        if hint in str(e) and hint not in text:
            return f"{text[:200]} ({hint})"
    return text[:300]


def mlflow_client(tracking_uri: str):
    """An MlflowClient whose model registry is the tracking store itself.

    `MlflowClient(uri)` alone takes its registry from the process: `mlflow.set_registry_uri`
    (which also exports MLFLOW_REGISTRY_URI to child processes) from any earlier store wins
    over `uri`, so versions would be written to, or looked for in, another store.
    """
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri, registry_uri=tracking_uri)


def configure_mlflow(tracking_uri: str) -> None:
    """Point MLflow's fluent API and registry at one store for this process.

    MLflow also exports both URIs as environment variables: they are put back as they were, so
    the next study of this process (the Python API, from another folder) resolves its own store
    rather than following the first into its folder while its Optuna storage stays here."""
    import mlflow

    exported = (settings.MLFLOW_TRACKING_URI.name, "MLFLOW_REGISTRY_URI")
    before = {name: os.environ.get(name) for name in exported}
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def local_artifact_root(tracking_uri: str, experiment: str) -> str | None:
    """Artifacts of a local SQLite store live beside it under mlruns/; a server decides its own."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    db = Path(tracking_uri.removeprefix("sqlite:///")).resolve()
    return (db.parent / "artifacts" / experiment).as_uri()


def adopt_moved_store(tracking_uri: str) -> Path | None:
    """A local store copied or moved from another folder works where it now is, or is refused.

    Our experiments keep their artifacts in `<store folder>/artifacts/<experiment>`, and MLflow
    records those places as absolute paths: a copy would read, and write, the original's. When
    the recorded folder is not this one and the artifacts came along, the records are rewritten
    to point here; when they did not, StoreError names both folders. Returns the folder the store
    came from when it was adopted, else None. A store this folder never held (a server, a URI
    other than sqlite:///) is left alone. Which MLflow tables and schemas it rewrites: `moved_store`.
    """
    if not tracking_uri.startswith("sqlite:///"):
        return None
    db = Path(tracking_uri.removeprefix("sqlite:///"))
    if not db.is_file():
        return None
    here = db.parent.resolve()
    with closing(sqlite3.connect(db, timeout=30)) as con:
        try:
            rows = experiment_places(con)
        except sqlite3.Error:  # not an MLflow store yet: MLflow creates its tables on first use
            return None
        folders = (_recorded_folder(name, location) for name, location in rows)
        recorded = {folder for folder in folders if folder is not None and folder != here}
        if not recorded:
            return None
        if len(recorded) > 1 or not (here / "artifacts").is_dir():
            origins = ", ".join(sorted(str(p) for p in recorded))
            raise StoreError(
                f"--tracking-uri {tracking_uri}: this store was copied or moved from {origins}, and its artifacts are "
                f"recorded there, not in {here / 'artifacts'}: copy the whole folder (artifacts/ included) or use the "
                f"original store with --tracking-uri"
            )
        (before,) = recorded
        rewrite_artifact_places(con, tracking_uri, before, here)
    forget_artifact_places()
    logger.info("%s was copied or moved from %s: its artifact paths now point here", here, before)
    return before


def _recorded_folder(experiment: str, location: str | None) -> Path | None:
    """The store folder an experiment's artifact place was made for (`<folder>/artifacts/<experiment>`), else None."""
    from urllib.parse import unquote, urlsplit

    if not location or not location.startswith("file:"):
        return None
    path = Path(unquote(urlsplit(location).path))
    if path.name != experiment or path.parent.name != "artifacts":
        return None  # a place the user chose: not ours to move
    return path.parent.parent


def _store_write(call):
    """A run's write: a store fault (server down, read-only, disk full) becomes one StoreError the study stops on."""
    import functools

    @functools.wraps(call)
    def wrapped(*args, **kwargs):
        try:
            return call(*args, **kwargs)
        except StoreError:
            raise
        except Exception as e:  # MlflowException, requests and SQL errors: the store, not the trial
            raise StoreError(f"tracking store: {call.__name__} failed: {_reason(e)}") from e

    return wrapped


class TrialRun:
    """A nested MLflow run for one trial; logs through the client, never the fluent API."""

    def __init__(self, client: MlflowClient, run_id: str):
        self.client = client
        self.run_id = run_id

    @_store_write
    def log_metrics(
        self,
        metrics: dict[str, float],
        step: int,
        model_id: str | None = None,
        dataset: tuple[str, str] | None = None,
    ) -> None:
        """`model_id` links the metrics to a logged model, `dataset` (name, digest) to the data measured."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        name, digest = dataset or (None, None)
        items = [
            Metric(k, v, now, step, model_id=model_id, dataset_name=name, dataset_digest=digest)
            for k, v in metrics.items()
        ]
        self.client.log_batch(self.run_id, metrics=items)

    @_store_write
    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param
        from mlflow.utils.validation import MAX_PARAMS_TAGS_PER_BATCH as batch

        items = [Param(k, _param_value(v)) for k, v in sorted(params.items())]
        for i in range(0, len(items), batch):
            self.client.log_batch(self.run_id, params=items[i : i + batch])

    @_store_write
    def set_tags(self, tags: dict[str, Any]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    @_store_write
    def log_dict(self, data: dict, name: str) -> None:
        self.client.log_dict(self.run_id, data, name)

    @_store_write
    def end(self, state: str, note: str | None = None) -> None:
        """Close the run with the status matching the Optuna state (COMPLETE, PRUNED, FAIL, KILLED)."""
        tags = {RUN_STATE_TAG: state}
        if note:
            tags[NOTE_TAG] = note
        self.set_tags(tags)
        self.client.set_terminated(self.run_id, status=RUN_STATUS[state])

    @_store_write
    def finish(self, note: str | None = None) -> None:
        """Close a run that is not a trial's (an evaluation): FINISHED, no Optuna tags."""
        if note:
            self.client.set_tag(self.run_id, NOTE_TAG, note)
        self.client.set_terminated(self.run_id, status="FINISHED")


class NullTrialRun(TrialRun):
    """Logs nothing: stands in for the run on DDP ranks other than 0."""

    def __init__(self):
        self.run_id = ""

    def log_metrics(self, metrics, step, model_id=None, dataset=None): ...
    def log_params(self, params): ...
    def set_tags(self, tags): ...
    def log_dict(self, data, name): ...
    def end(self, state, note=None): ...
    def finish(self, note=None): ...


def start_run(tracking_uri: str, experiment: str, run_name: str, tags: dict[str, Any]) -> TrialRun:
    """A top-level run (an evaluation, a reproduction) in `experiment`, an id or a name created if new."""
    client = mlflow_client(tracking_uri)
    try:
        experiment_id = experiment if experiment.isdigit() else _experiment_id(client, tracking_uri, experiment)
        run = client.create_run(experiment_id, run_name=run_name, tags={k: str(v) for k, v in tags.items()})
    except Exception as e:  # MlflowException, connection errors, SQL errors
        raise StoreError(f"--tracking-uri {mask_url(tracking_uri)}: cannot start a run: {first_line(e)}") from None
    return TrialRun(client, run.info.run_id)


def _experiment_id(client, tracking_uri: str, name: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    return client.create_experiment(
        name, artifact_location=local_artifact_root(tracking_uri, name), tags=EXPERIMENT_KIND
    )


class StudyTracking:
    """The study's MLflow experiment and parent run."""

    def __init__(self, tracking_uri: str, study_name: str):
        self.tracking_uri = tracking_uri
        self.study_name = study_name
        self.client = mlflow_client(tracking_uri)
        try:
            self.experiment_id = self._experiment()
            self.parent_run_id = self._parent_run()
        except Exception as e:  # MlflowException, connection errors, SQL errors
            raise StoreError(
                f"--tracking-uri {mask_url(tracking_uri)}: cannot use the tracking store: {_reason(e)}"
            ) from None

    def _experiment(self) -> str:
        found = self.client.get_experiment_by_name(self.study_name)
        if found is not None:
            if found.lifecycle_stage == "deleted":
                self.client.restore_experiment(found.experiment_id)
            for key, value in EXPERIMENT_KIND.items():
                if key not in found.tags:  # made by an older workbench: the UI would guess GenAI
                    self.client.set_experiment_tag(found.experiment_id, key, value)
            return found.experiment_id
        location = local_artifact_root(self.tracking_uri, self.study_name)
        try:
            return self.client.create_experiment(self.study_name, artifact_location=location, tags=EXPERIMENT_KIND)
        except Exception:  # another worker created it first
            found = self.client.get_experiment_by_name(self.study_name)
            if found is None:
                raise
            return found.experiment_id

    def _parent_run(self) -> str:
        found = self._parent_runs()
        if found:
            run_id = found[0]
            self.client.update_run(run_id, status="RUNNING")  # resumed
            return run_id
        run = self.client.create_run(
            self.experiment_id,
            run_name=f"study-{self.study_name}",
            tags={ROLE_TAG: ROLE_STUDY, RUN_STUDY_TAG: self.study_name},
        )
        # The study's ask lock makes machines open it one at a time; processes it does not cover (one SQLite
        # storage used from two working folders) may each create one: all adopt the oldest, the others are deleted.
        first = self._parent_runs()[0]
        if first != run.info.run_id:
            self.client.delete_run(run.info.run_id)
        return first

    def _parent_runs(self) -> list[str]:
        """Ids of the study's parent runs, oldest first (ties broken by id, the same order everywhere)."""
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{ROLE_TAG}` = '{ROLE_STUDY}' and tags.`{RUN_STUDY_TAG}` = '{self.study_name}'",
            max_results=100,
        )
        return [r.info.run_id for r in sorted(runs, key=lambda r: (r.info.start_time, r.info.run_id))]

    @property
    def parent(self) -> TrialRun:
        return TrialRun(self.client, self.parent_run_id)

    def start_trial_run(self, number: int, params: dict[str, Any]) -> TrialRun:
        """A nested run named `trial-N` with the sampled params and Optuna tags."""
        tags = {
            PARENT_RUN_TAG: self.parent_run_id,
            ROLE_TAG: ROLE_TRIAL,
            RUN_STUDY_TAG: self.study_name,
            RUN_TRIAL_TAG: str(number),
            RUN_STATE_TAG: "RUNNING",
        }
        try:
            run = self.client.create_run(self.experiment_id, run_name=f"trial-{number}", tags=tags)
        except Exception as e:
            raise StoreError(
                f"tracking store {mask_url(self.tracking_uri)}: cannot start trial {number}'s run: {_reason(e)}"
            ) from None
        trial_run = TrialRun(self.client, run.info.run_id)
        trial_run.log_dict(params, "sampled_params.json")
        return trial_run

    def finish(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.parent_run_id, status=status)


def end_stale_run(run_id: str, note: str) -> None:
    """End a trial run whose worker died (found by the stale-heartbeat check) as FAILED, if still open."""
    import mlflow

    try:
        client = mlflow_client(mlflow.get_tracking_uri())  # the store configure_mlflow chose for this process
        if client.get_run(run_id).info.status == "RUNNING":
            TrialRun(client, run_id).end("FAIL", note=note)
    except Exception as e:  # never let bookkeeping of a dead run stop the living workers
        logger.warning("could not close the stale MLflow run %s: %s", run_id, first_line(e))


def _param_value(value: Any) -> str:
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:MAX_PARAM_VAL_LENGTH]
