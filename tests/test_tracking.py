"""The local tracking store: a copied or moved mlruns/ works where it now is, or is refused; never writes elsewhere."""

from __future__ import annotations

import shutil
import sqlite3

import pytest
import yaml
from helpers import TINY, merge
from stores import refused, snapshot

from workbench.cli.commands import main


def recorded_places(root) -> list[str]:
    """Every artifact place the MLflow store under `root` records (experiments, runs, logged models, versions)."""
    with sqlite3.connect(root / "mlruns" / "mlflow.db") as con:
        rows = con.execute(
            "select artifact_location from experiments where experiment_id != '0' "
            "union all select artifact_uri from runs "
            "union all select artifact_location from logged_models "
            "union all select storage_location from model_versions"
        ).fetchall()
    return [r[0] for r in rows]


def in_folder(monkeypatch, folder) -> None:
    """As a new shell in `folder`: main() exports MLFLOW_TRACKING_URI (mlflow.set_tracking_uri) for its store."""
    monkeypatch.chdir(folder)
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.slow
def test_a_copied_store_works_where_it_is_and_a_store_without_its_artifacts_is_refused(workdir, monkeypatch, capsys):
    original, copy, bare = workdir / "original", workdir / "copy", workdir / "bare"
    original.mkdir()
    study = yaml.safe_dump(merge(TINY, {"study": {"n_trials": 1}}), sort_keys=False)
    (original / "study.yaml").write_text(study)
    in_folder(monkeypatch, original)
    assert main(["study", "run", "study.yaml"]) == 0
    capsys.readouterr()
    shutil.copytree(original / "mlruns", copy / "mlruns")
    (copy / "study.yaml").write_text(study)
    bare.joinpath("mlruns").mkdir(parents=True)  # the databases without their artifacts
    for db in ("mlflow.db", "optuna.db"):
        shutil.copy2(original / "mlruns" / db, bare / "mlruns" / db)

    in_folder(monkeypatch, bare)
    before = snapshot(bare)
    (bare / "study.yaml").write_text(study)
    for argv in (
        ["predict", "tiny-classifier@challenger", "--text", "hi"],
        ["study", "run", "study.yaml", "--trials", "1"],
    ):
        err = refused(capsys, argv)
        in_folder(monkeypatch, bare)
        assert f"copied or moved from {original / 'mlruns'}" in err and str(bare / "mlruns" / "artifacts") in err, err
    assert snapshot(bare) == before, "a refused store is left as it was"

    shutil.rmtree(original)
    in_folder(monkeypatch, copy)
    assert main(["study", "show", "tiny"]) == 0
    assert main(["study", "run", "study.yaml", "--trials", "1"]) == 0, capsys.readouterr().err
    assert main(["predict", "tiny-classifier@challenger", "--text", "a charming film"]) == 0, capsys.readouterr().err
    assert "a charming film" in capsys.readouterr().out
    assert not original.exists(), sorted(str(p) for p in original.rglob("*"))
    places = recorded_places(copy)
    assert places and all(str(copy / "mlruns") in p for p in places), places
