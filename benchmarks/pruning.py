"""Pruning compute: training steps a pruned study spends to reach an unpruned study's best, on SST-2.

Studies of the same trial count, TPE sampler seed and tokenizer (trained once) on an SST-2
subset, one epoch per evaluation, no early stopping: one unpruned (`pruner: none`) and one per
candidate pruner (median, successive halving, Hyperband, Wilcoxon, the median with a patience),
for each of several sampler seeds. Walking a pruned study's trials in order, evaluation by
evaluation, its figure is the training steps spent until an evaluation first comes within
0.002 of the unpruned study's best value (the issue's bar: 2 dev sentences in 1,000), over
all the unpruned study's steps; a study that never does reports its total steps and says so.
Each candidate's figure is summed over the seeds (its steps over the unpruned studies'). The
default pruner of a study file without `pruner:` (`workbench.config.spec.DEFAULT_PRUNER`) is to
be the candidate with the lowest full-size figure that reached the bar at every seed; until that
comparison has run, `pruning_compute` is the median candidate's (the demo's settings). Studies run two
at a time, one torch thread each: the figures count steps, not seconds.

    PYTHONPATH=. python benchmarks/pruning.py [--quick]
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import Figure, pool, quiet, run_sst2_figures, sst2_missing, sst2_subset

CANDIDATES = {
    "median": {"type": "median", "n_startup_trials": 3, "n_warmup_steps": 1},
    "successive_halving": {"type": "successive_halving", "min_resource": 1, "reduction_factor": 3},
    "hyperband": {"type": "hyperband", "min_resource": 1, "reduction_factor": 3},
    "wilcoxon": {"type": "wilcoxon", "p_threshold": 0.1},
    "median_patience": {"type": "median", "n_startup_trials": 3, "n_warmup_steps": 1, "patience": 1},
}
TOLERANCE = 0.002  # within this of the unpruned best counts as reaching it
SEEDS = (0, 1, 2)


def study_dict(
    name: str, pruner: dict, trials: int, epochs: int, train: Path, dev: Path, tokenizer: Path | None = None
) -> dict:
    return {
        "study": {
            "name": name,
            "metric": "eval_accuracy",
            "direction": "maximize",
            "n_trials": trials,
            "sampler": {"type": "tpe", "seed": 0, "n_startup_trials": 4},
            "pruner": pruner,
        },
        "data": {
            "source": "files",
            "files": {"train": str(train), "validation": str(dev)},
            "text_column": "sentence",
            "max_length": 64,
        },
        "tokenizer": {"path": str(tokenizer)} if tokenizer else {"vocab_size": 3000},
        "model": {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "dropout": 0.1},
        "training": {
            "num_train_epochs": epochs,
            "per_device_train_batch_size": 32,
            "learning_rate": 1e-3,
            "seed": 0,
            "load_best_model_at_end": False,
            "save_strategy": "no",
        },
        "early_stopping": None,
        "search_space": {
            "training.learning_rate": {"low": 1e-4, "high": 3e-2, "log": True},
            "model.hidden_size": {"choices": [16, 32, 64]},
            "training.weight_decay": {"low": 0.0, "high": 0.1},
        },
    }


def evaluations(name: str, folder: Path) -> list[list[float]]:
    """Each trial's evaluations in trial order (Optuna's intermediate values by step)."""
    import optuna

    study = optuna.load_study(study_name=name, storage=f"sqlite:///{folder}/mlruns/optuna.db")
    return [
        [t.intermediate_values[k] for k in sorted(t.intermediate_values)]
        for t in sorted(study.trials, key=lambda t: t.number)
    ]


def steps_to_reach(trials: list[list[float]], target: float, steps_per_eval: int) -> tuple[int, bool]:
    """Steps spent until an evaluation comes within TOLERANCE of `target` (True), or all steps (False)."""
    spent = 0
    for values in trials:
        for value in values:
            spent += steps_per_eval
            if value >= target - TOLERANCE - 1e-12:
                return spent, True
    return spent, False


def run_one(job: tuple[str, dict, int, tuple]) -> tuple[str, int, list[list[float]]]:
    """One study in a folder of its own (its own SQLite stores), in a process of the pool."""
    import torch

    from workbench.config.study_file import validate_study
    from workbench.study.session import RunOptions, run_session

    name, pruner, seed, (trials, epochs, train, dev, tokenizer, root) = job
    quiet()
    torch.set_num_threads(1)  # two studies at once on 2 cores: one thread each
    folder = Path(root) / f"{name}-{seed}"
    folder.mkdir()
    os.chdir(folder)
    raw = study_dict(name, pruner, trials, epochs, train, dev, tokenizer)
    raw["study"]["sampler"]["seed"] = seed
    run_session(validate_study(raw), RunOptions(register=False), progress=lambda line: None)
    return name, seed, evaluations(name, folder)


def measure(quick: bool, show=print) -> dict[str, dict]:
    """{candidate: {ratio, reached (seeds), best (per seed)}}, summed over the seeds, against the unpruned studies."""
    from workbench.config.study_file import validate_study
    from workbench.data.splits import prepare_data

    quiet()
    rows, dev_rows, trials, epochs = (480, 200, 8, 4) if quick else (4000, 872, 20, 6)
    steps_per_eval = math.ceil(rows / 32)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        train, dev = sst2_subset(root, rows, dev_rows)
        tokenizer = root / "tokenizer"  # one for every study: the same vocabulary, the same losses
        raw = study_dict("tokenizer", {"type": "none"}, trials, epochs, train, dev)
        prepare_data(validate_study(raw)).tokenizer.save_pretrained(tokenizer)
        size = (trials, epochs, train, dev, tokenizer, str(root))
        jobs = [
            (name, pruner, seed, size)
            for seed in SEEDS
            for name, pruner in [("none", {"type": "none"}), *CANDIDATES.items()]
        ]
        with pool() as workers:
            results = {(name, seed): values for name, seed, values in workers.map(run_one, jobs)}
    out = {}
    total = sum(len(v) for seed in SEEDS for v in results["none", seed]) * steps_per_eval
    for name in CANDIDATES:
        spent, reached, bests = 0, 0, []
        for seed in SEEDS:
            best = max(v for values in results["none", seed] for v in values)
            steps, ok = steps_to_reach(results[name, seed], best, steps_per_eval)
            spent, reached = spent + steps, reached + ok
            bests.append((max(v for values in results[name, seed] for v in values), best))
        out[name] = {"ratio": spent / total, "reached": reached, "bests": bests}
        show(f"  {name}: {spent / total:.3f} of the unpruned steps, within {TOLERANCE} at {reached}/{len(SEEDS)} seeds")
    return out


def figures(quick: bool, show=print) -> list[Figure]:
    missing = sst2_missing()
    if missing:
        return [Figure("pruning_compute", None, "<= 0.35", "x unpruned steps", missing)]
    from workbench.config.spec import DEFAULT_PRUNER

    size = "480 SST-2 rows, 8 trials x 4 epochs" if quick else "4000 SST-2 rows, 20 trials x 6 epochs"
    # the headline figure: the default pruner's, once it is one of the candidates; the median's until then
    default = next((name for name, pruner in CANDIDATES.items() if pruner == DEFAULT_PRUNER), "median")
    out = []
    for name, r in measure(quick, show).items():
        bests = ", ".join(f"{got:.4f} vs {best:.4f}" for got, best in r["bests"])
        note = (
            f"{CANDIDATES[name]}, {size}, TPE seeds {', '.join(map(str, SEEDS))} (steps summed); "
            f"within {TOLERANCE} of the unpruned best at {r['reached']}/{len(SEEDS)} seeds (best {bests})"
        )
        figure = "pruning_compute" + ("" if name == default else f"_{name}")
        out.append(
            Figure(
                figure,
                r["ratio"],
                "<= 0.35",
                "x unpruned steps",
                ("the default pruner: " if CANDIDATES[name] == DEFAULT_PRUNER else "") + note,
            )
        )
    return out


def main() -> None:
    run_sst2_figures(figures, __doc__ or "")


if __name__ == "__main__":
    main()
