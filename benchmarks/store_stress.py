"""Measure "database is locked" errors of the default local stores under N concurrent workers.

Each process does a worker's bookkeeping without training, as fast as it can: ask a trial
(with heartbeats), open its MLflow run, log metrics, tell the result, end the run. Run in an
empty directory:

    PYTHONPATH=. python benchmarks/store_stress.py --workers 4 --trials 40 [--wal]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sqlite3
import time
from pathlib import Path


def work(worker: int, trials: int, queue) -> None:
    import optuna

    from workbench.stores.storage import build_storage
    from workbench.stores.tracking import StudyTracking, configure_mlflow

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    uri = "sqlite:///mlruns/mlflow.db"
    configure_mlflow(uri)
    locked = other = 0
    study = optuna.load_study(study_name="stress", storage=build_storage("sqlite:///mlruns/optuna.db"))
    tracking = StudyTracking(uri, "stress")
    for _ in range(trials):
        try:
            trial = study.ask()
            x = trial.suggest_float("x", 0, 1)
            run = tracking.start_trial_run(trial.number, {"x": x})
            trial.set_user_attr("mlflow_run_id", run.run_id)
            for step in range(5):
                run.log_metrics({"eval_loss": x / (step + 1)}, step=step)
                trial.report(x / (step + 1), step)
            study.tell(trial, x)
            run.end("COMPLETE")
            tracking.parent.log_metrics({"value": x}, step=trial.number)
        except Exception as e:  # count, and go on like a worker would
            locked += "locked" in str(e)
            other += "locked" not in str(e)
    queue.put((locked, other))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--wal", action="store_true", help="put both SQLite files in WAL mode first")
    args = parser.parse_args()

    import optuna

    from workbench.stores.storage import build_storage
    from workbench.stores.tracking import StudyTracking

    Path("mlruns").mkdir(exist_ok=True)
    optuna.create_study(study_name="stress", storage=build_storage("sqlite:///mlruns/optuna.db"), load_if_exists=True)
    StudyTracking("sqlite:///mlruns/mlflow.db", "stress")
    for db in ("mlruns/optuna.db", "mlruns/mlflow.db"):
        mode = "wal" if args.wal else "delete"
        print(db, sqlite3.connect(db).execute(f"pragma journal_mode={mode}").fetchone()[0])
    queue = mp.get_context("spawn").Queue()
    start = time.monotonic()
    procs = [mp.get_context("spawn").Process(target=work, args=(i, args.trials, queue)) for i in range(args.workers)]
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    locked = sum(r[0] for r in results)
    other = sum(r[1] for r in results)
    print(
        f"{args.workers} workers x {args.trials} trials: {locked} lock errors, {other} other errors, "
        f"{time.monotonic() - start:.0f}s"
    )


if __name__ == "__main__":
    main()
