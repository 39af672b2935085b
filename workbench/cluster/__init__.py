"""A study under a scheduler: Slurm job arrays (`slurm`), Kubernetes manifests (`kubernetes`), and the
stores their jobs share, handed over privately (`stores`)."""

from workbench.cluster.kubernetes import KubernetesSpec, render_manifests, write_manifests
from workbench.cluster.slurm import (
    SlurmSpec,
    render_conclude_script,
    render_workers_script,
    submit_slurm_job,
    write_slurm_job,
)
from workbench.cluster.stores import ClusterStores, resolve_cluster_stores, write_env_file

__all__ = [
    "ClusterStores",
    "KubernetesSpec",
    "SlurmSpec",
    "render_conclude_script",
    "render_manifests",
    "render_workers_script",
    "resolve_cluster_stores",
    "submit_slurm_job",
    "write_env_file",
    "write_manifests",
    "write_slurm_job",
]
