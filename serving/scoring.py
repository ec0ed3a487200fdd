"""The one scoring path shared by batch and online: predictions plus readable reasons.

Batch scoring (:mod:`serving.batch`) and the online service (:mod:`serving.online`) both call
:func:`score_matrix`, so the same customer at the same cutoff gets the same numbers and the
same words from either.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from serving.explain import reason_texts
from training.model import CustomerValueModel

#: How the per-customer drivers are computed: XGBoost's approximate (Saabas) contributions,
#: exact TreeSHAP (about 90x slower), or none (empty strings; fastest).
REASON_MODES: tuple[str, ...] = ("approximate", "exact", "none")


@dataclass(frozen=True)
class Scores:
    """Predictions and reasons for the rows of a feature matrix, in row order.

    Attributes
    ----------
    clv, p_churn : numpy.ndarray
        float64 per row.
    reasons, value_reasons : pyarrow.StringArray
        What drove the churn probability and the value, as text (empty with reasons "none").
    """

    clv: np.ndarray
    p_churn: np.ndarray
    reasons: pa.StringArray
    value_reasons: pa.StringArray

    def __len__(self) -> int:
        return len(self.clv)


def score_matrix(
    model: CustomerValueModel, X: np.ndarray, *, reasons: str = "approximate"
) -> Scores:
    """Score a feature matrix (rows x ``model.feature_names_in_``).

    Parameters
    ----------
    model : CustomerValueModel
        The loaded model.
    X : numpy.ndarray
        Features built with ``model.spec``, columns in the model's feature order.
    reasons : {"approximate", "exact", "none"}
        See :data:`REASON_MODES`.
    """
    if reasons not in REASON_MODES:
        raise ValueError(f"reasons must be one of {', '.join(REASON_MODES)}; got {reasons!r}")
    X32 = np.ascontiguousarray(X, dtype="float32")
    if len(X32) == 0:  # XGBoost's contributions of no rows lose their shape
        nothing = np.zeros(0, dtype="float64")
        no_text = pa.array([], type=pa.string())
        return Scores(nothing, nothing.copy(), no_text, no_text)
    if reasons == "none":
        clv, p_churn = model.predict_matrix(X32)
        empty = pa.array([""] * len(X32), type=pa.string())
        return Scores(clv, p_churn, empty, empty)
    clv, p_churn, contributions, values = model.score_matrix(
        X32, approximate=reasons == "approximate"
    )
    # The bias column (last) is not a reason; the text quotes the customer's own values (as
    # given, not the float32 the trees read), then the derived ones (how overdue, the purchase
    # model's figures).
    values[:, : X.shape[1]] = np.asarray(X, dtype="float64")
    names = model.explanation_names_
    return Scores(
        clv,
        p_churn,
        reason_texts(contributions["churn"][:, :-1], values, names),
        reason_texts(contributions["clv"][:, :-1], values, names),
    )


def score_frame(
    model: CustomerValueModel, features: pd.DataFrame, *, reasons: str = "approximate"
) -> pd.DataFrame:
    """:func:`score_matrix` on a feature table (index ``customer_id``), as a DataFrame.

    Returns
    -------
    pandas.DataFrame
        Columns ``clv``, ``p_churn``, ``reasons``, ``value_reasons``; same index as
        ``features``.
    """
    X = features[model.feature_names_in_].to_numpy(dtype="float64")
    scores = score_matrix(model, X, reasons=reasons)
    return pd.DataFrame(
        {
            "clv": scores.clv,
            "p_churn": scores.p_churn,
            "reasons": pd.array(scores.reasons, dtype="str"),
            "value_reasons": pd.array(scores.value_reasons, dtype="str"),
        },
        index=features.index,
    )
