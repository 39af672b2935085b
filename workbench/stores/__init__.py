"""Everything that touches a store: store URLs, the Optuna storage, MLflow tracking and the model registry."""
