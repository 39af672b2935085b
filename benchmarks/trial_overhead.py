"""Trial overhead: a workbench trial's wall time over a bare `Trainer.train()` of the same model, data and arguments.

One process opens a study (stores, data: paid once per study, not counted), then alternates
a bare run (build the same Trainer our trials build, `train()`) and a workbench trial
(`study.optimize(objective, n_trials=1)` with its after-trial callback: the MLflow run,
params, lineage, per-evaluation logging and Optuna reports, saving the best model, clean-up).
Both use the study's own TrainingArguments (per-epoch checkpoints, `load_best_model_at_end`,
early stopping), so what differs is what workbench adds. The search space is emptied so
every trial trains the very same configuration.

With `--breakdown` it also prints where a trial's time goes, from timers wrapped around the
phases (Trainer construction, evaluation, checkpoint save/load, MLflow, lineage, Optuna).

    PYTHONPATH=. python benchmarks/trial_overhead.py --repeats 3 --breakdown
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import DEMO, Figure, median, quiet

FULL = {"search_space": {}}  # the demo study as it is, one configuration
QUICK = {"search_space": {}, "data.synthetic.n_examples": 1200, "training.num_train_epochs": 3}


def _instrument(times: dict, owner, name: str, key: str) -> None:
    """Wrap `owner.name` so that its wall time accumulates in times[key] (nested calls counted once)."""
    original = getattr(owner, name)
    depth = {"n": 0}

    @functools.wraps(original)
    def wrapped(*args, **kwargs):
        depth["n"] += 1
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            depth["n"] -= 1
            if depth["n"] == 0:
                times[key] = times.get(key, 0.0) + time.perf_counter() - start

    setattr(owner, name, wrapped)


PHASES = [  # (module path, attribute path, phase): wrapped in this process only
    ("workbench.trial.training", "build_trainer", "Trainer construction (model init, set_seed)"),
    ("transformers", "Trainer.train", "Trainer.train (all of it)"),
    ("transformers", "Trainer.evaluate", "  evaluation"),
    ("transformers", "Trainer._save_checkpoint", "  checkpoint save"),
    ("transformers", "Trainer._load_best_model", "  load_best_model_at_end"),
    ("workbench.stores.tracking", "TrialRun.log_metrics", "MLflow log_metrics (per evaluation + best)"),
    ("workbench.stores.tracking", "TrialRun.log_params", "MLflow log_params (resolved config)"),
    ("workbench.stores.tracking", "StudyTracking.start_trial_run", "MLflow trial run start"),
    ("workbench.stores.tracking", "TrialRun.end", "MLflow run end"),
    ("workbench.trial.objective.TrialRunner", "_record_lineage", "lineage"),
    ("optuna.trial", "Trial.report", "Optuna report"),
    ("optuna.trial", "Trial.should_prune", "Optuna should_prune"),
    ("workbench.trial.training", "save_model", "save best model"),
    ("workbench.trial.objective", "release_memory", "release_memory (gc)"),
    ("workbench.trial.objective", "best_trial", "best_trial lookup (after trial)"),
]


def instrument(times: dict) -> None:
    import importlib

    for module, attr, phase in PHASES:
        parts = attr.split(".")
        if module.endswith("TrialRunner"):
            owner = importlib.import_module(module.rsplit(".", 1)[0]).TrialRunner
        else:
            owner = importlib.import_module(module)
            for p in parts[:-1]:
                owner = getattr(owner, p)
        _instrument(times, owner, parts[-1], phase)


def measure(repeats: int, overrides: dict, breakdown: bool = False, show=print) -> tuple[float, dict, dict]:
    """(median ratio, median phase times of our trials, of the bare runs), alternating bare and ours."""
    import torch

    from workbench.config.builders import build_training_args
    from workbench.config.study_file import load_study_file
    from workbench.study.session import RunOptions, StudySession
    from workbench.trial import training
    from workbench.trial.objective import long_lived_frozen

    quiet()
    torch.set_num_threads(1)  # as data_pipeline.py: on a shared machine, 2 threads' barrier waits swamp every timing
    spec = load_study_file(DEMO, {"study.pruner": {"type": "none"}, **overrides})
    cwd = os.getcwd()
    tmp = tempfile.TemporaryDirectory()
    os.chdir(tmp.name)
    try:
        session = StudySession.open(
            spec, RunOptions(register=False, workdir=Path(tmp.name) / "trials"), progress=lambda line: None
        )
        ours_t, bare_t, ours_p, bare_p = [], [], [], []
        times: dict = {}
        if breakdown:
            instrument(times)
        frozen = long_lived_frozen()  # as StudySession.run_trials does around its trials
        frozen.__enter__()
        for i in range(repeats + 1):  # the first pair warms up (imports, lazy inits, the study's lineage)
            times.clear()
            start = time.perf_counter()
            trainer = training.build_trainer(
                spec, session.data, build_training_args(spec, Path(tmp.name) / f"bare-{i}"), []
            )
            trainer.train()
            bare = time.perf_counter() - start
            del trainer
            training_release()
            bare_phases = dict(times)
            times.clear()
            start = time.perf_counter()
            session._run_one()
            ours = time.perf_counter() - start
            ours_phases = dict(times)
            state = session.stores.study.trials[-1].state.name
            show(
                f"  repeat {i}{' (warm-up)' if i == 0 else ''}: bare {bare:.2f} s, workbench {ours:.2f} s ({state}), "
                f"ratio {ours / bare:.3f}"
            )
            if i > 0:
                bare_t.append(bare), ours_t.append(ours), bare_p.append(bare_phases), ours_p.append(ours_phases)
        frozen.__exit__(None, None, None)
        session.stores.tracking.finish()
    finally:
        os.chdir(cwd)
        tmp.cleanup()
    ratio = median(o / b for o, b in zip(ours_t, bare_t))
    phases = lambda runs: {k: median(r.get(k, 0.0) for r in runs) for k in {k for r in runs for k in r}}  # noqa: E731
    ours_med, bare_med = phases(ours_p), phases(bare_p)
    ours_med["total"], bare_med["total"] = median(ours_t), median(bare_t)
    ours_med["fastest"], bare_med["fastest"] = (
        min(ours_t),
        min(bare_t),
    )  # noise only adds: the ratio of minimums is a second view
    return ratio, ours_med, bare_med


def training_release() -> None:
    from workbench.trial.objective import release_memory

    release_memory()  # as our after-trial callback does: both start the next run on a clean heap


def print_breakdown(ours: dict, bare: dict, show=print) -> None:
    show(f"  {'phase':<48} {'workbench s':>11} {'bare s':>8}")
    for _, _, phase in [("", "", "total"), ("", "", "fastest")] + PHASES:
        show(f"  {phase:<48} {ours.get(phase, 0.0):>11.3f} {bare.get(phase, 0.0):>8.3f}")
    accounted = ours.get("Trainer construction (model init, set_seed)", 0) + ours.get("Trainer.train (all of it)", 0)
    show(f"  {'outside Trainer construction + train()':<48} {ours['total'] - accounted:>11.3f}")


def figures(quick: bool, show=print) -> list[Figure]:
    # the ratio depends on the trial's length (our cost is ~0.5 s a trial): both modes use the demo's trial
    repeats = 3 if quick else 5
    ratio, ours, bare = measure(repeats, FULL, breakdown=False, show=show)
    size = "demo study's trial (3000 examples, up to 6 epochs)"
    note = (
        f"{size}; median of {repeats} interleaved pairs; "
        f"workbench {ours['total']:.2f} s vs bare {bare['total']:.2f} s; "
        f"ratio of the fastest runs {ours['fastest'] / bare['fastest']:.3f}"
    )
    return [Figure("trial_overhead", ratio, "<= 1.05", "x bare Trainer.train()", note)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--breakdown", action="store_true")
    args = parser.parse_args()
    ratio, ours, bare = measure(args.repeats, QUICK if args.quick else FULL, breakdown=args.breakdown)
    if args.breakdown:
        print_breakdown(ours, bare)
    print(
        f"trial_overhead: {ratio:.3f} (median of {args.repeats}; "
        f"workbench {ours['total']:.2f} s, bare {bare['total']:.2f} s; "
        f"fastest {ours['fastest']:.2f} s vs {bare['fastest']:.2f} s)"
    )


if __name__ == "__main__":
    main()
