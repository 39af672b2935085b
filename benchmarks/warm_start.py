"""Warm start: trials a warm study needs to reach a cold study's best, over the trials the cold study needed.

The pruning benchmark's problem (an SST-2 subset, a tiny model, one tokenizer trained once),
in three kinds of study with the same sampler settings: an earlier study (TPE seed 100), then
for each seed a cold study and a warm study seeded from the earlier one (`study.warm_start:
{from: [earlier], top_k: 3}`). The cold study needs as many trials as the number of its first
trial at its best value; the warm study needs trials until one reaches that value (all its
trials if none does, and the note says so). The figure is the warm studies' trials over the
cold studies', summed over seeds.

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

from benchmarks.common import SST2, Figure, quiet, run_sst2_figures, sst2_missing
from benchmarks.pruning import study_dict as sst2_study

EARLIER_SEED = 100
TOP_K = 3


def study_dict(name: str, seed: int, size: tuple, tokenizer: Path | None, warm_from: str | None = None) -> dict:
    """The pruning benchmark's unpruned study with TPE seed `seed`, warm-started from `warm_from` if given."""
    trials, epochs, train, dev = size
    study = sst2_study(name, {"type": "none"}, trials, epochs, train, dev, tokenizer)
    study["study"]["sampler"]["seed"] = seed
    if warm_from:
        study["study"]["warm_start"] = {"from": [warm_from], "top_k": TOP_K}
    return study


def values(name: str) -> list[float]:
    """The study's trial values (eval_accuracy) in trial order; a failed trial reached nothing (-inf)."""
    import optuna

    study = optuna.load_study(study_name=name, storage=f"sqlite:///{os.getcwd()}/mlruns/optuna.db")
    trials = sorted(study.trials, key=lambda t: t.number)
    return [t.value if t.value is not None else -math.inf for t in trials]


def trials_to_reach(values: list[float], target: float) -> tuple[int, bool]:
    """Trials until one is at least as good as `target` (maximized), or all of them (False)."""
    for number, value in enumerate(values, start=1):
        if value >= target - 1e-12:
            return number, True
    return len(values), False


def measure(quick: bool, show=print) -> tuple[float, list[str]]:
    """(warm trials over cold trials summed over seeds, one note per seed)."""
    import torch

    from workbench.config.study_file import validate_study
    from workbench.core.tables import read_table, write_table
    from workbench.data.splits import prepare_data
    from workbench.study.session import RunOptions, run_study

    quiet()
    torch.set_num_threads(1)  # as the other benchmarks: 2 threads' barrier waits swamp timings on a shared machine
    rows, dev_rows, trials, epochs, seeds = (480, 200, 6, 4, (0,)) if quick else (2000, 872, 12, 4, (0, 1, 2, 3, 4))
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        try:
            train, dev = Path(tmp) / "train.tsv", Path(tmp) / "dev.tsv"
            write_table(read_table(SST2 / "train.tsv", "sst2 train").sample(n=rows, random_state=0), train, "train")
            write_table(read_table(SST2 / "dev.tsv", "sst2 dev").head(dev_rows), dev, "dev")
            size = (trials, epochs, train, dev)
            tokenizer = Path(tmp) / "tokenizer"  # one for every study: WordPiece training is not deterministic
            prepare_data(validate_study(study_dict("tokenizer", 0, size, None))).tokenizer.save_pretrained(tokenizer)

            def run(name: str, seed: int, warm_from: str | None = None) -> list[float]:
                spec = validate_study(study_dict(name, seed, size, tokenizer, warm_from))
                run_study(spec, RunOptions(register=False), progress=lambda line: None)
                return values(name)

            earlier = run("earlier", EARLIER_SEED)
            show(f"  earlier study: best eval_accuracy {max(earlier):.4f} at trial {earlier.index(max(earlier)) + 1}")
            warm_total = cold_total = 0
            notes = []
            for seed in seeds:
                cold = run(f"cold-{seed}", seed)
                warm = run(f"warm-{seed}", seed, warm_from="earlier")
                cold_needed = cold.index(max(cold)) + 1
                warm_needed, reached = trials_to_reach(warm, max(cold))
                notes.append(
                    f"seed {seed}: cold best {max(cold):.4f} at trial {cold_needed}, warm "
                    + (f"reached it at trial {warm_needed}" if reached else f"never reached it (best {max(warm):.4f})")
                )
                show("  " + notes[-1])
                warm_total, cold_total = warm_total + warm_needed, cold_total + cold_needed
        finally:
            os.chdir(cwd)
    return warm_total / cold_total, notes


def figures(quick: bool, show=print) -> list[Figure]:
    missing = sst2_missing()
    if missing:
        return [Figure("warm_start_trials_ratio", None, "<= 0.5", "x cold trials", missing)]
    ratio, notes = measure(quick, show)
    size = "480 SST-2 rows, 6 trials x 4 epochs, 1 seed" if quick else "2000 SST-2 rows, 12 trials x 4 epochs, 5 seeds"
    note = f"{size}; top {TOP_K} of an earlier study (TPE seed {EARLIER_SEED}); " + "; ".join(notes)
    return [Figure("warm_start_trials_ratio", ratio, "<= 0.5", "x cold trials", note)]


def main() -> None:
    run_sst2_figures(figures, __doc__ or "")


if __name__ == "__main__":
    main()
