"""Lineage: what a trial run records so it can be audited and re-run, and `reproduce`.

Every trial run gets its data as MLflow dataset inputs (source and digest), the fully
resolved trial spec (`trial_spec.json`: study file + overrides + sampled parameters, with
its seeds), the tokenizer the trial used (WordPiece training is not deterministic), the workbench
version and git commit, and the Python requirements. `reproduce(run_id)` rebuilds data and
model from that record alone, retrains and compares the study metric with the recorded one.
"""

from __future__ import annotations

import json
import logging
import subprocess
import tempfile
import time
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Optional

import workbench
from workbench import distributed
from workbench.data import TrialData, prepare_data
from workbench.errors import DataError, RegistryError, ReproductionMismatch, first_line
from workbench.pretrained import resolve_checkpoint
from workbench.study_file import StudySpec, apply_overrides, validate_study
from workbench.tracking import OBJECTIVE_METRIC, STATE_TAG, NullTrialRun, TrialRun, mlflow_client
from workbench.training import train_trial

logger = logging.getLogger(__name__)

SPEC_ARTIFACT = "trial_spec.json"
REQUIREMENTS_ARTIFACT = "requirements.txt"
TOKENIZER_ARTIFACT = "tokenizer"
VERSION_TAG, COMMIT_TAG = "workbench.version", "workbench.git_commit"
DIGEST_TAG, SOURCE_TAG = "workbench.data_digest", "workbench.data_source"
PRETRAINED_TAG, WEIGHTS_TAG = "workbench.pretrained", "workbench.pretrained_sha256"
TOLERANCE = 1e-6  # CPU, fixed seeds: a reproduced trial matches to this


@dataclass(frozen=True)
class StudyLineage:
    """What every trial run of a study records alike: built once per study process, logged per run."""

    tags: dict[str, str]
    requirements: str
    inputs: tuple  # mlflow.entities.DatasetInput: the train and validation splits


def study_lineage(spec: StudySpec, data: TrialData) -> StudyLineage:
    splits = data.splits
    tags = {VERSION_TAG: workbench.__version__, DIGEST_TAG: splits.digest, SOURCE_TAG: splits.source}
    commit = git_commit()
    if commit:
        tags[COMMIT_TAG] = commit
    if spec.model.get("pretrained"):  # the weights a trial starts from, as the data: source and digest
        checkpoint = resolve_checkpoint(spec.model["pretrained"], spec.source_dir)
        tags[PRETRAINED_TAG] = f"{checkpoint.name} ({checkpoint.location})"
        tags[WEIGHTS_TAG] = checkpoint.sha256 or "unknown (hub download)"
    inputs = (
        dataset_input(splits.frame("train"), "train", _source(spec), splits.digest, "training"),
        dataset_input(splits.frame("validation"), "validation", _source(spec), splits.digest, "validation"),
    )
    return StudyLineage(tags, "\n".join(installed_packages()) + "\n", inputs)


def log_trial_lineage(run: TrialRun, trial_spec: StudySpec, data: TrialData, study: StudyLineage) -> None:
    """Record on a trial run what `reproduce` needs, and what an auditor asks for."""
    splits = data.splits
    record = {"spec": trial_spec.to_dict(), "source_dir": trial_spec.source_dir, "data": {"source": splits.source, "digest": splits.digest}}
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
            if attempt == attempts - 1 or not ("UNIQUE constraint" in text or "IntegrityError" in text or "duplicate key" in text):
                raise
            time.sleep(0.2 * (attempt + 1))


def dataset_input(frame, name: str, source, digest: str, context: str):
    """An MLflow dataset input (schema, row count, source, digest) for a frame with text and label."""
    import mlflow.data
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.entities import DatasetInput, InputTag

    if isinstance(source, str):
        source = CodeDatasetSource({"workbench.source": source})
    dataset = mlflow.data.from_pandas(frame, source=source, targets="label", name=name, digest=digest[:36])
    return DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", context)])


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

        return HuggingFaceDatasetSource(data.hub.path, config_name=data.hub.name, revision=data.hub.revision)
    if data.source == "python":
        return CodeDatasetSource({"workbench.source": "data given to workbench.run_study"})
    return CodeDatasetSource({"workbench.synthetic": data.synthetic.model_dump_json()})


def installed_packages() -> tuple[str, ...]:
    """`name==version` of every installed distribution, sorted: the trial's Python environment."""
    from importlib.metadata import distributions

    pins = {(d.metadata["Name"] or "").lower(): d.version for d in distributions() if d.metadata["Name"]}
    return tuple(f"{name}=={version}" for name, version in sorted(pins.items()))


@lru_cache(maxsize=1)
def git_commit() -> Optional[str]:
    """The commit of the workbench code, with `-dirty` for uncommitted changes; None outside git."""
    where = Path(workbench.__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "."], cwd=where, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


@dataclass(frozen=True)
class Reproduction:
    run_id: str
    metric: str
    recorded: float
    reproduced: float

    @property
    def difference(self) -> float:
        return self.reproduced - self.recorded

    @property
    def matches(self) -> bool:
        return abs(self.difference) <= TOLERANCE

    def summary(self) -> str:
        verdict = f"matches within {TOLERANCE:g}" if self.matches else f"DOES NOT match (tolerance {TOLERANCE:g})"
        return (
            f"run {self.run_id}: {self.metric} recorded {self.recorded:.8f}, reproduced {self.reproduced:.8f}, "
            f"difference {self.difference:+.2e}: {verdict}"
        )


def load_trial_spec(client, run_id: str) -> tuple[StudySpec, dict]:
    """The resolved spec a trial run recorded, ready to train from; and the whole record."""
    try:
        run = client.get_run(run_id)
    except Exception as e:
        raise RegistryError(f"run {run_id}: not found in the tracking store: {first_line(e)}") from None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(run_id, SPEC_ARTIFACT, tmp)
        except Exception:
            raise RegistryError(f"run {run_id}: has no {SPEC_ARTIFACT} (only trial runs record one; {run.info.run_name} is not, or predates lineage)") from None
        record = json.loads(Path(path).read_text())
    return validate_study({**record["spec"], "source_dir": record["source_dir"]}, f"run {run_id}"), record


def find_trial_run(client, ref: str) -> str:
    """A run id from `ref`: a run id as it is, or `STUDY:TRIAL` (the study's latest run of that trial number)."""
    study, sep, number = ref.rpartition(":")
    if not sep or not number.isdigit() or not study:
        return ref
    experiment = client.get_experiment_by_name(study)
    if experiment is None:
        raise RegistryError(f"{ref}: no study {study!r} in the tracking store (`workbench study list` shows them)")
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`workbench.role` = 'trial' and tags.`optuna.trial.number` = '{number}'",
        order_by=["attributes.start_time DESC"], max_results=1,
    )
    if not runs:
        raise RegistryError(f"{ref}: study {study!r} has no trial {number} (`workbench study show {study}` lists them)")
    return runs[0].info.run_id


def reproduce(ref: str, tracking_uri: str, progress=lambda line: None) -> Reproduction:
    """Re-run a trial (`ref`: a run id or STUDY:TRIAL) from its run's record; raises ReproductionMismatch beyond TOLERANCE.

    `progress` gets one line per step; the outcome is also recorded on the run (`workbench.reproduced.*` tags).
    """
    import optuna

    client = mlflow_client(tracking_uri)
    run_id = find_trial_run(client, ref)
    spec, record = load_trial_spec(client, run_id)
    metric = spec.study.metric
    run = client.get_run(run_id).data
    recorded = run.metrics.get(OBJECTIVE_METRIC, run.metrics.get(f"best_{metric}"))
    if recorded is None or run.tags.get(STATE_TAG, "COMPLETE") != "COMPLETE":
        state = run.tags.get(STATE_TAG, "without a score")
        raise RegistryError(f"run {run_id}: the trial is {state}: only completed trials can be reproduced")
    progress(f"reproducing run {run_id} (study {spec.study.name}, trial {run.tags.get('optuna.trial.number', '?')}): {metric} recorded {recorded:.6f}")
    distributed.set_threads()
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = client.download_artifacts(run_id, TOKENIZER_ARTIFACT, tmp)
        progress(f"  data: {record['data']['source']}" + ("" if spec.model.get("pretrained") else " with the trial's own tokenizer"))
        own = {} if spec.model.get("pretrained") else {"tokenizer": {"path": tokenizer}}  # the trial's own tokenizer
        data = prepare_data(apply_overrides(spec, own))
        if data.splits.digest != record["data"]["digest"]:
            raise DataError(
                f"run {run_id}: the data at {record['data']['source']} changed since the trial "
                f"(digest {data.splits.digest[:12]} now, {record['data']['digest'][:12]} recorded)"
            )
        progress(f"  training: {spec.training.get('num_train_epochs', '?')} epochs on {len(data.train)} examples ...")
        started = time.monotonic()
        # a FixedTrial never prunes: the trial is retrained as far as it went
        result = train_trial(spec, data, optuna.trial.FixedTrial({}), NullTrialRun(), Path(tmp) / "trial", is_main=True)
        progress(f"  trained in {time.monotonic() - started:.1f}s, {result.evaluations} evaluations")
    outcome = Reproduction(run_id, metric, recorded, result.value)
    TrialRun(client, run_id).set_tags({
        "workbench.reproduced.value": result.value, "workbench.reproduced.difference": outcome.difference,
        "workbench.reproduced.matches": outcome.matches, "workbench.reproduced.time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    })
    if not outcome.matches:
        raise ReproductionMismatch(outcome.summary())
    return outcome
