"""Warm start: trials a warm study needs to reach a cold study's best, over the trials the cold study needed.

The demo's problem (synthetic reviews, 7500 at full size, its model and search space; one
tokenizer trained once), as a team that tunes it every week would meet it: earlier studies
(the last weeks, TPE seeds 100, 101, ...), then for each seed a cold study and a warm study
seeded from the earlier ones (`study.warm_start: {from: [week-1, ...], top_k: TOP_K}`), all
in one storage. The cold study needs as many trials as the number of its first trial at its
best value; the warm study needs trials until one is at least as good (all its trials if
none is, and the note says so). The figure is the warm studies' trials over the cold
studies', summed over the seeds. Studies run two at a time, one torch thread each: the
figure counts trials, not seconds.

    python benchmarks/warm_start.py [--quick]
"""

from __future__ import annotations

import math
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import DemoProblem, Figure, pool, quiet, run_demo_study, run_figures

WEEKS = 3  # earlier studies: the weeks a team has tuned this problem before
TOP_K = 2
SEEDS = (0, 1, 2, 3, 4)  # at 3 seeds the figure swung from 0.125 to 5.14 with which study drew a lucky trial
QUICK = DemoProblem(examples=5000, trials=8, epochs=3)
FULL = DemoProblem(examples=7500, trials=12, epochs=4)


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


def run_one(job: tuple[DemoProblem, str, int, list[str] | None, Path]) -> list[float]:
    """One study's trial values in trial order, in the shared folder (one storage: warm starts read earlier studies)."""
    problem, name, seed, warm_from, folder = job
    trials = run_demo_study(problem.study(name, seed, warm_from=warm_from, top_k=TOP_K), folder)
    return [t.value if t.value is not None else -math.inf for t in trials]  # a failed trial reached nothing


def measure(problem: DemoProblem, show=print) -> tuple[float, list[str]]:
    """(warm trials over cold trials summed over seeds, one note per seed)."""
    quiet()
    earlier = [f"week-{week}" for week in range(1, WEEKS + 1)]
    with tempfile.TemporaryDirectory() as tmp, pool() as workers:
        problem = problem.save_tokenizer(Path(tmp) / "tokenizer")
        create_stores(Path(tmp))  # once, before two processes would race to create the same SQLite tables
        weeks = workers.map(
            run_one, [(problem, name, 99 + week, None, Path(tmp)) for week, name in enumerate(earlier, 1)]
        )
        for name, got in zip(earlier, weeks):
            show(f"  {name}: best {max(got):.4f} at trial {got.index(max(got)) + 1}")
        jobs = [
            (problem, f"{kind}-{seed}", seed, earlier if kind == "warm" else None, Path(tmp))
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
    problem = QUICK if quick else FULL
    ratio, notes = measure(problem, show)
    note = f"{problem.size}, {len(SEEDS)} seeds; top {TOP_K} of each of {WEEKS} earlier studies; " + "; ".join(notes)
    return [Figure("warm_start_trials_ratio", ratio, "<= 0.5", "x cold trials", note)]


def main() -> None:
    run_figures(figures, __doc__ or "")


if __name__ == "__main__":
    main()
