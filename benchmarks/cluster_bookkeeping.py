"""Optuna's bookkeeping for a cluster's worth of workers on one PostgreSQL: 32 and 64 processes that do
not train, each asking, reporting and telling trials as fast as it can.

Per number of workers, for --seconds: the ask latency (from the start of a trial's bookkeeping to
the objective's first line: stale-heartbeat check, ask, the sampler's work), median and p95; the
most connections to the database at once (pg_stat_activity, read with autocommit: inside a
transaction it is a frozen snapshot); errors ("too many connections" apart). With --grpc the same
workers go through Optuna's GrpcStorageProxy: one proxy process holds the database connections.

Workers are forked from this process once it has imported Optuna and SQLAlchemy (64 processes
importing on 2 cores would take minutes); each opens its own storage after the fork, as
`workbench.stores.storage.build_storage` opens it for `study run` (heartbeats every 10 s).

    WORKBENCH_PG_PORT=55499 WORKBENCH_PG_DATA=/tmp/bench-pg source .ci/postgres.sh   # max_connections=200
    PYTHONPATH=. python benchmarks/cluster_bookkeeping.py --workers 32 64 --seconds 30 --grpc

Prints one JSON line per run.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import statistics
import threading
import time
import uuid

import optuna
import sqlalchemy  # noqa: F401  imported before the fork, shared by every worker

from workbench.stores.db import driver_url
from workbench.stores.storage import build_storage

GRPC_PORT = 13077


def open_storage(url: str, grpc: bool):
    if grpc:
        return optuna.storages.GrpcStorageProxy(host="localhost", port=GRPC_PORT)
    return build_storage(url)


def worker(worker_id: int, url: str, name: str, grpc: bool, seconds: float, queue) -> None:
    """Trials without training for `seconds`: what a `study run` worker asks of the storage per trial."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    asks: list[float] = []
    trials = too_many = other = 0
    first_error = ""
    started = [0.0]

    def objective(trial):
        asks.append(time.monotonic() - started[0])
        trial.suggest_categorical("model.hidden_size", [32, 64, 96])
        trial.suggest_int("model.num_layers", 1, 3)
        trial.suggest_float("training.learning_rate", 3e-4, 1e-2, log=True)
        trial.suggest_float("training.weight_decay", 0.0, 0.1)
        trial.set_user_attr("mlflow_run_id", uuid.uuid4().hex)
        for step in range(3):
            trial.report(random.random(), step)
        return random.random()

    try:
        sampler = optuna.samplers.TPESampler(seed=worker_id, n_startup_trials=4)
        study = optuna.load_study(study_name=name, storage=open_storage(url, grpc), sampler=sampler)
    except Exception as e:  # the storage did not open: no connection left for this worker, or another fault
        refused = "too many" in str(e).lower()
        queue.put((int(refused), int(not refused), 0, [], f"{type(e).__name__}: {e}"[:300]))
        return
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            started[0] = time.monotonic()
            optuna.storages.fail_stale_trials(study)  # as `_wait_for_work` does before every trial
            study.optimize(objective, n_trials=1)
            trials += 1
        except Exception as e:  # counted; a worker goes on
            text = str(e).lower()
            if "too many" in text or "remaining connection slots" in text:  # "too many clients already" too
                too_many += 1
            else:
                other += 1
            first_error = first_error or f"{type(e).__name__}: {e}"[:300]
    queue.put((too_many, other, trials, asks, first_error))


def sample_connections(url: str, stop: threading.Event, peak: list[int]) -> None:
    engine = sqlalchemy.create_engine(driver_url(url), isolation_level="AUTOCOMMIT")
    with engine.connect() as con:
        database = con.execute(sqlalchemy.text("select current_database()")).scalar()
        peak.append(int(con.execute(sqlalchemy.text("show max_connections")).scalar()))
        query = sqlalchemy.text("select count(*) from pg_stat_activity where datname = :d")
        while not stop.is_set():
            peak[0] = max(peak[0], con.execute(query, {"d": database}).scalar() - 1)  # not this one
            stop.wait(0.1)
    engine.dispose()


def grpc_proxy(url: str) -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    optuna.storages.run_grpc_proxy_server(build_storage(url), host="localhost", port=GRPC_PORT)


def run(url: str, workers: int, seconds: float, grpc: bool) -> dict:
    ctx = mp.get_context("fork")
    name = f"cluster-bookkeeping-{uuid.uuid4().hex[:8]}"
    optuna.create_study(study_name=name, storage=driver_url(url), direction="maximize")
    proxy = ctx.Process(target=grpc_proxy, args=(url,), daemon=True) if grpc else None
    if proxy:
        proxy.start()
        time.sleep(3)
    queue, stop, peak = ctx.Queue(), threading.Event(), [0]
    sampler = threading.Thread(target=sample_connections, args=(url, stop, peak), daemon=True)
    sampler.start()
    procs = [ctx.Process(target=worker, args=(i, url, name, grpc, seconds, queue)) for i in range(workers)]
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    stop.set()
    sampler.join()
    if proxy:
        proxy.terminate()
        proxy.join()
    asks = sorted(a for r in results for a in r[3])
    return {
        "workers": workers,
        "through": "GrpcStorageProxy" if grpc else "RDBStorage",
        "seconds": seconds,
        "trials": sum(r[2] for r in results),
        "ask_median_s": round(statistics.median(asks), 3) if asks else None,
        "ask_p95_s": round(asks[int(0.95 * (len(asks) - 1))], 3) if asks else None,
        "peak_connections": peak[0],
        "max_connections": peak[1] if len(peak) > 1 else None,
        "too_many_connections": sum(r[0] for r in results),
        "other_errors": sum(r[1] for r in results),
        "first_errors": sorted({r[4] for r in results if r[4]})[:3],
    }


def main() -> None:
    import warnings

    warnings.filterwarnings("ignore")  # Optuna marks heartbeats and the gRPC proxy experimental
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", default=os.environ.get("WORKBENCH_TEST_POSTGRES_URL"), help="a PostgreSQL URL")
    parser.add_argument("--workers", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--grpc", action="store_true", help="also measure through Optuna's GrpcStorageProxy")
    args = parser.parse_args()
    if not args.storage:
        raise SystemExit("--storage: give a PostgreSQL URL (`source .ci/postgres.sh` starts one)")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    for workers in args.workers:
        for grpc in (False, True) if args.grpc else (False,):
            print(json.dumps(run(args.storage, workers, args.seconds, grpc)), flush=True)


if __name__ == "__main__":
    main()
