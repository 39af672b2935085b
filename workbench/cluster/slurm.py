"""`workbench cluster slurm`: a study as a Slurm job array of workers plus one job that concludes it.

Each array task runs `workbench study run FILE` as one worker of the study (under `srun
torchrun` when it spans several GPUs or nodes); they meet in the study's Optuna storage. A
job that depends on the whole array (`afterany`) runs `workbench study conclude FILE`:
summary, plots, registration, once. Before the time limit, or when preempted, Slurm sends
SIGTERM to the batch shell (`--signal=B:TERM@GRACE`); the shell passes it to the worker,
which saves its trial and queues the retry, then requeues the task (`--requeue`).
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from workbench.cluster.stores import ClusterStores, write_env_file
from workbench.core.errors import WorkbenchError

ENV_FILE = "stores.env"
WORKERS_SCRIPT = "workers.sbatch"
CONCLUDE_SCRIPT = "conclude.sbatch"


class SchedulerError(WorkbenchError):
    """The scheduler refused a job, or is not there."""


@dataclass(frozen=True)
class SlurmSpec:
    """One study's jobs: N workers of G GPUs on M nodes each, and where their files go."""

    study_file: Path  # absolute: jobs start in --chdir
    study_name: str
    workers: int
    folder: Path  # the scripts, the env file and logs/ (absolute)
    workdir: Path  # where the jobs run: their mlruns/ and relative paths (absolute)
    gpus_per_worker: int = 0  # in all, over the worker's nodes
    nodes_per_worker: int = 1
    cpus_per_worker: int | None = None  # per node; Slurm's default (1) when None
    grace_s: int = 120  # SIGTERM this long before the time limit
    sets: tuple[str, ...] = ()  # `--set KEY=VALUE` for every job
    sbatch_options: tuple[str, ...] = ()  # more `#SBATCH` lines: --time, --partition, --account ...
    python: str = field(default_factory=lambda: sys.executable)

    def check(self) -> None:
        """Every problem with the numbers, in one error naming the flags."""
        problems = []
        if self.workers < 1:
            problems.append(f"--workers {self.workers}: must be 1 or more")
        if self.nodes_per_worker < 1:
            problems.append(f"--nodes-per-worker {self.nodes_per_worker}: must be 1 or more")
        if self.gpus_per_worker < 0:
            problems.append(f"--gpus-per-worker {self.gpus_per_worker}: must be 0 or more")
        elif self.gpus_per_worker % self.nodes_per_worker:
            problems.append(
                f"--gpus-per-worker {self.gpus_per_worker}: must be a multiple of --nodes-per-worker "
                f"{self.nodes_per_worker} (the same GPUs on each node)"
            )
        if self.cpus_per_worker is not None and self.cpus_per_worker < 1:
            problems.append(f"--cpus-per-worker {self.cpus_per_worker}: must be 1 or more")
        if self.grace_s < 1:
            problems.append(f"--grace {self.grace_s}: must be 1 second or more")
        if problems:
            raise WorkbenchError("; ".join(problems))

    @property
    def distributed(self) -> bool:
        """True when a worker spans several GPUs or nodes: it runs under torchrun, one rank per GPU."""
        return self.gpus_per_worker > 1 or self.nodes_per_worker > 1


def _study_args(spec: SlurmSpec) -> str:
    """`FILE --set K=V ...`, quoted for the shell."""
    words = [str(spec.study_file)] + [w for s in spec.sets for w in ("--set", s)]
    return " ".join(shlex.quote(w) for w in words)


def _header(spec: SlurmSpec, name: str, log: str) -> list[str]:
    lines = ["#!/bin/bash", f"#SBATCH --job-name={name}", f"#SBATCH --chdir={spec.workdir}"]
    lines += [f"#SBATCH --output={spec.folder / 'logs' / log}", "#SBATCH --open-mode=append"]
    return lines


def render_workers_script(spec: SlurmSpec) -> str:
    """The job array: one task per worker, SIGTERM forwarded to the worker, requeued when it was preempted."""
    per_node = spec.gpus_per_worker // spec.nodes_per_worker
    lines = _header(spec, f"wb-{spec.study_name}", "worker-%A_%a.out")
    lines += [f"#SBATCH --array=0-{spec.workers - 1}", f"#SBATCH --nodes={spec.nodes_per_worker}"]
    lines += ["#SBATCH --ntasks-per-node=1", f"#SBATCH --signal=B:TERM@{spec.grace_s}", "#SBATCH --requeue"]
    if per_node:
        lines.append(f"#SBATCH --gpus-per-node={per_node}")
    if spec.cpus_per_worker:
        lines.append(f"#SBATCH --cpus-per-task={spec.cpus_per_worker}")
    lines += [f"#SBATCH {option}" for option in spec.sbatch_options]
    lines += [
        "# The store URLs (they may hold passwords) come from a file only you can read, not from this script.",
        f"set -a; source {shlex.quote(str(spec.folder / ENV_FILE))}; set +a",
        "# each worker samples with its own seed; a requeued task too (the same seed repeats its parameters)",
        "export PYTHONUNBUFFERED=1",
        "export WORKBENCH_WORKER_ID=$(( SLURM_ARRAY_TASK_ID"
        " + ${SLURM_ARRAY_TASK_COUNT:-1} * ${SLURM_RESTART_COUNT:-0} ))",
        "# torch threads = cores / workers sharing them (without CPU binding every task sees all of the node's cores)",
        "share=$(( $(nproc) / ${SLURM_CPUS_PER_TASK:-1} ))",
        "export WORKBENCH_WORKERS=$(( share > 0 ? share : 1 ))",
        f"python={shlex.quote(spec.python)}",
    ]
    run = f'"$python" -m workbench study run {_study_args(spec)} --no-register'
    if spec.distributed:
        lines += [
            'head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
            "port=$(( 20000 + SLURM_JOB_ID % 20000 ))  # one rendezvous port per task, several may share a node",
        ]
        torchrun = (
            f'srun --kill-on-bad-exit=1 "$python" -m torch.distributed.run --nnodes={spec.nodes_per_worker} '
            f"--nproc-per-node={max(per_node, 1)} --rdzv-backend=c10d --rdzv-endpoint=$head:$port "
            f"--rdzv-id=$SLURM_JOB_ID -m workbench study run {_study_args(spec)} --no-register"
        )
        run = torchrun
    lines += [
        "# SIGTERM reaches this shell only (B:): pass it on; the worker saves its trial and queues the retry.",
        "preempted=0",
        "trap 'preempted=1; kill -TERM \"$child\" 2>/dev/null' TERM",
        f"{run} &",
        "child=$!",
        'status=0; wait "$child" || status=$?',
        'while kill -0 "$child" 2>/dev/null; do status=0; wait "$child" || status=$?; done',
        'if [ "$preempted" = 1 ]; then',
        '  echo "worker $SLURM_ARRAY_TASK_ID: preempted (exit $status); requeued"',
        '  scontrol requeue "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}" || true',
        "fi",
        'exit "$status"',
    ]
    return "\n".join(lines) + "\n"


def render_conclude_script(spec: SlurmSpec) -> str:
    """The job that runs once every worker has ended: `workbench study conclude FILE`."""
    lines = _header(spec, f"wb-{spec.study_name}-conclude", "conclude-%j.out")
    lines += [f"#SBATCH {option}" for option in spec.sbatch_options]
    lines += [
        f"set -a; source {shlex.quote(str(spec.folder / ENV_FILE))}; set +a",
        f"exec {shlex.quote(spec.python)} -m workbench study conclude {_study_args(spec)}",
    ]
    return "\n".join(lines) + "\n"


def write_slurm_job(spec: SlurmSpec, stores: ClusterStores) -> tuple[Path, Path]:
    """Write the env file (mode 0600), both scripts and logs/ into `spec.folder`; returns the two scripts."""
    spec.check()
    (spec.folder / "logs").mkdir(parents=True, exist_ok=True)
    write_env_file(spec.folder / ENV_FILE, stores.env())
    workers, conclude = spec.folder / WORKERS_SCRIPT, spec.folder / CONCLUDE_SCRIPT
    workers.write_text(render_workers_script(spec))
    conclude.write_text(render_conclude_script(spec))
    return workers, conclude


@dataclass(frozen=True)
class Submitted:
    workers_job: str  # the array's job id
    conclude_job: str


def submit_slurm_job(workers: Path, conclude: Path) -> Submitted:
    """`sbatch` the array, then the conclude job after it (afterany: it concludes whatever the workers did)."""
    array = _sbatch([str(workers)])
    # kill-on-invalid-dep: a dependency that can never be met cancels the job instead of leaving it pending
    after = _sbatch([f"--dependency=afterany:{array}", "--kill-on-invalid-dep=yes", str(conclude)])
    return Submitted(array, after)


def _sbatch(args: list[str]) -> str:
    try:
        done = subprocess.run(["sbatch", "--parsable", *args], capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise SchedulerError(
            "sbatch: not found: run --submit on a Slurm login node, or submit the scripts there"
        ) from None
    except subprocess.TimeoutExpired:
        raise SchedulerError("sbatch: no answer in 60 s: is slurmctld up? (scontrol ping)") from None
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        raise SchedulerError(f"sbatch {args[-1]}: refused: {reason}")
    return done.stdout.strip().split(";")[0]  # "ID" or "ID;CLUSTER"


def watch_lines(spec: SlurmSpec, submitted: Submitted | None) -> list[str]:
    """What to print after writing (and submitting) the jobs: where they are, how to watch them."""
    folder = spec.folder
    if submitted is None:
        return [
            f"wrote {folder / WORKERS_SCRIPT} ({spec.workers} workers) and {folder / CONCLUDE_SCRIPT}",
            f"submit: jid=$(sbatch --parsable {folder / WORKERS_SCRIPT}) && "
            f"sbatch --dependency=afterany:$jid --kill-on-invalid-dep=yes {folder / CONCLUDE_SCRIPT}",
        ]
    a, c = submitted.workers_job, submitted.conclude_job
    return [
        f"submitted job array {a} ({spec.workers} workers) and job {c} (concludes the study after them)",
        f"watch: squeue -j {a},{c}    logs: {folder / 'logs'}/worker-{a}_*.out, conclude-{c}.out",
        f"study: workbench study show {spec.study_name}    cancel: scancel {a} {c}",
    ]
