"""Real server processes the tests start: a free loopback port, a wait until one answers, a stop,
the processes below one, a PostgreSQL cluster of a test's own."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, proc: subprocess.Popen, seconds: float, log: Path) -> None:
    """Return once GET `url` answers 200; fail the test with the server's log if it exits or stays silent."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{url}: the server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:  # not listening yet
            pass
        time.sleep(0.5)
    pytest.fail(f"{url}: no answer within {seconds:.0f} s:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group (started with start_new_session=True: its workers too), then SIGKILL."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def descendants(pid: int) -> set[int]:
    """Pids of every living process below `pid` (from /proc's parent links)."""
    parent_of = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent_of[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):  # exited while we looked
                pass
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parent_of.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class PostgresCluster:
    """A PostgreSQL cluster of a test's own (initdb in a temp folder, a free loopback port), to restart at will.

    The shared test cluster (.ci/postgres.sh) must not be restarted under other tests. As root
    the server runs as the `postgres` user, as .ci/postgres.sh does.
    """

    def __init__(self):
        bins = sorted(
            Path("/usr/lib/postgresql").glob("*/bin/initdb"),
            key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0,
        )
        if not bins:
            pytest.skip("PostgreSQL's initdb is not installed (`source .ci/postgres.sh` installs it)")
        self.bin = bins[-1].parent
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
        self.data = Path(tempfile.mkdtemp(prefix="workbench-pg-own-"))
        if os.getuid() == 0:
            shutil.chown(self.data, "postgres", "postgres")
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._pg("initdb", "-D", self.data, "-A", "trust", "-U", "postgres")

    def _pg(self, tool: str, *args) -> None:
        subprocess.run(
            [*self.as_user, str(self.bin / tool), *map(str, args)], check=True, capture_output=True, timeout=120
        )

    def _ctl(self, action: str, *args) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._pg("pg_ctl", "-D", self.data, "-l", self.data / "server.log", "-w", "-o", options, *args, action)

    def start(self) -> None:
        self._ctl("start")

    def restart(self, down_s: float = 0.0) -> None:
        """Stop at once (`-m fast`: every open connection is cut), stay down `down_s` seconds, start;
        returns once it accepts connections."""
        if not down_s:
            return self._ctl("restart", "-m", "fast")
        self._pg("pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")
        time.sleep(down_s)
        self.start()

    def stop(self) -> None:
        self._pg("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.data, ignore_errors=True)
