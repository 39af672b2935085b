import pytest
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


ENCODERS = {  # every model the config can describe
    "transformer, mean": {},
    "transformer, max": {"pooling": "max"},
    "transformer, cls, bag of tokens": {"pooling": "cls", "bag_of_tokens": True},
    "cnn": {"encoder": "cnn"},
    "cnn, widths 2 and 3, bag of tokens": {"encoder": "cnn", "kernel_sizes": [2, 3], "bag_of_tokens": True},
}


@pytest.mark.parametrize("fields", ENCODERS.values(), ids=ENCODERS.keys())
def test_padding_does_not_change_the_prediction(fields):
    torch.manual_seed(0)
    model = WorkbenchForSequenceClassification(small(**fields))
    if model.bag is not None:  # it starts at zero: give it weights, so padding could show if it counted
        torch.nn.init.normal_(model.bag.weight)
    model.eval()
    ids = torch.randint(1, 50, (1, 6))
    padded = torch.cat([ids, torch.zeros(1, 4, dtype=torch.long)], dim=1)
    mask = torch.cat([torch.ones(1, 6), torch.zeros(1, 4)], dim=1).long()
    with torch.no_grad():
        a = model(input_ids=ids).logits
        b = model(input_ids=padded, attention_mask=mask).logits
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("fields", [{"pooling": "cls"}, {"encoder": "cnn", "bag_of_tokens": True}], ids=["cls", "cnn"])
def test_save_and_load_round_trip_through_auto_classes(tmp_path, fields):
    model = WorkbenchForSequenceClassification(small(**fields)).eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    assert AutoConfig.from_pretrained(tmp_path).model_type == "workbench-encoder"
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert type(loaded) is WorkbenchForSequenceClassification
    ids = torch.randint(1, 50, (2, 7))
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, loaded(input_ids=ids).logits)


def test_config_refuses_heads_that_do_not_divide_the_width():
    with pytest.raises(ValueError, match="divisible"):
        WorkbenchConfig(hidden_size=16, num_heads=3)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"encoder": "lstm"}, "encoder must be one of transformer, cnn, not 'lstm'"),
        ({"encoder": "cnn", "kernel_sizes": []}, "kernel_sizes must be a list of positive integers"),
        ({"pooling": "sum"}, "pooling must be one of mean, max, cls, not 'sum'"),
    ],
)
def test_config_refuses_an_unknown_encoder_pooling_or_kernel(fields, message):
    with pytest.raises(ValueError, match=message):
        WorkbenchConfig(**fields)


def test_cnn_has_no_transformer_parts_and_the_bag_starts_at_zero():
    model = WorkbenchForSequenceClassification(small(encoder="cnn", kernel_sizes=[3, 5], bag_of_tokens=True))
    assert model.position_embeddings is None and len(model.blocks) == 0 and model.ln_f is None
    assert [c.kernel_size[0] for c in model.convs.convs] == [3, 5]
    assert model.classifier.in_features == 2 * 16  # one max-pooled vector per width
    assert torch.all(model.bag.weight == 0), "the bag-of-tokens term starts as nothing: the encoder alone"
