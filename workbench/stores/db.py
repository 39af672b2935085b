"""Store URLs: the default local SQLite stores under mlruns/, absolute paths, and drivers.

`postgresql://` works with whichever PostgreSQL driver is installed.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from workbench.core.errors import StoreError, mask_secrets

STORE_DIR = "mlruns"  # local tracking state: both stores, artifacts, trial checkpoints


def default_sqlite(name: str) -> str:
    """`sqlite:///mlruns/NAME.db`: the default store of each kind (`optuna`, `mlflow`)."""
    return f"sqlite:///{STORE_DIR}/{name}.db"


def driver_url(url: str) -> str:
    """`postgresql://...` with the installed driver spelled out; any other URL unchanged.

    SQLAlchemy 2.1 maps a bare `postgresql://` to psycopg 3; our `dev` extra (and many
    machines) have psycopg2, so without this a plain PostgreSQL URL fails to import a driver.
    """
    if (
        url.startswith("postgresql://")
        and importlib.util.find_spec("psycopg") is None
        and importlib.util.find_spec("psycopg2") is not None
    ):
        return "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    return url


def absolute_sqlite(uri: str, flag: str) -> str:
    """sqlite:///relative/path -> sqlite:////abs/path, its folder created.

    MLflow caches one store per URI string: a relative path would keep pointing at the
    directory of the first use, even after the process changed directory.
    """
    if not uri.startswith("sqlite:///") or uri.startswith("sqlite:///:memory:"):
        return uri
    db = Path(uri.removeprefix("sqlite:///")).absolute()
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StoreError(f"{flag} {uri}: cannot create {db.parent}: {e.strerror}") from None
    return f"sqlite:///{db}"


def existing_sqlite(uri: str, flag: str, what: str) -> str:
    """An absolute SQLite URI for a read-only command; StoreError (naming the file) when it does not exist.

    Opening a missing SQLite file would create it (and the folder): a command that only reads
    must not leave an empty store behind in the wrong directory.
    """
    if not uri.startswith("sqlite:///") or uri.startswith("sqlite:///:memory:"):
        return uri
    db = Path(uri.removeprefix("sqlite:///")).absolute()
    if not db.is_file():
        raise StoreError(
            f"{flag}: no {what} at {db} (run the command in the folder that holds mlruns/, or pass {flag})"
        )
    return f"sqlite:///{db}"


def check_sqlite_writable(uri: str, flag: str) -> None:
    """A SQLite store in a read-only folder (or file) fails on its first write: say so up front."""
    db = Path(uri.removeprefix("sqlite:///"))
    for path in (db.parent, db):
        if path.exists() and not os.access(path, os.W_OK):  # also false on a read-only mount, even for root
            raise StoreError(f"{flag} {uri}: {path} is read-only: make it writable or pass another {flag}")


def mask_url(url: str) -> str:
    """`url` with its password shown as ***: safe for terminals, logs, errors and MLflow."""
    return mask_secrets(url)
