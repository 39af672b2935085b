"""What a trained model costs: its size, its speed on one text, and its training time.

`measure_costs` runs once per trial, after training, on the model the best checkpoint
restored; the numbers become metrics on the trial's run and user attrs of the Optuna trial
(`record_costs`), where objectives and constraints read them.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Names of the costs, as metrics and trial user attrs (the study file's objectives and constraints use them).
PARAMS, TRAINABLE_PARAMS, SIZE_MB, LATENCY_MS, TRAIN_SECONDS = (
    "params",
    "trainable_params",
    "size_mb",
    "latency_ms",
    "train_seconds",
)
LATENCY_TEXTS = 32  # validation texts timed, the same first ones in every trial
WARMUP_CALLS = 3  # untimed calls first: allocator, kernels and caches warm
WEIGHT_FILES = ("*.safetensors", "*.bin", "*.pt")


def weights_size_mb(model_dir: Path) -> float:
    """Megabytes (10^6 bytes) of the saved weights in `model_dir`."""
    files = {f for pattern in WEIGHT_FILES for f in model_dir.rglob(pattern)}
    return sum(f.stat().st_size for f in files) / 1e6


def latency_ms(model: Any, tokenizer: Any, texts: Sequence[str], max_length: int) -> float:
    """Median milliseconds to predict one text (tokenize + forward, batch of 1) on the model's device and the
    threads this process has, after a few untimed calls."""
    import torch

    if not texts:
        return float("nan")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    accepted = _forward_inputs(model)

    def predict(text: str) -> None:
        batch = tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt").to(device)
        model(**{k: v for k, v in batch.items() if accepted is None or k in accepted})
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # CUDA runs asynchronously: time the work, not its launch

    timings = []
    with torch.inference_mode():
        for text in [*texts[:WARMUP_CALLS]]:
            predict(text)
        for text in texts:
            start = time.perf_counter()
            predict(text)
            timings.append((time.perf_counter() - start) * 1000.0)
    model.train(was_training)
    return statistics.median(timings)


def _forward_inputs(model: Any) -> set[str] | None:
    """The inputs `forward` names (a user's model may not take token_type_ids), or None when it takes **kwargs."""
    import inspect

    parameters = inspect.signature(model.forward).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return {p.name for p in parameters}


def measure_costs(
    model: Any,
    tokenizer: Any,
    model_dir: Path,
    texts: Sequence[str],
    max_length: int,
    train_seconds: float,
    counts: dict[str, float],
) -> dict[str, float]:
    """Every cost of one trained model: `counts` (params, trainable_params: `model.adapters.parameter_counts`
    of the model as trained, before adapters are merged), size_mb, latency_ms, train_seconds."""
    return {
        **counts,
        SIZE_MB: weights_size_mb(model_dir),
        LATENCY_MS: latency_ms(model, tokenizer, list(texts)[:LATENCY_TEXTS], max_length),
        TRAIN_SECONDS: train_seconds,
    }


def record_costs(trial: Any, costs: dict[str, float]) -> None:
    """The costs as user attrs of the Optuna trial (a FixedTrial of a retrain keeps them too)."""
    for name, value in costs.items():
        trial.set_user_attr(name, value)
