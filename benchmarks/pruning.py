"""Pruning compute: training steps a pruned study spends to reach an unpruned study's best, on SST-2.

Three studies of the same trial count, TPE sampler seed and tokenizer (trained once) on an
SST-2 subset, one epoch per evaluation, no early stopping: one unpruned (`pruner: none`), one with the median pruner,
one with Hyperband. Walking the pruned study's trials in order, evaluation by evaluation, the
figure is the training steps spent until an evaluation first reaches the unpruned study's
best value, over all the unpruned study's steps (a study that never reaches it reports its
total steps and says so).

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

from benchmarks.common import SST2, Figure, quiet, run_sst2_figures, sst2_missing

PRUNERS = {
    "median": {"type": "median", "n_startup_trials": 3, "n_warmup_steps": 1},
    "hyperband": {"type": "hyperband", "min_resource": 1, "reduction_factor": 3},
}


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


def evaluations(name: str) -> list[list[float]]:
    """Each trial's evaluations in trial order (Optuna's intermediate values by step)."""
    import optuna

    study = optuna.load_study(study_name=name, storage=f"sqlite:///{os.getcwd()}/mlruns/optuna.db")
    return [
        [t.intermediate_values[k] for k in sorted(t.intermediate_values)]
        for t in sorted(study.trials, key=lambda t: t.number)
    ]


def steps_to_reach(trials: list[list[float]], target: float, steps_per_eval: int) -> tuple[int, bool]:
    """Steps spent until an evaluation reaches `target` (True), or all steps (False)."""
    spent = 0
    for values in trials:
        for value in values:
            spent += steps_per_eval
            if value >= target - 1e-12:
                return spent, True
    return spent, False


def measure(quick: bool, show=print) -> dict[str, tuple[float, bool, float]]:
    """{pruner: (steps ratio, reached, pruned best)} against the unpruned study."""
    import torch

    from workbench.config.study_file import validate_study
    from workbench.core.tables import read_table, write_table
    from workbench.data.splits import prepare_data
    from workbench.study.session import RunOptions, run_session

    quiet()
    torch.set_num_threads(1)  # as data_pipeline.py: on a shared machine, 2 threads' barrier waits swamp every timing
    rows, dev_rows, trials, epochs = (480, 200, 8, 4) if quick else (4000, 872, 20, 6)
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        try:
            train, dev = Path(tmp) / "train.tsv", Path(tmp) / "dev.tsv"
            write_table(read_table(SST2 / "train.tsv", "sst2 train").sample(n=rows, random_state=0), train, "train")
            write_table(read_table(SST2 / "dev.tsv", "sst2 dev").head(dev_rows), dev, "dev")
            steps_per_eval = math.ceil(rows / 32)
            # one tokenizer for the three studies: WordPiece training is not deterministic
            tokenizer = Path(tmp) / "tokenizer"
            prepare_data(
                validate_study(study_dict("tokenizer", {"type": "none"}, trials, epochs, train, dev))
            ).tokenizer.save_pretrained(tokenizer)
            results = {}
            for name, pruner in [("none", {"type": "none"}), *PRUNERS.items()]:
                spec = validate_study(study_dict(f"sst2-{name}", pruner, trials, epochs, train, dev, tokenizer))
                run_session(spec, RunOptions(register=False), progress=lambda line: None)
                results[name] = evaluations(f"sst2-{name}")
            unpruned = results.pop("none")
            best = max(v for values in unpruned for v in values)
            total = sum(len(values) for values in unpruned) * steps_per_eval
            show(f"  unpruned: best eval_accuracy {best:.4f}, {total} steps over {trials} trials")
            out = {}
            for name, trials_values in results.items():
                spent, reached = steps_to_reach(trials_values, best, steps_per_eval)
                pruned_best = max(v for values in trials_values for v in values)
                show(
                    f"  {name}: {spent} steps {'to reach it' if reached else '(never reached it)'}, "
                    f"best {pruned_best:.4f}, "
                    f"{sum(len(v) for v in trials_values) * steps_per_eval} steps in all"
                )
                out[name] = (spent / total, reached, pruned_best)
        finally:
            os.chdir(cwd)
    return out


def figures(quick: bool, show=print) -> list[Figure]:
    missing = sst2_missing()
    if missing:
        return [Figure("pruning_compute", None, "<= 0.35", "x unpruned steps", missing)]
    size = "480 SST-2 rows, 8 trials x 4 epochs" if quick else "4000 SST-2 rows, 20 trials x 6 epochs"
    out = []
    for name, (ratio, reached, best) in measure(quick, show).items():
        note = f"{name} pruner, {size}, TPE seed 0" + (
            "" if reached else f"; never reached the unpruned best (got {best:.4f}): all its steps"
        )
        out.append(
            Figure(
                "pruning_compute" + ("" if name == "median" else f"_{name}"), ratio, "<= 0.35", "x unpruned steps", note
            )
        )
    return out


def main() -> None:
    run_sst2_figures(figures, __doc__ or "")


if __name__ == "__main__":
    main()
