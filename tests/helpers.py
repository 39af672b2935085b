"""Plain helpers the tests import (fixtures come from the fixtures_*.py plugins, see conftest.py):
the tiny study and its merge, a tiny pretrained BERT, and an MLflow client with the reads of a study's runs."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from workbench.stores.tracking import mlflow_client, resolve_tracking_uri

# A study that runs in seconds per trial; tests merge their changes into it.
TINY = {
    "study": {
        "name": "tiny",
        "metric": "eval_accuracy",
        "direction": "maximize",
        "n_trials": 3,
        "sampler": {"type": "random", "seed": 0},
        "pruner": {"type": "none"},
    },
    "data": {"source": "synthetic", "synthetic": {"n_examples": 240, "seed": 1}, "max_length": 32},
    "tokenizer": {"vocab_size": 300},
    "model": {"hidden_size": 16, "num_layers": 1, "num_heads": 2, "dropout": 0.0},
    "training": {"num_train_epochs": 2, "per_device_train_batch_size": 32, "learning_rate": 3.0e-3, "seed": 0},
    "search_space": {"training.learning_rate": {"low": 1.0e-3, "high": 5.0e-3, "log": True}},
    "registry": {"model_name": "tiny-classifier"},
}


def merge(base: dict, changes: dict) -> dict:
    """Sections merge key by key; `search_space` is replaced whole."""
    out = dict(base)
    for key, value in changes.items():
        nested = isinstance(value, dict) and isinstance(out.get(key), dict) and key != "search_space"
        out[key] = merge(out[key], value) if nested else value
    return out


def tracking_client(tracking_uri: str | None = None):
    """An MlflowClient whose registry is the same store: `tracking_uri`, else the store `study run` uses here.

    Resolved as the CLI resolves it, so sqlite:///mlruns/mlflow.db means this directory's store
    (MLflow caches one store per URI string: a relative one would stay on the first directory).
    """
    return mlflow_client(resolve_tracking_uri(tracking_uri))


def trial_runs(client, study: str = "tiny") -> list:
    """The study's trial runs (tag workbench.role = trial) in `client`'s store."""
    return _runs(client, study, "trial")


def study_runs(client, study: str = "tiny") -> list:
    """The study's parent runs (tag workbench.role = study) in `client`'s store: one, found again on resume."""
    return _runs(client, study, "study")


def _runs(client, study: str, role: str) -> list:
    experiment = client.get_experiment_by_name(study)
    return client.search_runs([experiment.experiment_id], f"tags.`workbench.role` = '{role}'")


def evaluations_of_running_trial(db: Path, number: int) -> int:
    """How many evaluations trial `number` reported while RUNNING (0 when it is not running or the store is busy)."""
    import sqlite3

    try:
        with sqlite3.connect(db, timeout=1) as con:
            row = con.execute(
                "select count(*) from trials t join trial_intermediate_values v using (trial_id) "
                "where t.number = ? and t.state = 'RUNNING'",
                (number,),
            ).fetchone()
        con.close()
        return row[0]
    except sqlite3.OperationalError:  # not created yet, or locked by the writer
        return 0


def save_tiny_bert(path: Path) -> Path:
    """A 1-layer, 16-wide BERT with a WordPiece tokenizer trained on a few texts, saved like a hub checkpoint."""
    from transformers import BertConfig, BertModel

    from workbench.config.spec import TokenizerSpec
    from workbench.data.splits import build_tokenizer
    from workbench.data.synthetic import generate_examples

    texts = generate_examples(400, seed=3)["text"]
    tokenizer = build_tokenizer(TokenizerSpec(vocab_size=300), texts, 64)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
        pad_token_id=tokenizer.pad_token_id,
    )
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def pretrained_study(write_study, model: dict, **changes) -> Path:
    """A tiny study whose `model:` section is exactly `model` and which has no `tokenizer:` section."""
    import yaml

    path = write_study(**changes)
    raw = yaml.safe_load(path.read_text())
    raw["model"] = model
    raw.pop("tokenizer")
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@contextmanager
def study_run_in(folder: Path, name: str, raw: dict):
    """Write `raw` as `folder/NAME.yaml`, run it there with `workbench study run` in this process, and
    stay in the folder, on its own stores (no tracking store from the outside), until the block ends."""
    import pytest
    import yaml

    from workbench.cli.commands import main

    (folder / f"{name}.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.delenv("MLFLOW_REGISTRY_URI", raising=False)
        assert main(["study", "run", f"{name}.yaml"]) == 0
        yield folder
