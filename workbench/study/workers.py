"""Many worker processes on one study: spawn them, show their progress, stop them, conclude once.

`study run FILE --workers N` prepares the stores once (so N processes never race to create
the experiment, the parent run or the database tables), starts N `workbench study run`
processes that share the study through its Optuna storage, prefixes each line they print
with their id, forwards Ctrl-C to all of them, and, when they have all exited, summarises
the study and registers its best model: one registration, whatever the number of workers.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from workbench.config.study_file import StudySpec
from workbench.core import distributed, settings
from workbench.core.errors import Preempted, WorkbenchError, WorkersFailed
from workbench.core.progress import StudyProgress
from workbench.data.splits import save_prepared
from workbench.stores.storage import count_trials, fail_stale
from workbench.study.session import RunOptions, StudyOutcome, StudySession

TRIAL_LINE = re.compile(
    r"\[w\d+\]\s+trial\s+(\d+) (\w+)"
)  # a worker's line for one ended trial (objective.after_trial)
STOP_TIMEOUT_S = 60  # after Ctrl-C, how long workers get to end their trial before SIGKILL


@dataclass(frozen=True)
class WorkerPlan:
    worker_id: int
    gpu: str | None = None  # the CUDA device this worker sees as cuda:0; None on CPU


def visible_gpus() -> list[str]:
    """CUDA device ids this process may hand out (CUDA_VISIBLE_DEVICES wins over what torch counts)."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [d.strip() for d in listed.split(",") if d.strip() and d.strip() != "-1"]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


def plan_workers(workers: int | None, per_gpu: int | None, gpus: Sequence[str]) -> list[WorkerPlan]:
    """N workers, spread round-robin over the GPUs, or K packed on each GPU with `per_gpu`."""
    if workers is not None and workers < 1:
        raise WorkbenchError(f"--workers {workers}: must be 1 or more")
    if per_gpu is not None:
        if per_gpu < 1:
            raise WorkbenchError(f"--workers-per-gpu {per_gpu}: must be 1 or more")
        if not gpus:
            raise WorkbenchError("--workers-per-gpu: no GPU is visible; use --workers N to run N workers on the CPU")
        workers = workers if workers is not None else per_gpu * len(gpus)
        if workers > per_gpu * len(gpus):
            raise WorkbenchError(
                f"--workers {workers} with --workers-per-gpu {per_gpu}: only {len(gpus)} GPU(s) visible, "
                f"at most {per_gpu * len(gpus)} workers; raise --workers-per-gpu or lower --workers"
            )
        return [WorkerPlan(i, gpus[i // per_gpu]) for i in range(workers)]
    assert workers is not None, "the CLI calls this only with --workers or --workers-per-gpu"
    return [WorkerPlan(i, gpus[i % len(gpus)] if gpus else None) for i in range(workers)]


def worker_env(plan: WorkerPlan, n_workers: int) -> dict[str, str]:
    """The environment of one worker: its id, its GPU, and its share of the CPU cores."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env[settings.WORKBENCH_WORKER_ID.name] = str(plan.worker_id)
    # distributed.set_threads divides the cores by this: N workers on 2 cores must not oversubscribe.
    env[settings.WORKBENCH_WORKERS.name] = str(n_workers)
    if plan.gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = plan.gpu
    return env


def run_workers(
    study_file: Path,
    spec: StudySpec,
    options: RunOptions,
    plans: list[WorkerPlan],
    sets: Sequence[str] = (),
    debug: bool = False,
    progress: Callable[[str], None] | StudyProgress = print,
    *,
    launch: Launch,
) -> StudyOutcome:
    """Run the study with one process per plan; returns the StudyOutcome once all have exited.

    `launch(argv, env)` starts one worker running `workbench ARGV`: the CLI forks them from a
    server that has the libraries imported already (`cli.fork_worker`).

    The launcher opens the study (bad data is refused here, once, before any worker starts or
    anything is written) and concludes it; the workers only run trials.
    """
    session = StudySession(spec, options, progress)
    session.open()
    stores, shown = session.stores, session.progress
    where = ", ".join(f"w{p.worker_id}" + (f" on GPU {p.gpu}" if p.gpu is not None else "") for p in plans)
    shown.line(session.headline(f"{len(plans)} workers ({where})"))
    session.report_state()
    # The stores travel in the environment, readable by its owner only: `ps` shows every user the command line.
    store_env = {
        settings.WORKBENCH_STORAGE.name: stores.storage_url,
        settings.MLFLOW_TRACKING_URI.name: stores.tracking_uri,
    }
    # The data the launcher prepared, saved once: each worker maps it instead of reading and tokenizing again.
    options.workdir.mkdir(parents=True, exist_ok=True)
    prepared = tempfile.TemporaryDirectory(prefix=f".{spec.study.name}-data-", dir=options.workdir)
    save_prepared(session.data, spec, Path(prepared.name))
    store_env[settings.WORKBENCH_PREPARED_DATA.name] = prepared.name
    argv = [*(["--debug"] if debug else []), "study", "run", str(study_file), "--no-register"]
    for pair in [*sets, f"study.n_trials={stores.target}"]:  # every worker aims at the same absolute target
        argv += ["--set", pair]
    try:
        with session.parent_run():
            codes = _supervise(argv, plans, lambda line: _show(session, line), store_env, launch)
            if distributed.preempted():  # the workers saved their running trials and queued retries
                raise Preempted(
                    "preempted (SIGTERM): the workers' running trials were saved and queued for a retry; run the same command to resume"
                )
    finally:
        shown.close()
        prepared.cleanup()
    for plan, code in zip(plans, codes):
        if code != 0:
            shown.line(f"worker w{plan.worker_id} exited with code {code}" + (" (killed)" if code < 0 else ""))
    fail_stale(stores.study)
    after = count_trials(stores.study)
    if (after.counted < stores.target or after.queued) and not session.out_of_time():  # a queued retry has not run yet
        raise WorkersFailed(
            f"study {spec.study.name}: the workers stopped at {after.counted}/{stores.target} trials; run the same command to resume"
        )
    session.outcome.trials_run = after.finished - stores.counts.finished
    return session.conclude()


def _show(session: StudySession, line: str) -> None:
    """A worker's line as it printed it; after a trial's line, the display's counts and best value from the storage."""
    ended = TRIAL_LINE.match(line)
    if ended is None:
        session.progress.line(line)
        return
    session.progress.trial_finished(int(ended[1]), ended[2], line)
    session.report_state()


Launch = Callable[
    [list[str], dict[str, str]], "ForkedWorker"
]  # starts one worker running `workbench ARGV` in an environment


class ForkedWorker:
    """A worker forked by a multiprocessing fork server, with the face of a `subprocess.Popen`."""

    def __init__(self, process, stdout: IO[str]):
        self.process, self.stdout, self.pid = process, stdout, process.pid

    def poll(self) -> int | None:
        return self.process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self.process.join(timeout)
        if self.process.exitcode is None:
            raise subprocess.TimeoutExpired(f"worker {self.pid}", timeout or 0)
        return self.process.exitcode

    def send_signal(self, signum: int) -> None:
        try:
            os.kill(self.pid, signum)
        except ProcessLookupError:  # already gone
            pass

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def _supervise(
    argv: list[str], plans: list[WorkerPlan], progress: Callable[[str], None], store_env: dict[str, str], launch: Launch
) -> list[int]:
    """Start one process per plan, relay their output with a `[wN]` prefix, wait for all; Ctrl-C stops all."""
    procs, readers = [], []
    lock = threading.Lock()

    def forward_sigterm(signum, frame):  # preemption: each worker saves its trial and queues a retry
        distributed.note_preemption()
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    previous = (
        signal.signal(signal.SIGTERM, forward_sigterm)
        if threading.current_thread() is threading.main_thread()
        else None
    )
    try:
        for plan in plans:
            proc = launch(argv, worker_env(plan, len(plans)) | store_env)
            procs.append(proc)
            reader = threading.Thread(target=_relay, args=(proc, f"[w{plan.worker_id}] ", progress, lock), daemon=True)
            reader.start()
            readers.append(reader)
        codes = [proc.wait() for proc in procs]
    except KeyboardInterrupt:
        progress("interrupted: stopping the workers (each ends its running trial as failed)")
        _stop(procs)
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        for reader in readers:
            reader.join(timeout=5)
    return codes


def _relay(proc: ForkedWorker, prefix: str, progress: Callable[[str], None], lock: threading.Lock) -> None:
    for line in proc.stdout:
        with lock:
            progress(prefix + line.rstrip("\n"))


def _stop(procs: list[ForkedWorker]) -> None:
    """SIGINT every live worker, then SIGKILL those still alive after STOP_TIMEOUT_S."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    for proc in procs:
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
