"""Pictures of a study for its parent run: optimization history, intermediate values, importances;
with several objectives, the Pareto front.

Each as a PNG (matplotlib) and together in one interactive page, `plots/study.html` (plotly,
its JavaScript embedded once, so the page opens offline in the MLflow UI). The study metric
names the value axis; pruned trials are drawn in the intermediate values (their curve stops
where the pruner stopped them).
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from workbench.core.errors import first_line
from workbench.stores.storage import best_trial, objective_names, quiet_experimental

logger = logging.getLogger(__name__)

PLOTS_DIR = "plots"  # under the parent run's artifacts
HTML_PAGE = "study.html"


def log_study_plots(study, tracking, metric: str) -> list[str]:
    """Draw Optuna's plots and log them under `plots/` of the study's parent run; returns the files logged.

    Never fails the study: a plot that cannot be drawn (or a missing plotting library) is skipped with a warning.
    """
    with tempfile.TemporaryDirectory() as tmp, quiet_experimental():
        folder = Path(tmp)
        importances = importances_once()  # the PNG and the page draw the same numbers, computed once
        drawn = _draw_pngs(study, metric, folder, importances) + _draw_html(study, metric, folder, importances)
        for name in drawn:
            tracking.client.log_artifact(tracking.parent_run_id, str(folder / name), PLOTS_DIR)
    return drawn


def importances_once() -> Any:
    """Optuna's default importance evaluator (fANOVA, a random forest: the slowest plot), seeded, whose
    first result every later call returns: both renderings of one study ask for the same importances."""
    from optuna.importance import BaseImportanceEvaluator, FanovaImportanceEvaluator

    class ImportancesOnce(BaseImportanceEvaluator):  # Optuna takes only its own evaluator subclasses
        def __init__(self) -> None:
            self._fanova = FanovaImportanceEvaluator(seed=0)
            self._result: dict[str, float] | None = None

        def evaluate(self, study, params=None, *, target=None) -> dict[str, float]:
            if self._result is None:
                self._result = self._fanova.evaluate(study, params, target=target)
            return self._result

    return ImportancesOnce()


def _plots(study, module) -> dict[str, Callable]:
    """name -> plot function of `module` (optuna.visualization or its matplotlib twin) that has something to draw."""
    plots = {
        "optimization_history": module.plot_optimization_history,
        "intermediate_values": module.plot_intermediate_values,
    }
    if len(study.directions) > 1:  # nothing reports intermediate values there; the front is the picture
        plots = {"pareto_front": module.plot_pareto_front, "optimization_history": module.plot_optimization_history}
    best = best_trial(study)
    if (
        sum(t.state.name == "COMPLETE" for t in study.get_trials(deepcopy=False)) >= 2
        and best is not None
        and best.params
    ):
        plots["param_importances"] = module.plot_param_importances
    return plots


def _call(name: str, plot: Callable, study, metric: str, importances: Any):
    """The plot with the study metric named on its value axis (Optuna's default says "Objective Value")."""
    if name == "param_importances":
        plot = partial(plot, evaluator=importances)
    if name == "intermediate_values":
        return plot(study)
    if name == "pareto_front":  # every trial drawn, the front highlighted; the axes named by the objectives
        return plot(study, target_names=objective_names(study))
    if len(study.directions) > 1:  # other plots draw one value: the first objective's
        return plot(study, target=lambda t: t.values[0], target_name=metric)
    return plot(study, target_name=metric)


def _draw_pngs(study, metric: str, folder: Path, importances: Any) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from optuna.visualization import matplotlib as ovm
    except ImportError as e:
        logger.info("no PNG plots: %s", first_line(e))
        return []
    drawn = []
    for name, plot in _plots(study, ovm).items():
        try:
            ax = _call(name, plot, study, metric, importances)
            if name == "intermediate_values":
                ax.set_ylabel(f"{metric} (each evaluation)")
            with warnings.catch_warnings():  # a tall slice or contour grid: drawn all the same, no need to say
                warnings.filterwarnings("ignore", "Tight layout not applied")
                ax.figure.savefig(folder / f"{name}.png", bbox_inches="tight", dpi=100)
            plt.close(ax.figure)
            drawn.append(f"{name}.png")
        except Exception as e:  # a plot is a nicety: never fail a study over it
            logger.warning("could not draw %s.png: %s", name, first_line(e))
    return drawn


def _draw_html(study, metric: str, folder: Path, importances: Any) -> list[str]:
    """One page holding every plot, interactive (zoom, hover for a trial's params), plotly.js embedded once."""
    try:
        import optuna.visualization as ov

        if not ov.is_available():
            raise ImportError("plotly is not installed (pip install plotly)")
    except ImportError as e:
        logger.info("no interactive plots: %s", first_line(e))  # a dependency; missing only in a partial install
        return []
    parts: list[str] = []  # one HTML fragment per plot
    for name, plot in _plots(study, ov).items():
        try:
            figure = _call(name, plot, study, metric, importances)
            if name == "intermediate_values":
                figure.update_yaxes(title_text=f"{metric} (each evaluation)")
            parts.append(figure.to_html(full_html=False, include_plotlyjs=not parts))
        except Exception as e:
            logger.warning("could not draw %s in %s: %s", name, HTML_PAGE, first_line(e))
    if not parts:
        return []
    title = f"study {study.study_name}: {metric}"
    head = f"<head><meta charset='utf-8'><title>{title}</title></head>"
    page = f"<!DOCTYPE html><html>{head}<body>{''.join(parts)}</body></html>"
    (folder / HTML_PAGE).write_text(page, encoding="utf-8")
    return [HTML_PAGE]
