"""Lineage: what a trial run records so it can be audited and re-run (`lifecycle.reproduce`).

Every trial run gets its data as MLflow dataset inputs (source and digest), the fully
resolved trial spec (`trial_spec.json`: study file + overrides + sampled parameters, with
its seeds), the tokenizer the trial used (WordPiece training is not deterministic), the workbench
version and git commit, and the Python requirements.
"""

from __future__ import annotations

import logging
import subprocess
import tempfile
import time
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import workbench
from workbench.config.study_file import StudySpec
from workbench.core.keys import (
    DATA_DIGEST_TAG,
    DATA_SOURCE_TAG,
    DATASET_CONTEXT_TAG,
    DATASET_SOURCE_KEY,
    DATASET_SYNTHETIC_KEY,
    GIT_COMMIT_TAG,
    PRETRAINED_SHA256_TAG,
    PRETRAINED_TAG,
    WORKBENCH_VERSION_TAG,
)
from workbench.data.splits import TrialData
from workbench.model.pretrained import resolve_checkpoint
from workbench.stores.tracking import TrialRun

logger = logging.getLogger(__name__)

SPEC_ARTIFACT = "trial_spec.json"
REQUIREMENTS_ARTIFACT = "requirements.txt"
TOKENIZER_ARTIFACT = "tokenizer"


@dataclass(frozen=True)
class StudyLineage:
    """What every trial run of a study records alike: built once per study process, logged per run."""

    tags: dict[str, str]
    requirements: str
    inputs: tuple  # mlflow.entities.DatasetInput: the train and validation splits


def study_lineage(spec: StudySpec, data: TrialData) -> StudyLineage:
    splits = data.splits
    tags = {
        WORKBENCH_VERSION_TAG: workbench.__version__,
        DATA_DIGEST_TAG: splits.digest,
        DATA_SOURCE_TAG: splits.source,
    }
    commit = git_commit()
    if commit:
        tags[GIT_COMMIT_TAG] = commit
    if spec.model.get("pretrained"):  # the weights a trial starts from, as the data: source and digest
        checkpoint = resolve_checkpoint(spec.model["pretrained"], spec.source_dir)
        tags[PRETRAINED_TAG] = f"{checkpoint.name} ({checkpoint.location})"
        tags[PRETRAINED_SHA256_TAG] = checkpoint.sha256 or "unknown (hub download)"
    inputs = (
        dataset_input(splits.frame("train"), "train", _source(spec), splits.digest, "training"),
        dataset_input(splits.frame("validation"), "validation", _source(spec), splits.digest, "validation"),
    )
    return StudyLineage(tags, "\n".join(installed_packages()) + "\n", inputs)


def log_trial_lineage(run: TrialRun, trial_spec: StudySpec, data: TrialData, study: StudyLineage) -> None:
    """Record on a trial run what `reproduce` needs, and what an auditor asks for."""
    splits = data.splits
    record = {
        "spec": trial_spec.to_dict(),
        "source_dir": trial_spec.source_dir,
        "data": {"source": splits.source, "digest": splits.digest},
    }
    run.log_dict(record, SPEC_ARTIFACT)
    with tempfile.TemporaryDirectory() as tmp:
        # WordPiece training breaks frequency ties differently on every run: keep the one trained
        data.tokenizer.save_pretrained(tmp)
        run.client.log_artifacts(run.run_id, tmp, TOKENIZER_ARTIFACT)
    run.client.log_text(run.run_id, study.requirements, REQUIREMENTS_ARTIFACT)
    run.set_tags(study.tags)
    _log_inputs(run.client, run.run_id, list(study.inputs))


def _log_inputs(client, run_id: str, inputs: list, attempts: int = 4) -> None:
    """Workers logging the same dataset at once race in MLflow's get-or-create of the experiment's
    dataset row (a UNIQUE constraint error for the loser); the retry finds the winner's row."""
    for attempt in range(attempts):
        try:
            client.log_inputs(run_id, datasets=inputs)
            return
        except Exception as e:  # MlflowException / RestException wrapping the database's IntegrityError
            text = str(e)
            if attempt == attempts - 1 or not (
                "UNIQUE constraint" in text or "IntegrityError" in text or "duplicate key" in text
            ):
                raise
            time.sleep(0.2 * (attempt + 1))


def dataset_input(frame, name: str, source, digest: str, context: str):
    """An MLflow dataset input (schema, row count, source, digest) for a frame with text and label."""
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.pandas_dataset import from_pandas
    from mlflow.entities import DatasetInput, InputTag

    if isinstance(source, str):
        source = CodeDatasetSource({DATASET_SOURCE_KEY: source})
    dataset = from_pandas(frame, source=source, targets="label", name=name, digest=digest[:36])
    return DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag(DATASET_CONTEXT_TAG, context)])


def _source(spec: StudySpec):
    """The data's MLflow source: the files, the hub dataset, or the generator's settings."""
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.dataset_source_registry import resolve_dataset_source

    data = spec.data
    if data.source == "files":
        path = Path(data.files["train"])
        with warnings.catch_warnings():  # MLflow registers the local source twice and warns about it
            warnings.simplefilter("ignore", UserWarning)
            return resolve_dataset_source(str(path if path.is_absolute() else Path(spec.source_dir) / path))
    if data.source == "hub":
        from mlflow.data.huggingface_dataset_source import HuggingFaceDatasetSource

        hub = data.hub_dataset
        return HuggingFaceDatasetSource(hub.path, config_name=hub.name, revision=hub.revision)
    if data.source == "python":
        return CodeDatasetSource({DATASET_SOURCE_KEY: "data given to workbench.run_study"})
    return CodeDatasetSource({DATASET_SYNTHETIC_KEY: data.synthetic.model_dump_json()})


def installed_packages() -> tuple[str, ...]:
    """`name==version` of every installed distribution, sorted: the trial's Python environment."""
    from importlib.metadata import distributions

    pins = {(d.metadata["Name"] or "").lower(): d.version for d in distributions() if d.metadata["Name"]}
    return tuple(f"{name}=={version}" for name, version in sorted(pins.items()))


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit of the workbench code, with `-dirty` for uncommitted changes; None outside git."""
    where = Path(workbench.__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "."], cwd=where, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
