"""Log the best trial's model to MLflow, register it, and look versions up by alias.

A new version gets the alias `challenger`; `workbench.lifecycle.promotion` decides whether
`champion` moves to it. Aliases only, never the deprecated stages.
"""

from __future__ import annotations

import getpass
import json
import logging
import socket
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import workbench
from workbench.config.study_file import StudySpec
from workbench.core.errors import RegistryError, first_line
from workbench.core.keys import (
    HISTORY_TAG_PREFIX,
    MODEL_URI_ATTR,
    RUN_ID_ATTR,
    VERSION_DATA_DIGEST_TAG,
    VERSION_DIRECTION_TAG,
    VERSION_METRIC_TAG,
    VERSION_POSITIVE_TAG,
    VERSION_STUDY_TAG,
    VERSION_TRIAL_TAG,
    VERSION_VALUE_TAG,
    WORKER_ATTR,
)
from workbench.data.splits import TrialData
from workbench.model.inference import WorkbenchClassifier
from workbench.model.user_code import code_paths, import_object, read_model_class
from workbench.stores.holdout import log_test_metrics, score_test_split

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

logger = logging.getLogger(__name__)

CHALLENGER, CHAMPION, PREVIOUS_CHAMPION = "challenger", "champion", "previous-champion"
EXAMPLE_TEXTS = ["a charming, moving film", "the plot is dull and the pacing is tedious"]


def register_best(
    spec: StudySpec,
    best: FrozenTrial,
    data: TrialData,
    tracking,
    trial_dir: Path,
    *,
    alias: bool = True,
    extra_tags: dict | None = None,
) -> str | None:
    """Log the best trial's saved model as a pyfunc model, register it, alias it `challenger` (unless not `alias`).

    With a test split, the model is scored on it first, once (`stores.holdout`), and carries it.
    `extra_tags` go on the version too (objective values, costs, constraints: `stores.shipping`).

    Returns "NAME version N", or None when that trial is already registered or has no model.
    """
    name = spec.registry.model_name
    if not name:  # registry.model_name unset: the study registers nothing
        return None
    run_id = best.user_attrs.get(RUN_ID_ATTR)
    client = tracking.client
    if run_id and client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'"):
        return None  # resumed with no better trial: nothing new to register
    model_dir, model_uri = trial_dir / "model", best.user_attrs.get(MODEL_URI_ATTR)
    if model_uri is None and not (model_dir / "config.json").is_file():
        _say_where_the_model_is(best, model_dir)
        return None
    tags = {
        VERSION_STUDY_TAG: spec.study.name,
        VERSION_TRIAL_TAG: best.number,
        VERSION_METRIC_TAG: spec.study.metric,
        VERSION_VALUE_TAG: best.values[0],
        VERSION_DIRECTION_TAG: spec.study.direction,
        VERSION_DATA_DIGEST_TAG: data.splits.digest,
    }
    if data.positive_label is not None:
        tags[VERSION_POSITIVE_TAG] = data.positive_label
    tags.update(extra_tags or {})
    with tempfile.TemporaryDirectory() as tmp:
        if model_uri is not None and not (model_dir / "config.json").is_file():  # trained on another machine
            model_dir = fetch_model_dir(model_uri, Path(tmp))
        test = score_test_split(model_dir, data)  # once, now: the search never saw it
        if test is not None:
            tags.update(test.tags(spec.study.metric))
        frames = (data.splits.frame("validation"), test.frame if test else None)
        version = register_model_uri(name, log_model_dir(model_dir, *frames, run_id=run_id), tags)
    if model_uri is not None:  # the registered copy carries the test split; the trial's own is not needed
        remove_logged_model(client, model_uri)
    if alias:
        client.set_registered_model_alias(name, CHALLENGER, version)
    if test is not None and run_id:
        log_test_metrics(client, run_id, test)
    origin = (
        f"From study {spec.study.name!r}, trial {best.number}: {spec.study.metric} = {best.values[0]:.4f} "
        f"on validation ({spec.study.direction}; the best trial when registered), MLflow run {run_id}."
        + (f" {test.describe(spec.study.metric)}" if test else "")
    )
    client.update_model_version(name, version, description=origin)
    return f"{name} version {version}"


def _say_where_the_model_is(best: FrozenTrial, model_dir: Path) -> None:
    """Why a best trial without a model here is not registered: it ran elsewhere, or its folder is gone."""
    host = best.user_attrs.get(WORKER_ATTR, "").rpartition(":")[0]
    if host and host != socket.gethostname():  # a local study on several machines: each keeps its own models
        logger.warning("registry: the best trial (%d) ran on %s; `study run` there registers it", best.number, host)
    else:
        logger.warning("registry: the best trial's model is missing at %s; nothing registered", model_dir)


def register_model_dir(name: str, model_dir: Path, eval_frame, tags: dict, run_id: str | None) -> str:
    """Log a saved model (`eval_frame`: its evaluation data) into run `run_id`, register it; returns the version."""
    return register_model_uri(name, log_model_dir(model_dir, eval_frame, run_id=run_id), tags)


def log_model_dir(model_dir: Path, eval_frame, test_frame=None, *, run_id: str | None) -> str:
    """Log a saved model as an MLflow model of run `run_id`, with its validation data (`eval_frame`) and
    its test split (`test_frame`, if any); returns its URI."""
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        eval_data = Path(tmp) / "validation.parquet"
        eval_frame.to_parquet(eval_data)
        test_data = None
        if test_frame is not None:
            test_data = Path(tmp) / "test.parquet"
            test_frame.to_parquet(test_data)
        with mlflow.start_run(run_id=run_id):
            return str(log_pyfunc_model(model_dir, eval_data, test_data).model_uri)


def fetch_model_dir(model_uri: str, into: Path) -> Path:
    """The saved Hugging Face folder inside a logged workbench model, downloaded under `into`."""
    import mlflow

    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(into)))
    return next(path.parent for path in sorted((local / "artifacts").rglob("config.json")))


def register_model_uri(name: str, model_uri: str, tags: dict) -> str:
    """Register a logged model (`models:/<model_id>` or `runs:/...`) under `name`; returns the version."""
    import mlflow
    from mlflow.utils.logging_utils import disable_logging, enable_logging

    disable_logging()  # MLflow prints "Successfully registered model" and "Created version": our line says it once
    try:
        return str(mlflow.register_model(model_uri, name, tags={k: str(v) for k, v in tags.items()}).version)
    finally:
        enable_logging()


def remove_logged_model(client, model_uri: str) -> None:
    """Delete a logged model and its files (a trial's model that a better trial superseded)."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    model_id = model_uri.removeprefix("models:/")
    try:
        location = client.get_logged_model(model_id).artifact_location
        get_artifact_repository(location).delete_artifacts()
        client.delete_logged_model(model_id)
    except Exception as e:  # a model already gone, or a store that refuses: the study goes on
        logger.warning("could not remove the superseded model %s: %s", model_id, first_line(e))


def log_pyfunc_model(model_dir: Path, eval_data: Path, test_data: Path | None = None):
    """Log `model_dir` (HF model + tokenizer) as an MLflow model from code, with its data; returns ModelInfo."""
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    example = pd.DataFrame({"text": EXAMPLE_TEXTS})
    output = WorkbenchClassifier().load(model_dir).predict(None, example)
    package = Path(workbench.__file__).parent
    ref = read_model_class(model_dir)
    user = code_paths(import_object(ref, model_dir, "model.class")) if ref else []  # a user's model class travels too
    return mlflow.pyfunc.log_model(
        name="model",
        python_model=str(package / "model" / "mlflow_model.py"),
        artifacts={"model": str(model_dir), "eval_data": str(eval_data)}
        | ({"test_data": str(test_data)} if test_data else {}),
        code_paths=[str(package), *user],  # the model's code travels with it: no trust_remote_code
        signature=infer_signature(example, output),
        input_example=example,
        pip_requirements=requirements(),
    )


def requirements() -> list[str]:
    """Pins of the packages the model needs to load and predict."""
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for package in ("torch", "transformers", "tokenizers", "safetensors", "mlflow", "pandas", "numpy"):
        try:
            pins.append(f"{package}=={version(package).split('+')[0]}")
        except PackageNotFoundError:
            pins.append(package)
    return pins


def get_version(client, name: str, ref: str):
    """A model version by alias or number, with a clear error when either is unknown."""
    try:
        client.get_registered_model(name)
    except Exception:
        raise RegistryError(
            f"{name}: no registered model of that name (run a study with registry.model_name: {name})"
        ) from None
    try:
        return client.get_model_version(name, ref) if ref.isdigit() else client.get_model_version_by_alias(name, ref)
    except Exception as e:
        raise RegistryError(f"{name}: no version or alias {ref!r}: {first_line(e)}") from None


def alias_or_none(client, name: str, alias: str):
    try:
        return client.get_model_version_by_alias(name, alias)
    except Exception:
        return None


def record_event(client, name: str, event: dict, versions: dict[str, str]) -> int:
    """Append `event` to the registered model's history; returns its number.

    The history is one registered-model tag per event (`workbench.history.0001`, ...), so none
    overwrites another; `versions` maps each version the event touched to the line appended to
    its description (where it came from, then its promotion history).
    """
    number = len(read_history(client, name)) + 1
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    record = {"n": number, "time": stamp, "user": _user(), **event}
    client.set_registered_model_tag(name, f"{HISTORY_TAG_PREFIX}{number:04d}", json.dumps(record, default=str))
    for version, line in versions.items():
        old = client.get_model_version(name, version).description or ""
        head = "" if "Promotion history:" in old else "\n\nPromotion history:"
        client.update_model_version(name, version, description=f"{old}{head}\n- {stamp} {line}".lstrip())
    return number


def read_history(client, name: str) -> list[dict]:
    """The registered model's events, oldest first."""
    tags = client.get_registered_model(name).tags
    return [json.loads(tags[k]) for k in sorted(k for k in tags if k.startswith(HISTORY_TAG_PREFIX))]


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in a container without a passwd entry
        return "unknown"
