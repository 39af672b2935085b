"""Adapters (`model.peft`): LoRA on a tiny pretrained BERT the tests build, through registration and serving."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import pretrained_study, trial_runs
from stores import refused

from workbench.cli.commands import main

LORA = {"method": "lora", "r": 4, "lora_alpha": 8, "lora_dropout": 0.1, "target_modules": ["query", "value"]}
# `python -c` as the `workbench` command, in a process where `import peft` fails as if it were not installed
WITHOUT_PEFT = "import sys; sys.modules['peft'] = None; from workbench.cli import run; run()"


def lora_study(write_study, peft: dict | None = None, **changes) -> Path:
    return pretrained_study(
        write_study,
        {"pretrained": "tiny-bert", "peft": peft or LORA},
        **{
            "study": {"name": "lora", "n_trials": 2, "sampler": {"type": "grid"}},
            "search_space": {"model.peft.r": {"choices": [2, 4]}},
            "registry": {"model_name": "lora-classifier"},
            **changes,
        },
    )


def without_peft(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """The workbench command run in a fresh process that cannot import peft."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), **env}
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_PEFT, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
def test_a_lora_study_registers_merged_weights_that_serve_without_peft(tiny_bert, write_study, workdir, capsys):
    from helpers import tracking_client

    from workbench.stores.tracking import resolve_tracking_uri

    # a searched r, the custom loss and early stopping, as a full fine-tune has them
    path = lora_study(write_study, loss={"label_smoothing": 0.1}, early_stopping={"patience": 1})
    assert main(["study", "run", str(path)]) == 0
    out = capsys.readouterr().out
    assert "registered lora-classifier version 1" in out, out
    client = tracking_client()
    runs = {r.data.params["model.peft.r"]: r.data.metrics for r in trial_runs(client, "lora")}
    assert set(runs) == {"2", "4"}
    # r=4: 2 more rows of A (2 x 16) and columns of B (16 x 2) on query and value, in BERT's one layer
    assert runs["4"]["trainable_params"] - runs["2"]["trainable_params"] == 2 * (2 * 16 + 16 * 2)
    assert runs["2"]["params"] > runs["2"]["trainable_params"] > 0  # the backbone is frozen

    version = client.get_model_version_by_alias("lora-classifier", "challenger")
    files = {Path(a.path).name for a in client.list_artifacts(version.run_id, "model/artifacts/model")}
    assert "model.safetensors" in files and "adapter_config.json" not in files  # the adapters are merged

    # a fresh process in which peft cannot be imported loads the registered model and predicts raw text
    result = without_peft(
        ["predict", "models:/lora-classifier@challenger", "--text", "a charming film", "--output", "p.jsonl"],
        workdir,
        MLFLOW_TRACKING_URI=resolve_tracking_uri(),
    )
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in (workdir / "p.jsonl").read_text().splitlines()]
    assert rows[0]["text"] == "a charming film" and rows[0]["label"] in ("negative", "positive")

    assert main(["reproduce", version.run_id]) == 0  # the same adapters from the same seeds
    assert "matches within" in capsys.readouterr().out


def test_target_modules_that_match_nothing_are_refused_naming_the_modules_that_exist(
    tiny_bert, write_study, workdir, capsys
):
    path = lora_study(write_study, {**LORA, "target_modules": ["q_proj", "v_proj"]})
    err = refused(capsys, ["study", "run", str(path)])
    assert (
        "model.peft.target_modules: ['q_proj', 'v_proj'] matches no module of BertForSequenceClassification "
        "(its modules: LayerNorm, classifier, dense, key, position_embeddings, query, token_type_embeddings, value, "
        "word_embeddings)" in err
    )
    assert not (workdir / "mlruns").exists()  # refused before anything ran


def test_adapter_keys_are_checked_against_peft_config_class(tiny_bert, write_study, capsys):
    path = lora_study(
        write_study,
        {**LORA, "lora_alpah": 16},
        search_space={"model.peft.rr": {"choices": [4, 8]}, "model.peft.lora_dropout": {"low": 0.0, "high": "x"}},
    )
    err = refused(capsys, ["study", "run", str(path)])
    assert "model.peft.lora_alpah: not a LoraConfig field (did you mean lora_alpha?)" in err
    assert "search_space.model.peft.rr: not a LoraConfig field (did you mean r?)" in err
    path = lora_study(write_study, {"method": "lorra"})
    assert "model.peft.method: 'lorra' is not a peft method (did you mean lora?)" in refused(
        capsys, ["study", "run", str(path)]
    )


@pytest.mark.slow
def test_a_study_asking_for_adapters_without_peft_installed_names_the_extra(tiny_bert, write_study, workdir):
    path = lora_study(write_study)
    result = without_peft(["study", "run", str(path)], workdir)
    err = result.stderr.strip()
    assert result.returncode == 2, err
    assert "\n" not in err and "Traceback" not in err
    assert err == f'error: {path}: model.peft: needs the peft library, an optional extra: pip install -e ".[peft]"'


def test_the_head_trains_in_full_beside_the_adapters_of_our_own_model(write_study):
    from workbench.config.builders import build_model
    from workbench.config.study_file import load_study_file
    from workbench.model.adapters import parameter_counts

    spec = load_study_file(write_study(model={"peft": {"r": 2, "target_modules": ["qkv"]}}))
    model = build_model(spec, None, ["negative", "positive"])
    trainable = {n.split(".")[-3] if "lora_" in n else n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {
        "lora_A",
        "lora_B",
        "base_model.model.classifier.modules_to_save.default.weight",
        "base_model.model.classifier.modules_to_save.default.bias",
    }
    counts = parameter_counts(model)
    assert 0 < counts["trainable_params"] < counts["params"]


# A user's model whose head has a name of its own: peft's SEQ_CLS names (classifier, score) miss it.
USER_MODULE = """
import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput


class MeanConfig(PretrainedConfig):
    model_type = "user-mean"

    def __init__(self, vocab_size=400, hidden_size=8, **kwargs):
        self.vocab_size, self.hidden_size = vocab_size, hidden_size
        super().__init__(**kwargs)


class MeanForSequenceClassification(PreTrainedModel):
    config_class = MeanConfig

    def __init__(self, config):
        super().__init__(config)
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size)
        self.head = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, labels=None, **kwargs):
        logits = self.head(self.embed(input_ids).mean(1))
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)
"""


def with_model(path: Path, model: dict) -> Path:
    """The study file at `path` with `model:` replaced whole."""
    import yaml

    raw = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**raw, "model": model}, sort_keys=False))
    return path


def test_a_user_models_head_is_named_in_modules_to_save(write_study, workdir, capsys):
    from workbench.config.builders import build_model
    from workbench.config.study_file import load_study_file

    (workdir / "meanmodel.py").write_text(USER_MODULE)
    model = {"class": "meanmodel:MeanForSequenceClassification", "peft": {"target_modules": ["embed"]}}
    path = with_model(write_study(search_space={"model.peft.r": {"choices": [2, 4]}}), model)
    err = refused(capsys, ["study", "run", str(path)])
    assert (
        "model.peft.modules_to_save: no classification head found in MeanForSequenceClassification "
        "(its top-level modules: embed, head): name it there" in err
    )
    path = with_model(path, {**model, "peft": {"target_modules": ["embed"], "modules_to_save": ["head"]}})
    peft_model = build_model(load_study_file(path), None, ["negative", "positive"])
    trainable = {n.rpartition(".")[2] for n, p in peft_model.named_parameters() if p.requires_grad}
    assert trainable == {"default", "weight", "bias"}  # lora_embedding_A/B.default, the head's weight and bias
