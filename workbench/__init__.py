"""workbench: hyperparameter studies for transformers models, tracked in MLflow."""

__version__ = "0.1.0"
