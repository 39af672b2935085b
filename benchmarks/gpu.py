"""GPU figures, in one run of under 8 minutes: packed workers vs HF's search, and a trial's training throughput.

1. `gpu_trials_per_hour_{1,4,8}w`, `gpu_vs_hf_{1,4,8}w`: the demo study's same 8 trials (one
   tokenizer, parameters enqueued in both tools, as `benchmarks/workers.py` does) run by
   `workbench study run --workers-per-gpu K` for K = 1, 4, 8 on one GPU, and by HF
   `Trainer.hyperparameter_search(backend="optuna")` in one process. Ratio: evaluations per
   hour over HF's (target >= 4 at the best packing).
2. `gpu_trial_samples_per_s`, `gpu_loop_samples_per_s`, `gpu_trial_over_loop`: training
   samples/s, after a warm-up, of a trial's Trainer (built by workbench from study-file keys:
   `training.torch_compile`, `training.optim: adamw_torch_fused`, `training.bf16`,
   `data.pad_to_multiple_of: 8`) against a hand-written loop with the same model, data and
   batches: fused AdamW, padding to a multiple of 8, `torch.compile(dynamic=True)`, bf16
   autocast (target >= 0.9).

Each figure is one JSON line on stdout and is appended to `--out` as it is measured, so a
run cut short keeps what it measured. `--cpu` is a reduced mode to test the script on a
machine without a GPU (tiny sizes, `--workers` instead of `--workers-per-gpu`, no compile,
no bf16): its figures say nothing about GPUs.

    PYTHONPATH=. python -m benchmarks.gpu --out gpu.json        # on a GPU machine (see gpu.sh)
    PYTHONPATH=. python -m benchmarks.gpu --cpu --out cpu.json  # the script's own check
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import workers
from benchmarks.common import DEMO, SST2, Figure, quiet, sst2_missing

GPU = {
    "trials": 8,
    "packings": (1, 4, 8),
    "sets": (),
    "warmup": 30,
    "steps": 200,
    "batch": 64,
    "model": {"hidden_size": 256, "num_layers": 4, "num_heads": 4},
    "compile": True,
    "bf16": True,
}
CPU = {
    "trials": 2,
    "packings": (1, 2),
    "sets": ("data.synthetic.n_examples=300", "training.num_train_epochs=1"),
    "warmup": 3,
    "steps": 8,
    "batch": 16,
    "model": {"hidden_size": 32, "num_layers": 1, "num_heads": 2},
    "compile": False,
    "bf16": False,
}


class Recorder:
    """Prints each figure as a JSON line and appends it to the output file at once."""

    def __init__(self, out: Path | None):
        self.out = out
        self.figures: list[Figure] = []

    def add(self, figure: Figure) -> None:
        self.figures.append(figure)
        print(figure.line(), flush=True)
        if self.out:
            self.out.write_text(json.dumps([json.loads(f.line()) for f in self.figures], indent=1))


def packing(cfg: dict, cpu: bool, record: Recorder, show=print) -> None:
    trials, sets = cfg["trials"], cfg["sets"]
    params = workers.sample_trials(trials, sets)
    with tempfile.TemporaryDirectory() as shared:
        tokenizer = workers.save_tokenizer(Path(shared), sets)
        with tempfile.TemporaryDirectory() as tmp:
            wall, hf_evals, _ = workers.run_hf(params, 1, Path(tmp), tokenizer, sets)
        hf_rate = hf_evals / wall * 3600
        show(f"  HF hyperparameter_search, 1 process: {wall:.0f} s, {hf_evals} evaluations")
        record.add(
            Figure(
                "gpu_hf_trials_per_hour", trials / wall * 3600, None, "trials/h", f"{trials} demo trials, one process"
            )
        )
        for k in cfg["packings"]:
            with tempfile.TemporaryDirectory() as tmp:
                wall, evals, _ = workers.run_workbench(params, k, Path(tmp), tokenizer, sets, per_gpu=not cpu)
            how = f"--workers {k} (CPU check)" if cpu else f"--workers-per-gpu {k}"
            show(f"  workbench {how}: {wall:.0f} s, {evals} evaluations")
            record.add(
                Figure(
                    f"gpu_trials_per_hour_{k}w", trials / wall * 3600, None, "trials/h", f"{trials} demo trials, {how}"
                )
            )
            record.add(Figure(f"gpu_vs_hf_{k}w", evals / wall * 3600 / hf_rate, ">= 4", "x HF evaluations/h", how))


def throughput_spec(cfg: dict, cpu: bool, where: Path):
    """The trial's spec: SST-2 (synthetic without it), no evaluation, the speed options as study-file keys."""
    from workbench.config.study_file import load_study_file

    data = (
        {
            "data.source": "files",
            "data.files": {"train": str(SST2 / "train.tsv"), "validation": str(SST2 / "dev.tsv")},
            "data.text_column": "sentence",
        }
        if not sst2_missing()
        else {"data.synthetic.n_examples": 20000}
    )
    training = {
        "per_device_train_batch_size": cfg["batch"],
        "max_steps": cfg["warmup"] + cfg["steps"],
        "eval_strategy": "no",
        "save_strategy": "no",
        "load_best_model_at_end": False,
        "optim": "adamw_torch_fused",
        "learning_rate": 1e-3,
        "torch_compile": cfg["compile"],
        "bf16": cfg["bf16"],
        "dataloader_num_workers": 0,
    }
    overrides = {
        **data,
        "data.max_length": 128,
        "data.pad_to_multiple_of": 8,
        "early_stopping": None,
        "search_space": {},
        **{f"model.{k}": v for k, v in cfg["model"].items()},
        **{f"training.{k}": v for k, v in training.items()},
    }
    return load_study_file(DEMO, overrides)


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def trial_rate(spec, data, cfg: dict, where: Path) -> float:
    """Samples/s of the Trainer a trial builds, steps after the warm-up (compilation) only."""
    from transformers import TrainerCallback

    from workbench.config.builders import build_training_args
    from workbench.trial.training import build_trainer

    marks: dict[str, float] = {}

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step in (cfg["warmup"], cfg["warmup"] + cfg["steps"]):
                _sync()
                marks[str(state.global_step)] = time.perf_counter()

    trainer = build_trainer(spec, data, build_training_args(spec, where / "trial"), [Clock()])
    trainer.train()
    return cfg["steps"] * cfg["batch"] / (marks[str(cfg["warmup"] + cfg["steps"])] - marks[str(cfg["warmup"])])


def loop_rate(spec, data, cfg: dict) -> float:
    """Samples/s of a hand-written loop: fused AdamW, padding to 8, torch.compile(dynamic=True), bf16 autocast."""
    import torch
    from transformers import DataCollatorWithPadding, set_seed

    from workbench.config.builders import build_model

    device = "cuda" if torch.cuda.is_available() else "cpu"
    set_seed(0)
    model = build_model(spec, data.tokenizer, data.label_names).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    step_model = torch.compile(model, dynamic=True) if cfg["compile"] else model
    columns = [c for c in ("input_ids", "attention_mask", "label") if c in data.train.column_names]
    loader = torch.utils.data.DataLoader(
        data.train.select_columns(columns),
        batch_size=cfg["batch"],
        shuffle=True,
        collate_fn=DataCollatorWithPadding(data.tokenizer, pad_to_multiple_of=8),
        drop_last=True,
    )
    model.train()
    done, start = 0, None
    while True:
        for batch in loader:
            if done == cfg["warmup"]:
                _sync()
                start = time.perf_counter()
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            with torch.autocast(device, dtype=torch.bfloat16, enabled=cfg["bf16"]):
                loss = step_model(**batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            done += 1
            if done == cfg["warmup"] + cfg["steps"]:
                _sync()
                return cfg["steps"] * cfg["batch"] / (time.perf_counter() - start)


def throughput(cfg: dict, cpu: bool, record: Recorder, show=print) -> None:
    from workbench.core import distributed
    from workbench.data.splits import prepare_data

    distributed.set_threads()
    with tempfile.TemporaryDirectory() as tmp:
        spec = throughput_spec(cfg, cpu, Path(tmp))
        data = prepare_data(spec)
        ours = trial_rate(spec, data, cfg, Path(tmp))
        loop = loop_rate(spec, data, cfg)
    source = "SST-2" if not sst2_missing() else "synthetic"
    size = (
        f"{source}, hidden {cfg['model']['hidden_size']} x {cfg['model']['num_layers']} layers, "
        f"batch {cfg['batch']}, {cfg['steps']} steps after {cfg['warmup']}"
    )
    show(f"  trial {ours:.0f} samples/s, hand-written loop {loop:.0f} samples/s")
    record.add(Figure("gpu_trial_samples_per_s", ours, None, "samples/s", size))
    record.add(Figure("gpu_loop_samples_per_s", loop, None, "samples/s", size))
    record.add(Figure("gpu_trial_over_loop", ours / loop, ">= 0.9", "x hand-written loop", size))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="reduced mode to check the script without a GPU")
    parser.add_argument("--out", type=Path, help="write the figures here (JSON list), each as soon as measured")
    parser.add_argument("--only", choices=["packing", "throughput"])
    args = parser.parse_args(argv)
    quiet()
    import torch

    if not args.cpu and not torch.cuda.is_available():
        print("no CUDA device visible: run on a GPU machine, or pass --cpu to check the script", file=sys.stderr)
        return 2
    cfg = CPU if args.cpu else GPU
    record = Recorder(args.out)
    progress = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    start = time.monotonic()
    if args.only in (None, "throughput"):
        throughput(cfg, args.cpu, record, progress)
    if args.only in (None, "packing"):
        packing(cfg, args.cpu, record, progress)
    device = "CPU check (no GPU)" if args.cpu else torch.cuda.get_device_name(0)
    print(f"{len(record.figures)} figures in {time.monotonic() - start:.0f} s on {device}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
