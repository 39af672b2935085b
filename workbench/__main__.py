from workbench.cli.commands import run

run()
