"""`workbench cluster kubernetes`: one study as Kubernetes manifests, as Optuna's own Kubernetes example
lays it out: PostgreSQL, an MLflow server (`workbench server`), an Indexed Job of N identical
workers and a Job that concludes the study after them. Passwords live in a Secret and reach
the containers as environment variables (secretKeyRef), never in a command or a manifest
other than the Secret's.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from workbench.cluster.stores import write_private
from workbench.core.errors import WorkbenchError

POSTGRES_IMAGE = "postgres:17"
DB_USER = "workbench"
SERVER_PORT = 5000
STUDY_MOUNT = "/study"  # the study file, from a ConfigMap
WORKDIR = "/work"  # the pods' working directory: mlruns/trials/ scratch space (emptyDir)
GRACE_S = 120  # seconds between SIGTERM and SIGKILL: the worker saves its trial and queues the retry


@dataclass(frozen=True)
class KubernetesSpec:
    study_name: str
    study_text: str  # the study file, shipped in a ConfigMap
    workers: int
    image: str  # has workbench (and the study's data files, if any) installed
    namespace: str = "default"
    gpus_per_worker: int = 0
    sets: tuple[str, ...] = ()
    storage_size: str = "10Gi"  # each of PostgreSQL's and the artifacts' volumes

    @property
    def prefix(self) -> str:
        """`wb-<study>`, spelled as Kubernetes names must be (lower case, digits, '-')."""
        name = re.sub(r"[^a-z0-9-]+", "-", self.study_name.lower()).strip("-")[:40].strip("-")
        return f"wb-{name or 'study'}"


def _meta(spec: KubernetesSpec, suffix: str) -> dict[str, Any]:
    return {
        "name": f"{spec.prefix}-{suffix}",
        "namespace": spec.namespace,
        "labels": {"app.kubernetes.io/part-of": "workbench", "workbench/study": spec.prefix.removeprefix("wb-")},
    }


def _secret_env(spec: KubernetesSpec, name: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": f"{spec.prefix}-stores", "key": key}}}


def render_secret(spec: KubernetesSpec, password: str) -> dict[str, Any]:
    """The database password and the two store URLs that hold it."""
    host = f"{spec.prefix}-postgres:5432"
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(spec, "stores"),
        "type": "Opaque",
        "stringData": {
            "postgres-password": password,
            "optuna-storage": f"postgresql://{DB_USER}:{password}@{host}/optuna",
            "mlflow-backend": f"postgresql://{DB_USER}:{password}@{host}/mlflow",
        },
    }


def render_postgres(spec: KubernetesSpec) -> list[dict[str, Any]]:
    """PostgreSQL with two databases (optuna, mlflow): a ConfigMap that creates the second, a Service, a StatefulSet."""
    labels = {"app": f"{spec.prefix}-postgres"}
    init = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(spec, "postgres-init")}
    init["data"] = {"mlflow.sql": "CREATE DATABASE mlflow;\n"}  # Optuna's database is POSTGRES_DB
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(spec, "postgres"),
        "spec": {"selector": labels, "ports": [{"name": "postgres", "port": 5432}]},
    }
    container = {
        "name": "postgres",
        "image": POSTGRES_IMAGE,
        # ~2 connections per worker (Optuna's pool and its heartbeat), the server's, the conclude job's
        "args": ["-c", f"max_connections={max(100, 4 * spec.workers + 20)}"],
        "env": [
            {"name": "POSTGRES_USER", "value": DB_USER},
            {"name": "POSTGRES_DB", "value": "optuna"},
            {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"},
            _secret_env(spec, "POSTGRES_PASSWORD", "postgres-password"),
        ],
        "ports": [{"containerPort": 5432}],
        "readinessProbe": {"exec": {"command": ["pg_isready", "-U", DB_USER]}, "periodSeconds": 5},
        "volumeMounts": [
            {"name": "data", "mountPath": "/var/lib/postgresql/data"},
            {"name": "init", "mountPath": "/docker-entrypoint-initdb.d"},
        ],
    }
    pod = {
        "containers": [container],
        "volumes": [{"name": "init", "configMap": {"name": f"{spec.prefix}-postgres-init"}}],
    }
    claim = {
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": spec.storage_size}}},
    }
    stateful = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _meta(spec, "postgres"),
        "spec": {
            "serviceName": f"{spec.prefix}-postgres",
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": pod},
            "volumeClaimTemplates": [claim],
        },
    }
    return [init, service, stateful]


def render_server(spec: KubernetesSpec) -> list[dict[str, Any]]:
    """`workbench server`: runs and models in PostgreSQL, artifacts on a volume it serves (workers need no access)."""
    labels = {"app": f"{spec.prefix}-server"}
    name = f"{spec.prefix}-server"
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _meta(spec, "artifacts"),
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": spec.storage_size}}},
    }
    command = ["workbench", "server", "--host", "0.0.0.0", "--port", str(SERVER_PORT)]
    command += ["--artifacts-destination", "/artifacts"]
    # mlflow refuses Host headers other than localhost and private IPs: the Service's names are neither
    command += ["--allowed-hosts", f"{name},{name}:{SERVER_PORT},{name}.{spec.namespace}.svc*"]
    container = {
        "name": "server",
        "image": spec.image,
        "command": command,
        "env": [_secret_env(spec, "MLFLOW_BACKEND_STORE_URI", "mlflow-backend")],
        "ports": [{"containerPort": SERVER_PORT}],
        "readinessProbe": {"tcpSocket": {"port": SERVER_PORT}, "periodSeconds": 5},
        "volumeMounts": [{"name": "artifacts", "mountPath": "/artifacts"}],
    }
    volumes = [{"name": "artifacts", "persistentVolumeClaim": {"claimName": f"{spec.prefix}-artifacts"}}]
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(spec, "server"),
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},  # the artifacts volume mounts on one node at a time
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container], "volumes": volumes}},
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(spec, "server"),
        "spec": {"selector": labels, "ports": [{"name": "http", "port": SERVER_PORT}]},
    }
    return [claim, deployment, service]


def render_study(spec: KubernetesSpec) -> dict[str, Any]:
    """The study file, mounted at /study/study.yaml in the workers and the conclude job."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(spec, "study"),
        "data": {"study.yaml": spec.study_text},
    }


def _study_pod(spec: KubernetesSpec, command: list[str], gpus: int) -> dict[str, Any]:
    """A pod that runs `command` on the study, its stores in the environment: the workers' and the conclude job's."""
    env = [
        _secret_env(spec, "WORKBENCH_STORAGE", "optuna-storage"),
        {"name": "MLFLOW_TRACKING_URI", "value": f"http://{spec.prefix}-server:{SERVER_PORT}"},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]
    container: dict[str, Any] = {"name": "workbench", "image": spec.image, "command": command, "env": env}
    container["workingDir"] = WORKDIR
    container["volumeMounts"] = [{"name": "study", "mountPath": STUDY_MOUNT}, {"name": "scratch", "mountPath": WORKDIR}]
    if gpus:
        container["resources"] = {"limits": {"nvidia.com/gpu": str(gpus)}}
    volumes = [
        {"name": "study", "configMap": {"name": f"{spec.prefix}-study"}},
        {"name": "scratch", "emptyDir": {}},
    ]
    return {"restartPolicy": "Never", "containers": [container], "volumes": volumes}


def _study_command(spec: KubernetesSpec, action: str) -> list[str]:
    sets = [w for s in spec.sets for w in ("--set", s)]
    return ["workbench", "study", action, f"{STUDY_MOUNT}/study.yaml", *sets]


def render_workers(spec: KubernetesSpec) -> dict[str, Any]:
    """An Indexed Job of N workers; the index is each worker's id (its sampler seed). A pod evicted or
    preempted (SIGTERM, then GRACE_S) does not count as a failure: its trial was saved and queued."""
    command = _study_command(spec, "run") + ["--no-register"]
    if spec.gpus_per_worker > 1:  # one rank per GPU
        command = ["torchrun", "--standalone", f"--nproc-per-node={spec.gpus_per_worker}", "-m", *command]
    pod = _study_pod(spec, command, spec.gpus_per_worker)
    index = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    pod["containers"][0]["env"].append({"name": "WORKBENCH_WORKER_ID", "valueFrom": {"fieldRef": {"fieldPath": index}}})
    pod["terminationGracePeriodSeconds"] = GRACE_S
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _meta(spec, "workers"),
        "spec": {
            "completionMode": "Indexed",
            "completions": spec.workers,
            "parallelism": spec.workers,
            "backoffLimitPerIndex": 2,
            "podFailurePolicy": {"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]},
            "template": {"spec": pod},
        },
    }


def render_conclude(spec: KubernetesSpec) -> dict[str, Any]:
    """The Job that concludes the study (summary, plots, registration once); apply it after the workers' Job."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _meta(spec, "conclude"),
        "spec": {"backoffLimit": 2, "template": {"spec": _study_pod(spec, _study_command(spec, "conclude"), 0)}},
    }


def render_manifests(spec: KubernetesSpec, password: str) -> dict[str, list[dict[str, Any]]]:
    """File name -> the manifests it holds, in the order they are applied."""
    if spec.workers < 1:
        raise WorkbenchError(f"--workers {spec.workers}: must be 1 or more")
    if spec.gpus_per_worker < 0:
        raise WorkbenchError(f"--gpus-per-worker {spec.gpus_per_worker}: must be 0 or more")
    return {
        "secret.yaml": [render_secret(spec, password)],
        "postgres.yaml": render_postgres(spec),
        "server.yaml": render_server(spec),
        "study.yaml": [render_study(spec)],
        "workers.yaml": [render_workers(spec)],
        "conclude.yaml": [render_conclude(spec)],
    }


def write_manifests(spec: KubernetesSpec, folder: Path) -> list[str]:
    """Write the manifests into `folder`; returns what to print. secret.yaml is mode 0600 and keeps
    the password of an earlier render."""
    password = _existing_password(folder / "secret.yaml") or secrets.token_hex(16)
    manifests = render_manifests(spec, password)
    folder.mkdir(parents=True, exist_ok=True)
    for name, docs in manifests.items():
        text = yaml.safe_dump_all(docs, sort_keys=False)
        if name == "secret.yaml":
            write_private(folder / name, text)
        else:
            (folder / name).write_text(text)
    workers, conclude = f"job/{spec.prefix}-workers", f"job/{spec.prefix}-conclude"
    services = " ".join(f"-f {folder / name}" for name in ("secret.yaml", "postgres.yaml", "server.yaml", "study.yaml"))
    return [
        f"wrote {', '.join(manifests)} to {folder} (secret.yaml holds the database password: mode 0600)",
        f"apply: kubectl apply {services}",
        f"       kubectl apply -f {folder / 'workers.yaml'}",
        f"       kubectl wait --for=condition=complete {workers} --timeout=24h",
        f"       kubectl apply -f {folder / 'conclude.yaml'} && kubectl logs -f {conclude}",
    ]


def _existing_password(path: Path) -> str | None:
    """The password of an earlier render: PostgreSQL keeps the first one on its volume."""
    if not path.is_file():
        return None
    for doc in yaml.safe_load_all(path.read_text()):
        if isinstance(doc, dict) and doc.get("kind") == "Secret":
            return (doc.get("stringData") or {}).get("postgres-password")
    return None
