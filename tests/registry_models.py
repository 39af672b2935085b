"""Registered versions for the promotion, evaluation and serving tests, trained once per session.

Easy keyword data (one sentiment word decides the label) so a trained tiny model is
near-perfect in seconds and an untrained-ish one is near chance:
  v1 weak     (lr 1e-6, 1 step)             metric eval_accuracy
  v2 strong   (lr 1e-2, 3 epochs)           metric eval_accuracy
  v3 strong2  (2 epochs, another seed)      metric eval_accuracy   -> a tie with v2
  v4 strong   (v2's model)         metric eval_f1         -> the bootstrap path
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from helpers import TINY, merge

NAME = "keyword-classifier"
POSITIVE = "good great superb lovely wonderful".split()
NEGATIVE = "bad awful poor dreadful boring".split()
FILLER = "the a film movie plot was is really quite very story acting".split()


def keyword_frame(n: int, seed: int) -> pd.DataFrame:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        positive = rng.random() < 0.5
        words = rng.sample(FILLER, 4) + [rng.choice(POSITIVE if positive else NEGATIVE)]
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": "positive" if positive else "negative"})
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class Registry:
    root: Path
    tracking_uri: str
    name: str
    validation_csv: Path  # the same examples the versions carry
    run_ids: dict[str, str]  # "weak"/"strong"/"strong2" -> the MLflow run each was logged in


def build_registry(root: Path) -> Registry:
    """Train three tiny models on keyword data and register four versions (see the module doc)."""
    import optuna

    from workbench.config.study_file import apply_overrides, validate_study
    from workbench.core.keys import VERSION_DIRECTION_TAG, VERSION_METRIC_TAG, VERSION_POSITIVE_TAG
    from workbench.data.splits import prepare_data
    from workbench.stores.registry import register_model_dir
    from workbench.stores.tracking import NullTrialRun, configure_mlflow, start_run
    from workbench.trial.training import train_trial

    keyword_frame(300, seed=0).to_csv(root / "train.csv", index=False)
    keyword_frame(100, seed=1).to_csv(root / "validation.csv", index=False)
    raw = merge(
        TINY,
        {
            "study": {"name": "keywords"},
            "data": {
                "source": "files",
                "files": {"train": "train.csv", "validation": "validation.csv"},
                "max_length": 16,
            },
            "training": {
                "num_train_epochs": 3,
                "learning_rate": 1.0e-2,
                "per_device_train_batch_size": 16,
                "save_strategy": "no",
                "load_best_model_at_end": False,
            },  # no checkpoints: seconds per model
            "early_stopping": None,
        },
    )
    spec = validate_study({**raw, "search_space": {}, "source_dir": str(root)})
    data = prepare_data(spec)
    tracking_uri = f"sqlite:///{root}/mlruns/mlflow.db"
    (root / "mlruns").mkdir(exist_ok=True)
    configure_mlflow(tracking_uri)
    settings = {
        "weak": {"training.learning_rate": 1.0e-6, "training.max_steps": 1},
        "strong": {},
        "strong2": {"training.seed": 7, "training.num_train_epochs": 2},
    }
    run_ids, model_dirs = {}, {}
    for label, changes in settings.items():
        trial_spec = apply_overrides(spec, changes)
        result = train_trial(trial_spec, data, optuna.trial.FixedTrial({}), NullTrialRun(), root / label)
        model_dirs[label] = result.model_dir
        run_ids[label] = start_run(tracking_uri, "keywords", label, {}).run_id
    for label, metric in (
        ("weak", "eval_accuracy"),
        ("strong", "eval_accuracy"),
        ("strong2", "eval_accuracy"),
        ("strong", "eval_f1"),
    ):
        tags = {VERSION_METRIC_TAG: metric, VERSION_DIRECTION_TAG: "maximize", VERSION_POSITIVE_TAG: "positive"}
        register_model_dir(NAME, model_dirs[label], data.splits.frame("validation"), tags, run_ids[label])
    return Registry(root, tracking_uri, NAME, root / "validation.csv", run_ids)
