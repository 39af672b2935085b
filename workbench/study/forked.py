"""Forked workers: the typed task a launcher hands each one, the events they send back, the fork server.

`study run --workers N` forks its workers from a multiprocessing fork server that imports
torch, transformers and MLflow on another core while the launcher opens the study (5 s a
worker on 2 cores, otherwise paid after the launcher is done). A worker receives one
picklable `WorkerTask` (spec, options with the stores, worker id) and reports `TrialEvent`s on
a pipe of their own; what it prints for people comes back on another pipe, as text only.
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import traceback
import types
from dataclasses import dataclass
from typing import IO, Any, Literal

from workbench.config.spec import StudySpec
from workbench.core import distributed, settings
from workbench.core.console import configure_output
from workbench.core.errors import exit_status
from workbench.core.progress import StudyProgress
from workbench.study.session import RunOptions, run_session

# imported once by the fork server, so that each forked worker starts with them loaded
PRELOADED = ["workbench.study.session", "workbench.api"]


@dataclass(frozen=True)
class WorkerTask:
    """Everything a forked worker needs, in one picklable object: no command line, no environment to parse."""

    spec: StudySpec  # n_trials is the launcher's absolute target: every worker aims at the same one
    options: RunOptions  # the stores the launcher opened, launched=True, register=False, prepared data
    worker_id: int
    n_workers: int  # how many share this machine's cores (threads per worker)
    gpu: str | None = None  # the CUDA device this worker sees as cuda:0; None on the CPU
    debug: bool = False

    def environment(self) -> dict[str, str]:
        """What the worker's process sets for the libraries: its GPU, and its id and share of the cores."""
        env = {
            settings.WORKBENCH_WORKER_ID.name: str(self.worker_id),
            settings.WORKBENCH_WORKERS.name: str(self.n_workers),
        }
        if self.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = self.gpu
        return env


@dataclass(frozen=True)
class TrialEvent:
    """What a worker tells its launcher about one trial; the launcher's display and bookkeeping read these."""

    worker: int
    kind: Literal["started", "evaluated", "ended"]
    number: int
    index: int | None = None  # evaluated: which evaluation of the trial
    value: float | None = None  # evaluated: the study metric then
    state: str | None = None  # ended: COMPLETE, PRUNED or FAIL
    summary: str = ""  # ended: the trial's line, as the worker would print it


class EventProgress(StudyProgress):
    """A worker's progress: trial events go to the launcher on `channel`; notices print as text."""

    def __init__(self, channel: Any, worker: int):
        super().__init__(lambda line: print(line, flush=True))
        self.channel, self.worker = channel, worker

    def trial_started(self, number: int) -> None:
        self.channel.send(TrialEvent(self.worker, "started", number))

    def evaluation(self, number: int, index: int, value: float) -> None:
        self.channel.send(TrialEvent(self.worker, "evaluated", number, index=index, value=value))

    def trial_finished(self, number: int, state: str, text: str) -> None:
        self.channel.send(TrialEvent(self.worker, "ended", number, state=state, summary=text.strip()))


class ForkedWorker:
    """A worker forked by the fork server, with the face of a `subprocess.Popen`; its text and its events."""

    def __init__(self, process: Any, stdout: IO[str], events: Any):
        self.process, self.stdout, self.events, self.pid = process, stdout, events, process.pid

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


def start_fork_server() -> None:
    """Start the fork server in the background (it ends with this process); `fork_worker` forks from it."""
    from multiprocessing import forkserver

    forkserver.set_forkserver_preload(PRELOADED)
    # The server must not hold our stdout and stderr: a caller reading them to the end would wait
    # for the server's own exit (1.5 s of garbage collection), after ours. Each worker gets a pipe.
    saved = [os.dup(fd) for fd in (1, 2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd in (1, 2):
            os.dup2(devnull, fd)
        forkserver.ensure_running()
    finally:
        for fd, copy in zip((1, 2), saved):
            os.dup2(copy, fd)
            os.close(copy)
        os.close(devnull)


def fork_worker(task: WorkerTask) -> ForkedWorker:
    """A worker running `task`, forked from the server; its stdout and stderr come back as text, its events apart."""
    import multiprocessing

    context = multiprocessing.get_context("forkserver")
    read, write = context.Pipe(duplex=False)
    events_in, events_out = context.Pipe(duplex=False)
    process = context.Process(target=_worker_main, args=(task, events_out, write), name="workbench-worker")
    # multiprocessing re-runs the launching script in the child unless it is a module's __main__:
    # a user's unguarded script would start over in every worker. The worker needs nothing from it.
    main_module = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        process.start()
    finally:
        sys.modules["__main__"] = main_module
    write.close()  # the worker holds the only write ends: its exit ends our reading
    events_out.close()
    stdout = os.fdopen(os.dup(read.fileno()), "r", encoding="utf-8", errors="replace")
    read.close()
    return ForkedWorker(process, stdout, events_in)


def _worker_main(task: WorkerTask, events: Any, out: Any) -> None:
    """In the forked process: run the task's trials; exit with the code `workbench study run` would."""
    os.setsid()  # its own session: a terminal's Ctrl-C reaches the launcher only, which forwards it
    for fd in (1, 2):
        os.dup2(out.fileno(), fd)
    out.close()
    sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
    os.environ.update(task.environment())
    configure_output(task.debug)
    distributed.install_interrupt_handler()
    distributed.install_preemption_handler()
    try:
        run_session(task.spec, task.options, EventProgress(events, task.worker_id))
        code = 0
    except (Exception, KeyboardInterrupt) as e:
        if task.debug and not isinstance(e, KeyboardInterrupt):
            traceback.print_exc()
        message, code = exit_status(e)
        print(message, file=sys.stderr)
    events.close()
    gc.freeze()  # exit without walking every object the libraries made (seconds per process)
    sys.exit(code)
