"""Trials per hour of `workbench study run --workers N` vs HF `Trainer.hyperparameter_search(backend="optuna")`.

Both run the demo study's data, model, pruner and early stopping on 1, 2 and 4 local worker
processes, and both run the very same trials: the benchmark samples the parameter sets once
(seeded, from the demo's search space) and enqueues them in each tool's Optuna study, and
both load one tokenizer trained once (WordPiece training is not deterministic, and another
vocabulary means other losses, other early stops and other prunes). Even so the two differ
in how training uses the seeded random state (HF's Trainer builds the model once more), so
their trials stop after different numbers of epochs: the benchmark also prints evaluations
(epochs trained) per hour, the rate that does not depend on where early stopping and pruning
cut each trial. One workbench worker is the plain `workbench study run` (no launcher);
N > 1 is `--workers N`. HF's optuna backend runs one study per process (its `n_jobs` threads
would share one Trainer), so its N workers are N processes sharing one SQLite Optuna
storage, each running its share of the trials: the way Optuna documents parallel studies. Wall time includes start-up and data preparation.

    PYTHONPATH=. python benchmarks/workers.py --trials 4 --workers 1 2 4 --repeats 3
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
from typing import Optional

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "studies" / "demo.yaml"


def save_tokenizer(where: Path) -> Path:
    """The demo's tokenizer, trained once and saved: both tools load it (`tokenizer.path`)."""
    from workbench.data import prepare_data
    from workbench.study_file import load_study_file

    prepare_data(load_study_file(DEMO, {})).tokenizer.save_pretrained(where)
    return where


def sample_trials(trials: int, seed: int = 0) -> list[dict]:
    """`trials` parameter sets drawn at random from the demo's search space."""
    import optuna

    from workbench.search_space import suggest_params
    from workbench.study_file import load_study_file

    space = load_study_file(DEMO, {}).space
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    return [suggest_params(study.ask(), space) for _ in range(trials)]


def enqueue(storage: str, name: str, params: list[dict]) -> None:
    """Create the study (maximize, as the demo) with the trials queued: every tool runs these."""
    import optuna

    study = optuna.create_study(storage=storage, study_name=name, direction="maximize")
    for p in params:
        study.enqueue_trial(p)


def run_workbench(params: list[dict], workers: int, cwd: Path, tokenizer: Path) -> float:
    (cwd / "mlruns").mkdir()
    enqueue(f"sqlite:///{cwd}/mlruns/optuna.db", "demo", params)
    command = [sys.executable, "-m", "workbench", "study", "run", str(DEMO), "--no-register"]
    command += ["--set", f"study.n_trials={len(params)}", "--set", f"tokenizer.path={tokenizer}"] + (["--workers", str(workers)] if workers > 1 else [])
    start = time.monotonic()
    subprocess.run(command, cwd=cwd, env=_env(), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - start, evaluations(f"sqlite:///{cwd}/mlruns/optuna.db", "demo")


def run_hf(params: list[dict], workers: int, cwd: Path, tokenizer: Path) -> float:
    (cwd / "mlruns").mkdir()
    enqueue(f"sqlite:///{cwd}/mlruns/hf-optuna.db", "hf-demo", params)
    trials = len(params)
    shares = [trials // workers + (i < trials % workers) for i in range(workers)]
    start = time.monotonic()
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "hf-worker", "--trials", str(share), "--tokenizer", str(tokenizer)],
            cwd=cwd, env=_env(WORKBENCH_WORKERS=str(workers), WORKBENCH_WORKER_ID=str(i)),
            stdout=subprocess.DEVNULL, stderr=(cwd / f"hf-worker-{i}.log").open("w"),
        )
        for i, share in enumerate(shares)
    ]
    failed = [i for i, p in enumerate(procs) if p.wait() != 0]
    if failed:
        log = (cwd / f"hf-worker-{failed[0]}.log").read_text()
        raise RuntimeError(f"HF worker(s) {failed} failed; worker {failed[0]} said:\n{log[-3000:]}")
    return time.monotonic() - start, evaluations(f"sqlite:///{cwd}/mlruns/hf-optuna.db", "hf-demo")


def evaluations(storage: str, name: str) -> int:
    """Evaluations reported to Optuna by all trials (both tools report every epoch's metric)."""
    import optuna

    return sum(len(t.intermediate_values) for t in optuna.load_study(study_name=name, storage=storage).trials)


def hf_worker(trials: int, tokenizer: Optional[str]) -> None:
    """One process of HF's hyperparameter_search on the demo study's space, sharing an SQLite storage."""
    from transformers import EarlyStoppingCallback, Trainer

    from workbench import distributed
    from workbench.search_space import suggest_params
    from workbench.data import prepare_data
    from workbench.storage import build_pruner, build_sampler
    from workbench.study_file import apply_overrides, load_study_file
    from workbench.builders import build_model, build_training_args
    from workbench.training import compute_metrics

    distributed.set_threads()  # the same share of the cores as a workbench worker
    spec = load_study_file(DEMO, {"tokenizer.path": tokenizer} if tokenizer else {})
    data = prepare_data(spec)

    def hp_space(trial) -> dict:
        return {k.removeprefix("training."): v for k, v in suggest_params(trial, spec.space).items() if k.startswith("training.")}

    def model_init(trial):
        params = suggest_params(trial, spec.space) if trial is not None else {}
        return build_model(apply_overrides(spec, {k: v for k, v in params.items() if k.startswith("model.")}), data.tokenizer, data.label_names)

    from transformers import DataCollatorWithPadding

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
    parser.add_argument("--tokenizer", help="hf-worker: the saved tokenizer to load")
    args = parser.parse_args()
    if args.mode == "hf-worker":
        return hf_worker(args.trials, args.tokenizer)
    params = sample_trials(args.trials)
    shared = tempfile.TemporaryDirectory()
    tokenizer = save_tokenizer(Path(shared.name))
    print(f"demo study, the same {args.trials} trials in both tools, {os.cpu_count()} cores; median of {args.repeats}")
    print(f"{'workers':>7}  {'trials/h ours':>13}  {'trials/h HF':>11}  {'ratio':>5}  {'evals/h ours':>12}  {'evals/h HF':>10}  {'ratio':>5}")
    for n in args.workers:
        trials_h, evals_h = {"workbench": [], "hf": []}, {"workbench": [], "hf": []}
        for _ in range(args.repeats):
            for name, bench in (("workbench", run_workbench), ("hf", run_hf)):  # side by side, alternating
                with tempfile.TemporaryDirectory() as tmp:
                    wall, evals = bench(params, n, Path(tmp), tokenizer)
                trials_h[name].append(args.trials / wall * 3600)
                evals_h[name].append(evals / wall * 3600)
                print(f"  ({name}, {n} workers: {wall:.0f} s, {evals} evaluations)", file=sys.stderr, flush=True)
        (t_ours, t_hf), (e_ours, e_hf) = ([statistics.median(rates[k]) for k in ("workbench", "hf")] for rates in (trials_h, evals_h))
        print(f"{n:>7}  {t_ours:>13.0f}  {t_hf:>11.0f}  {t_ours / t_hf:>5.2f}  {e_ours:>12.0f}  {e_hf:>10.0f}  {e_ours / e_hf:>5.2f}", flush=True)


if __name__ == "__main__":
    main()
