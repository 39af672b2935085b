"""One trial: the Trainer subclass, the callback reporting to Optuna and MLflow, the objective, lineage records."""
