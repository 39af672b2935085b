"""Process topology: torchrun ranks, the worker id of `--workers`, and stop requests.

Rank helpers for trials under `torchrun`: one process group per study process.

Rank 0 owns the Optuna study and every MLflow write; the other ranks follow. Every exchange
goes through two helpers, so the ranks always call the same collectives in the same order:
- `on_main(fn)`: fn runs on rank 0; its result, or the reason it failed, reaches every rank.
- `together(fn)`: fn runs on every rank; when it fails on any rank, it fails on all of them.
A rank that cannot reach the others (it failed inside a DDP step, where they wait for its
gradients) raises `RanksDiverged` and the job stops: torchrun ends the other ranks.

Why not optuna-integration's `TorchDistributedTrial`: it sends `suggest_float` values as
float32 (the trained value differs from the one Optuna stores), and an exception on rank 0
inside `suggest_*` or `should_prune` skips its broadcast, leaving the other ranks waiting.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar, cast

from workbench.core import settings
from workbench.core.errors import WorkbenchError, first_line

T = TypeVar("T")
# `together` waits WORKBENCH_SYNC_TIMEOUT_S for every rank; a rank stuck inside a DDP step never arrives.
# A rank that failed inside a training loop waits only WORKBENCH_STEP_WAIT_S: past it, the others are
# stuck in a DDP step that needs it, and it stops the job (torchrun ends them) instead of waiting.
_control = None  # a gloo group for our own messages (CPU objects), beside the training group
_sync = None  # the same, giving up after WORKBENCH_SYNC_TIMEOUT_S: `together` learns when a rank is lost
_stop_requested = threading.Event()
_preempted = threading.Event()  # SIGTERM: save the running trial and leave
_left_waiting = threading.Event()  # a gather for ranks that never came still runs in a thread


class SharedFailure(WorkbenchError):
    """Raised on the ranks where a shared step did not fail itself: another rank's reason."""


class RanksDiverged(WorkbenchError):
    """A rank failed where the others could not learn of it; the job stops (resume retries)."""

    exit_code = 1


def worker_id() -> int | None:
    """This process's id among the workers of `study run --workers`; None when it is not one."""
    return settings.WORKBENCH_WORKER_ID.get()


def install_interrupt_handler() -> None:
    """Ctrl-C raises KeyboardInterrupt as usual, and is also remembered for `stop_requested`.

    Python swallows an exception raised inside a finalizer (`__del__`, weakref callbacks), so a
    Ctrl-C landing there is lost; training checks `stop_requested` at every step as a backstop.
    """

    def handler(signum, frame):
        _stop_requested.set()
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, handler)


def stop_requested() -> bool:
    return _stop_requested.is_set()


def install_preemption_handler() -> None:
    """SIGTERM (what a spot instance, Slurm or Kubernetes sends before SIGKILL) is remembered, not raised:
    training saves a checkpoint at the end of the current step and the trial is queued for a retry.

    Under torchrun every rank gets the signal (the agent forwards it), each at its own step: the
    ranks stop at the first step end where any of them has it (`any_rank`), so they stay in step.
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda signum, frame: note_preemption())


def note_preemption() -> None:
    _preempted.set()


def preempted() -> bool:
    """True once this process got SIGTERM (see install_preemption_handler)."""
    return _preempted.is_set()


def exit_now_if_left_waiting(code: int) -> None:
    """Exit at once when a collective was left waiting for lost ranks: the interpreter's normal
    shutdown would abort on the thread that runs it (SIGABRT instead of our exit code)."""
    if _left_waiting.is_set():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def world_size() -> int:
    return settings.WORLD_SIZE.get()


def rank() -> int:
    return settings.RANK.get()


def is_distributed() -> bool:
    return world_size() > 1


def is_main() -> bool:
    return rank() == 0


def init_distributed() -> None:
    """Join the torchrun process group (nccl on GPUs, gloo on CPU) before the first suggest."""
    global _control, _sync
    if not is_distributed():
        return
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(settings.LOCAL_RANK.get())
            dist.init_process_group("nccl")
        else:
            dist.init_process_group("gloo")
    if _control is None:
        _control = dist.new_group(backend="gloo")
        _sync = dist.new_group(backend="gloo", timeout=timedelta(seconds=settings.WORKBENCH_SYNC_TIMEOUT_S.get()))


def shutdown_distributed() -> None:
    """Wait for every rank (rank 0 registers the model meanwhile), then leave the group."""
    global _control, _sync
    if is_distributed():
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier(group=_control)
            dist.destroy_process_group()
        _control = _sync = None


def any_rank(flag: bool) -> bool:
    """True on every rank when `flag` is True on any rank: one decision, taken together (`flag` alone without torchrun).

    Every rank must call it at the same point (a training step's end, between trials).
    """
    if not is_distributed():
        return flag
    import torch
    import torch.distributed as dist

    box = torch.tensor([1 if flag else 0])
    dist.all_reduce(box, op=dist.ReduceOp.MAX, group=_control)
    return bool(box.item())


def broadcast(value: Any) -> Any:
    """Rank 0's `value` on every rank (a no-op without torchrun). `value` must pickle."""
    if not is_distributed():
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0, group=_control)
    return box[0]


def failure_reason(e: BaseException) -> str:
    """One line for a trial's fail reason: our errors as they are, others with their class."""
    if isinstance(e, WorkbenchError):
        return first_line(e)
    return f"{e.__class__.__name__}: {first_line(e)}"


def on_main(fn: Callable[[], T]) -> T:
    """fn() on rank 0 only; its result on every rank. When it raises, every rank raises.

    Rank 0 re-raises its own exception; the other ranks raise `SharedFailure` with its reason.
    """
    if not is_distributed():
        return fn()
    result = error = None
    if is_main():
        try:
            result = fn()
        except Exception as e:
            error = e
    reason, result = broadcast((failure_reason(error) if error is not None else None, result))
    if error is not None:
        raise error
    if reason is not None:
        raise SharedFailure(reason)
    return result


def together(fn: Callable[[], T], *, in_step: bool = False) -> T:
    """fn() on every rank; when it raises on any rank, it raises on every rank.

    A rank that failed re-raises its own exception; the others raise `SharedFailure` naming
    the first failing rank. A rank that waits `WORKBENCH_SYNC_TIMEOUT_S` for the others (they are stuck
    in a DDP collective it will never join) raises `RanksDiverged`. With `in_step` (fn is a
    training loop: every step is a collective), a rank that failed waits only `WORKBENCH_STEP_WAIT_S`:
    a failure every rank shares (a pruner's or the tracking store's, a non-finite loss) reaches
    them all in the same step, so the others are late only when they wait for this rank.
    """
    if not is_distributed():
        return fn()
    result: T | None = None
    error: Exception | None = None
    try:
        result = fn()
    except Exception as e:
        error = e
    wait_s = settings.WORKBENCH_STEP_WAIT_S.get() if in_step and error is not None else None
    try:
        reasons = _gather(failure_reason(error) if error is not None else None, wait_s)
    except RuntimeError as lost:
        why = failure_reason(error) if error is not None else f"lost the other ranks: {first_line(lost)}"
        raise RanksDiverged(
            f"rank {rank()}: {why}; the ranks can no longer train in step, so the job stops "
            "(run the same command to resume: the unfinished trial is retried)"
        ) from (error or lost)
    if error is not None:
        raise error
    failed = [(r, reason) for r, reason in enumerate(reasons) if reason is not None]
    if failed:
        first, reason = failed[0]
        raise SharedFailure(reason if first == 0 else f"rank {first}: {reason}")
    return cast(T, result)  # fn() returned on every rank


def _gather(reason: str | None, wait_s: float | None) -> list:
    """Every rank's reason (None: no failure); RuntimeError when the others do not come within
    `wait_s` (the gather goes on in a thread that the stopping job ends) or WORKBENCH_SYNC_TIMEOUT_S."""
    import torch.distributed as dist

    reasons: list = [None] * world_size()
    if wait_s is None:
        dist.all_gather_object(reasons, reason, group=_sync)
        return reasons
    done, lost = threading.Event(), []

    def gather() -> None:
        try:
            dist.all_gather_object(reasons, reason, group=_sync)
        except RuntimeError as e:
            lost.append(e)
        done.set()

    threading.Thread(target=gather, daemon=True).start()
    if not done.wait(wait_s):
        _left_waiting.set()
        raise RuntimeError(f"the other ranks did not answer within {wait_s:g} s")
    if lost:
        raise lost[0]
    return reasons


def set_threads() -> int:
    """Size torch's threads to the cores this process owns (oversubscribed, a trial ran 10x slower)."""
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    local = settings.LOCAL_WORLD_SIZE.get() or settings.WORKBENCH_WORKERS.get()
    threads = max(1, cores // max(local, 1))
    torch.set_num_threads(threads)
    return threads
