"""Pruning compute: training a pruned study spends to reach an unpruned study's best, on the demo's problem.

Studies of the same TPE sampler seed and tokenizer (trained once) on the demo's data, model
and search space (7500 examples at full size), one epoch per evaluation
(every epoch the same number of steps), no early stopping: first one unpruned study (`pruner:
none`) per sampler seed, then one study per candidate pruner (median, successive halving,
Hyperband, Wilcoxon, the median with a patience) and seed. A pruned study has room for ROOM
times the unpruned study's trials, the compute its pruned trials free, and stops as a user
would once it is as good (`study.stop_at`: the unpruned best less 0.002). Walking a pruned
study's trials in order, evaluation by evaluation, its figure is the epochs trained until an
evaluation first comes within 0.002 of the unpruned study's best value, over all the
unpruned study's epochs; a study that never does reports all its epochs and says so. Each
candidate's figure is summed over the seeds (its epochs over the unpruned studies'). The
default pruner of a study file without `pruner:` (`workbench.config.spec.DEFAULT_PRUNER`) is
the candidate with the lowest full-size figure among those that reached the bar at every
seed: `pruning_compute` is its figure. Studies run two at a time, one torch thread each: the
figures count epochs, not seconds.

    python benchmarks/pruning.py [--quick]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import DemoProblem, Figure, pool, quiet, run_demo_study, run_figures

CANDIDATES = {
    "median": {"type": "median", "n_startup_trials": 3, "n_warmup_steps": 1},
    "successive_halving": {"type": "successive_halving", "min_resource": 1, "reduction_factor": 3},
    "successive_halving_2": {"type": "successive_halving", "min_resource": 2, "reduction_factor": 3},
    "hyperband": {"type": "hyperband", "min_resource": 1, "reduction_factor": 3},
    "wilcoxon": {"type": "wilcoxon", "p_threshold": 0.1},
    "median_patience": {"type": "median", "n_startup_trials": 3, "n_warmup_steps": 1, "patience": 1},
}
TOLERANCE = 0.002  # within this of the unpruned best counts as reaching it
ROOM = 2  # a pruned study may run this many times the unpruned study's trials
SEEDS = (0, 1, 2)
QUICK = DemoProblem(examples=5000, trials=10, epochs=4)
FULL = DemoProblem(examples=7500, trials=20, epochs=6)


def epochs_to_reach(trials: list[list[float]], target: float) -> tuple[int, bool]:
    """Epochs trained until an evaluation comes within TOLERANCE of `target` (True), or all of them (False)."""
    spent = 0
    for values in trials:
        for value in values:
            spent += 1
            if value >= target - TOLERANCE - 1e-12:
                return spent, True
    return spent, False


def run_one(job: tuple[DemoProblem, str, dict, int, Path, float | None]) -> tuple[str, int, list[list[float]]]:
    """One study in a folder of its own (its own SQLite stores); each trial's evaluations, in trial order.

    With `bar` (a pruned study): room for ROOM times the problem's trials, stopping at the first trial that reaches
    `bar`."""
    problem, name, pruner, seed, root, bar = job
    folder = root / f"{name}-{seed}"
    folder.mkdir()
    room = None if bar is None else ROOM * problem.trials
    trials = run_demo_study(problem.study(name, seed, pruner, trials=room, stop_at=bar), folder)
    return name, seed, [[t.intermediate_values[k] for k in sorted(t.intermediate_values)] for t in trials]


def measure(problem: DemoProblem, show=print) -> dict[str, dict]:
    """{candidate: {ratio, reached (seeds), bests}}, summed over the seeds, against the unpruned studies; bests: per
    seed, (the pruned study's best, the unpruned best, the pruned study's trials)."""
    quiet()
    with tempfile.TemporaryDirectory() as tmp, pool() as workers:
        root = Path(tmp)
        problem = problem.save_tokenizer(root / "tokenizer")  # one for every study: the same losses
        first = [(problem, "none", {"type": "none"}, seed, root, None) for seed in SEEDS]
        unpruned = {seed: values for _, seed, values in workers.map(run_one, first)}
        jobs = [
            (problem, name, pruner, seed, root, best_of(unpruned[seed]) - TOLERANCE)
            for seed in SEEDS
            for name, pruner in CANDIDATES.items()
        ]
        pruned = {(name, seed): values for name, seed, values in workers.map(run_one, jobs)}
    out = {}
    total = sum(len(v) for seed in SEEDS for v in unpruned[seed])
    for name in CANDIDATES:
        spent, reached, bests = 0, 0, []
        for seed in SEEDS:
            best = best_of(unpruned[seed])
            epochs, ok = epochs_to_reach(pruned[name, seed], best)
            spent, reached = spent + epochs, reached + ok
            bests.append((best_of(pruned[name, seed]), best, len(pruned[name, seed])))
        out[name] = {"ratio": spent / total, "reached": reached, "bests": bests}
        show(
            f"  {name}: {spent / total:.3f} of the unpruned epochs, within {TOLERANCE} at {reached}/{len(SEEDS)} seeds"
        )
    return out


def best_of(trials: list[list[float]]) -> float:
    return max(value for values in trials for value in values)


def figures(quick: bool, show=print) -> list[Figure]:
    from workbench.config.spec import DEFAULT_PRUNER

    problem = QUICK if quick else FULL
    defaults = [name for name, pruner in CANDIDATES.items() if pruner == DEFAULT_PRUNER]
    if not defaults:  # the headline figure is the default pruner's: it must be measured
        raise ValueError(f"DEFAULT_PRUNER {DEFAULT_PRUNER} is not among the CANDIDATES: add it")
    out = []
    for name, r in measure(problem, show).items():
        bests = ", ".join(f"{got:.4f} vs {best:.4f} in {n} trials" for got, best, n in r["bests"])
        note = (
            f"{CANDIDATES[name]}, {problem.size} (pruned: up to {ROOM * problem.trials} trials, stopping at the bar), "
            f"TPE seeds {', '.join(map(str, SEEDS))} (epochs summed); "
            f"within {TOLERANCE} of the unpruned best at {r['reached']}/{len(SEEDS)} seeds (best {bests})"
        )
        figure = "pruning_compute" + ("" if name in defaults else f"_{name}")
        out.append(
            Figure(
                figure,
                r["ratio"],
                "<= 0.35",
                "x unpruned epochs",
                ("the default pruner: " if name in defaults else "") + note,
            )
        )
    return out


def main() -> None:
    run_figures(figures, __doc__ or "")


if __name__ == "__main__":
    main()
