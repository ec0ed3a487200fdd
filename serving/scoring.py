"""The one scoring path shared by batch and online: predictions plus readable reasons.

Batch scoring (:mod:`serving.batch`) and the online service (:mod:`serving.online.answers`) both
call :func:`score_matrix`, so the same customer at the same cutoff gets the same numbers and the
same words from either.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from serving.explain import reason_texts, unreadable
from serving.run_files import SCORE_COLUMNS
from serving.segments import Base, risk_direction
from training.model import CustomerValueModel
from training.profile import DEFAULT_LEVEL, check_discount_rate, check_level

#: How the per-customer drivers are computed: XGBoost's approximate (Saabas) contributions,
#: exact TreeSHAP (about 90x slower), or none (empty strings; fastest).
REASON_MODES: tuple[str, ...] = ("approximate", "exact", "none")


#: Profile columns the model computes per row (:meth:`CustomerValueModel.profile_matrix`);
#: ``next_order_days`` becomes a date with the row's cutoff (:func:`next_order_dates`), and
#: ``new_customer`` chooses the action (:func:`finish_scores`); neither is a scores column.
PROFILE_COLUMNS: tuple[str, ...] = (
    "historic_value",
    "total_value",
    "expected_orders",
    "p_active",
    "next_order_days",
    "avg_days_between_orders",
    "new_customer",
    "clv_low",
    "clv_high",
    "clv_discounted",
)


@dataclass(frozen=True)
class ScoreSettings:
    """How a batch run scores, kept in its stamp so the service answers the same way.

    Attributes
    ----------
    reasons : str
        One of :data:`REASON_MODES`.
    interval : float
        Level of ``clv_low``-``clv_high``.
    discount_rate : float
        Yearly rate of ``clv_discounted``.
    """

    reasons: str = "approximate"
    interval: float = DEFAULT_LEVEL
    discount_rate: float = 0.0

    def __post_init__(self) -> None:
        if self.reasons not in REASON_MODES:
            raise ValueError(
                f"reasons must be one of {', '.join(REASON_MODES)}; got {self.reasons!r}"
            )
        check_level(self.interval)
        check_discount_rate(self.discount_rate)


@dataclass(frozen=True)
class Scores:
    """Predictions, profile and reasons for the rows of a feature matrix, in row order.

    Attributes
    ----------
    clv, p_churn : numpy.ndarray
        float64 per row.
    profile : dict
        :data:`PROFILE_COLUMNS` -> float64 per row (NaN where a figure does not apply).
    reasons, value_reasons : pyarrow.StringArray
        What drove the churn probability and the value, as text (empty with reasons "none").
    """

    clv: np.ndarray
    p_churn: np.ndarray
    profile: dict[str, np.ndarray]
    reasons: pa.StringArray
    value_reasons: pa.StringArray

    def __len__(self) -> int:
        return len(self.clv)


def score_matrix(
    model: CustomerValueModel, X: np.ndarray, settings: ScoreSettings | None = None
) -> Scores:
    """Score a feature matrix (rows x ``model.feature_names_in_``).

    Parameters
    ----------
    model : CustomerValueModel
        The loaded model.
    X : numpy.ndarray
        Features built with ``model.spec``, columns in the model's feature order.
    settings : ScoreSettings, optional
        Reasons mode, interval level and discount rate (default: approximate, 80%, none).
    """
    settings = settings or ScoreSettings()
    X32 = np.ascontiguousarray(X, dtype="float32")
    if len(X32) == 0:  # XGBoost's contributions of no rows lose their shape
        nothing = np.zeros(0, dtype="float64")
        no_text = pa.array([], type=pa.string())
        empty = {name: nothing.copy() for name in PROFILE_COLUMNS}
        return Scores(nothing, nothing.copy(), empty, no_text, no_text)
    if settings.reasons == "none":
        clv, p_churn = model.predict_matrix(X32)
        reasons = value_reasons = pa.array([""] * len(X32), type=pa.string())
    else:
        clv, p_churn, contributions, values = model.score_matrix(
            X32, approximate=settings.reasons == "approximate"
        )
        # The bias column (last) is not a reason; the text quotes the customer's own values
        # (as given, not the float32 the trees read), then the derived ones (how overdue, the
        # purchase model's figures).
        values[:, : X.shape[1]] = np.asarray(X, dtype="float64")
        names = model.explanation_names_
        usual = model.usual_
        churn, value = contributions["churn"][:, :-1], contributions["clv"][:, :-1]
        reasons = reason_texts(
            churn,
            values,
            names,
            hidden=unreadable(churn, values, names, target="churn", clv=clv, p_churn=p_churn),
            prefer=risk_direction(p_churn),
            target="churn",
            usual=usual,
        )
        value_reasons = reason_texts(
            value,
            values,
            names,
            hidden=unreadable(value, values, names, target="clv", clv=clv, p_churn=p_churn),
            target="clv",
            usual=usual,
        )
    # The profile reads the customer's values as given (revenue, days between orders).
    profile = model.profile_matrix(
        np.asarray(X, dtype="float64"),
        clv,
        p_churn,
        level=settings.interval,
        discount_rate=settings.discount_rate,
    )
    return Scores(clv, p_churn, profile, reasons, value_reasons)


def score_frame(
    model: CustomerValueModel, features: pd.DataFrame, settings: ScoreSettings | None = None
) -> pd.DataFrame:
    """:func:`score_matrix` on a feature table (index ``customer_id``), as a DataFrame.

    Returns
    -------
    pandas.DataFrame
        Columns ``clv``, ``p_churn``, :data:`PROFILE_COLUMNS`, ``reasons``,
        ``value_reasons``; same index as ``features``.
    """
    X = features[model.feature_names_in_].to_numpy(dtype="float64")
    scores = score_matrix(model, X, settings)
    return pd.DataFrame(
        {
            "clv": scores.clv,
            "p_churn": scores.p_churn,
            **scores.profile,
            "reasons": pd.array(scores.reasons, dtype="str"),
            "value_reasons": pd.array(scores.value_reasons, dtype="str"),
        },
        index=features.index,
    )


def next_order_dates(cutoffs: pd.Series | pd.Timestamp, days: np.ndarray) -> list[str | None]:
    """``next_order_date``: the day the wait ends on, as ``YYYY-MM-DD`` (None: none).

    Batch and online both turn the model's ``next_order_days`` into dates here, with each
    row's own cutoff. A wait of 181.6 days ends during day 181 after the cutoff: the whole
    days are counted (not rounded), so a wait inside the horizon is a date inside it.
    """
    days = np.asarray(days, dtype="float64")
    known = np.isfinite(days)
    whole = pd.to_timedelta(np.where(known, np.floor(days), 0.0), unit="D")
    dates = (pd.Series(cutoffs) if isinstance(cutoffs, pd.Series) else cutoffs) + whole
    text = pd.Series(pd.DatetimeIndex(dates).strftime("%Y-%m-%d"))
    return [value if ok else None for value, ok in zip(text.tolist(), known, strict=True)]


#: The labels each customer gets from its place in the scored base.
SEGMENT_COLUMNS = ("value_segment", "risk_segment", "action")


def finish_scores(
    frame: pd.DataFrame,
    base: Base,
    cutoff: pd.Timestamp,
    horizon_days: int,
    info: dict[str, str],
) -> pd.DataFrame:
    """The run's columns (:data:`SCORE_COLUMNS`) of scored rows, once the whole base is known.

    Segments and percentiles rank each customer in the whole ``base``; the next-order date is
    the cutoff plus the model's median wait. Shared by :mod:`serving.batch` and
    :mod:`serving.batch.spark` (each partition of its scored rows).

    Parameters
    ----------
    frame : pandas.DataFrame
        Rows of :func:`serving.scoring.score_frame` with ``customer_id`` as a column.
    base : Base
        The scored base (every customer's CLV).
    cutoff : pandas.Timestamp
    horizon_days : int
    info : dict
        ``model_name`` and ``model_version``.
    """
    frame = frame.copy()
    clv, p_churn = frame["clv"].to_numpy(), frame["p_churn"].to_numpy()
    new = frame["new_customer"].to_numpy() == 1.0
    for name, labels in zip(SEGMENT_COLUMNS, base.labels(clv, p_churn, new), strict=True):
        frame[name] = pd.array(labels, dtype="str")
    frame["clv_percentile"] = base.percentile(clv)
    frame["next_order_date"] = pd.array(
        next_order_dates(cutoff, frame["next_order_days"].to_numpy()), dtype="str"
    )
    frame["cutoff"] = cutoff
    frame["horizon_days"] = horizon_days
    frame["model_name"] = info["model_name"]
    frame["model_version"] = info["model_version"]
    return frame[list(SCORE_COLUMNS)]
