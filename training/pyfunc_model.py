"""The registered model as MLflow runs it: a models-from-code definition, not a pickle.

:func:`training.tracking.log_and_register` logs this file (``python_model=<this path>``) with
the two saved :class:`~training.model.CustomerValueModel` folders as artifacts and the project's
``features`` and ``training`` packages as code paths. ``mlflow.pyfunc.load_model`` executes it
as a fresh module: :func:`mlflow.models.set_model` hands MLflow the instance below, whose
:meth:`CustomerValuePyfunc.load_context` loads the serving model from the artifacts. Nothing is
unpickled, so a version keeps loading after the code is refactored, as long as the saved model
format (``training.model.FORMAT_VERSION``) is still read.

``training.tracking`` also imports this module, for the artifact names and so that versions
logged before models-from-code (a cloudpickle of ``training.tracking.CustomerValuePyfunc``)
still find their class.
"""

from __future__ import annotations

from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel

from training.model import CustomerValueModel

#: Artifact names inside a registered version: the model that serves (refit on every complete
#: cutoff) and its evaluation twin (same recipe, trained only on cutoffs before the holdout),
#: which the promotion gate scores so that every version is judged on data it never saw.
SERVING_DIR = "serving"
EVALUATION_DIR = "evaluation"


class CustomerValuePyfunc(PythonModel):
    """MLflow pyfunc wrapper: feature frame in, ``clv`` and ``p_churn`` out."""

    def load_context(self, context: Any) -> None:
        """Load the serving model from the version's artifacts; remember where the twin is."""
        self.artifacts: dict[str, str] = dict(context.artifacts)
        self.model = CustomerValueModel.load(self.artifacts[SERVING_DIR])

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        """Predict ``clv`` and ``p_churn`` for a feature frame."""
        return self.model.predict(model_input)

    def customer_value_model(self, which: str = SERVING_DIR) -> CustomerValueModel:
        """The serving model, or its evaluation twin (loaded now, from the artifacts).

        Parameters
        ----------
        which : {"serving", "evaluation"}
            Which of the version's two models.

        Returns
        -------
        CustomerValueModel
        """
        if which == SERVING_DIR:
            return self.model
        if which not in self.artifacts:
            raise ValueError(
                f"this model version has no {which!r} artifact (it has {sorted(self.artifacts)})"
            )
        return CustomerValueModel.load(self.artifacts[which])


mlflow.models.set_model(CustomerValuePyfunc())
