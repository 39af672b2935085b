"""The registered model as MLflow sees it, and prediction from `models:/NAME@ALIAS`.

`WorkbenchClassifier` is an `mlflow.pyfunc.PythonModel` logged as "models from code"
(`workbench/model/mlflow_model.py`): nothing is pickled; its artifacts are the saved Hugging Face
directory (safetensors weights, config, tokenizer), the validation data it was chosen on, and
the study's test split when it had one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.pyfunc import PyFuncModel, PythonModel

from workbench.core.errors import DataError, RegistryError, first_line
from workbench.core.tables import read_table
from workbench.model.modeling import register_auto_classes
from workbench.model.user_code import import_object, read_model_class

TEXT_COLUMN = "text"


class WorkbenchClassifier(PythonModel):
    """Raw strings in; a frame with `label`, `score` and one `proba_<label>` column per class out."""

    batch_size = 64

    def load_context(self, context) -> None:
        self.load(context.artifacts["model"])
        self.eval_data_path = context.artifacts.get("eval_data")
        self.test_data_path = context.artifacts.get("test_data")  # absent: registered without a test split

    def load(self, model_dir: str | Path) -> WorkbenchClassifier:
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
        self.model = load_classifier(model_dir)
        self.labels = [self.model.config.id2label[i] for i in range(self.model.config.num_labels)]
        return self

    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        probabilities = self.predict_proba(_texts(model_input))
        frame = pd.DataFrame(
            {
                "label": [self.labels[i] for i in probabilities.argmax(-1)],
                "score": probabilities.max(-1) if len(probabilities) else np.zeros(0),
            }
        )
        for i, name in enumerate(self.labels):
            frame[f"proba_{name}"] = probabilities[:, i]
        return frame

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        import torch

        out = [np.zeros((0, len(self.labels)))]
        positions = getattr(self.model.config, "max_position_embeddings", None)  # a user's model may have no such limit
        limit = min(self.tokenizer.model_max_length, positions or self.tokenizer.model_max_length)
        with torch.inference_mode():
            for i in range(0, len(texts), self.batch_size):
                batch = self.tokenizer(
                    texts[i : i + self.batch_size], truncation=True, max_length=limit, padding=True, return_tensors="pt"
                )
                logits = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
                out.append(torch.softmax(logits.float(), -1).numpy())
        return np.concatenate(out)


def load_classifier(model_dir: str | Path):
    """A saved sequence classifier in eval mode: a user's class (recorded beside it), ours, or a transformers model."""
    from transformers import AutoModelForSequenceClassification

    ref = read_model_class(Path(model_dir))
    register_auto_classes()
    cls = import_object(ref, model_dir, "model class") if ref else AutoModelForSequenceClassification
    return cls.from_pretrained(str(model_dir), local_files_only=True).eval()


def _texts(model_input: Any) -> list[str]:
    """Accept a frame with a `text` column (or one column), a series, a list or one string."""
    if isinstance(model_input, pd.DataFrame):
        column = TEXT_COLUMN if TEXT_COLUMN in model_input.columns else model_input.columns[0]
        values = model_input[column].tolist()
    elif isinstance(model_input, pd.Series):
        values = model_input.tolist()
    elif isinstance(model_input, str):
        values = [model_input]
    else:
        values = list(model_input)
    return ["" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in values]


def load_model(uri: str) -> PyFuncModel:
    """`models:/NAME@ALIAS`, `models:/NAME/VERSION`, `runs:/...` or a local path -> pyfunc model."""
    try:
        return mlflow.pyfunc.load_model(uri)
    except Exception as e:  # MlflowException: unknown name/alias/version, missing artifacts
        raise RegistryError(f"{uri}: cannot load the model: {first_line(e)}") from None


def model_uri(ref: str, alias: str = "champion") -> str:
    """What the user typed -> a model URI: `NAME` means `models:/NAME@champion`; `NAME@ALIAS` and
    `NAME/VERSION` get `models:/`; URIs (`models:/`, `runs:/`, ...) and existing folders stay as they are."""
    if ":/" in ref or Path(ref).exists():
        return ref
    return f"models:/{ref}" if ("@" in ref or "/" in ref) else f"models:/{ref}@{alias}"


def read_inputs(path: str | Path) -> pd.DataFrame:
    """The rows to predict, every column kept: one text per line (.txt), or a csv/tsv/jsonl/parquet with `text`."""
    frame = read_table(Path(path), "--input", lines_as=TEXT_COLUMN)
    if TEXT_COLUMN not in frame.columns:
        raise DataError(f"--input {path}: no {TEXT_COLUMN!r} column (columns: {', '.join(map(str, frame.columns))})")
    if frame.empty:
        raise DataError(f"--input {path}: the file holds no texts: give one text per line or row")
    return frame


def format_predictions(frame: pd.DataFrame, width: int) -> str:
    """One line per prediction for a terminal: label, score, and the text cut to fit `width` characters."""
    labels = frame["label"].astype(str)
    w = max(5, labels.str.len().max() if len(frame) else 0)
    lines = [f"{'label':<{w}}  score  text"]
    room = max(20, width - w - 9)
    for label, score, text in zip(labels, frame["score"], frame[TEXT_COLUMN].astype(str)):
        text = " ".join(text.split())
        lines.append(f"{label:<{w}}  {score:.3f}  {text if len(text) <= room else text[: room - 1] + '…'}")
    return "\n".join(lines)


def read_texts(path: str | Path) -> list[str]:
    """The texts of `read_inputs(path)`."""
    return _texts(read_inputs(path))
