"""Evaluate a registered model on labelled texts: metrics, pictures, one MLflow evaluation run.

`load_eval_data` reads the labelled texts both `evaluate` and promotion score on: a data
file, a study file's validation split, or the validation data a version carries.
`evaluate` logs metrics, a confusion matrix and a calibration picture to an MLflow run
linked to the model version (tags both ways, and the logged model as the run's input).
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from workbench.config.study_file import load_study_file
from workbench.core.errors import DataError, RegistryError
from workbench.core.keys import (
    DATA_DIGEST_TAG,
    EVALUATED_MODEL_NAME_TAG,
    EVALUATED_MODEL_URI_TAG,
    EVALUATED_MODEL_VERSION_TAG,
    ROLE_EVALUATION,
    ROLE_TAG,
    VERSION_EVALUATION_RUN_TAG,
    VERSION_POSITIVE_TAG,
)
from workbench.core.metrics import SUMMARY
from workbench.core.tables import read_table
from workbench.data.splits import load_splits
from workbench.model.inference import load_model
from workbench.model.scoring import Scores, score_classifier
from workbench.stores.registry import get_version
from workbench.stores.tracking import mlflow_client, start_run
from workbench.trial.lineage import dataset_input

logger = logging.getLogger(__name__)

EVALUATION_EXPERIMENT = "workbench-evaluations"  # for models that are not registered versions
STUDY_SUFFIXES = (".yaml", ".yml")
CARRIED_TEST = "the version's test data"
# one line of output says it: without a test split, a version is scored on the data that chose it
CARRIED_VALIDATION = "the version's validation data (it has no test split: the data it was chosen on)"


@dataclass(frozen=True)
class EvalData:
    """Labelled texts and where they came from; labels are names as the model knows them."""

    texts: list[str]
    labels: list[str]
    source: str
    digest: str = field(init=False)

    def __post_init__(self):
        payload = json.dumps([self.texts, self.labels]).encode()
        object.__setattr__(self, "digest", hashlib.sha256(payload).hexdigest())

    def label_ids(self, names: list[str]) -> np.ndarray:
        """Labels as the model's class ids; names or integer ids are accepted."""
        index = {name: i for i, name in enumerate(names)}
        unknown = sorted({label for label in self.labels if label not in index and not _is_id(label, len(names))})
        if unknown:
            raise DataError(
                f"{self.source}: labels the model does not know: {', '.join(unknown[:5])} "
                f"(the model's labels: {', '.join(names)})"
            )
        return np.array([index[label] if label in index else int(label) for label in self.labels])

    def frame(self):
        import pandas as pd

        return pd.DataFrame({"text": self.texts, "label": self.labels})


def _is_id(label: str, n: int) -> bool:
    return label.isdigit() and int(label) < n


def load_eval_data(source: str | None, model=None) -> EvalData:
    """`source`: a csv/tsv/jsonl/parquet file with `text` and `label` columns, or a study file
    (its test split, else its validation split); None means the data the model version carries:
    its test split, else (saying so in its source) the validation data it was chosen on."""
    if source is None:
        return _carried(model.unwrap_python_model() if model is not None else None)
    path = Path(source)
    if not path.is_file():
        raise DataError(f"--data: file not found: {path}")
    if path.suffix.lower() in STUDY_SUFFIXES:
        return _from_study(path)
    return _from_frame(read_table(path, f"--data {path}"), str(path))


def _carried(classifier) -> EvalData:
    """The test split a version carries, else its validation data, with a source that says which."""
    test, validation = (getattr(classifier, name, None) for name in ("test_data_path", "eval_data_path"))
    if test:
        return _from_frame(read_table(Path(test), CARRIED_TEST), CARRIED_TEST)
    if not validation:
        raise RegistryError("the model carries no validation data: give --data FILE_OR_STUDY")
    return _from_frame(read_table(Path(validation), CARRIED_VALIDATION), CARRIED_VALIDATION)


def _from_study(path: Path) -> EvalData:
    spec = load_study_file(path)
    splits = load_splits(spec.data, spec.source_dir)
    split = "test" if splits.test is not None else "validation"
    frame = splits.frame(split)
    return EvalData(list(frame["text"]), list(frame["label"]), f"{path} ({split} split)")


def _from_frame(frame, source: str) -> EvalData:
    missing = [c for c in ("text", "label") if c not in frame.columns]
    if missing:
        raise DataError(
            f"--data {source}: no {' or '.join(missing)} column (columns: {', '.join(map(str, frame.columns))})"
        )
    frame = frame.dropna(subset=["text", "label"])
    if frame.empty:
        raise DataError(f"--data {source}: no labelled rows")
    labels = [str(int(v)) if isinstance(v, float) and v.is_integer() else str(v) for v in frame["label"]]
    return EvalData([str(t) for t in frame["text"]], labels, source)


def score_model(
    model_uri: str, data: str | None = None, eval_data: EvalData | None = None, positive: str | None = None
) -> tuple[Scores, EvalData]:
    """Load `model_uri`, predict the labelled texts (`eval_data`, else read from `data`) and score them.

    `positive` is the label binary f1/precision/recall are of (a version's `workbench.positive_label`).
    """
    model = load_model(model_uri)
    classifier = model.unwrap_python_model()
    eval_data = eval_data or load_eval_data(data, model)
    labels = eval_data.label_ids(list(classifier.labels))
    return score_classifier(classifier, eval_data.texts, labels, positive), eval_data


@dataclass
class Evaluation:
    model_uri: str
    data: EvalData
    metrics: dict[str, float]
    report: str  # sklearn's classification_report, per class
    run_id: str
    version: str | None = None

    def table(self) -> str:
        lines = [f"{self.model_uri} on {len(self.data.texts)} examples from {self.data.source}"]
        # per-class scores are in the report below (and all of them in MLflow)
        lines += [f"  {name:<10} {self.metrics[name]:.4f}" for name in SUMMARY if name in self.metrics]
        lines += ["  " + line for line in self.report.rstrip().splitlines()]
        lines.append(
            f"logged to MLflow run {self.run_id}" + (f" (linked to version {self.version})" if self.version else "")
        )
        return "\n".join(lines)


def evaluate(model_uri: str, data: str | None, tracking_uri: str) -> Evaluation:
    """Score `model_uri` on `data` (None: the version's own test data, else its validation data); log and return it."""
    from sklearn.metrics import classification_report, confusion_matrix

    client = mlflow_client(tracking_uri)
    version = _model_version(client, model_uri)
    scores, eval_data = score_model(
        model_uri, data, positive=version.tags.get(VERSION_POSITIVE_TAG) if version else None
    )
    ids = list(range(len(scores.names)))
    report = dict(labels=ids, target_names=scores.names, zero_division=0, digits=4)
    table = classification_report(scores.labels, scores.predictions, **report)
    per_class = classification_report(scores.labels, scores.predictions, output_dict=True, **report)
    matrix = confusion_matrix(scores.labels, scores.predictions, labels=ids)
    run = _log_evaluation(client, tracking_uri, model_uri, version, eval_data, scores, per_class, matrix)
    return Evaluation(model_uri, eval_data, scores.metrics, table, run, version.version if version else None)


def _model_version(client, model_uri: str):
    """The registered version behind `models:/NAME@ALIAS` or `models:/NAME/N`, else None."""
    if not model_uri.startswith("models:/"):
        return None
    ref = model_uri.removeprefix("models:/")
    name, sep, alias = ref.partition("@")
    if not sep:
        name, _, alias = ref.partition("/")
    if not name or not alias:
        raise RegistryError(f"{model_uri}: expected models:/NAME@ALIAS or models:/NAME/VERSION")
    return get_version(client, name, alias)


def _log_evaluation(
    client, tracking_uri, model_uri, version, eval_data: EvalData, scores: Scores, report, matrix
) -> str:
    from mlflow.entities import LoggedModelInput

    experiment = client.get_run(version.run_id).info.experiment_id if version and version.run_id else None
    tags = {ROLE_TAG: ROLE_EVALUATION, EVALUATED_MODEL_URI_TAG: model_uri, DATA_DIGEST_TAG: eval_data.digest}
    if version:
        tags.update({EVALUATED_MODEL_NAME_TAG: version.name, EVALUATED_MODEL_VERSION_TAG: version.version})
    run = start_run(
        tracking_uri,
        experiment or EVALUATION_EXPERIMENT,
        f"evaluate-{version.name}-v{version.version}" if version else "evaluate",
        tags,
    )
    model_id = _logged_model_id(version)
    run.log_metrics(
        {f"eval_{k}": v for k, v in scores.metrics.items()},
        step=0,
        model_id=model_id,
        dataset=("evaluation", eval_data.digest),
    )
    client.log_inputs(
        run.run_id,
        datasets=[dataset_input(eval_data.frame(), "evaluation", eval_data.source, eval_data.digest, "evaluation")],
        models=[LoggedModelInput(model_id)] if model_id else None,
    )
    run.log_dict(report, "classification_report.json")
    with tempfile.TemporaryDirectory() as tmp:
        for name, draw in (("confusion_matrix.png", _draw_confusion), ("calibration.png", _draw_calibration)):
            path = Path(tmp) / name
            draw(path, matrix=matrix, labels=scores.labels, probabilities=scores.probabilities, names=scores.names)
            client.log_artifact(run.run_id, str(path))
    what = f"{version.name} version {version.version}" if version else model_uri
    run.finish(
        note=f"Evaluation of {what} on {eval_data.source} ({len(eval_data.texts)} examples); not a trial of the study"
    )
    if version:
        client.set_model_version_tag(version.name, version.version, VERSION_EVALUATION_RUN_TAG, run.run_id)
    return run.run_id


def _logged_model_id(version) -> str | None:
    """The MLflow 3 logged model behind a version (its source is `models:/m-...`), if any."""
    if version is None:
        return None
    source = version.source or ""
    return version.model_id or (source.removeprefix("models:/") if source.startswith("models:/m-") else None)


def _draw_confusion(path: Path, matrix, names, **_) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    display = ConfusionMatrixDisplay(matrix, display_labels=names)
    display.plot(colorbar=False)
    display.ax_.set_title("confusion matrix (rows: true label)")
    display.figure_.savefig(path, bbox_inches="tight", dpi=100)
    plt.close(display.figure_)


def _draw_calibration(path: Path, labels, probabilities, **_) -> None:
    """Reliability diagram of the top-label confidence: how often a prediction at p is right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.calibration import calibration_curve

    confidence = probabilities.max(-1)
    correct = (probabilities.argmax(-1) == labels).astype(int)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    if len(set(correct)) > 1:
        accuracy, mean_confidence = calibration_curve(correct, confidence, n_bins=10, strategy="uniform")
        ax.plot(mean_confidence, accuracy, marker="o", label="model")
    ax.set(
        xlabel="confidence of the predicted label",
        ylabel="fraction correct",
        xlim=(0, 1),
        ylim=(0, 1.02),
        title="calibration",
    )
    ax.legend(loc="lower right")
    fig.savefig(path, bbox_inches="tight", dpi=100)
    plt.close(fig)
