"""The study's plots on its parent run: PNG and one interactive page, the metric on the axis, pruned trials drawn."""

from __future__ import annotations

import re

import optuna
import pytest

from workbench.stores.tracking import StudyTracking, resolve_tracking_uri
from workbench.study.plots import importances_once, log_study_plots


def a_study_with_a_pruned_trial() -> optuna.Study:
    """Three trials reported at each evaluation; trial 1 was pruned after its second."""
    study = optuna.create_study(study_name="curves", direction="maximize")
    for number, curve in enumerate([[0.6, 0.7, 0.8], [0.5, 0.55], [0.65, 0.75, 0.85]]):
        trial = study.ask({"training.learning_rate": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)})
        for step, value in enumerate(curve, start=1):
            trial.report(value, step)
        if number == 1:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, curve[-1])
    return study


def test_plots_are_png_and_one_interactive_page_with_the_metric_named_and_pruned_trials(workdir):
    pytest.importorskip("plotly")
    study = a_study_with_a_pruned_trial()
    tracking = StudyTracking(resolve_tracking_uri(), "curves")
    drawn = log_study_plots(study, tracking, "eval_f1")
    assert drawn == ["optimization_history.png", "intermediate_values.png", "param_importances.png", "study.html"]
    logged = {a.path for a in tracking.client.list_artifacts(tracking.parent_run_id, "plots")}
    assert logged == {f"plots/{name}" for name in drawn}
    page = tracking.client.download_artifacts(tracking.parent_run_id, "plots/study.html", str(workdir))
    html = open(page, encoding="utf-8").read()
    assert html.count("plotly.js v") == 1 or html.count("window.PlotlyConfig") == 1, (
        "plotly.js embedded once: opens offline"
    )
    assert '"text":"eval_f1"' in html and '"text":"eval_f1 (each evaluation)"' in html, (
        "the metric names the value axes"
    )
    assert re.search(r'"name":"Trial1"', html), "the pruned trial's curve is drawn"


def test_importances_are_computed_once_for_both_renderings_and_seeded():
    from optuna.importance import FanovaImportanceEvaluator

    study = a_study_with_a_pruned_trial()
    once = importances_once()
    first = once.evaluate(study)
    assert once.evaluate(study) is first, "the second rendering reuses the first's numbers"
    assert first == FanovaImportanceEvaluator(seed=0).evaluate(study), "fANOVA, seeded: the same every run"
