"""The MLflow pyfunc model of every project-format registered model, logged as code ("models from code").

Never imported: `alignflow/runtime/flavours` hands this file to MLflow by path.

MLflow copies this file into the model and runs it at load time; nothing is pickled. The model's
`model_config` names its serving family (`pipelines/serving`, bundled in the model's `code/`), and
its one artifact, `model`, is the folder the stage saved with the project's own (safetensors) code.
"""
from __future__ import annotations

from pathlib import Path

import mlflow
from mlflow.pyfunc import PythonModel


class ServingFamilyModel(PythonModel):
    def load_context(self, context) -> None:
        from pipelines.serving import family

        self.family = family(context.model_config["family"])
        self.predictor = self.family.load(Path(context.artifacts["model"]))

    def predict(self, context, model_input, params=None):
        import pandas as pd

        from pipelines.serving import checked_params

        rows = model_input.to_dict("records") if isinstance(model_input, pd.DataFrame) else list(model_input)
        out = self.predictor.predict(rows, checked_params(params, self.family.params))
        return pd.DataFrame(out, columns=[c.name for c in self.family.outputs])


mlflow.models.set_model(ServingFamilyModel())
