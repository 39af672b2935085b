"""The stores a cluster's jobs share: SQLite refused on a network file system, the journal storage, the env file."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest

from workbench.cli.commands import main
from workbench.cluster.stores import file_system_of, resolve_cluster_stores, write_env_file
from workbench.core.errors import StoreError
from workbench.stores.journal import absolute_journal

# /proc/mounts of a cluster node whose home folders are on NFS
MOUNTS = """\
/dev/sda1 / ext4 rw,relatime 0 0
tmpfs /tmp tmpfs rw 0 0
fileserver:/export/home /home nfs4 rw,vers=4.2 0 0
mds@tcp:/scratch /scratch lustre rw 0 0
"""


def test_the_file_system_is_that_of_the_longest_mount_point_above_the_path():
    assert file_system_of(Path("/home/ana/study/mlruns/optuna.db"), MOUNTS) == "nfs4"
    assert file_system_of(Path("/homework/x.db"), MOUNTS) == "ext4"  # a name that only starts like a mount point
    assert file_system_of(Path("/tmp/x.db"), MOUNTS) == "tmpfs"


def test_sqlite_on_a_network_file_system_is_refused_with_the_reason_and_the_fix(tmp_path):
    with pytest.raises(StoreError) as refused:
        resolve_cluster_stores("sqlite:////scratch/ana/optuna.db", f"sqlite:///{tmp_path}/mlflow.db", MOUNTS)
    message = str(refused.value)
    assert message.startswith("--storage sqlite:////scratch/ana/optuna.db: /scratch/ana is on lustre")
    assert "optuna #815, #1300" in message and "journal:PATH" in message and "postgresql://" in message
    stores = resolve_cluster_stores("journal:/scratch/ana/optuna.journal", f"sqlite:///{tmp_path}/m.db", MOUNTS)
    assert stores.storage_url == "journal:///scratch/ana/optuna.journal"  # a journal file is fine there


def test_the_env_file_is_private_and_the_shell_reads_it_back(tmp_path):
    path = tmp_path / "stores.env"
    path.write_text("old")
    path.chmod(0o644)  # an older file's mode is not kept
    url = "postgresql://optuna:p@ss 'word'@db/optuna"
    write_env_file(path, {"WORKBENCH_STORAGE": url})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    out = subprocess.run(
        ["bash", "-c", f'source {path}; printf %s "$WORKBENCH_STORAGE"'], capture_output=True, text=True
    )
    assert out.stdout == url


def test_a_journal_path_is_made_absolute_so_workers_elsewhere_open_the_same_file(workdir):
    assert absolute_journal("journal:mlruns/optuna.journal") == f"journal://{workdir}/mlruns/optuna.journal"
    assert absolute_journal("journal:///srv/x.journal") == "journal:///srv/x.journal"
    with pytest.raises(StoreError, match="a journal is a file, not a host"):
        absolute_journal("journal://host/x")


@pytest.mark.slow
def test_a_study_runs_and_resumes_on_the_journal_storage(workdir, write_study, capsys):
    study = write_study(study={"n_trials": 2}, training={"num_train_epochs": 1})
    storage = "journal:mlruns/optuna.journal"
    assert main(["study", "run", str(study), "--storage", storage, "--no-register"]) == 0
    assert main(["study", "run", str(study), "--storage", storage, "--trials", "1", "--no-register"]) == 0
    assert main(["study", "show", "tiny", "--storage", storage, "--csv"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert rows[-1].startswith("2,COMPLETE") and len([r for r in rows if ",COMPLETE," in r]) == 3
    assert (workdir / "mlruns" / "optuna.journal").is_file()
    assert main(["study", "list", "--storage", "journal:elsewhere.journal"]) == 2  # read-only: never created
    assert not (workdir / "elsewhere.journal").exists()
