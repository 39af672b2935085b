"""`workbench cluster kubernetes`: the manifests it renders, checked offline against the Kubernetes API
schema (the `kubernetes` client's models refuse unknown fields and missing required ones). No cluster
ran them here."""

from __future__ import annotations

import stat

import pytest
import yaml

from workbench.cli.commands import main

kubernetes = pytest.importorskip("kubernetes", minversion="37", reason="pip install -e '.[dev]' installs it")


def model_of(kind: str):
    from kubernetes import client

    models = {
        "Secret": client.V1Secret,
        "ConfigMap": client.V1ConfigMap,
        "Service": client.V1Service,
        "StatefulSet": client.V1StatefulSet,
        "Deployment": client.V1Deployment,
        "PersistentVolumeClaim": client.V1PersistentVolumeClaim,
        "Job": client.V1Job,
    }
    return models[kind]


def render(workdir, write_study, *flags: str) -> dict:
    out = workdir / "k8s"
    assert (
        main(
            [
                "cluster",
                "kubernetes",
                str(write_study()),
                "--image",
                "registry.example/wb:1",
                "--output",
                str(out),
                *flags,
            ]
        )
        == 0
    )
    return {path.name: list(yaml.safe_load_all(path.read_text())) for path in sorted(out.glob("*.yaml"))}


def test_every_manifest_is_valid_against_the_kubernetes_api_schema(workdir, write_study):
    from pydantic import ValidationError

    manifests = render(workdir, write_study, "--workers", "3", "--gpus-per-worker", "2")
    kinds = sorted(doc["kind"] for docs in manifests.values() for doc in docs)
    assert kinds == sorted(
        ["Secret", "ConfigMap", "Service", "StatefulSet", "PersistentVolumeClaim", "Deployment", "Service"]
        + ["ConfigMap", "Job", "Job"]
    )
    for docs in manifests.values():
        for doc in docs:
            model_of(doc["kind"]).model_validate(doc)
    job = manifests["workers.yaml"][0]
    bad = {**job, "spec": {**job["spec"], "completionsMode": "Indexed"}}  # a typo the check must catch
    with pytest.raises(ValidationError, match="completionsMode"):
        model_of("Job").model_validate(bad)


def test_the_workers_are_an_indexed_job_and_passwords_stay_in_the_secret(workdir, write_study):
    manifests = render(workdir, write_study, "--workers", "3")
    spec = manifests["workers.yaml"][0]["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 3, 3)
    container = spec["template"]["spec"]["containers"][0]
    assert container["command"][:4] == ["workbench", "study", "run", "/study/study.yaml"]
    env = {e["name"]: e for e in container["env"]}
    assert env["WORKBENCH_STORAGE"]["valueFrom"]["secretKeyRef"]["key"] == "optuna-storage"
    conclude = manifests["conclude.yaml"][0]["spec"]["template"]["spec"]["containers"][0]
    assert conclude["command"][:3] == ["workbench", "study", "conclude"]
    password = manifests["secret.yaml"][0]["stringData"]["postgres-password"]
    assert stat.S_IMODE((workdir / "k8s" / "secret.yaml").stat().st_mode) == 0o600
    for name, docs in manifests.items():
        assert name == "secret.yaml" or password not in yaml.safe_dump_all(docs)
    again = render(workdir, write_study, "--workers", "5")  # PostgreSQL keeps its first password: so does the Secret
    assert again["secret.yaml"][0]["stringData"]["postgres-password"] == password
