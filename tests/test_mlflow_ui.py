"""A study is browsable in the real MLflow UI: a real `mlflow server`, read by headless Chromium."""

import shutil
import subprocess
import sys

import pytest

from helpers import tracking_client, trial_runs
from servers import free_port, stop, wait_until_up
from workbench.study import RunOptions, run_study
from workbench.study_file import load_study_file
from workbench.tracking import resolve_tracking_uri

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def ui(workdir):
    """`mlflow ui` as the README says, on a free loopback port; yields its base URL."""
    port = free_port()
    uri = resolve_tracking_uri()
    with open(workdir / "ui.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until_up(f"{base}/health", proc, 180, workdir / "ui.log")
            yield base
        finally:
            stop(proc)


def render(url: str) -> str:
    """The page's DOM after its scripts ran, as a user's browser would show it."""
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--virtual-time-budget=20000", "--dump-dom", url],
        capture_output=True, text=True, timeout=120,
    )
    return result.stdout


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (.ci/run installs it)")
def test_study_and_trial_runs_show_in_the_mlflow_ui(write_study, ui):
    spec = load_study_file(write_study(study={"n_trials": 1}))
    run_study(spec, RunOptions(register=False), progress=lambda line: None)
    client = tracking_client()
    experiment = client.get_experiment_by_name("tiny")
    (trial,) = trial_runs(client)

    page = render(f"{ui}/#/experiments/{experiment.experiment_id}/runs")
    assert "study-tiny" in page, "the parent run is listed in the study's experiment"
    page = render(f"{ui}/#/experiments/{experiment.experiment_id}/runs/{trial.info.run_id}")
    assert "trial-0" in page
    assert "eval_accuracy" in page and "training.learning_rate" in page
