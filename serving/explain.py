"""Readable reasons: the top drivers of each prediction from XGBoost's feature contributions."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

#: Plain-language templates; ``{v}`` is the customer's value of the feature, ``{w}`` the window.
_TEMPLATES: dict[str, str] = {
    "days_since_first_order": "customer for {v:.0f} days",
    "days_since_last_order": "last order {v:.0f} days ago",
    "orders_{w}d": "{v:.0f} orders in the last {w} days",
    "orders_total": "{v:.0f} orders in total",
    "revenue_{w}d": "{v:,.0f} spent in the last {w} days",
    "revenue_total": "{v:,.0f} spent in total",
    "avg_order_value": "average order value {v:,.0f}",
    "repeat_order_value_mean": "repeat orders average {v:,.0f}",
    "days_between_orders_mean": "orders every {v:.0f} days on average",
    "days_between_orders_std": "order rhythm varies by {v:.0f} days",
    "orders_trend_{w}d": "{v:+.0f} orders vs the previous {w} days",
    "revenue_trend_{w}d": "{v:+,.0f} spend vs the previous {w} days",
    "frequency": "bought on {v:.0f} repeat days",
    "recency": "{v:.0f} days between first and last purchase",
    "T": "first purchase {v:.0f} days ago",
    # Derived by the model (training.model): how overdue, and the purchase model's figures.
    "recency_gap_ratio": "last order {v:.1f}x the usual gap between orders ago",
    "p_alive": "{v:.0%} likely still a customer (purchase pattern)",
    "expected_orders_{w}d": "{v:.1f} orders expected in the next {w} days (purchase pattern)",
    "purchase_model_p_no_order": "{v:.0%} chance of no order in the horizon (purchase pattern)",
    "purchase_model_value": "{v:,.0f} expected over the horizon (purchase pattern)",
    "late_deliveries_{w}d": "{v:.0f} late deliveries in the last {w} days",
    "late_delivery_rate_{w}d": "{v:.0%} of deliveries late in the last {w} days",
    "mean_days_late_{w}d": "deliveries {v:.1f} days late on average (last {w} days)",
    "cancellation_rate_{w}d": "{v:.0%} of orders cancelled in the last {w} days",
    "returns_{w}d": "{v:.0f} returns in the last {w} days",
    "returned_value_share_{w}d": "{v:.0%} of order value returned in the last {w} days",
    "tickets_{w}d": "{v:.0f} support tickets in the last {w} days",
    "bad_tickets_{w}d": "{v:.0f} badly resolved tickets in the last {w} days",
    "mean_resolution_hours_{w}d": "tickets took {v:.0f} h to resolve on average (last {w} days)",
    "mean_ticket_csat_{w}d": "support satisfaction {v:.1f}/5 (last {w} days)",
    "open_tickets": "{v:.0f} support tickets still open",
    "days_since_last_ticket": "last support ticket {v:.0f} days ago",
    "mean_review_score": "reviews average {v:.1f} stars",
    "last_review_score": "last review {v:.0f} stars",
}
#: Words for a missing value. Each feature has its own, so that two missing features among a
#: customer's top reasons never read as the same reason twice.
_MISSING: dict[str, str] = {
    # Also what a store without support data reads: no ticket is on record either way.
    "days_since_last_ticket": "no support ticket on record",
    "open_tickets": "open tickets unknown (no support data)",
    "mean_review_score": "no reviews",
    "last_review_score": "no last review to go by",
    "repeat_order_value_mean": "no repeat orders yet",
    "days_between_orders_mean": "only one order so far",
    "days_between_orders_std": "fewer than three orders",
    "recency_gap_ratio": "only one order so far (no usual gap)",
}
#: Windowed quality features are missing when there is nothing to judge in the window.
_MISSING_WINDOWED: dict[str, str] = {
    "late_deliveries": "late deliveries unknown (no delivery dates in the last {w} days)",
    "late_delivery_rate": "late-delivery rate unknown (no delivery dates in the last {w} days)",
    "mean_days_late": "days late unknown (no delivery dates in the last {w} days)",
    "cancellation_rate": "cancellations unknown (no order statuses in the last {w} days)",
    "returns": "returns unknown (no order statuses in the last {w} days)",
    "returned_value_share": "returned value unknown (no order statuses in the last {w} days)",
    "tickets": "support tickets unknown (no support data for the last {w} days)",
    "bad_tickets": "ticket resolutions unknown (no support data for the last {w} days)",
    "mean_resolution_hours": "no resolved tickets in the last {w} days",
    "mean_ticket_csat": "no rated tickets in the last {w} days",
}
_WINDOW = re.compile(r"^(?P<stem>.+)_(?P<w>\d+)d$")


def describe(feature: str, value: float) -> str:
    """One feature value in plain language, e.g. ``3 late deliveries in the last 365 days``."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        match = _WINDOW.match(feature)
        if match and match["stem"] in _MISSING_WINDOWED:
            return _MISSING_WINDOWED[match["stem"]].format(w=match["w"])
        return _MISSING.get(feature, f"no data for {feature.replace('_', ' ')}")
    template, window = _template(feature)
    if template is None:
        return f"{feature.replace('_', ' ')} = {value:g}"
    if _WHOLE_NUMBER.search(template):
        value = float(_whole(np.asarray(value, dtype="float64")))
        if abs(value) == 1:
            template = _SINGULAR[template]
    return template.format(v=value, w=window)


def _whole(values: np.ndarray) -> np.ndarray:
    """Round half to even (as format() does) and turn -0 into 0, so nothing reads "-0"."""
    return np.rint(values) + 0.0


def _template(feature: str) -> tuple[str | None, str | None]:
    if feature in _TEMPLATES:
        return _TEMPLATES[feature], None
    match = _WINDOW.match(feature)
    if match:
        key = f"{match['stem']}_{{w}}d"
        if key in _TEMPLATES:
            return _TEMPLATES[key], match["w"]
    return None, None


def top_reasons(contributions: pd.DataFrame, features: pd.DataFrame, *, k: int = 3) -> pd.Series:
    """The ``k`` features that moved each prediction most, as one readable string per row.

    A DataFrame front end to :func:`reason_texts` for analysis (e.g. in a notebook, with
    :meth:`CustomerValueModel.contributions`); scoring calls :func:`reason_texts` directly.

    Parameters
    ----------
    contributions : pandas.DataFrame
        Per-feature contributions (:meth:`CustomerValueModel.contributions`), ``bias`` included.
    features : pandas.DataFrame
        The feature values of the same rows, to quote in the text.
    k : int
        Reasons per row.

    Returns
    -------
    pandas.Series
        ``"↑ last order 210 days ago; ↑ 3 late deliveries in the last 365 days; ↓ ..."`` where
        ↑ means the feature pushed the prediction up and ↓ down.
    """
    names = [c for c in contributions.columns if c != "bias"]
    texts = reason_texts(
        contributions[names].to_numpy(), features[names].to_numpy(dtype="float64"), names, k=k
    )
    return pd.Series(pd.array(texts, dtype="str"), index=contributions.index)


def reason_texts(
    contributions: np.ndarray, values: np.ndarray, names: Sequence[str], *, k: int = 3
) -> pa.StringArray:
    """The ``k`` largest contributions of each row, described in words and joined by ``"; "``.

    A contribution of exactly zero is not a reason: a row where fewer than ``k`` features
    moved the prediction gets fewer reasons.

    The vectorised core of :func:`top_reasons`, used as it is by batch and online scoring.
    Every distinct (feature, value) pair is described once, however many rows share it, and the
    strings are assembled by Arrow: a million rows take about a second instead of a minute of
    per-row Python.

    Parameters
    ----------
    contributions : numpy.ndarray
        rows x features contributions, without the bias column.
    values : numpy.ndarray
        rows x features feature values (float64), same columns.
    names : sequence of str
        The feature names of the columns.
    k : int
        Reasons per row.

    Returns
    -------
    pyarrow.StringArray
        One string per row.
    """
    if contributions.shape != values.shape or contributions.shape[1] != len(names):
        raise ValueError(
            f"contributions {contributions.shape} and values {values.shape} must both be "
            f"rows x {len(names)} features"
        )
    n = len(contributions)
    k = min(k, len(names))
    if n == 0 or k == 0:
        return pa.array([""] * n, type=pa.string())
    magnitude = np.abs(contributions)
    # argpartition then a small sort: O(n) per row instead of sorting every feature.
    top = np.argpartition(-magnitude, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(magnitude, top, axis=1), axis=1, kind="stable")
    top = np.take_along_axis(top, order, axis=1)
    if n <= _FEW_ROWS:
        # Online requests: a plain loop beats the grouping and Arrow calls' fixed costs.
        return pa.array(
            [
                "; ".join(
                    ("↑ " if contributions[row, j] >= 0 else "↓ ")
                    + describe(names[j], values[row, j])
                    for j in top[row].tolist()
                    if contributions[row, j] != 0
                )
                for row in range(n)
            ],
            type=pa.string(),
        )
    rows = np.arange(n)
    phrases = []
    for rank in range(k):
        idx = top[:, rank]
        up = contributions[rows, idx] >= 0
        phrase = _phrases(idx, values[rows, idx], up, names)
        # A feature that moved nothing is no reason (a model family that ignores the trees
        # has fewer than k): null, skipped by the join.
        moved = pa.array(contributions[rows, idx] != 0)
        phrases.append(pc.if_else(moved, phrase, pa.scalar(None, pa.string())))
    joined = pc.binary_join_element_wise(*phrases, "; ", null_handling="skip")
    return pc.fill_null(joined, "")


def _phrases(idx: np.ndarray, values: np.ndarray, up: np.ndarray, names: Sequence[str]) -> pa.Array:
    """``"↑ <description>"`` per row for the (feature ``idx``, value) pairs.

    Rows are grouped by feature (one sort) and by distinct value, each distinct pair is
    described once, and the rows take their description from that vocabulary by code.
    """
    order = np.argsort(idx, kind="stable")
    bounds = np.searchsorted(idx[order], np.arange(len(names) + 1))
    vocabulary: list[str] = []
    codes = np.empty(len(idx), dtype="int64")
    for feature_index in range(len(names)):
        rows = order[bounds[feature_index] : bounds[feature_index + 1]]
        if len(rows) == 0:
            continue
        name = names[feature_index]
        shown = values[rows]
        if _WHOLE_NUMBER.search(_template(name)[0] or ""):
            # Printed with no decimals: rounding first collapses equal printed values before
            # formatting; describe() rounds the same way, so the words are identical.
            shown = _whole(shown)
        distinct, inverse = np.unique(shown, return_inverse=True)  # NaNs collapse to one
        codes[rows] = len(vocabulary) + inverse.ravel()
        vocabulary.extend(_describe_many(name, distinct))
    described = pc.take(pa.array(vocabulary, type=pa.string()), pa.array(codes))
    arrows = pc.if_else(pa.array(up), "↑", "↓")
    return pc.binary_join_element_wise(arrows, described, " ")


#: Up to this many rows, reasons are written row by row (same words, lower fixed cost).
_FEW_ROWS = 64
#: A template that prints the value with no decimals (``{v:.0f}``, ``{v:,.0f}``, ``{v:+.0f}``).
_WHOLE_NUMBER = re.compile(r"\{v:\+?,?\.0f\}")


def _describe_many(feature: str, values: np.ndarray) -> list[str]:
    """:func:`describe` for many values of one feature, resolving its template once."""
    template, window = _template(feature)
    if template is None:
        return [describe(feature, v) for v in values.tolist()]
    missing = describe(feature, float("nan"))
    fill, fill_one = template.format, _SINGULAR[template].format
    # v != v: NaN. Whole-number values arrive rounded, so abs(v) == 1 is what prints as 1.
    return [
        missing if v != v else (fill_one if abs(v) == 1 else fill)(v=v, w=window)
        for v in values.tolist()
    ]


#: Counted nouns of the templates, and their singular for a count printed as 1.
_PLURALS: dict[str, str] = {
    "orders": "order",
    "deliveries": "delivery",
    "days": "day",
    "tickets": "ticket",
    "returns": "return",
    "stars": "star",
}
_PLURAL_WORD = re.compile(r"\b(" + "|".join(_PLURALS) + r")\b")


def _singular(template: str) -> str:
    """``template`` for a whole-number value printed as 1: its counted noun in the singular.

    The counted noun is the first plural after the value and before any other placeholder
    ("last order {v} days ago", "{v} late deliveries in the last {w} days"); templates that do
    not print a whole number are returned as they are.
    """
    match = _WHOLE_NUMBER.search(template)
    if match is None:
        return template
    counted, brace, rest = template[match.end() :].partition("{")
    counted = _PLURAL_WORD.sub(lambda word: _PLURALS[word[1]], counted, count=1)
    return template[: match.end()] + counted + brace + rest


_SINGULAR: dict[str, str] = {template: _singular(template) for template in _TEMPLATES.values()}
