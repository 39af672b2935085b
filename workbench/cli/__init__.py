"""The `workbench` command line."""

from workbench.cli.commands import main, run

__all__ = ["main", "run"]
