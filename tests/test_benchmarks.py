"""`python -m benchmarks`: one JSON line per figure, a table, SST-2 figures skipped with a message when it is absent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_figures_print_as_json_lines_and_sst2_figures_skip_without_the_data(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WORKBENCH_SST2": str(tmp_path / "absent")}
    out = tmp_path / "figures.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--only",
            "data_pipeline",
            "--json",
            str(out),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [f["name"] for f in lines] == ["data_pipeline"]
    for figure in lines:
        assert set(figure) == {"name", "value", "target", "unit", "note"}
        assert (
            figure["value"] is None
            and figure["note"].startswith("skipped: SST-2 not found")
            and "WORKBENCH_SST2" in figure["note"]
        )
    assert "figure" in done.stdout and "target" in done.stdout  # the table after the lines
    assert json.loads(out.read_text()) == lines


def test_a_figure_says_whether_its_target_is_met():
    from benchmarks.common import Figure

    assert Figure("trial_overhead", 1.04, "<= 1.05", "x").met is True
    assert Figure("data_pipeline", 4.9, ">= 5", "x").met is False
    assert Figure("time_to_first_trial_s", 12.0, None, "s").met is None
