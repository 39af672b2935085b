"""`reproduce`: re-run a trial from what its run recorded (trial.lineage) and compare the score.

`reproduce(run_id)` rebuilds data and model from that record alone, retrains and compares
the study metric with the recorded one.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from workbench.config.study_file import StudySpec, apply_overrides, validate_study
from workbench.core import distributed
from workbench.core.errors import DataError, RegistryError, ReproductionMismatch, first_line
from workbench.core.keys import (
    OBJECTIVE_METRIC,
    REPRODUCED_DIFFERENCE_TAG,
    REPRODUCED_MATCHES_TAG,
    REPRODUCED_TIME_TAG,
    REPRODUCED_VALUE_TAG,
    ROLE_TAG,
    ROLE_TRIAL,
    RUN_STATE_TAG,
    RUN_TRIAL_TAG,
)
from workbench.data.splits import prepare_data
from workbench.stores.tracking import NullTrialRun, TrialRun, mlflow_client
from workbench.trial.lineage import SPEC_ARTIFACT, TOKENIZER_ARTIFACT
from workbench.trial.training import train_trial

TOLERANCE = 1e-6  # CPU, fixed seeds: a reproduced trial matches to this


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
            raise RegistryError(
                f"run {run_id}: has no {SPEC_ARTIFACT} "
                f"(only trial runs record one; {run.info.run_name} is not, or predates lineage)"
            ) from None
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
        filter_string=f"tags.`{ROLE_TAG}` = '{ROLE_TRIAL}' and tags.`{RUN_TRIAL_TAG}` = '{number}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        raise RegistryError(f"{ref}: study {study!r} has no trial {number} (`workbench study show {study}` lists them)")
    return runs[0].info.run_id


def reproduce(ref: str, tracking_uri: str, progress=lambda line: None) -> Reproduction:
    """Re-run a trial (`ref`: a run id or STUDY:TRIAL) from its run's record.

    Raises ReproductionMismatch when the score differs by more than TOLERANCE.

    `progress` gets one line per step; the outcome is also recorded on the run (`workbench.reproduced.*` tags).
    """
    import optuna

    client = mlflow_client(tracking_uri)
    run_id = find_trial_run(client, ref)
    spec, record = load_trial_spec(client, run_id)
    metric = spec.study.metric
    run = client.get_run(run_id).data
    recorded = run.metrics.get(OBJECTIVE_METRIC, run.metrics.get(f"best_{metric}"))
    if recorded is None or run.tags.get(RUN_STATE_TAG, "COMPLETE") != "COMPLETE":
        state = run.tags.get(RUN_STATE_TAG, "without a score")
        raise RegistryError(f"run {run_id}: the trial is {state}: only completed trials can be reproduced")
    progress(
        f"reproducing run {run_id} (study {spec.study.name}, trial {run.tags.get(RUN_TRIAL_TAG, '?')}): "
        f"{metric} recorded {recorded:.6f}"
    )
    distributed.set_threads()
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = client.download_artifacts(run_id, TOKENIZER_ARTIFACT, tmp)
        progress(
            f"  data: {record['data']['source']}"
            + ("" if spec.model.get("pretrained") else " with the trial's own tokenizer")
        )
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
    TrialRun(client, run_id).set_tags(
        {
            REPRODUCED_VALUE_TAG: result.value,
            REPRODUCED_DIFFERENCE_TAG: outcome.difference,
            REPRODUCED_MATCHES_TAG: outcome.matches,
            REPRODUCED_TIME_TAG: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
    )
    if not outcome.matches:
        raise ReproductionMismatch(outcome.summary())
    return outcome
