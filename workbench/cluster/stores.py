"""The stores a scheduler's jobs share: resolved once where the job is written, checked, and
handed over in a file only its owner can read (never a command line, which `ps` shows everyone).
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from workbench.config.spec import StudySpec
from workbench.core import settings
from workbench.core.errors import StoreError, first_line
from workbench.stores.db import mask_url
from workbench.stores.journal import is_journal
from workbench.stores.storage import open_study, resolve_storage
from workbench.stores.tracking import check_tracking_store, mlflow_client, resolve_tracking_uri

# File systems whose locks SQLite cannot trust: concurrent writers corrupt or lock up the file
# (optuna #815, #1300; sqlite.org/faq.html#q5).
NETWORK_FILE_SYSTEMS = {
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "smbfs",
    "lustre",
    "gpfs",
    "beegfs",
    "glusterfs",
    "fuse.glusterfs",
    "ceph",
    "fuse.ceph",
    "fuse.sshfs",
    "afs",
    "panfs",
    "9p",
}
# Credentials MLflow reads from the environment: they travel with the URLs when set here.
MLFLOW_CREDENTIALS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")


@dataclass(frozen=True)
class ClusterStores:
    storage_url: str  # the Optuna storage every worker opens (absolute where it is a file)
    tracking_uri: str  # the MLflow tracking store

    def env(self) -> dict[str, str]:
        """What the jobs' environment needs: both URLs, and MLflow credentials set here."""
        env = {settings.WORKBENCH_STORAGE.name: self.storage_url, settings.MLFLOW_TRACKING_URI.name: self.tracking_uri}
        env.update({key: os.environ[key] for key in MLFLOW_CREDENTIALS if os.environ.get(key)})
        return env

    def describe(self) -> str:
        """Both stores, passwords masked: safe to print."""
        return f"Optuna storage {mask_url(self.storage_url)}, MLflow tracking {mask_url(self.tracking_uri)}"

    @property
    def single_node(self) -> bool:
        """True when a store is a SQLite file: workers on other nodes cannot share it."""
        return self.storage_url.startswith("sqlite:") or self.tracking_uri.startswith("sqlite:")


def resolve_cluster_stores(storage: str | None, tracking_uri: str | None, mounts: str | None = None) -> ClusterStores:
    """--storage and --tracking-uri (or their environment variables, or the local defaults) as the jobs
    will open them; a SQLite file on a network file system is refused (StoreError naming the fix)."""
    stores = ClusterStores(resolve_storage(storage), resolve_tracking_uri(tracking_uri))
    mounts = mounts if mounts is not None else _read_mounts()
    for flag, url in (("--storage", stores.storage_url), ("--tracking-uri", stores.tracking_uri)):
        if url.startswith("sqlite:///"):
            check_local_sqlite(Path(url.removeprefix("sqlite:///")), flag, mounts)
    return stores


def prepare_stores(stores: ClusterStores, spec: StudySpec) -> None:
    """Create both stores' tables and the study once, here: jobs that start together on fresh stores race
    on the migrations (seen: MLflow's SQLite "duplicate column name: step"). A study stored with another
    direction, metric or search space is refused before any job is written."""
    check_tracking_store(stores.tracking_uri)
    try:
        mlflow_client(stores.tracking_uri).search_experiments(max_results=1)  # runs MLflow's migrations
    except Exception as e:  # MlflowException, SQL errors
        raise StoreError(f"--tracking-uri {mask_url(stores.tracking_uri)}: cannot open it: {first_line(e)}") from None
    open_study(spec, stores.storage_url)


def check_local_sqlite(db: Path, flag: str, mounts: str) -> None:
    """Refuse a SQLite file on a network file system, where its locks do not hold."""
    fs_type = file_system_of(db, mounts)
    if fs_type in NETWORK_FILE_SYSTEMS:
        fix = (
            "use PostgreSQL (--storage postgresql://...) or Optuna's journal file (--storage journal:PATH)"
            if flag == "--storage"
            else "use `workbench server` (--tracking-uri http://HOST:5000) with a PostgreSQL backend"
        )
        raise StoreError(
            f"{flag} sqlite:///{db}: {db.parent} is on {fs_type}, a network file system where SQLite's locks "
            f"do not hold (optuna #815, #1300): {fix}"
        )


def file_system_of(path: Path, mounts: str) -> str:
    """The type of the file system `path` lives on, from /proc/mounts text: the longest mount point above it."""
    path = Path(os.path.realpath(path))
    best, best_type = "", "unknown"
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        if (path == Path(point) or Path(point) in path.parents) and len(point) >= len(best):
            best, best_type = point, fields[2]
    return best_type


def _read_mounts() -> str:
    try:
        return Path("/proc/mounts").read_text()
    except OSError:  # not Linux: nothing to check against
        return ""


def write_env_file(path: Path, env: dict[str, str]) -> Path:
    """`export KEY='value'` lines in a file only its owner can read and write (mode 0600)."""
    lines = ["# Store URLs for the jobs (they may hold passwords): keep this file private.\n"]
    lines += [f"export {key}={shlex.quote(value)}\n" for key, value in env.items()]
    return write_private(path, "".join(lines))


def write_private(path: Path, text: str) -> Path:
    """Write `text` to a file only its owner can read and write (mode 0600, also when it existed), folder created.
    The mode is set before the text is written: a password is never readable by others, not even for a moment."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        os.fchmod(out.fileno(), 0o600)  # an older file keeps its mode through O_TRUNC: set it
        out.write(text)
    return path


def journal_note(stores: ClusterStores) -> str | None:
    """A line to print when the study uses the journal storage: what it does not do."""
    if not is_journal(stores.storage_url):
        return None
    return (
        "note: the journal storage has no heartbeats: a worker killed without SIGTERM leaves its trial RUNNING "
        "and the others wait for it (see the README, On a cluster)"
    )
