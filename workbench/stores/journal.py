"""Optuna's journal storage (`--storage journal:PATH`): one append-only file on a shared file system.

For clusters without a database server. Optuna's `JournalFileBackend` locks the file with
a symlink (atomic on NFS), where SQLite's locks break (optuna #815, #1300). It has no
heartbeats: a worker killed without SIGTERM leaves its trial RUNNING (see the README).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from workbench.core.errors import StoreError

if TYPE_CHECKING:
    import optuna

JOURNAL_SCHEME = "journal:"


def is_journal(url: str) -> bool:
    return url.startswith(JOURNAL_SCHEME)


def journal_path(url: str) -> Path:
    """`journal:PATH` or `journal:///abs/path` -> the file's absolute path (relative to this directory)."""
    rest = url.removeprefix(JOURNAL_SCHEME)
    if rest.startswith("///"):
        rest = rest[2:]
    elif rest.startswith("//"):
        raise StoreError(f"--storage {url}: a journal is a file, not a host: journal:PATH or journal:///abs/path")
    if not rest:
        raise StoreError(f"--storage {url}: name the journal file: journal:PATH, e.g. journal:mlruns/optuna.journal")
    return Path(rest).expanduser().absolute()


def absolute_journal(url: str) -> str:
    """journal:relative/path -> journal:///abs/path, so workers started elsewhere open the same file."""
    return f"{JOURNAL_SCHEME}//{journal_path(url)}"


def build_journal_storage(url: str, create: bool = True) -> optuna.storages.BaseStorage:
    """A JournalStorage on the file `url` names; its folder is created unless `create` is False
    (a command that only reads then refuses a missing file instead of leaving one behind)."""
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    path = journal_path(url)
    if not create and not path.is_file():
        raise StoreError(f"--storage: no Optuna journal at {path} (pass the --storage the study ran with)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    except OSError as e:
        raise StoreError(f"--storage {url}: cannot open the Optuna journal {path}: {e.strerror or e}") from None
