"""What the command line promises: exit codes (0 done, 1 refused, 2 bad input), global options
anywhere, read-only commands that never create a store, and `predict` as a user reads it."""

from __future__ import annotations

import pandas as pd
import pytest
from stores import refused

from workbench.cli.commands import main
from workbench.core.errors import StoreError


@pytest.mark.parametrize(
    "argv",
    [
        ["predict", "tiny-classifier", "--text", "hi"],
        ["evaluate", "tiny-classifier"],
        ["promote", "tiny-classifier"],
        ["rollback", "tiny-classifier"],
        ["reproduce", "0123456789abcdef0123456789abcdef"],
        ["study", "list"],
        ["study", "show", "tiny"],
    ],
)
def test_read_only_commands_in_an_empty_folder_name_the_store_and_create_nothing(argv, workdir, capsys):
    err = refused(capsys, argv)
    assert str(workdir / "mlruns") in err and "no " in err
    assert list(workdir.iterdir()) == [], "a command that reads created a store"


def test_global_options_before_or_after_the_subcommand(workdir, capsys):
    for argv in (
        ["--tracking-uri", "sqlite:///x/mlflow.db", "rollback", "m"],
        ["rollback", "m", "--tracking-uri", "sqlite:///x/mlflow.db"],
    ):
        assert str(workdir / "x" / "mlflow.db") in refused(capsys, argv)
    assert str(workdir / "y" / "optuna.db") in refused(capsys, ["study", "list", "--storage", "sqlite:///y/optuna.db"])
    with pytest.raises(StoreError):  # --debug after the subcommand: the traceback, not the one line
        main(["study", "list", "--debug"])


@pytest.mark.slow
def test_predict_keeps_the_input_columns_and_prints_readable_rows(stores, workdir, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    pd.DataFrame({"id": [7, 8], "text": ["a charming film " * 40, "dull"]}).to_csv(workdir / "in.csv", index=False)
    assert main(["predict", "tiny-classifier@challenger", "--input", "in.csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["label", "score", "text"] and len(lines) == 3
    assert all(len(line) <= 80 for line in lines), lines
    assert lines[2].endswith("dull")
    assert main(["predict", "tiny-classifier@challenger", "--input", "in.csv", "--output", "out.csv"]) == 0
    out = pd.read_csv(workdir / "out.csv")
    assert list(out.columns[:4]) == ["id", "text", "label", "score"] and out["id"].tolist() == [7, 8]


@pytest.mark.slow
def test_exit_codes_done_refused_bad_input(stores, workdir, capsys):
    # a bare NAME means its @champion: none yet
    assert "models:/tiny-classifier@champion: cannot load the model" in refused(
        capsys, ["predict", "tiny-classifier", "--text", "hi"]
    )
    assert main(["promote", "tiny-classifier"]) == 0  # no champion yet: v1 is promoted
    assert "PROMOTED" in capsys.readouterr().out
    assert main(["promote", "tiny-classifier"]) == 1, "already @champion is a refusal, not bad input"
    assert "already @champion" in capsys.readouterr().err
    assert main(["predict", "tiny-classifier", "--text", "a charming film"]) == 0
    assert "a charming film" in capsys.readouterr().out
    assert "no registered model" in refused(capsys, ["promote", "no-such-model"])
