"""How a workbench process talks to its console: our lines, not the libraries' progress bars and log spam.

Called once by each entry point (the CLI's `main`, a forked worker) before any work.
"""

from __future__ import annotations

import logging
import os

QUIET_ENV = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TOKENIZERS_PARALLELISM": "false",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "MLFLOW_LOGGING_LEVEL": "WARNING",
    # "View run at http://user:password@host/...": a secret, and noise
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}


def configure_output(debug: bool = False) -> None:
    """Quiet the libraries (their progress bars, warnings and INFO logs) unless `debug`; set up logging."""
    for key, value in QUIET_ENV.items():
        if not (debug and key.endswith(("VERBOSITY", "LOGGING_LEVEL"))):
            os.environ.setdefault(key, value)
    logging.basicConfig(level=logging.INFO if debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not debug:
        _quiet_libraries()


def _quiet_libraries() -> None:
    import warnings

    warnings.filterwarnings("ignore")
    for name in ("mlflow", "alembic", "transformers", "datasets", "urllib3", "sqlalchemy"):
        logging.getLogger(name).setLevel(logging.ERROR)
    import optuna  # its logger resets its level when first imported: set it after

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # our progress line carries each trial's outcome
