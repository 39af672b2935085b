"""A user's own PretrainedConfig + PreTrainedModel, named in a study file, through the whole flow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from stores import refused

from workbench.cli.commands import main

# As the tutorial writes one: a config with its hyperparameters, a model with _init_weights and post_init.
USER_MODULE = """
import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput


class BagConfig(PretrainedConfig):
    model_type = "user-bag"

    def __init__(self, vocab_size=1000, hidden_size=16, dropout=0.0, **kwargs):
        if hidden_size > 32:
            raise ValueError(f"hidden_size {hidden_size} is too wide for a bag of words (at most 32)")
        self.vocab_size, self.hidden_size, self.dropout = vocab_size, hidden_size, dropout
        super().__init__(**kwargs)


class BagForSequenceClassification(PreTrainedModel):
    config_class = BagConfig
    accepts_loss_kwargs = False

    def __init__(self, config):
        super().__init__(config)
        self.embed = nn.EmbeddingBag(config.vocab_size, config.hidden_size, mode="sum")
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.EmbeddingBag)):
            module.weight.data.normal_(0.0, 0.1)
        if isinstance(module, nn.Linear) and module.bias is not None:
            module.bias.data.zero_()

    def forward(self, input_ids=None, attention_mask=None, labels=None, **kwargs):
        mask = attention_mask.float() if attention_mask is not None else torch.ones_like(input_ids, dtype=torch.float)
        weights = mask / mask.sum(1, keepdim=True).clamp(min=1.0)  # a mean over the real tokens
        logits = self.head(self.drop(self.embed(input_ids, per_sample_weights=weights)))
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


class NotAModel:
    pass
"""


def user_study(write_study, workdir: Path, model: dict, **changes) -> Path:
    (workdir / "bagmodels.py").write_text(USER_MODULE)
    path = write_study(**changes)
    raw = yaml.safe_load(path.read_text())
    raw["model"] = model
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.mark.slow
def test_a_user_model_trains_registers_and_predicts_where_its_module_is_absent(
    write_study, workdir, tmp_path_factory, capsys
):
    from workbench.stores.tracking import resolve_tracking_uri

    path = user_study(
        write_study,
        workdir,
        {"class": "bagmodels:BagForSequenceClassification", "dropout": 0.0},
        study={"name": "bag", "n_trials": 2, "sampler": {"type": "grid"}},
        training={"num_train_epochs": 3, "learning_rate": 0.05},
        search_space={"model.hidden_size": {"choices": [16, 64]}},  # 64 is refused by BagConfig: that trial fails alone
        registry={"model_name": "bag-classifier"},
    )
    assert main(["study", "run", str(path)]) == 0
    out = capsys.readouterr().out
    trials = optuna.load_study(study_name="bag", storage=f"sqlite:///{workdir}/mlruns/optuna.db").trials
    states = {t.params["model.hidden_size"]: t.state for t in trials}
    assert states == {16: optuna.trial.TrialState.COMPLETE, 64: optuna.trial.TrialState.FAIL}, out
    failed = next(t for t in trials if t.state == optuna.trial.TrialState.FAIL)
    assert "hidden_size 64 is too wide" in failed.user_attrs["fail_reason"]
    assert "registered bag-classifier version 1" in out

    elsewhere = tmp_path_factory.mktemp("no-user-code")  # neither bagmodels.py nor the study's folder
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(MLFLOW_TRACKING_URI=resolve_tracking_uri(), PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "workbench",
            "predict",
            "models:/bag-classifier@challenger",
            "--text",
            "a charming film",
            "--output",
            "out.jsonl",
        ],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    row = json.loads((elsewhere / "out.jsonl").read_text().splitlines()[0])
    assert row["label"] in ("negative", "positive") and 0.5 <= row["score"] <= 1.0


def test_model_keys_are_checked_against_the_users_config(write_study, workdir, capsys):
    path = user_study(
        write_study, workdir, {"class": "bagmodels:BagForSequenceClassification", "hiden_size": 16}, search_space={}
    )
    assert "model.hiden_size: not a BagConfig field (did you mean hidden_size?)" in refused(
        capsys, ["study", "run", str(path)]
    )


def test_a_class_that_is_not_a_model_is_refused(write_study, workdir, capsys):
    path = user_study(write_study, workdir, {"class": "bagmodels:NotAModel"}, search_space={})
    assert "model.class: bagmodels:NotAModel is not a transformers PreTrainedModel subclass" in refused(
        capsys, ["study", "run", str(path)]
    )


def test_a_module_that_does_not_import_is_refused(write_study, workdir, capsys):
    (workdir / "broken.py").write_text("import no_such_dependency\n")
    path = user_study(write_study, workdir, {"class": "broken:Model"}, search_space={})
    err = refused(capsys, ["study", "run", str(path)])
    assert "model.class: cannot import 'broken': ModuleNotFoundError: No module named 'no_such_dependency'" in err
