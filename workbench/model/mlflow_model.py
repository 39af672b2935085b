"""MLflow "models from code" entry point: MLflow runs this file to build the pyfunc model.

Setting the model at import is what this file is for; nothing else in workbench does so.
"""

import mlflow

from workbench.model.inference import WorkbenchClassifier

mlflow.models.set_model(WorkbenchClassifier())
