"""Many worker processes on one study: start them, show their progress, stop them, conclude once.

`study run FILE --workers N` prepares the stores once (so N processes never race to create
the experiment, the parent run or the database tables), forks N workers (`study.forked`) that
share the study through its Optuna storage, shows their trial events and prefixes each line
they print with their id, forwards Ctrl-C to all of them, and, when they have all exited,
summarises the study and registers its best model: one registration, whatever the number of workers.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from workbench.config.study_file import StudySpec, apply_overrides
from workbench.core import distributed
from workbench.core.errors import Preempted, WorkbenchError, WorkersFailed
from workbench.core.progress import StudyProgress
from workbench.data.splits import save_prepared
from workbench.stores.storage import count_trials, fail_stale
from workbench.study.forked import ForkedWorker, TrialEvent, WorkerTask, fork_worker
from workbench.study.session import RunOptions, StudyOutcome, StudySession

Launch = Callable[[WorkerTask], ForkedWorker]  # starts one worker on its task
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


def run_workers(
    spec: StudySpec,
    options: RunOptions,
    plans: list[WorkerPlan],
    debug: bool = False,
    progress: Callable[[str], None] | StudyProgress = print,
    launch: Launch = fork_worker,
) -> StudyOutcome:
    """Run the study with one worker process per plan; returns the StudyOutcome once all have exited.

    The launcher opens the study (bad data is refused here, once, before any worker starts or
    anything is written) and concludes it; the workers only run trials.
    """
    session = StudySession.open(spec, options, progress)
    stores, shown = session.stores, session.progress
    where = ", ".join(f"w{p.worker_id}" + (f" on GPU {p.gpu}" if p.gpu is not None else "") for p in plans)
    shown.line(session.headline(f"{len(plans)} workers ({where})"))
    session.report_state()
    # The data the launcher prepared, saved once: each worker maps it instead of reading and tokenizing again.
    options.workdir.mkdir(parents=True, exist_ok=True)
    prepared = tempfile.TemporaryDirectory(prefix=f".{spec.study.name}-data-", dir=options.workdir)
    save_prepared(session.data, spec, Path(prepared.name))
    # The stores travel inside the task (a pipe), never on a command line that `ps` shows every user.
    worker_options = dataclasses.replace(
        options,
        storage=stores.storage_url,
        tracking_uri=stores.tracking_uri,
        add_trials=None,
        register=False,
        launched=True,
        prepared=Path(prepared.name),
    )
    worker_spec = apply_overrides(spec, {"study.n_trials": stores.target})  # every worker aims at one target
    tasks = [WorkerTask(worker_spec, worker_options, p.worker_id, len(plans), p.gpu, debug) for p in plans]
    try:
        with session.parent_run():
            codes = _supervise(tasks, session, launch)
            if distributed.preempted():  # the workers saved their running trials and queued retries
                raise Preempted(
                    "preempted (SIGTERM): the workers' running trials were saved and queued for a retry; "
                    "run the same command to resume"
                )
    finally:
        shown.close()
        prepared.cleanup()
    return _after_workers(session, plans, codes)


def _after_workers(session: StudySession, plans: list[WorkerPlan], codes: list[int]) -> StudyOutcome:
    """Once every worker has exited: say who failed, check the target was met, conclude."""
    stores = session.stores
    for plan, code in zip(plans, codes):
        if code != 0:
            session.progress.line(
                f"worker w{plan.worker_id} exited with code {code}" + (" (killed)" if code < 0 else "")
            )
    fail_stale(stores.study)
    after = count_trials(stores.study)
    if (after.counted < stores.target or after.queued) and not session.out_of_time():  # a queued retry has not run
        raise WorkersFailed(
            f"study {session.spec.study.name}: the workers stopped at {after.counted}/{stores.target} trials; "
            "run the same command to resume"
        )
    session.outcome.trials_run = after.finished - stores.counts.finished
    return session.conclude()


def _show_event(session: StudySession, event: TrialEvent) -> None:
    """A worker's trial event on the launcher's display; after a trial ends, the study's counts from the storage."""
    shown = session.progress
    if event.kind == "started":
        shown.trial_started(event.number)
    elif event.kind == "evaluated" and event.index is not None and event.value is not None:
        shown.evaluation(event.number, event.index, event.value)
    elif event.kind == "ended" and event.state is not None:
        shown.trial_finished(event.number, event.state, f"[w{event.worker}]   {event.summary}")
        session.report_state()


def _supervise(tasks: list[WorkerTask], session: StudySession, launch: Launch) -> list[int]:
    """Start one worker per task, show its events and relay its text with a `[wN]` prefix; wait for all.

    Ctrl-C stops them all; SIGTERM is forwarded to each (it saves its trial and queues a retry).
    """
    procs: list[ForkedWorker] = []
    readers: list[threading.Thread] = []
    lock = threading.Lock()  # one worker's line or event at a time on the display

    def forward_sigterm(signum, frame):
        distributed.note_preemption()
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    on_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, forward_sigterm) if on_main_thread else None
    try:
        for task in tasks:
            proc = launch(task)
            procs.append(proc)
            prefix = f"[w{task.worker_id}] "
            for target in (_relay_text, _relay_events):
                reader = threading.Thread(target=target, args=(proc, prefix, session, lock), daemon=True)
                reader.start()
                readers.append(reader)
        codes = [proc.wait() for proc in procs]
    except KeyboardInterrupt:
        session.progress.line("interrupted: stopping the workers (each ends its running trial as failed)")
        _stop(procs)
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        for reader in readers:
            reader.join(timeout=5)
    return codes


def _relay_text(proc: ForkedWorker, prefix: str, session: StudySession, lock: threading.Lock) -> None:
    for line in proc.stdout:
        with lock:
            session.progress.line(prefix + line.rstrip("\n"))


def _relay_events(proc: ForkedWorker, prefix: str, session: StudySession, lock: threading.Lock) -> None:
    while True:
        try:
            event = proc.events.recv()
        except (EOFError, OSError):  # the worker exited: its end of the pipe is closed
            return
        with lock:
            _show_event(session, event)


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
