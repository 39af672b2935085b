"""Rank helpers for trials under `torchrun`: one process group per study process.

Rank 0 owns the Optuna trial and every MLflow write; the other ranks follow. Parameters
and prune decisions reach them through optuna-integration's `TorchDistributedTrial`.
"""

from __future__ import annotations

import os
from typing import Any


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_distributed() -> bool:
    return world_size() > 1


def is_main() -> bool:
    return rank() == 0


def init_distributed() -> None:
    """Join the torchrun process group (nccl on GPUs, gloo on CPU) before the first suggest."""
    if not is_distributed():
        return
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")


def shutdown_distributed() -> None:
    if is_distributed():
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


def broadcast(value: Any) -> Any:
    """Rank 0's `value` on every rank (a no-op without torchrun)."""
    if not is_distributed():
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_agree(ok: bool) -> bool:
    """True on every rank when `ok` is true on every rank: one failing rank fails them all."""
    if not is_distributed():
        return ok
    import torch
    import torch.distributed as dist

    flag = torch.tensor([1 if ok else 0], device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def distributed_trial(trial: Any) -> Any:
    """Wrap the trial so suggest/report/should_prune are shared by all ranks."""
    if not is_distributed():
        return trial
    from optuna_integration import TorchDistributedTrial

    return TorchDistributedTrial(trial)


def set_threads() -> int:
    """Size torch's threads to the cores this process owns (oversubscribed, a trial ran 10x slower)."""
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    local = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORKBENCH_WORKERS", "1")))
    threads = max(1, cores // max(local, 1))
    torch.set_num_threads(threads)
    return threads
