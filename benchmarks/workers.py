"""Trials per hour of `workbench study run --workers N` vs HF `Trainer.hyperparameter_search(backend="optuna")`.

Both run the demo study's search space, data, model, sampler, pruner and early stopping for
the same number of trials, on 1, 2 and 4 local worker processes. HF's optuna backend runs
one study per process (its `n_jobs` threads would share one Trainer), so its N workers are
N processes sharing one SQLite Optuna storage, each running its share of the trials: the
way Optuna documents parallel studies. Wall time includes start-up and data preparation.

    PYTHONPATH=. python benchmarks/workers.py --trials 8 --workers 1 2 4 --repeats 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "studies" / "demo.yaml"


def run_workbench(trials: int, workers: int, cwd: Path) -> float:
    command = [sys.executable, "-m", "workbench", "study", "run", str(DEMO), "--workers", str(workers), "--no-register"]
    command += ["--set", f"study.n_trials={trials}"]
    start = time.monotonic()
    subprocess.run(command, cwd=cwd, env=_env(), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - start


def run_hf(trials: int, workers: int, cwd: Path) -> float:
    shares = [trials // workers + (i < trials % workers) for i in range(workers)]
    start = time.monotonic()
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "hf-worker", "--trials", str(share)],
            cwd=cwd, env=_env(WORKBENCH_WORKERS=str(workers), WORKBENCH_WORKER_ID=str(i)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        for i, share in enumerate(shares)
    ]
    if any(p.wait() != 0 for p in procs):
        raise RuntimeError(f"an HF worker failed (run `{__file__} hf-worker --trials 1` to see why)")
    return time.monotonic() - start


def hf_worker(trials: int) -> None:
    """One process of HF's hyperparameter_search on the demo study's space, sharing an SQLite storage."""
    from transformers import EarlyStoppingCallback, Trainer

    from workbench import distributed
    from workbench.search_space import suggest_params
    from workbench.study import build_pruner, build_sampler, prepare_data
    from workbench.study_file import apply_overrides, load_study_file
    from workbench.training import build_model, build_training_args, compute_metrics

    distributed.set_threads()  # the same share of the cores as a workbench worker
    spec = load_study_file(DEMO, {})
    data = prepare_data(spec)

    def hp_space(trial) -> dict:
        return {k.removeprefix("training."): v for k, v in suggest_params(trial, spec.space).items() if k.startswith("training.")}

    def model_init(trial):
        params = suggest_params(trial, spec.space) if trial is not None else {}
        return build_model(apply_overrides(spec, {k: v for k, v in params.items() if k.startswith("model.")}), data)

    from transformers import DataCollatorWithPadding

    Path("mlruns").mkdir(exist_ok=True)
    trainer = Trainer(
        model_init=model_init,
        args=build_training_args(spec, f"hf-out-{os.getpid()}"),
        train_dataset=data.train,
        eval_dataset=data.validation,
        data_collator=DataCollatorWithPadding(data.tokenizer),
        processing_class=data.tokenizer,
        compute_metrics=compute_metrics,
        callbacks=[EarlyStoppingCallback(spec.early_stopping.patience)],
    )
    trainer.hyperparameter_search(
        hp_space=hp_space,
        compute_objective=lambda metrics: metrics[spec.study.metric],
        n_trials=trials,
        direction=spec.study.direction,
        backend="optuna",
        storage="sqlite:///mlruns/hf-optuna.db",
        study_name="hf-demo",
        load_if_exists=True,
        sampler=build_sampler(spec),  # seeded per worker (WORKBENCH_WORKER_ID), as in workbench's workers
        pruner=build_pruner(spec),
    )


def _env(**extra) -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error", **extra)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", default="bench", choices=["bench", "hf-worker"])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    if args.mode == "hf-worker":
        return hf_worker(args.trials)
    print(f"demo study, {args.trials} trials, {os.cpu_count()} cores; trials per hour (median of {args.repeats})")
    print(f"{'workers':>7}  {'workbench':>10}  {'HF hp_search':>12}")
    for n in args.workers:
        rates = {"workbench": [], "hf": []}
        for _ in range(args.repeats):
            for name, bench in (("workbench", run_workbench), ("hf", run_hf)):
                with tempfile.TemporaryDirectory() as tmp:
                    rates[name].append(args.trials / bench(args.trials, n, Path(tmp)) * 3600)
        print(f"{n:>7}  {statistics.median(rates['workbench']):>10.0f}  {statistics.median(rates['hf']):>12.0f}", flush=True)


if __name__ == "__main__":
    main()
