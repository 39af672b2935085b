"""A small Transformer encoder for sequence classification, as a Hugging Face model.

`WorkbenchConfig` holds every hyperparameter of the architecture; the model is built from
it alone, initialised by `_init_weights` through `post_init()`, and registered with the
Auto classes so `AutoModelForSequenceClassification.from_pretrained(dir)` finds it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

POOLINGS = ("mean", "max", "cls")
ENCODERS = ("transformer", "cnn")


class WorkbenchConfig(PretrainedConfig):
    model_type = "workbench-encoder"

    def __init__(
        self,
        vocab_size: int = 4000,
        hidden_size: int = 64,  # width of every token vector
        num_layers: int = 2,  # encoder blocks
        num_heads: int = 2,  # attention heads; must divide hidden_size
        intermediate_size: int | None = None,  # feed-forward width; 4 * hidden_size when None
        dropout: float = 0.1,  # on embeddings, attention output and feed-forward
        attention_dropout: float = 0.0,  # on attention probabilities
        max_position_embeddings: int = 512,  # longest sequence, in tokens
        initializer_range: float = 0.02,  # std of the normal init for Linear and Embedding
        layer_norm_eps: float = 1e-5,
        pooling: str = "mean",  # "mean" or "max" over real tokens, or "cls" (the first token)
        bag_of_tokens: bool = False,  # add a linear term over the bag of tokens to the logits
        encoder: str = "transformer",  # or "cnn": convolutions over token vectors, max over time (Kim, 2014)
        kernel_sizes: tuple[int, ...] | list[int] = (3, 4, 5),  # cnn: hidden_size filters of each width
        pad_token_id: int = 0,
        **kwargs,
    ):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.intermediate_size = intermediate_size or 4 * hidden_size
        self.dropout = dropout
        self.attention_dropout = attention_dropout
        self.max_position_embeddings = max_position_embeddings
        self.initializer_range = initializer_range
        self.layer_norm_eps = layer_norm_eps
        self.pooling = pooling
        self.bag_of_tokens = bag_of_tokens
        self.encoder = encoder
        self.kernel_sizes = list(kernel_sizes)
        for name, value in (("hidden_size", hidden_size), ("num_layers", num_layers), ("num_heads", num_heads)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        for name, rate in (("dropout", dropout), ("attention_dropout", attention_dropout)):
            if not 0.0 <= rate < 1.0:
                raise ValueError(f"{name} must be in [0, 1), not {rate!r}")
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size ({hidden_size}) must be divisible by num_heads ({num_heads})")
        if encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {', '.join(ENCODERS)}, not {encoder!r}")
        if not self.kernel_sizes or not all(isinstance(k, int) and k >= 1 for k in self.kernel_sizes):
            raise ValueError(f"kernel_sizes must be a list of positive integers, not {kernel_sizes!r}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, not {pooling!r}")
        kwargs["pad_token_id"] = pad_token_id  # transformers 5 types no such argument, yet takes it
        super().__init__(**kwargs)


class SelfAttention(nn.Module):
    def __init__(self, config: WorkbenchConfig):
        super().__init__()
        self.num_heads = config.num_heads
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.out = nn.Linear(config.hidden_size, config.hidden_size)
        self.attention_dropout = config.attention_dropout

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        b, t, h = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.num_heads, h // self.num_heads).permute(2, 0, 3, 1, 4)
        # keep: (b, 1, 1, t) booleans, True where the key is a real token
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=keep, dropout_p=self.attention_dropout if self.training else 0.0
        )
        return self.out(y.transpose(1, 2).reshape(b, t, h))


class EncoderBlock(nn.Module):
    """Pre-norm block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config: WorkbenchConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attn = SelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = nn.Sequential(
            nn.Linear(config.hidden_size, config.intermediate_size),
            nn.GELU(),
            nn.Linear(config.intermediate_size, config.hidden_size),
        )
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.attn(self.ln_1(x), keep))
        return x + self.dropout(self.mlp(self.ln_2(x)))


class ConvEncoder(nn.Module):
    """Convolutions of several widths over the token vectors, each max-pooled over the real tokens, concatenated."""

    def __init__(self, config: WorkbenchConfig):
        super().__init__()
        h = config.hidden_size
        self.widths = list(config.kernel_sizes)
        self.convs = nn.ModuleList(nn.Conv1d(h, h, k) for k in self.widths)

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        pad = ~attention_mask.bool().unsqueeze(1)  # (b, 1, t)
        x = x.transpose(1, 2)  # (b, h, t): channels first
        # padded as torch's padding="same" would (which warns for even widths): the output keeps the length
        same = [F.pad(x, ((k - 1) // 2, k // 2)) for k in self.widths]
        return torch.cat([F.relu(conv(y)).masked_fill(pad, 0.0).amax(2) for conv, y in zip(self.convs, same)], dim=1)


class WorkbenchPreTrainedModel(PreTrainedModel):
    config_class = WorkbenchConfig
    base_model_prefix = "workbench"
    _supports_sdpa = True

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.EmbeddingBag):  # the bag-of-tokens term starts at zero: the encoder alone
            nn.init.zeros_(module.weight)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


class WorkbenchForSequenceClassification(WorkbenchPreTrainedModel):
    # Our forward takes no **kwargs, so Trainer must not rescale the loss by num_items_in_batch
    # (under DDP it would multiply it by the world size).
    accepts_loss_kwargs = False

    def __init__(self, config: WorkbenchConfig):
        super().__init__(config)
        if config.num_labels is None:  # transformers 5: a config without id2label counts no labels
            raise ValueError("WorkbenchConfig: set id2label (or num_labels) to size the classifier")
        self.num_labels = config.num_labels
        self.token_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.dropout = nn.Dropout(config.dropout)
        cnn = config.encoder == "cnn"
        # a convolution sees word order itself: positions are the transformer's
        self.position_embeddings = None if cnn else nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.blocks = nn.ModuleList(() if cnn else (EncoderBlock(config) for _ in range(config.num_layers)))
        self.ln_f = None if cnn else nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.convs = ConvEncoder(config) if cnn else None
        pooled_size = config.hidden_size * (len(config.kernel_sizes) if cnn else 1)
        self.classifier = nn.Linear(pooled_size, self.num_labels)
        # fastText's and wide-and-deep's linear term: a weight per token and label, averaged over the
        # text's tokens (padding left out) -- what a bag-of-words logistic regression learns, beside the encoder
        self.bag = (
            nn.EmbeddingBag(config.vocab_size, self.num_labels, mode="mean", padding_idx=config.pad_token_id)
            if config.bag_of_tokens
            else None
        )
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,  # accepted from BERT-style tokenizers, unused
        labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
    ) -> SequenceClassifierOutput:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        x = self.token_embeddings(input_ids)
        pooled = (
            self.convs(self.dropout(x), attention_mask) if self.convs is not None else self.attend(x, attention_mask)
        )
        logits = self.classifier(self.dropout(pooled))
        if self.bag is not None:
            logits = logits + self.bag(input_ids.masked_fill(attention_mask == 0, self.config.pad_token_id))
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.float(), labels.view(-1))
        return SequenceClassifierOutput(loss=loss, logits=logits)

    def attend(self, x: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The transformer encoder over token vectors `x`, pooled to one vector per text."""
        assert self.position_embeddings is not None and self.ln_f is not None
        positions = torch.arange(x.shape[1], device=x.device)
        x = self.dropout(x + self.position_embeddings(positions))
        keep = attention_mask.bool()[:, None, None, :]
        for block in self.blocks:
            x = block(x, keep)
        x = self.ln_f(x)
        if self.config.pooling == "cls":
            return x[:, 0]
        if self.config.pooling == "max":  # over real tokens only: padding never wins
            return x.masked_fill(~attention_mask.bool().unsqueeze(-1), torch.finfo(x.dtype).min).amax(1)
        weights = attention_mask.unsqueeze(-1).to(x.dtype)  # mean over real tokens only
        return (x * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def register_auto_classes() -> None:
    """Let `AutoConfig` / `AutoModelForSequenceClassification.from_pretrained(dir)` find our encoder."""
    AutoConfig.register(WorkbenchConfig.model_type, WorkbenchConfig, exist_ok=True)
    AutoModelForSequenceClassification.register(WorkbenchConfig, WorkbenchForSequenceClassification, exist_ok=True)


register_auto_classes()
