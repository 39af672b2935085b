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
storage, each running its share of the trials: the way Optuna documents parallel studies.
Wall time includes start-up and data preparation.

    PYTHONPATH=. python benchmarks/workers.py --trials 4 --workers 1 2 4 --repeats 3 [--set training.num_train_epochs=3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "studies" / "demo.yaml"


def parse_sets(sets: Sequence[str]) -> dict:
    """`KEY=VALUE` overrides of the demo study (values read as YAML), as `--set` takes them."""
    import yaml

    return {key: yaml.safe_load(value) for key, _, value in (pair.partition("=") for pair in sets)}


def save_tokenizer(where: Path, sets: Sequence[str] = ()) -> Path:
    """The demo's tokenizer, trained once and saved: both tools load it (`tokenizer.path`)."""
    from workbench.config.study_file import load_study_file
    from workbench.data.splits import prepare_data

    prepare_data(load_study_file(DEMO, parse_sets(sets))).tokenizer.save_pretrained(where)
    return where


def sample_trials(trials: int, seed: int = 0) -> list[dict]:
    """`trials` parameter sets drawn at random from the demo's search space."""
    import optuna

    from workbench.config.search_space import suggest_params
    from workbench.config.study_file import load_study_file

    space = load_study_file(DEMO, {}).space
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    return [suggest_params(study.ask(), space) for _ in range(trials)]


def enqueue(storage: str, name: str, params: list[dict]) -> None:
    """Create the study (maximize, as the demo) with the trials queued: every tool runs these."""
    import optuna

    study = optuna.create_study(storage=storage, study_name=name, direction="maximize")
    for p in params:
        study.enqueue_trial(p)


def run_workbench(
    params: list[dict], workers: int, cwd: Path, tokenizer: Path, sets: Sequence[str] = (), per_gpu: bool = False
) -> tuple[float, int]:
    """(wall seconds, evaluations) of `workbench study run`; `per_gpu`: `--workers-per-gpu N` on one GPU."""
    (cwd / "mlruns").mkdir()
    enqueue(f"sqlite:///{cwd}/mlruns/optuna.db", "demo", params)
    command = [sys.executable, "-m", "workbench", "study", "run", str(DEMO), "--no-register"]
    command += ["--set", f"study.n_trials={len(params)}", "--set", f"tokenizer.path={tokenizer}"]
    command += ["--workers-per-gpu", str(workers)] if per_gpu else (["--workers", str(workers)] if workers > 1 else [])
    command += [arg for pair in sets for arg in ("--set", pair)]
    start = time.monotonic()
    subprocess.run(command, cwd=cwd, env=_env(), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - start, evaluations(f"sqlite:///{cwd}/mlruns/optuna.db", "demo")


def run_hf(params: list[dict], workers: int, cwd: Path, tokenizer: Path, sets: Sequence[str] = ()) -> tuple[float, int]:
    (cwd / "mlruns").mkdir()
    enqueue(f"sqlite:///{cwd}/mlruns/hf-optuna.db", "hf-demo", params)
    trials = len(params)
    shares = [trials // workers + (i < trials % workers) for i in range(workers)]
    start = time.monotonic()
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "hf-worker", "--trials", str(share), "--tokenizer", str(tokenizer)]
            + [arg for pair in sets for arg in ("--set", pair)],
            cwd=cwd,
            env=_env(WORKBENCH_WORKERS=str(workers), WORKBENCH_WORKER_ID=str(i)),
            stdout=subprocess.DEVNULL,
            stderr=(cwd / f"hf-worker-{i}.log").open("w"),
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


def hf_worker(trials: int, tokenizer: str | None, sets: Sequence[str] = ()) -> None:
    """One process of HF's hyperparameter_search on the demo study's space, sharing an SQLite storage."""
    from transformers import EarlyStoppingCallback, Trainer

    from workbench.config.builders import build_model, build_training_args
    from workbench.config.search_space import suggest_params
    from workbench.config.study_file import apply_overrides, load_study_file
    from workbench.core import distributed
    from workbench.core.metrics import positive_id
    from workbench.data.splits import prepare_data
    from workbench.stores.storage import build_pruner, build_sampler
    from workbench.trial.training import compute_metrics

    distributed.set_threads()  # the same share of the cores as a workbench worker
    spec = load_study_file(DEMO, {**parse_sets(sets), **({"tokenizer.path": tokenizer} if tokenizer else {})})
    data = prepare_data(spec)

    def hp_space(trial) -> dict:
        return {
            k.removeprefix("training."): v
            for k, v in suggest_params(trial, spec.space).items()
            if k.startswith("training.")
        }

    def model_init(trial):
        params = suggest_params(trial, spec.space) if trial is not None else {}
        return build_model(
            apply_overrides(spec, {k: v for k, v in params.items() if k.startswith("model.")}),
            data.tokenizer,
            data.label_names,
        )

    from transformers import DataCollatorWithPadding

    trainer = Trainer(
        model_init=model_init,
        args=build_training_args(spec, f"hf-out-{os.getpid()}"),
        train_dataset=data.train,
        eval_dataset=data.validation,
        data_collator=DataCollatorWithPadding(data.tokenizer),
        processing_class=data.tokenizer,
        compute_metrics=partial(
            compute_metrics, label_names=data.label_names, positive=positive_id(data.label_names, data.positive_label)
        ),
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


def compare(trials: int, workers: Sequence[int], repeats: int, sets: Sequence[str] = (), show=print) -> dict[int, dict]:
    """{workers: median trials/h and evaluations/h of each tool}, the two tools alternating, the same trials."""
    params = sample_trials(trials)
    shared = tempfile.TemporaryDirectory()
    tokenizer = save_tokenizer(Path(shared.name), sets)
    out = {}
    for n in workers:
        trials_h, evals_h = {"workbench": [], "hf": []}, {"workbench": [], "hf": []}
        for _ in range(repeats):
            for name, bench in (("workbench", run_workbench), ("hf", run_hf)):  # side by side, alternating
                wall, evals = _run_once_more_if_failed(bench, name, params, n, tokenizer, sets, show)
                trials_h[name].append(trials / wall * 3600)
                evals_h[name].append(evals / wall * 3600)
                show(f"  ({name}, {n} workers, {trials} trials: {wall:.0f} s, {evals} evaluations)")
        out[n] = {
            f"{kind}_{tool}": statistics.median(rates[tool])
            for kind, rates in (("trials_h", trials_h), ("evals_h", evals_h))
            for tool in rates
        }
    shared.cleanup()
    return out


def _run_once_more_if_failed(bench, name, params, n, tokenizer, sets, show) -> tuple[float, int]:
    """One run of a tool, in a fresh folder; a crashed run is shown and run again once (HF's processes can
    race on an enqueued trial in SQLite: "Cannot tell a COMPLETE trial")."""
    for attempt in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            try:
                return bench(params, n, Path(tmp), tokenizer, sets)
            except RuntimeError as e:
                if attempt == 2:
                    raise
                show(f"  ({name}, {n} workers: failed, run again: {str(e).strip().splitlines()[-1][:200]})")
    raise AssertionError("unreachable")


QUICK_SETS = ("data.synthetic.n_examples=1200", "training.num_train_epochs=3")


def figures(quick: bool, show=print) -> list:
    """vs_hf_hpsearch_1w and _2w (evaluations/h over HF's), and our 2 workers over our 1."""
    from benchmarks.common import Figure

    plans = [(4, 1, QUICK_SETS)] if quick else [(4, 3, ()), (16, 3, ())]
    out = []
    for trials, repeats, sets in plans:
        r = compare(trials, (1, 2), repeats, sets, lambda line: show(line))
        size = (
            f"{trials} trials" + (" (1200 examples, 3 epochs)" if sets else " (demo study)") + f", median of {repeats}"
        )
        suffix = "" if quick or trials == 16 else f"_{trials}t"  # the headline figures: 16-trial studies
        for n in (1, 2):
            ratio = r[n]["evals_h_workbench"] / r[n]["evals_h_hf"]
            note = (
                f"{size}; evaluations/h {r[n]['evals_h_workbench']:.0f} vs HF {r[n]['evals_h_hf']:.0f}; "
                f"trials/h {r[n]['trials_h_workbench']:.0f} vs {r[n]['trials_h_hf']:.0f}"
            )
            out.append(Figure(f"vs_hf_hpsearch_{n}w{suffix}", ratio, ">= 1.0", "x HF evaluations/h", note))
        scaling = r[2]["evals_h_workbench"] / r[1]["evals_h_workbench"]
        out.append(Figure(f"workers_2w_over_1w{suffix}", scaling, ">= 1.4", "x our 1 worker", size))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", default="bench", choices=["bench", "hf-worker"])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--tokenizer", help="hf-worker: the saved tokenizer to load")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override the demo study in both tools"
    )
    args = parser.parse_args()
    if args.mode == "hf-worker":
        return hf_worker(args.trials, args.tokenizer, args.set)
    print(f"demo study, the same {args.trials} trials in both tools, {os.cpu_count()} cores; median of {args.repeats}")
    results = compare(
        args.trials, args.workers, args.repeats, args.set, show=lambda line: print(line, file=sys.stderr, flush=True)
    )
    print(
        f"{'workers':>7}  {'trials/h ours':>13}  {'trials/h HF':>11}  {'ratio':>5}  "
        f"{'evals/h ours':>12}  {'evals/h HF':>10}  {'ratio':>5}"
    )
    for n, r in results.items():
        t_ours, t_hf, e_ours, e_hf = r["trials_h_workbench"], r["trials_h_hf"], r["evals_h_workbench"], r["evals_h_hf"]
        print(
            f"{n:>7}  {t_ours:>13.0f}  {t_hf:>11.0f}  {t_ours / t_hf:>5.2f}  "
            f"{e_ours:>12.0f}  {e_hf:>10.0f}  {e_ours / e_hf:>5.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
