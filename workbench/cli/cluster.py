"""`workbench cluster slurm|kubernetes FILE`: a study written out (and submitted) as a scheduler's jobs.

The parsers and the two handlers; `workbench.cluster` is imported inside them, so `workbench
--help` stays instant.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

CLUSTER_DIR = Path("mlruns") / "cluster"  # default --output: mlruns/cluster/<study>/<scheduler>/


def add_cluster_commands(
    commands, with_storage: list[argparse.ArgumentParser], parse_sets: Callable[[list[str]], dict]
) -> None:
    """`cluster slurm` and `cluster kubernetes` under the CLI's subcommands; `parse_sets` reads `--set`."""
    cluster = commands.add_parser("cluster", help="run a study under a scheduler: Slurm job arrays, Kubernetes Jobs")
    cluster.set_defaults(parse_sets=parse_sets)
    schedulers = cluster.add_subparsers(dest="scheduler", required=True)
    slurm = schedulers.add_parser(
        "slurm",
        parents=with_storage,
        help="write (and --submit) a Slurm job array of N workers and a job that concludes the study after them",
    )
    _common(slurm)
    slurm.add_argument("--nodes-per-worker", type=int, default=1, metavar="M", help="nodes per worker (default 1)")
    slurm.add_argument("--cpus-per-worker", type=int, metavar="C", help="CPUs per worker node (--cpus-per-task)")
    slurm.add_argument(
        "--grace", type=int, default=120, metavar="S", help="SIGTERM this many seconds before the time limit"
    )
    slurm.add_argument(
        "--sbatch",
        action="append",
        default=[],
        metavar="OPTION",
        help="one more #SBATCH line for both jobs, e.g. --sbatch=--time=04:00:00 --sbatch=--partition=gpu",
    )
    slurm.add_argument("--submit", action="store_true", help="submit both jobs with sbatch and print their ids")
    slurm.set_defaults(handler=cmd_cluster_slurm)
    kubernetes = schedulers.add_parser(
        "kubernetes",
        help="write Kubernetes manifests: PostgreSQL, workbench server, an Indexed Job of N workers, a conclude Job",
    )
    _common(kubernetes)
    kubernetes.add_argument("--image", required=True, help="a container image with workbench (and your data) in it")
    kubernetes.add_argument("--namespace", default="default", help="the namespace to deploy into (default: default)")
    kubernetes.set_defaults(handler=cmd_cluster_kubernetes)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study_file", type=Path)
    parser.add_argument("--workers", type=int, required=True, metavar="N", help="how many workers run the study")
    parser.add_argument(
        "--gpus-per-worker", type=int, default=0, metavar="G", help="GPUs per worker (torchrun, one rank per GPU)"
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a study-file value in every job"
    )
    parser.add_argument(
        "--output", type=Path, help=f"the folder to write into (default: {CLUSTER_DIR}/<study>/<scheduler>/)"
    )


def _load(args):
    from workbench.config.study_file import load_study_file

    return load_study_file(args.study_file, args.parse_sets(args.set))


def cmd_cluster_slurm(args) -> int:
    from workbench.cluster.slurm import SlurmSpec, submit_slurm_job, watch_lines, write_slurm_job
    from workbench.cluster.stores import journal_note, prepare_stores, resolve_cluster_stores

    study = _load(args)
    name = study.study.name
    spec = SlurmSpec(
        study_file=args.study_file.resolve(),
        study_name=name,
        workers=args.workers,
        folder=(args.output or CLUSTER_DIR / name / "slurm").resolve(),
        workdir=Path.cwd(),
        gpus_per_worker=args.gpus_per_worker,
        nodes_per_worker=args.nodes_per_worker,
        cpus_per_worker=args.cpus_per_worker,
        grace_s=args.grace,
        sets=tuple(args.set),
        sbatch_options=tuple(args.sbatch),
    )
    spec.check()  # before the stores: a refused command leaves nothing behind
    stores = resolve_cluster_stores(args.storage, args.tracking_uri)
    prepare_stores(stores, study)
    workers, conclude = write_slurm_job(spec, stores)
    print(f"stores: {stores.describe()} (in {spec.folder / 'stores.env'}, mode 0600)")
    if stores.single_node:
        print(
            "note: a SQLite store serves one node: keep the jobs on this node, or use PostgreSQL and workbench server"
        )
    if journal_note(stores):
        print(journal_note(stores))
    for line in watch_lines(spec, submit_slurm_job(workers, conclude) if args.submit else None):
        print(line)
    return 0


def cmd_cluster_kubernetes(args) -> int:
    from workbench.cluster.kubernetes import KubernetesSpec, write_manifests

    study = _load(args)
    name = study.study.name
    spec = KubernetesSpec(
        study_name=name,
        study_text=args.study_file.read_text(encoding="utf-8"),
        workers=args.workers,
        image=args.image,
        namespace=args.namespace,
        gpus_per_worker=args.gpus_per_worker,
        sets=tuple(args.set),
    )
    folder = (args.output or CLUSTER_DIR / name / "kubernetes").resolve()
    for line in write_manifests(spec, folder):
        print(line)
    return 0
