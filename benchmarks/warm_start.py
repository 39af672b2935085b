"""Warm start: trials a warm study needs to reach a cold study's best, over the trials the cold study needed.

One problem (synthetic data, a tiny model, one tokenizer trained once), three kinds of study
with the same sampler settings: an earlier study (TPE seed 100), then for each seed a cold
study and a warm study seeded from the earlier one (`study.warm_start: {from: [earlier],
top_k: 3}`). The cold study needs as many trials as the number of its best trial (1-based);
the warm study needs trials until one reaches that value (all its trials if none does, and the
note says so). The figure is the warm studies' trials over the cold studies', summed over seeds.

    PYTHONPATH=. python benchmarks/warm_start.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import Figure, quiet

EARLIER_SEED = 100
TOP_K = 3


def study_dict(name: str, seed: int, trials: int, tokenizer: Path | None = None, warm_from: str | None = None) -> dict:
    """The problem: every study of the benchmark differs only in name, TPE seed and warm start."""
    study: dict = {
        "name": name,
        "metric": "eval_loss",  # continuous: "reached" means as good, not tied on a coarse accuracy
        "direction": "minimize",
        "n_trials": trials,
        "sampler": {"type": "tpe", "seed": seed, "n_startup_trials": 3},
        "pruner": {"type": "none"},
    }
    if warm_from:
        study["warm_start"] = {"from": [warm_from], "top_k": TOP_K}
    return {
        "study": study,
        "data": {"source": "synthetic", "synthetic": {"n_examples": 600, "seed": 1}, "max_length": 32},
        "tokenizer": {"path": str(tokenizer)} if tokenizer else {"vocab_size": 300},
        "model": {"hidden_size": 16, "num_layers": 1, "num_heads": 2, "dropout": 0.0},
        "training": {
            "num_train_epochs": 3,  # 90 steps: enough for the learning rate to matter (at 24 all stay near chance)
            "per_device_train_batch_size": 16,
            "seed": 0,
            "load_best_model_at_end": False,
            "save_strategy": "no",
        },
        "early_stopping": None,
        "search_space": {
            "training.learning_rate": {"low": 3.0e-4, "high": 3.0e-2, "log": True},
            "training.weight_decay": {"low": 0.0, "high": 0.1},
            "model.hidden_size": {"choices": [16, 32]},
            "model.num_layers": {"low": 1, "high": 2},
        },
    }


def values(name: str) -> list[float]:
    """The study's trial values in trial order (a failed trial counts as +inf: it reached nothing)."""
    import optuna

    study = optuna.load_study(study_name=name, storage=f"sqlite:///{os.getcwd()}/mlruns/optuna.db")
    trials = sorted(study.trials, key=lambda t: t.number)
    return [t.value if t.value is not None else float("inf") for t in trials]


def trials_to_reach(values: list[float], target: float) -> tuple[int, bool]:
    """Trials until one is at least as good as `target` (minimized), or all of them (False)."""
    for number, value in enumerate(values, start=1):
        if value <= target + 1e-12:
            return number, True
    return len(values), False


def measure(quick: bool, show=print) -> tuple[float, list[str]]:
    """(warm trials over cold trials summed over seeds, one note per seed)."""
    import torch

    from workbench.config.study_file import validate_study
    from workbench.data.splits import prepare_data
    from workbench.study.session import RunOptions, run_study

    quiet()
    torch.set_num_threads(1)  # as the other benchmarks: 2 threads' barrier waits swamp timings on a shared machine
    trials, seeds = (6, (0,)) if quick else (12, (0, 1, 2, 3, 4))
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        try:
            tokenizer = Path(tmp) / "tokenizer"  # one for every study: WordPiece training is not deterministic
            prepare_data(validate_study(study_dict("tokenizer", 0, trials))).tokenizer.save_pretrained(tokenizer)

            def run(name: str, seed: int, warm_from: str | None = None) -> list[float]:
                spec = validate_study(study_dict(name, seed, trials, tokenizer, warm_from))
                run_study(spec, RunOptions(register=False), progress=lambda line: None)
                return values(name)

            earlier = run("earlier", EARLIER_SEED)
            show(f"  earlier study: best eval_loss {min(earlier):.4f} at trial {earlier.index(min(earlier)) + 1}")
            warm_total = cold_total = 0
            notes = []
            for seed in seeds:
                cold = run(f"cold-{seed}", seed)
                warm = run(f"warm-{seed}", seed, warm_from="earlier")
                cold_needed = cold.index(min(cold)) + 1
                warm_needed, reached = trials_to_reach(warm, min(cold))
                notes.append(
                    f"seed {seed}: cold best {min(cold):.4f} at trial {cold_needed}, warm "
                    + (f"reached it at trial {warm_needed}" if reached else f"never reached it (best {min(warm):.4f})")
                )
                show("  " + notes[-1])
                warm_total, cold_total = warm_total + warm_needed, cold_total + cold_needed
        finally:
            os.chdir(cwd)
    return warm_total / cold_total, notes


def figures(quick: bool, show=print) -> list[Figure]:
    ratio, notes = measure(quick, show)
    size = "6 trials, 1 seed" if quick else "12 trials, 5 seeds"
    note = (
        f"synthetic data, tiny model, {size}, top_k {TOP_K} of an earlier study (TPE seed {EARLIER_SEED}); "
        + "; ".join(notes)
    )
    return [Figure("warm_start_trials_ratio", ratio, "<= 0.5", "x cold trials", note)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    for f in figures(args.quick):
        print(f.line())


if __name__ == "__main__":
    main()
