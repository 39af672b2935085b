"""A study is browsable in the real MLflow UI: a real `mlflow ui`, driven in headless Chromium through chromedriver.

The test saves the screenshots README.md shows: into docs/ with WORKBENCH_SCREENSHOTS=1
(`WORKBENCH_SCREENSHOTS=1 python -m pytest tests/test_mlflow_ui.py` refreshes them), else into its tmp_path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from browser import Browser
from helpers import study_runs, tracking_client, trial_runs
from servers import free_port, stop, wait_until_up

from workbench.cli.commands import main
from workbench.stores.tracking import resolve_tracking_uri

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
DOCS = Path(__file__).resolve().parents[1] / "docs"
MAX_PNG_BYTES = 400_000  # README pictures stay small in the repository
# A tiny study dressed as the README's demo, so the pictures match its text: 6 trials, some pruned.
STUDY = {
    "study": {
        "name": "demo",
        "metric": "eval_f1",
        "n_trials": 6,
        "sampler": {"type": "tpe", "seed": 0, "n_startup_trials": 3},
        "pruner": {"type": "median", "n_startup_trials": 2, "n_warmup_steps": 1},
    },
    "training": {"num_train_epochs": 3, "eval_strategy": "epoch"},
    "search_space": {
        "model.hidden_size": {"choices": [16, 32]},
        "training.learning_rate": {"low": 1.0e-3, "high": 1.0e-2, "log": True},
    },
    "registry": {"model_name": "demo-classifier"},
}


@pytest.fixture
def ui(workdir):
    """`mlflow ui` as the README says, on a free loopback port; yields its base URL."""
    port = free_port()
    uri = resolve_tracking_uri()
    with open(workdir / "ui.log", "w") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlflow",
                "ui",
                "--backend-store-uri",
                uri,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until_up(f"{base}/health", proc, 180, workdir / "ui.log")
            yield base
        finally:
            stop(proc)


@pytest.fixture
def browser(tmp_path):
    """Headless Chromium, 1600 x 900, driven through a chromedriver of our own on a free port."""
    port, log = free_port(), tmp_path / "chromedriver.log"
    with open(log, "w") as out:
        driver = subprocess.Popen(
            [CHROMEDRIVER, f"--port={port}"], stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_until_up(f"http://127.0.0.1:{port}/status", driver, 60, log)
        session = Browser(f"http://127.0.0.1:{port}", CHROMIUM, width=1600, height=900)
        try:
            yield session
        finally:
            session.close()
    finally:
        stop(driver)


@pytest.fixture
def screenshots(tmp_path) -> Path:
    """Where the pictures go: docs/ with WORKBENCH_SCREENSHOTS=1, else this test's tmp_path."""
    return DOCS if os.environ.get("WORKBENCH_SCREENSHOTS") == "1" else tmp_path


def cell(browser: Browser, run_name: str, col_id: str) -> str | None:
    """The text of column `col_id` in the runs table's row of `run_name` (ag-grid keeps the pinned name
    column and the other columns in separate row elements that share a row-index)."""
    return browser.run(
        "const [name, col] = arguments;"
        "const row = [...document.querySelectorAll('.ag-pinned-left-cols-container [role=row]')]"
        "  .find(r => [...r.querySelectorAll('a')].some(a => a.innerText.trim() === name));"
        "if (!row) return null;"
        "const c = document.querySelector("
        "`.ag-center-cols-container [row-index='${row.getAttribute('row-index')}'] [col-id='${col}']`);"
        "return c ? c.innerText.trim() : null;",
        run_name,
        col_id,
    )


def visible_runs(browser: Browser) -> list[str]:
    """Run names in the runs table, top to bottom."""
    return browser.run(
        "return [...document.querySelectorAll('.ag-pinned-left-cols-container [role=row]')]"
        "  .sort((a, b) => a.getAttribute('row-index') - b.getAttribute('row-index'))"
        "  .map(r => [...r.querySelectorAll('a')].map(a => a.innerText.trim()).find(t => t) || '')"
    )


def close_assistant(browser: Browser) -> None:
    """Close the MLflow Assistant side panel (not part of the study) if it opened."""
    try:
        browser.click("button[aria-label=Close]", seconds=5)
    except TimeoutError:
        pass


def small_png(path: Path) -> Path:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size < MAX_PNG_BYTES, f"{path}: {path.stat().st_size} bytes"
    return path


@pytest.mark.slow
@pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="Chromium and chromedriver are not installed (.ci/run installs them)",
)
def test_the_study_its_scores_and_its_model_in_the_mlflow_ui(write_study, ui, browser, screenshots):
    assert main(["study", "run", str(write_study(**STUDY)), "--quiet"]) == 0
    assert main(["promote", "demo-classifier"]) == 0  # no champion yet: v1 becomes @champion, and stays @challenger
    client = tracking_client()
    experiment = client.get_experiment_by_name("demo")
    trials = {run.info.run_name: run for run in trial_runs(client, "demo")}
    (parent,) = study_runs(client, "demo")
    assert len(trials) == 6

    # The runs table: the parent run, collapsed, with its trials nested under it.
    browser.open(f"{ui}/#/experiments/{experiment.experiment_id}/runs")
    browser.wait_for("return document.body.innerText.includes('study-demo')")
    close_assistant(browser)
    browser.click('button[aria-label="Toggle sidebar"]')  # fold MLflow's navigation: room for the study's columns
    assert visible_runs(browser) == ["study-demo"], "the trials are nested: hidden until the parent run is expanded"
    # Choosing a sort key adds its column: the score `objective`, then the two searched parameters.
    for key in ("training.learning_rate", "model.hidden_size", "objective"):
        browser.click("[data-testid=sort-select-dropdown]")
        browser.click(f'[data-testid="sort-select-{key}"]')
    browser.click("[data-testid=sort-select-dropdown]")
    browser.click('[data-testid="sort-select-Created"]')  # back to the nested view, newest first, columns kept
    browser.click("button[data-component-id*=runnamecellrenderer]", within=".ag-pinned-left-cols-container [role=row]")
    shown = browser.wait_for("return document.body.innerText.includes('trial-0')") and visible_runs(browser)
    assert shown[0] == "study-demo" and sorted(shown[1:]) == sorted(trials), shown
    assert browser.run("return !!document.querySelector('[data-testid=\"sort-header-objective\"]')"), (
        "the objective column is shown"
    )
    for name, run in trials.items():
        assert float(cell(browser, name, "metrics.`objective`")) == pytest.approx(run.data.metrics["objective"]), name
        assert cell(browser, name, "params.`training.learning_rate`") == run.data.params["training.learning_rate"]
    assert cell(browser, "study-demo", "metrics.`objective`") == "-", "the parent run has no score of its own"
    small_png(browser.screenshot(screenshots / "mlflow-runs.png"))

    # The registered trial's page: its params and metrics by name, and its parent run.
    version = client.get_model_version_by_alias("demo-classifier", "champion")
    (best,) = [run for run in trials.values() if run.info.run_id == version.run_id]
    assert best.data.metrics["objective"] == max(run.data.metrics["objective"] for run in trials.values())
    browser.open(f"{ui}/#/experiments/{experiment.experiment_id}/runs/{best.info.run_id}")
    browser.wait_for("return document.body.innerText.includes('training.learning_rate')")
    page = browser.text()
    assert best.info.run_name in page and "objective" in page and "eval_f1" in page
    assert parent.info.run_name in page, "a trial's page names its parent run"

    # The registered model: version 1 with both aliases, from the best trial.
    browser.open(f"{ui}/#/models/demo-classifier")
    browser.wait_for("return document.body.innerText.includes('Version 1')")
    close_assistant(browser)
    browser.click("h2, [role=button], span", text="Tags")  # fold the history tags: the versions table shows at once
    row = browser.wait_for(
        "return [...document.querySelectorAll('[role=row], tr')]"
        ".map(r => r.innerText).find(t => t.includes('Version 1'))"
    )
    assert "@\xa0challenger" in row and "@\xa0champion" in row, row
    assert f"workbench.trial\n: {best.data.tags['optuna.trial.number']}" in row, row
    small_png(browser.screenshot(screenshots / "mlflow-model.png"))


def test_screenshots_in_the_readme_exist_and_are_small():
    """README shows the pictures the browser test saves (refresh them with WORKBENCH_SCREENSHOTS=1)."""
    readme = (DOCS.parent / "README.md").read_text()
    for name in ("mlflow-runs.png", "mlflow-model.png"):
        assert f"(docs/{name})" in readme
        small_png(DOCS / name)
