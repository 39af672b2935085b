"""Warm start: trials a warm study needs to reach a cold study's best, over the trials the cold study needed.

The pruning benchmark's problem (an SST-2 subset, a tiny model, one tokenizer trained once),
as a team that tunes it every week would meet it: two earlier studies (TPE seeds 100 and 101:
the last two weeks), then for each seed a cold study and a warm study seeded from both earlier
ones (`study.warm_start: {from: [week-1, week-2], top_k: 2}`), all in one storage. The cold study
needs as many trials as the number of its first trial at its best value; the warm study needs
trials until one reaches that value (all its trials if none does, and the note says so). The
figure is the warm studies' trials over the cold studies', summed over the seeds. Studies run
two at a time, one torch thread each: the figure counts trials, not seconds.

    PYTHONPATH=. python benchmarks/warm_start.py [--quick]
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
from benchmarks.pruning import study_dict as sst2_study

EARLIER = {"week-1": 100, "week-2": 101}  # study name -> TPE seed
TOP_K = 2
SEEDS = (0, 1, 2)


def study_dict(name: str, seed: int, size: tuple, tokenizer: Path | None, warm_from: list[str] | None = None) -> dict:
    """The pruning benchmark's unpruned study with TPE seed `seed`, warm-started from `warm_from` if given."""
    trials, epochs, train, dev = size
    study = sst2_study(name, {"type": "none"}, trials, epochs, train, dev, tokenizer)
    study["study"]["sampler"]["seed"] = seed
    if warm_from:
        study["study"]["warm_start"] = {"from": warm_from, "top_k": TOP_K}
    return study


def values(name: str, folder: Path) -> list[float]:
    """The study's trial values (eval_accuracy) in trial order; a failed trial reached nothing (-inf)."""
    import optuna

    study = optuna.load_study(study_name=name, storage=f"sqlite:///{folder}/mlruns/optuna.db")
    trials = sorted(study.trials, key=lambda t: t.number)
    return [t.value if t.value is not None else -math.inf for t in trials]


def trials_to_reach(values: list[float], target: float) -> tuple[int, bool]:
    """Trials until one is at least as good as `target` (maximized), or all of them (False)."""
    for number, value in enumerate(values, start=1):
        if value >= target - 1e-12:
            return number, True
    return len(values), False


def create_stores(folder: Path) -> None:
    """The folder's Optuna and MLflow SQLite stores, with their tables."""
    from mlflow.tracking import MlflowClient

    from workbench.stores.storage import build_storage

    (folder / "mlruns").mkdir()
    build_storage(f"sqlite:///{folder}/mlruns/optuna.db")
    MlflowClient(f"sqlite:///{folder}/mlruns/mlflow.db").search_experiments()


def run_one(job: tuple[str, int, tuple, Path, list[str] | None, str]) -> list[float]:
    """One study, in a process of the pool, in the shared folder (one storage: warm starts read earlier studies)."""
    import torch

    from workbench.config.study_file import validate_study
    from workbench.study.session import RunOptions, run_session

    name, seed, size, tokenizer, warm_from, folder = job
    quiet()
    torch.set_num_threads(1)  # two studies at once on 2 cores: one thread each
    os.chdir(folder)
    spec = validate_study(study_dict(name, seed, size, tokenizer, warm_from))
    run_session(spec, RunOptions(register=False), progress=lambda line: None)
    return values(name, Path(folder))


def measure(quick: bool, show=print) -> tuple[float, list[str]]:
    """(warm trials over cold trials summed over seeds, one note per seed)."""
    from workbench.config.study_file import validate_study
    from workbench.data.splits import prepare_data

    quiet()
    rows, dev_rows, trials, epochs = (480, 200, 6, 4) if quick else (2000, 872, 12, 4)
    with tempfile.TemporaryDirectory() as tmp, pool() as workers:
        train, dev = sst2_subset(Path(tmp), rows, dev_rows)
        size = (trials, epochs, train, dev)
        tokenizer = Path(tmp) / "tokenizer"  # trained once, loaded by every study
        prepare_data(validate_study(study_dict("tokenizer", 0, size, None))).tokenizer.save_pretrained(tokenizer)
        create_stores(Path(tmp))  # once, before two processes would race to create the same SQLite tables
        earlier = list(workers.map(run_one, [(n, s, size, tokenizer, None, tmp) for n, s in EARLIER.items()]))
        for name, got in zip(EARLIER, earlier):
            show(f"  {name}: best eval_accuracy {max(got):.4f} at trial {got.index(max(got)) + 1}")
        jobs = [
            (f"{kind}-{seed}", seed, size, tokenizer, list(EARLIER) if kind == "warm" else None, tmp)
            for seed in SEEDS
            for kind in ("cold", "warm")
        ]
        done = iter(list(workers.map(run_one, jobs)))
    warm_total = cold_total = 0
    notes = []
    for seed in SEEDS:
        cold, warm = next(done), next(done)
        cold_needed = cold.index(max(cold)) + 1
        warm_needed, reached = trials_to_reach(warm, max(cold))
        notes.append(
            f"seed {seed}: cold best {max(cold):.4f} at trial {cold_needed}, warm "
            + (f"reached it at trial {warm_needed}" if reached else f"never reached it (best {max(warm):.4f})")
        )
        show("  " + notes[-1])
        warm_total, cold_total = warm_total + warm_needed, cold_total + cold_needed
    return warm_total / cold_total, notes


def figures(quick: bool, show=print) -> list[Figure]:
    missing = sst2_missing()
    if missing:
        return [Figure("warm_start_trials_ratio", None, "<= 0.5", "x cold trials", missing)]
    ratio, notes = measure(quick, show)
    size = "480 SST-2 rows, 6 trials x 4 epochs" if quick else "2000 SST-2 rows, 12 trials x 4 epochs"
    note = f"{size}, {len(SEEDS)} seeds; top {TOP_K} of each of {len(EARLIER)} earlier studies; " + "; ".join(notes)
    return [Figure("warm_start_trials_ratio", ratio, "<= 0.5", "x cold trials", note)]


def main() -> None:
    run_sst2_figures(figures, __doc__ or "")


if __name__ == "__main__":
    main()
