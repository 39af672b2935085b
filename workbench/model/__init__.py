"""The models: the built-in config and model, pretrained checkpoints, user model classes, inference
and the MLflow model."""
