"""Pictures of a study for its parent run: optimization history, intermediate values, importances."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from workbench.errors import first_line
from workbench.storage import best_trial, quiet_experimental

logger = logging.getLogger(__name__)


def log_study_plots(study, tracking) -> None:
    """Draw Optuna's plots and log them under `plots/` of the study's parent run; never fails the study."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from optuna.visualization import matplotlib as ovm
    except ImportError:
        return
    plots = {"optimization_history.png": ovm.plot_optimization_history, "intermediate_values.png": ovm.plot_intermediate_values}
    if sum(t.state.name == "COMPLETE" for t in study.get_trials(deepcopy=False)) >= 2 and best_trial(study).params:
        plots["param_importances.png"] = ovm.plot_param_importances
    with tempfile.TemporaryDirectory() as tmp, quiet_experimental():
        for name, plot in plots.items():
            try:
                ax = plot(study)
                ax.figure.savefig(Path(tmp) / name, bbox_inches="tight", dpi=100)
                plt.close(ax.figure)
                tracking.client.log_artifact(tracking.parent_run_id, str(Path(tmp) / name), "plots")
            except Exception as e:  # a plot is a nicety: never fail a study over it
                logger.warning("could not draw %s: %s", name, first_line(e))
