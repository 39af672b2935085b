"""Bookkeeping at scale on PostgreSQL, without training: a new trial in a study of 2,000, and 8 workers' connections.

1. Fills a study (the demo's search space and TPE sampler) with N finished trials, each with
   the intermediate values and attributes a real trial has, then times what a worker does to
   start a trial: `StudySession._wait_for_work` (stale heartbeats, `count_trials`) and
   `study.ask` + `suggest_params` (the sampler's work). Cold: a fresh storage, as a new
   worker process opens it; warm: the next trial in the same process. Medians of --repeats.
2. Starts --workers processes that each open the storage as `study run` does and run
   ask/report/tell loops as fast as they can, counts their errors ("too many connections"
   apart), and samples pg_stat_activity for the most connections the study held at once.

    source .ci/postgres.sh   # a local PostgreSQL; any empty database will do
    PYTHONPATH=. python benchmarks/bookkeeping.py --storage "$WORKBENCH_TEST_POSTGRES_URL" --trials 2000 --workers 8

Prints one JSON line per figure: {"name", "value", "target", "unit"}.
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
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "studies" / "demo.yaml"


def demo_spec(name: str):
    from workbench.config.study_file import apply_overrides, load_study_file

    return apply_overrides(load_study_file(DEMO, {}), {"study.name": name})


def fill(spec, url: str, n: int) -> float:
    """N finished trials (3 evaluations, an MLflow run id and a worker each), added in one session; returns seconds."""
    import optuna

    from workbench.config.search_space import suggest_params
    from workbench.core.keys import RUN_ID_ATTR, WORKER_ATTR
    from workbench.stores.storage import open_study

    study = open_study(spec, url)
    scratch = optuna.create_study(direction=spec.study.direction, sampler=optuna.samplers.RandomSampler(seed=0))
    rng = random.Random(0)
    for i in range(n):
        trial = scratch.ask()
        suggest_params(trial, spec.space)
        for step in range(3):
            trial.report(rng.random(), step)
        trial.set_user_attr(RUN_ID_ATTR, uuid.uuid4().hex)
        trial.set_user_attr(WORKER_ATTR, f"bench:{i}")
        scratch.tell(trial, rng.random())
    started = time.monotonic()
    study.add_trials(scratch.trials)
    return time.monotonic() - started


def start_one_trial(session, spec) -> tuple[float, float]:
    """What a worker does before training: look for work, then ask and sample. Returns (wait_for_work s, ask s)."""
    from workbench.config.search_space import suggest_params

    started = time.monotonic()
    assert session._wait_for_work()
    waited = time.monotonic()
    trial = session.stores.study.ask()
    suggest_params(trial, spec.space)
    asked = time.monotonic()
    session.stores.study.tell(trial, random.random())
    return waited - started, asked - waited


def opened_session(spec, url: str):
    """A StudySession whose stores are just the Optuna study (no MLflow, no data): all _wait_for_work reads."""
    from workbench.core.progress import StudyProgress
    from workbench.stores.storage import count_trials, open_study
    from workbench.study.session import OpenedStores, RunOptions, StudySession

    study = open_study(spec, url)
    stores = OpenedStores(study, None, url, "", count_trials(study), target=10**9)  # type: ignore[arg-type]
    return StudySession(spec, RunOptions(), StudyProgress(lambda line: None), None, stores)  # type: ignore[arg-type]


def time_asks(spec, url: str, repeats: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"cold_wait": [], "cold_ask": [], "warm_wait": [], "warm_ask": []}
    for _ in range(repeats):
        started = time.monotonic()
        session = opened_session(spec, url)  # a new worker: opens the storage and reads every trial once
        opened = time.monotonic() - started
        wait, ask = start_one_trial(session, spec)
        times["cold_wait"].append(opened + wait)
        times["cold_ask"].append(ask)
        wait, ask = start_one_trial(session, spec)
        times["warm_wait"].append(wait)
        times["warm_ask"].append(ask)
    return times


def worker(worker_id: int, spec, url: str, seconds: float, queue) -> None:
    """A `study run` worker's storage traffic without training, for `seconds`."""
    import optuna

    from workbench.config.search_space import suggest_params
    from workbench.core.keys import RUN_ID_ATTR, WORKER_ATTR

    os.environ["WORKBENCH_WORKER_ID"] = str(worker_id)  # what --workers sets: build_sampler offsets the seed
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    trials = too_many = other = 0
    first_error = ""
    asks: list[float] = []
    try:
        session = opened_session(spec, url)
    except Exception as e:
        queue.put((0, 1, 0, [], f"{type(e).__name__}: {e}"[:300]))
        return

    def objective(trial):
        asks.append(time.monotonic() - asked[0])
        suggest_params(trial, spec.space)
        trial.set_user_attr(RUN_ID_ATTR, uuid.uuid4().hex)
        trial.set_user_attr(WORKER_ATTR, f"bench:{os.getpid()}")
        for step in range(3):
            trial.report(random.random(), step)
        return random.random()

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            asked = [time.monotonic()]
            if not session._wait_for_work():
                break
            session.stores.study.optimize(objective, n_trials=1)  # ask with a heartbeat thread, as _run_one does
            trials += 1
        except Exception as e:  # count, and go on like a worker would
            if "too many" in str(e).lower() or "remaining connection slots" in str(e).lower():
                too_many += 1
            else:
                other += 1
            first_error = first_error or f"{type(e).__name__}: {e}"[:300]
    queue.put((too_many, other, trials, asks, first_error))


def peak_connections(url: str, stop: threading.Event, peak: list[int]) -> None:
    """Samples the connections to the study's database every 0.1 s into peak[0]."""
    from sqlalchemy import create_engine, text

    from workbench.stores.db import driver_url

    engine = create_engine(
        driver_url(url), isolation_level="AUTOCOMMIT"
    )  # pg_stat_activity is a snapshot per transaction
    with engine.connect() as con:
        database = con.execute(text("select current_database()")).scalar()
        peak.append(int(con.execute(text("show max_connections")).scalar()))
        while not stop.is_set():
            n = con.execute(text("select count(*) from pg_stat_activity where datname = :d"), {"d": database}).scalar()
            peak[0] = max(peak[0], n - 1)  # not this connection
            stop.wait(0.1)
    engine.dispose()


def run_workers(spec, url: str, workers: int, seconds: float) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    stop, peak = threading.Event(), [0]
    sampler = threading.Thread(target=peak_connections, args=(url, stop, peak), daemon=True)
    sampler.start()
    procs = [ctx.Process(target=worker, args=(i, spec, url, seconds, queue)) for i in range(workers)]
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    stop.set()
    sampler.join()
    asks = [a for r in results for a in r[3]]
    return {
        "too_many": sum(r[0] for r in results),
        "other": sum(r[1] for r in results),
        "trials": sum(r[2] for r in results),
        "ask_median": statistics.median(asks) if asks else None,
        "peak": peak[0],
        "max_connections": peak[1],
        "errors": sorted({r[4] for r in results if r[4]}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", default=os.environ.get("WORKBENCH_TEST_POSTGRES_URL"), help="a PostgreSQL URL")
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60, help="how long the workers run")
    args = parser.parse_args()
    if not args.storage:
        raise SystemExit("--storage: give a PostgreSQL URL (`source .ci/postgres.sh` starts one)")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings(
        "ignore", "Heartbeat of storage is supposed to be used with Study.optimize"
    )  # study.ask alone, on purpose
    spec = demo_spec(f"bookkeeping-{uuid.uuid4().hex[:8]}")

    def emit(name, value, target, unit):
        print(json.dumps({"name": name, "value": value, "target": target, "unit": unit}), flush=True)

    emit(
        "fill_trials_s",
        round(fill(spec, args.storage, args.trials), 1),
        None,
        f"s to add {args.trials} finished trials",
    )
    times = time_asks(spec, args.storage, args.repeats)
    for key, what in (("cold", "a new worker"), ("warm", "the next trial")):
        wait, ask = statistics.median(times[f"{key}_wait"]), statistics.median(times[f"{key}_ask"])
        emit(
            f"{key}_wait_for_work_s",
            round(wait, 3),
            None,
            f"s, {what}: open + stale check + count_trials, at {args.trials} trials",
        )
        emit(f"{key}_ask_s", round(ask, 3), None, f"s, {what}: study.ask + suggest (TPE), at {args.trials} trials")
        emit(f"{key}_new_trial_s", round(wait + ask, 3), 1.0, f"s, {what}: both, median of {args.repeats}")
    result = run_workers(spec, args.storage, args.workers, args.seconds)
    emit(
        "workers_too_many_connections", result["too_many"], 0, f"errors, {args.workers} workers for {args.seconds:g} s"
    )
    emit("workers_other_errors", result["other"], 0, "errors")
    emit("workers_trials", result["trials"], None, "trials told")
    emit(
        "workers_ask_s",
        round(result["ask_median"], 3) if result["ask_median"] else None,
        1.0,
        "s, median ask under load",
    )
    emit(
        "workers_peak_connections",
        result["peak"],
        result["max_connections"],
        "connections to the database at once (target: max_connections)",
    )
    for error in result["errors"]:
        print("first error of a worker:", error)


if __name__ == "__main__":
    main()
