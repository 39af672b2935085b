"""The local tracking store: a copied or moved mlruns/ works where it now is, or is refused; never writes elsewhere."""

from __future__ import annotations

import shutil
import sqlite3

import pytest
import yaml
from helpers import TINY, merge
from stores import refused, snapshot

from workbench.cli.commands import main
from workbench.core.errors import StoreError
from workbench.stores.moved_store import CHECKED_MLFLOW, SCHEMA_REVISIONS
from workbench.stores.tracking import adopt_moved_store, local_artifact_root, mlflow_client


def recorded_places(root, db: str = "mlruns/mlflow.db") -> list[str]:
    """Every artifact place the MLflow store `root/db` records (experiments, runs, logged models, versions)."""
    with sqlite3.connect(root / db) as con:
        rows = con.execute(
            "select artifact_location from experiments where experiment_id != '0' "
            "union all select artifact_uri from runs "
            "union all select artifact_location from logged_models "
            "union all select storage_location from model_versions"
        ).fetchall()
    return [r[0] for r in rows]


def in_folder(monkeypatch, folder) -> None:
    """As a new shell in `folder`, with no store named in the environment."""
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


def moved_store_with_an_artifact(new_mlflow_store, tmp_path) -> tuple[str, str]:
    """A store made in tmp_path/original (an experiment, a run, an artifact), moved to tmp_path/moved:
    (the moved store's URI, the run's id)."""
    original = tmp_path / "original"
    uri = new_mlflow_store(original)
    client = mlflow_client(uri)
    experiment = client.create_experiment("s", artifact_location=local_artifact_root(uri, "s"))
    run_id = client.create_run(experiment).info.run_id
    client.log_text(run_id, "hello", "notes/a.txt")
    client.set_terminated(run_id)
    original.rename(tmp_path / "moved")
    return f"sqlite:///{tmp_path / 'moved' / 'mlflow.db'}", run_id


def test_a_moved_store_is_adopted_and_its_artifact_found_where_it_now_is(new_mlflow_store, tmp_path):
    uri, run_id = moved_store_with_an_artifact(new_mlflow_store, tmp_path)
    assert adopt_moved_store(uri) == tmp_path / "original"
    assert adopt_moved_store(uri) is None  # already here: nothing more to do
    fresh = mlflow_client(uri)
    assert fresh.get_run(run_id).info.artifact_uri.startswith((tmp_path / "moved" / "artifacts" / "s").as_uri())
    got = fresh.download_artifacts(run_id, "notes/a.txt", str(tmp_path / "download"))
    assert open(got).read() == "hello"


def test_a_moved_store_of_an_unknown_mlflow_schema_is_refused_unchanged(new_mlflow_store, tmp_path):
    uri, _ = moved_store_with_an_artifact(new_mlflow_store, tmp_path)
    db = tmp_path / "moved" / "mlflow.db"
    with sqlite3.connect(db) as con:
        con.execute("update alembic_version set version_num = 'f00000000000'")
    places = recorded_places(tmp_path / "moved", "mlflow.db")
    with pytest.raises(StoreError) as refused_:
        adopt_moved_store(uri)
    message = str(refused_.value)
    assert "\n" not in message and "revision f00000000000" in message and CHECKED_MLFLOW in message
    assert recorded_places(tmp_path / "moved", "mlflow.db") == places  # nothing rewritten


def test_the_installed_mlflows_schema_is_one_adopt_moved_store_was_checked_against(empty_mlflow_db):
    with sqlite3.connect(empty_mlflow_db) as con:
        (revision,) = con.execute("select version_num from alembic_version").fetchone()
    assert revision in SCHEMA_REVISIONS, (
        f"MLflow's schema is now at revision {revision}: check its migrations for new columns holding artifact "
        "places (add them to moved_store.ARTIFACT_COLUMNS), then add the revision to moved_store.SCHEMA_REVISIONS"
    )
