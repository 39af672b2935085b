"""The costs of a trained model: parameters, saved size, latency of one prediction."""

from __future__ import annotations

import torch

from workbench.config.spec import COST_METRICS
from workbench.model.adapters import parameter_counts
from workbench.trial.costs import PARAMS, SIZE_MB, TRAINABLE_PARAMS, latency_ms, weights_size_mb


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(10, 4)
        self.head = torch.nn.Linear(4, 2)
        self.embed.weight.requires_grad_(False)  # frozen, as under a LoRA adapter

    def forward(self, input_ids, attention_mask=None):
        return self.head(self.embed(input_ids).mean(1))


def tokenize(text, truncation, max_length, return_tensors):
    ids = torch.tensor([[len(word) % 10 for word in text.split()][:max_length]])

    class Batch(dict):
        def to(self, device):
            return Batch({k: v.to(device) for k, v in self.items()})

    return Batch(input_ids=ids)


def test_costs_count_all_and_trainable_parameters_and_the_saved_weights(tmp_path):
    assert parameter_counts(Tiny()) == {PARAMS: 50.0, TRAINABLE_PARAMS: 10.0}
    (tmp_path / "model.safetensors").write_bytes(b"0" * 1_500_000)
    (tmp_path / "config.json").write_text("{}")  # not weights
    assert weights_size_mb(tmp_path) == 1.5
    assert {PARAMS, TRAINABLE_PARAMS, SIZE_MB} <= set(COST_METRICS)


def test_latency_is_a_median_in_milliseconds_and_leaves_the_model_as_it_was():
    model = Tiny().train()
    ms = latency_ms(model, tokenize, ["a charming film", "dull"] * 4, max_length=8)
    assert 0 < ms < 1000 and model.training
