import torch
from transformers import AutoConfig, AutoModelForSequenceClassification

from workbench.model.modeling import WorkbenchConfig, WorkbenchForSequenceClassification


def small(**kw):
    return WorkbenchConfig(
        **{"vocab_size": 50, "hidden_size": 16, "num_layers": 2, "num_heads": 2, "num_labels": 3, **kw}
    )


def test_init_weights_follow_the_config():
    torch.manual_seed(0)
    model = WorkbenchForSequenceClassification(small(initializer_range=0.05, hidden_size=64))
    embedding = model.token_embeddings.weight
    assert torch.all(embedding[model.config.pad_token_id] == 0), "padding row is zero"
    assert abs(embedding[1:].std().item() - 0.05) < 0.01
    assert abs(model.classifier.weight.std().item() - 0.05) < 0.01
    assert torch.all(model.classifier.bias == 0)
    assert torch.all(model.ln_f.weight == 1) and torch.all(model.ln_f.bias == 0)


def test_loss_only_with_labels_and_output_shape():
    model = WorkbenchForSequenceClassification(small()).eval()
    ids = torch.randint(1, 50, (4, 9))
    out = model(input_ids=ids)
    assert out.loss is None and out.logits.shape == (4, 3)
    out = model(input_ids=ids, labels=torch.tensor([0, 1, 2, 0]))
    assert out.loss.ndim == 0 and out.loss.item() > 0


def test_padding_does_not_change_the_prediction():
    model = WorkbenchForSequenceClassification(small()).eval()
    ids = torch.randint(1, 50, (1, 6))
    padded = torch.cat([ids, torch.zeros(1, 4, dtype=torch.long)], dim=1)
    mask = torch.cat([torch.ones(1, 6), torch.zeros(1, 4)], dim=1).long()
    with torch.no_grad():
        a = model(input_ids=ids).logits
        b = model(input_ids=padded, attention_mask=mask).logits
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_save_and_load_round_trip_through_auto_classes(tmp_path):
    model = WorkbenchForSequenceClassification(small(pooling="cls")).eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    assert AutoConfig.from_pretrained(tmp_path).model_type == "workbench-encoder"
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert type(loaded) is WorkbenchForSequenceClassification
    ids = torch.randint(1, 50, (2, 7))
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, loaded(input_ids=ids).logits)


def test_config_refuses_heads_that_do_not_divide_the_width():
    import pytest

    with pytest.raises(ValueError, match="divisible"):
        WorkbenchConfig(hidden_size=16, num_heads=3)
