"""The lock a worker holds to count a study's trials and ask for one, so no worker starts a trial past the target.

Count-then-ask is two calls: two workers in between would both see room for one more trial.
Where the lock lives follows the storage, so that it covers every worker that can reach it:
- PostgreSQL (many machines): a session advisory lock in the Optuna database itself;
- a journal file on a shared file system: an exclusive-create lock file beside the journal;
- SQLite (one machine; refused on a network file system): an flock on a file beside the trials.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import IO, Any, Protocol

from workbench.stores.db import driver_url
from workbench.stores.journal import is_journal, journal_path


class AskLock(Protocol):
    def acquire(self) -> None: ...

    def release(self) -> None:
        """Let the next worker ask; harmless when not held."""


class FileAskLock:
    """An exclusive flock: the workers of one machine (a SQLite storage is never shared by machines)."""

    def __init__(self, path: Path):
        self.path = path
        self.file: IO[str] | None = None

    def acquire(self) -> None:
        import fcntl

        if self.file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.file = open(self.path, "a")  # held open: the lock belongs to this open file
        fcntl.flock(self.file, fcntl.LOCK_EX)

    def release(self) -> None:
        import fcntl

        if self.file is not None:
            fcntl.flock(self.file, fcntl.LOCK_UN)  # unlocking what is not locked is harmless


class PostgresAskLock:
    """`pg_advisory_lock` on one connection of its own: every worker of every machine on this database.

    A session lock: a worker that dies (or loses its connection) releases it with its session.
    """

    def __init__(self, url: str, study_name: str):
        self.url = url
        digest = hashlib.sha256(f"workbench.ask:{study_name}".encode()).digest()
        self.key = int.from_bytes(digest[:8], "big", signed=True)  # the 64-bit key PostgreSQL's locks take
        self.connection: Any = None
        self.held = False

    def acquire(self) -> None:
        from sqlalchemy import text

        try:
            self._connection().execute(text("SELECT pg_advisory_lock(:key)"), {"key": self.key})
        except Exception:  # a connection the server dropped (restart): one new connection, then give up
            self._drop()
            self._connection().execute(text("SELECT pg_advisory_lock(:key)"), {"key": self.key})
        self.held = True

    def release(self) -> None:
        from sqlalchemy import text

        if not self.held:
            return
        self.held = False
        try:
            self._connection().execute(text("SELECT pg_advisory_unlock(:key)"), {"key": self.key})
        except Exception:  # the session is gone, and its lock with it
            self._drop()

    def _connection(self) -> Any:
        if self.connection is None:
            from sqlalchemy import create_engine
            from sqlalchemy.pool import NullPool

            engine = create_engine(driver_url(self.url), poolclass=NullPool, isolation_level="AUTOCOMMIT")
            self.connection = engine.connect()
        return self.connection

    def _drop(self) -> None:
        if self.connection is not None:
            try:
                self.connection.close()
            except Exception:
                pass
        self.connection = None


class JournalAskLock:
    """Optuna's own journal lock (an exclusive create, safe on NFS), on a file beside the journal."""

    def __init__(self, journal: Path):
        from optuna.storages.journal import JournalFileOpenLock

        self.lock = JournalFileOpenLock(str(journal) + ".ask")
        self.held = False

    def acquire(self) -> None:
        self.lock.acquire()
        self.held = True

    def release(self) -> None:
        if self.held:
            self.held = False
            self.lock.release()


def ask_lock_for(storage_url: str, study_name: str, workdir: Path) -> AskLock:
    """The lock that covers every worker able to reach `storage_url`."""
    if is_journal(storage_url):
        return JournalAskLock(journal_path(storage_url))
    if storage_url.split(":", 1)[0].split("+", 1)[0].lower() in ("postgresql", "postgres"):
        return PostgresAskLock(storage_url, study_name)
    return FileAskLock(workdir / f".{study_name}.ask.lock")
