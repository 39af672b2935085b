"""Log the best trial's model to MLflow, register it, and move aliases (never stages).

A new version gets the alias `challenger`; `promote` moves `champion` to it when there is
no champion yet or the challenger scores better on the same validation data.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np

from workbench.errors import PromotionRefused, RegistryError, first_line

if TYPE_CHECKING:
    from workbench.study_file import StudySpec
    from workbench.training import TrialData

logger = logging.getLogger(__name__)

CHALLENGER, CHAMPION = "challenger", "champion"
STUDY_TAG, TRIAL_TAG, METRIC_TAG, VALUE_TAG, DIRECTION_TAG = (
    "workbench.study", "workbench.trial", "workbench.metric", "workbench.value", "workbench.direction",
)
EXAMPLE_TEXTS = ["a charming, moving film", "the plot is dull and the pacing is tedious"]


def register_best(spec: StudySpec, study, data: TrialData, tracking, trial_dir: Path) -> Optional[str]:
    """Log the best trial's saved model as a pyfunc model, register it, alias it `challenger`.

    Returns "NAME version N", or None when that trial is already registered or has no model.
    """
    import mlflow

    name = spec.registry.model_name
    best = study.best_trial
    run_id = best.user_attrs.get("mlflow_run_id")
    client = tracking.client
    if run_id and client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'"):
        return None  # resumed with no better trial: nothing new to register
    model_dir = trial_dir / "model"
    if not (model_dir / "config.json").is_file():
        logger.warning("registry: the best trial's model is missing at %s; nothing registered", model_dir)
        return None
    with tempfile.TemporaryDirectory() as tmp:
        eval_data = Path(tmp) / "validation.parquet"
        _validation_frame(data).to_parquet(eval_data)
        with mlflow.start_run(run_id=run_id):
            info = log_pyfunc_model(model_dir, eval_data)
    tags = {
        STUDY_TAG: spec.study.name,
        TRIAL_TAG: best.number,
        METRIC_TAG: spec.study.metric,
        VALUE_TAG: best.value,
        DIRECTION_TAG: spec.study.direction,
        "workbench.data_digest": data.splits.digest,
    }
    version = mlflow.register_model(info.model_uri, name, tags={k: str(v) for k, v in tags.items()})
    client.set_registered_model_alias(name, CHALLENGER, version.version)
    return f"{name} version {version.version}"


def log_pyfunc_model(model_dir: Path, eval_data: Path):
    """Log `model_dir` (HF model + tokenizer) as an MLflow model from code; returns ModelInfo."""
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    import workbench
    from workbench.inference import WorkbenchClassifier

    example = pd.DataFrame({"text": EXAMPLE_TEXTS})
    output = WorkbenchClassifier().load(model_dir).predict(None, example)
    package = Path(workbench.__file__).parent
    return mlflow.pyfunc.log_model(
        name="model",
        python_model=str(package / "mlflow_model.py"),
        artifacts={"model": str(model_dir), "eval_data": str(eval_data)},
        code_paths=[str(package)],  # the model's code travels with it: no trust_remote_code
        signature=infer_signature(example, output),
        input_example=example,
        pip_requirements=_requirements(),
    )


def _requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for package in ("torch", "transformers", "tokenizers", "safetensors", "mlflow", "pandas", "numpy"):
        try:
            pins.append(f"{package}=={version(package).split('+')[0]}")
        except PackageNotFoundError:
            pins.append(package)
    return pins


def _validation_frame(data: TrialData):
    """The study's validation split with label names: what promotion compares models on."""
    import pandas as pd

    validation = data.splits.validation
    return pd.DataFrame({"text": list(validation["text"]), "label": [data.label_names[i] for i in validation["label"]]})


@dataclass(frozen=True)
class Promotion:
    name: str
    candidate_version: str
    champion_version: Optional[str]
    metric: str
    candidate_score: float
    champion_score: Optional[float]
    promoted: bool

    def summary(self) -> str:
        if self.champion_version is None:
            return f"{self.name}: version {self.candidate_version} is now @{CHAMPION} (no champion before; {self.metric}={self.candidate_score:.4f})"
        scores = f"{self.metric}: candidate v{self.candidate_version} {self.candidate_score:.4f} vs champion v{self.champion_version} {self.champion_score:.4f}"
        if self.promoted:
            return f"{self.name}: version {self.candidate_version} is now @{CHAMPION} ({scores})"
        return f"{self.name}: not promoted, the candidate does not beat the champion ({scores})"


def promote(name: str, candidate: str = CHALLENGER) -> Promotion:
    """Move `champion` to the candidate version when it scores better on the candidate's validation data."""
    from mlflow import MlflowClient

    client = MlflowClient()
    cand = _version(client, name, candidate)
    champ = _alias_or_none(client, name, CHAMPION)
    metric = cand.tags.get(METRIC_TAG, "eval_accuracy")
    maximize = cand.tags.get(DIRECTION_TAG, "maximize") == "maximize"
    cand_model = _load(name, cand.version)
    texts, labels = _eval_data(cand_model)
    cand_score = score(cand_model, texts, labels, metric)
    if champ is None or champ.version == cand.version:
        promoted, champ_score = True, None
        champ = None if champ is None else champ
    else:
        champ_score = score(_load(name, champ.version), texts, labels, metric)
        promoted = cand_score > champ_score if maximize else cand_score < champ_score
    result = Promotion(name, cand.version, champ.version if champ else None, metric, cand_score, champ_score, promoted)
    if not promoted:
        raise PromotionRefused(result.summary())
    client.set_registered_model_alias(name, CHAMPION, cand.version)
    return result


def score(model, texts: list[str], labels: list[str], metric: str) -> float:
    """The study metric (eval_f1, eval_loss...) of a pyfunc model on labelled texts."""
    from workbench.metrics import classification_metrics

    inner = model.unwrap_python_model()
    ids = np.array([inner.labels.index(label) for label in labels])
    return classification_metrics(ids, inner.predict_proba(texts))[metric.removeprefix("eval_")]


def _eval_data(model) -> tuple[list[str], list[str]]:
    import pandas as pd

    path = getattr(model.unwrap_python_model(), "eval_data_path", None)
    if not path:
        raise RegistryError("the candidate carries no validation data: register it with `workbench study run`")
    frame = pd.read_parquet(path)
    return frame["text"].tolist(), [str(v) for v in frame["label"]]


def _load(name: str, version: str):
    from workbench.inference import load_model

    return load_model(f"models:/{name}/{version}")


def _version(client, name: str, ref: str):
    """A model version by alias or number, with a clear error when either is unknown."""
    try:
        client.get_registered_model(name)
    except Exception:
        raise RegistryError(f"{name}: no registered model of that name (run a study with registry.model_name: {name})") from None
    try:
        return client.get_model_version(name, ref) if ref.isdigit() else client.get_model_version_by_alias(name, ref)
    except Exception as e:
        raise RegistryError(f"{name}: no version or alias {ref!r}: {first_line(e)}") from None


def _alias_or_none(client, name: str, alias: str):
    try:
        return client.get_model_version_by_alias(name, alias)
    except Exception:
        return None
