"""After a study: evaluation, promotion, reproduction, the study views and the MLflow server."""
