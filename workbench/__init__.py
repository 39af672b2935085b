"""workbench: hyperparameter studies for transformers models, tracked in MLflow.

import workbench
spec = workbench.load_study_spec("studies/demo.yaml", study={"n_trials": 4})
result = workbench.run_study(spec)
"""

__version__ = "0.1.0"
__all__ = [
    "load_study_spec",
    "run_study",
    "conclude_study",
    "StudyResult",
    "StudySpec",
    "WorkbenchError",
    "__version__",
]
_PUBLIC = {
    "load_study_spec": "api",
    "run_study": "api",
    "conclude_study": "api",
    "StudyResult": "api",
    "StudySpec": "config.spec",
    "WorkbenchError": "core.errors",
}


def __getattr__(name: str):
    """The public names, imported on first use: `import workbench` (and `workbench --help`) stays instant."""
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(f"workbench.{_PUBLIC[name]}"), name)
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")
