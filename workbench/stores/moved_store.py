"""What adopting a moved local MLflow store touches inside MLflow: the one place that knows it.

MLflow records artifact places as absolute paths or file URIs in its own tables, and caches
each run's place in a private dict. `tracking.adopt_moved_store` decides whether a store was
moved; this module reads and rewrites those tables for it, and refuses a schema it was not
checked against.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from workbench.core.errors import StoreError

# The columns where MLflow records an artifact place by itself (those present in a store are rewritten).
ARTIFACT_COLUMNS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("logged_models", "artifact_location"),
    ("model_versions", "source"),
    ("model_versions", "storage_location"),
)
# The schema revisions (alembic_version.version_num) checked to hold no other such column, oldest first:
# MLflow 3.4.0 (71994744cf8e) to 3.17.2 (dc11669786a5), pyproject's range. workspaces.default_artifact_root
# and workspaces.trace_archival_location (added in this range) are only set by hand: not ours to move.
SCHEMA_REVISIONS = (
    "71994744cf8e",
    "3da73c924c2f",
    "bf29a5ff90ea",
    "1bd49d398cd23",
    "b7c8d9e0f1a2",
    "5d2d30f0abce",
    "c9d4e5f6a7b8",
    "2c33131f4dae",
    "d3e4f5a6b7c8",
    "d0e1f2a3b4c5",
    "c8d9e0f1a2b3",
    "1b5f0d9ad7c1",
    "e1f2a3b4c5d6",
    "76601a5f987d",
    "c3d6457b6d8a",
    "a5b4c3d2e1f0",
    "ae8bbe7743c9",
    "7d34483879f0",
    "da6fb0208061",
    "89d3d66ed43f",
    "b7e4c1a90f23",
    "a8b9c0d1e2f3",
    "c1d2e3f4a5b6",
    "c3d9e7f1a2b4",
    "6f8d9c3b2a1e",
    "1971f2d9a75b",
    "17e22815139b",
    "b7e2c1a4d9f3",
    "75868b020152",
    "dc11669786a5",
)
CHECKED_MLFLOW = "MLflow 3.4.0 to 3.17.2"


def experiment_places(con: sqlite3.Connection) -> list[tuple[str, str | None]]:
    """(name, artifact location) of every experiment; sqlite3.Error when the file is no MLflow store (yet)."""
    return con.execute("select name, artifact_location from experiments").fetchall()


def schema_revision(con: sqlite3.Connection) -> str | None:
    """The store's MLflow schema revision, or None when it records none."""
    try:
        row = con.execute("select version_num from alembic_version").fetchone()
    except sqlite3.Error:
        return None
    return row[0] if row else None


def rewrite_artifact_places(con: sqlite3.Connection, tracking_uri: str, before: Path, here: Path) -> None:
    """Every artifact place under `before` (a path or a file URI) made to point under `here`, in one transaction.

    A schema this module was not checked against is refused with StoreError, and nothing is changed.
    """
    revision = schema_revision(con)
    if revision not in SCHEMA_REVISIONS:  # refuse, not skip: a copy left unrewritten would write into the original
        raise StoreError(
            f"--tracking-uri {tracking_uri}: this store was copied or moved from {before}, but its MLflow schema "
            f"(revision {revision}) is not one workbench can move ({CHECKED_MLFLOW}): use the original store with "
            f"--tracking-uri, or an MLflow version in that range"
        )
    with con:  # one transaction: every path moves, or none
        for table, column in ARTIFACT_COLUMNS:
            if column in {r[1] for r in con.execute(f"pragma table_info({table})")}:
                for old, new in ((before.as_uri() + "/", here.as_uri() + "/"), (f"{before}/", f"{here}/")):
                    con.execute(
                        f"update {table} set {column} = ? || substr({column}, ?) where substr({column}, 1, ?) = ?",
                        (new, len(old) + 1, len(old), old),
                    )


def forget_artifact_places() -> None:
    """MLflow caches each run's artifact place by run id for the life of the process (a copy shares the ids)."""
    from mlflow.tracking._tracking_service import utils  # private; absent in another version: nothing cached to forget

    cache = getattr(utils, "_artifact_repos_cache", None)
    if cache is not None:
        cache.clear()
