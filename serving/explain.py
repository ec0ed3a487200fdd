"""Readable reasons: the top drivers of each prediction from XGBoost's feature contributions."""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence

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
#: Features whose missing value is a fact about the customer's own orders (one order so far,
#: no repeat order yet), not a gap in the shop's data: these may be reasons.
_FACT_WHEN_MISSING = frozenset(
    {
        "repeat_order_value_mean",
        "days_between_orders_mean",
        "days_between_orders_std",
        "recency_gap_ratio",
    }
)
#: The words of a data gap (a missing value that says nothing about the customer), as regular
#: expressions: never a reason (:func:`reason_texts`), and what ``serving.sanity`` looks for.
DATA_GAP_PHRASES: tuple[str, ...] = (
    *(re.escape(text) for name, text in _MISSING.items() if name not in _FACT_WHEN_MISSING),
    *(re.escape(text).replace(re.escape("{w}"), r"\d+") for text in _MISSING_WINDOWED.values()),
    r"no data for ",
)


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
    contributions: np.ndarray,
    values: np.ndarray,
    names: Sequence[str],
    *,
    k: int = 3,
    hidden: np.ndarray | None = None,
    prefer: np.ndarray | None = None,
    target: str | None = None,
    usual: Mapping[str, float] | None = None,
) -> pa.StringArray:
    """The ``k`` largest contributions of each row, described in words and joined by ``"; "``.

    A contribution of exactly zero is not a reason, nor is a data gap (a missing value that
    says nothing about the customer, :data:`DATA_GAP_PHRASES`), nor an entry of ``hidden``: a
    row where fewer than ``k`` features are left gets fewer reasons.

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
    hidden : numpy.ndarray, optional
        rows x features booleans: reasons not to show (:func:`unreadable`).
    prefer : numpy.ndarray, optional
        Per row +1, -1 or 0: the contributions that push the prediction up (+1) or down (-1)
        come first, largest first, then the others; 0 ranks by size alone. A high-risk
        customer's churn reasons then say first what makes them high risk.
    target : {"churn", "clv"}, optional
        Which prediction the contributions explain. Given, a recent quantity of the customer's
        own buying quoted on the risky side reads as a shortfall: "↑ only 50 spent in the last
        365 days" (:func:`shortfalls`).
    usual : mapping, optional
        The model's usual values (``CustomerValueModel.usual_``), with ``target``: a
        whole-history quantity whose arrow says the opposite of where it stands against the
        usual one is not shown (:func:`against_usual`), and one under it on the risky side
        reads as a shortfall ("↑ only 38 spent in total").

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
    contributions = same_facts_merged(contributions, values, names)
    if target is not None and usual:
        wrong_way = against_usual(contributions, values, names, target=target, usual=usual)
        hidden = wrong_way if hidden is None else hidden | wrong_way
    key = _ranking(contributions, values, names, hidden, prefer)
    # After the merge: a merged fact's arrow is the sum of its windows' contributions.
    only = (
        shortfalls(contributions, values, names, target=target, usual=usual)
        if target is not None
        else np.zeros(contributions.shape, dtype=bool)
    )
    # argpartition then a small sort: O(n) per row instead of sorting every feature.
    top = np.argpartition(-key, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(key, top, axis=1), axis=1, kind="stable")
    top = np.take_along_axis(top, order, axis=1)
    shown = np.isfinite(np.take_along_axis(key, top, axis=1))
    if n <= _FEW_ROWS:
        # Online requests: a plain loop beats the grouping and Arrow calls' fixed costs.
        return pa.array(
            [
                "; ".join(
                    ("↑ " if contributions[row, j] >= 0 else "↓ ")
                    + ("only " if only[row, j] else "")
                    + describe(names[j], values[row, j])
                    for rank, j in enumerate(top[row].tolist())
                    if shown[row, rank]
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
        phrase = _phrases(idx, values[rows, idx], up, names, only[rows, idx])
        if rank:
            phrase = pc.binary_join_element_wise("; ", phrase, "")
        # Not a reason (nothing moved, a data gap, hidden): empty. What is no reason ranks
        # last (-inf), so a row's reasons are its first ranks and only they carry a "; ".
        # (Arrow's join with null_handling="skip" drops rows whose inputs are all null.)
        phrases.append(pc.if_else(pa.array(shown[:, rank]), phrase, ""))
    return pc.binary_join_element_wise(*phrases, "")


#: Features that state one fact about a customer, each with the feature whose words say it.
#: Equal printed days: the customer's first order and BG/NBD's first purchase (which may
#: differ when the first order was cancelled: two facts then, both shown).
_SAME_DAYS: tuple[tuple[str, str], ...] = (("days_since_first_order", "T"),)
#: Quantities counted over nested windows (``orders_90d`` ... ``orders_total``): equal
#: figures of two windows are one fact (:func:`same_facts_merged`).
_NESTED_STEMS: tuple[str, ...] = ("orders", "revenue")
#: What a customer with one order has (no gap between orders, so the first is missing):
#: each feature with the value that says "one order" (NaN: missing). One fact, said by the
#: first: "only one order so far", not also "0 days between first and last purchase".
_ONE_ORDER: tuple[tuple[str, float], ...] = (
    ("days_between_orders_mean", np.nan),
    ("recency_gap_ratio", np.nan),
    ("days_between_orders_std", np.nan),
    ("repeat_order_value_mean", np.nan),
    ("recency", 0.0),
    ("frequency", 0.0),
    ("orders_total", 1.0),
)


def _nested_windows(names: Sequence[str]) -> list[list[str]]:
    """Per counted quantity, its windows shortest first, then the whole history."""
    chains = []
    for stem in _NESTED_STEMS:
        windows = sorted(
            (int(m["w"]), name)
            for name in names
            if (m := _WINDOW.match(name)) and m["stem"] == stem
        )
        chain = [name for _, name in windows]
        if f"{stem}_total" in names:
            chain.append(f"{stem}_total")
        chains.append(chain)
    return chains


def same_facts_merged(
    contributions: np.ndarray, values: np.ndarray, names: Sequence[str]
) -> np.ndarray:
    """Contributions with the features that say the same thing about a row added together.

    "customer for 347 days" and "first purchase 347 days ago", "only one order so far" and
    "0 days between first and last purchase", or, where every order fell on one day, "bought
    on 0 repeat days" and "orders every 0 days on average", are one fact: shown twice, they
    take two of a row's reasons, and their arrows may even disagree. So are two windows of one
    quantity that print the same figure ("16 spent in the last 365 days" and "16 spent in total":
    nothing was spent before), said by the longer window, and a one-order customer's
    "average order value 16" beside "16 spent in total". Contributions are additive, so the
    group's is the sum of its members', given to the member whose words are shown; the others
    get zero (no reason). A row where the members say different things keeps them apart.

    Returns
    -------
    numpy.ndarray
        ``contributions`` itself when no row has such a pair, else a merged copy.
    """
    column = {name: j for j, name in enumerate(names)}
    merges: list[tuple[int, int, np.ndarray]] = []
    # Windows first, shortest into the next: a run of equal figures ends in its longest
    # window, which the one-order group below may then take in turn.
    for chain in _nested_windows(names):
        for shorter, longer in itertools.pairwise(chain):
            a, b = column[longer], column[shorter]
            merges.append((a, b, _whole(values[:, a]) == _whole(values[:, b])))
    if {"avg_order_value", "revenue_total", "orders_total"} <= column.keys():
        a, b = column["revenue_total"], column["avg_order_value"]
        one = values[:, column["orders_total"]] == 1.0
        merges.append((a, b, one & (_whole(values[:, a]) == _whole(values[:, b]))))
    for words, twin in _SAME_DAYS:
        if words in column and twin in column:
            a, b = column[words], column[twin]
            merges.append((a, b, _whole(values[:, a]) == _whole(values[:, b])))
    says, *members = _ONE_ORDER
    if says[0] in column:
        a = column[says[0]]
        one_order = np.isnan(values[:, a])
        for name, value in members:
            if name in column:
                b = column[name]
                same = np.isnan(values[:, b]) if np.isnan(value) else values[:, b] == value
                merges.append((a, b, one_order & same))
    # Several orders, every one on the first day: "bought on 0 repeat days", "0 days between
    # first and last purchase" and "orders every 0 days on average" are one fact too, said by
    # the first. So are the rhythm's spread ("varies by 0 days", or "fewer than three orders"
    # where it is missing), the repeat orders' value where none of the later orders was paid
    # ("no repeat orders yet") and how overdue the last order is: with no second purchase day
    # there is no rhythm, and "last order 3.0x the usual gap ago" of a customer whose two
    # orders came three days ago, the same day, measures a "gap" of the one-day floor.
    if {"frequency", "days_between_orders_mean"} <= column.keys():
        a = column["frequency"]
        one_day = (values[:, a] == 0.0) & ~np.isnan(values[:, column["days_between_orders_mean"]])
        for name in (
            "recency",
            "days_between_orders_mean",
            "days_between_orders_std",
            "repeat_order_value_mean",
        ):
            if name in column:
                b = column[name]
                zero = (_whole(values[:, b]) == 0.0) | np.isnan(values[:, b])
                merges.append((a, b, one_day & zero))
        if "recency_gap_ratio" in column:
            merges.append((a, column["recency_gap_ratio"], one_day))
    if not any(rows.any() for _, _, rows in merges):
        return contributions
    merged = np.array(contributions, dtype="float64")
    for keep, drop, rows in merges:
        merged[rows, keep] += merged[rows, drop]
        merged[rows, drop] = 0.0
    return merged


def _ranking(
    contributions: np.ndarray,
    values: np.ndarray,
    names: Sequence[str],
    hidden: np.ndarray | None,
    prefer: np.ndarray | None,
) -> np.ndarray:
    """Per entry the key reasons are chosen by: larger first, -inf for what is no reason."""
    key = np.abs(contributions).astype("float64")
    # Preferred directions first: shifted above every other entry of the row.
    if prefer is not None:
        favoured = np.sign(contributions) == np.asarray(prefer, dtype="float64")[:, None]
        key = key + np.where(favoured, key.max(initial=0.0) + 1.0, 0.0)
    gaps = np.isnan(values) & ~np.isin(np.asarray(names), list(_FACT_WHEN_MISSING))[None, :]
    excluded = (contributions == 0) | gaps
    if hidden is not None:
        excluded |= hidden
    return np.where(excluded, -np.inf, key)


#: Purchase-model probabilities and the side of one half on which each reads as a risk:
#: a chance of no order of one half or more raises risk; a chance of being active under one
#: half does.
_PROBABILITY_READINGS: dict[str, bool] = {"purchase_model_p_no_order": True, "p_alive": False}
#: A purchase-model figure of value is quoted only within this factor of the served CLV.
VALUE_AGREEMENT = 2.0
#: ... and its chance of no order only within this many points of the served ``p_churn``: a
#: quarter apart reads as another answer ("22% chance of no order" beside a served 59%), where
#: a few points are the stack's calibration of the same figure.
PROBABILITY_AGREEMENT = 0.25
#: How overdue the last order is, in the customer's own usual gaps ("last order 3.1x the usual
#: gap between orders ago"), reads as a risk from :data:`OVERDUE_READS_LATE` on and as being
#: on rhythm up to :data:`OVERDUE_READS_ON_TIME`. The trees weigh it against the base: where
#: most customers are far more overdue (a venue whose customers come once a year), 3x lowers
#: the risk against the average, and "↓ last order 3.1x the usual gap ago" reads as a reason
#: to worry less. Between the two the figure reads either way and is shown as it is.
OVERDUE_READS_LATE = 1.5
OVERDUE_READS_ON_TIME = 0.5
#: Whole-history quantities of the customer's buying that a marketer reads as "more is a
#: better customer", per target. The trees may read them either way (a long history with
#: little of it lately), so whether "↓ 360 spent in total" says too little or, against sense,
#: too much depends on the shop's usual customer: the model's ``usual_`` values
#: (``training.model.USUAL_FEATURES``). Amounts per order tell value, not loyalty, so for the
#: churn risk only the counts and the total spend are read this way.
MORE_IS_BETTER: dict[str, tuple[str, ...]] = {
    "churn": ("orders_total", "revenue_total", "frequency"),
    "clv": (
        "orders_total",
        "revenue_total",
        "frequency",
        "avg_order_value",
        "repeat_order_value_mean",
    ),
}


def _against_usual(
    values: np.ndarray, names: Sequence[str], target: str, usual: Mapping[str, float] | None
) -> list[tuple[int, np.ndarray, float]]:
    """``(column, figure as printed, usual value printed so)`` per :data:`MORE_IS_BETTER` feature.

    Only the features ``usual`` has a value for. Both are rounded as the reason prints them,
    so that "329" against a usual 329.2 is neither above nor below it: what the reader sees.
    """
    if not usual:
        return []
    found = []
    for j, name in enumerate(names):
        if name not in MORE_IS_BETTER.get(target, ()) or name not in usual:
            continue
        digits = _decimals(name)
        found.append((j, np.round(values[:, j], digits), round(float(usual[name]), digits)))
    return found


def unreadable(
    contributions: np.ndarray,
    values: np.ndarray,
    names: Sequence[str],
    *,
    target: str,
    clv: np.ndarray,
    p_churn: np.ndarray | None = None,
) -> np.ndarray:
    """Reasons that would read wrong beside the served figures: not to be shown.

    - A probability of the purchase model whose arrow contradicts what it says: a chance of
      no order of one half or more shown as lowering risk (or raising value), a chance of
      being active of one half or more shown as raising risk (or lowering value), and the
      mirror cases under one half.
    - BG/NBD's P(alive) of a one-time buyer: 1 by the model's construction (it cannot drop
      out before a repeat purchase), so it says nothing about this customer.
    - The purchase model's value over the horizon when the served ``clv`` differs from it by
      more than :data:`VALUE_AGREEMENT` times: the reason would quote a figure the answer
      does not agree with. So is its chance of no order when the served ``p_churn`` (given)
      is more than :data:`PROBABILITY_AGREEMENT` away from it.
    - How overdue the last order is (``recency_gap_ratio``) when its arrow contradicts the
      figure: :data:`OVERDUE_READS_LATE` times the usual gap or more shown as lowering risk
      (or raising value), :data:`OVERDUE_READS_ON_TIME` or less shown as raising risk (or
      lowering value).

    A whole-history quantity read against the shop's usual customer is left to
    :func:`against_usual`, which :func:`reason_texts` applies after merging the facts.

    Parameters
    ----------
    contributions, values : numpy.ndarray
        rows x features, as for :func:`reason_texts`.
    names : sequence of str
        The feature names of the columns.
    target : {"churn", "clv"}
        Which prediction the contributions explain (an arrow up is more risk, or more value).
    clv : numpy.ndarray
        The served CLV per row.
    p_churn : numpy.ndarray, optional
        The served chance of no order per row.

    Returns
    -------
    numpy.ndarray
        rows x features booleans, True where the reason is not to be shown.
    """
    risk_up = _risky(contributions, target)
    hidden = np.zeros(contributions.shape, dtype=bool)
    column = {name: j for j, name in enumerate(names)}
    for name, high_is_risk in _PROBABILITY_READINGS.items():
        if name not in column:
            continue
        j = column[name]
        # One half as printed ("{v:.0%}"): a 49.6% chance reads as 50%.
        risky = (np.round(values[:, j] * 100.0) >= 50.0) == high_is_risk
        hidden[:, j] |= risky != risk_up[:, j]
    if "p_alive" in column and "frequency" in column:
        hidden[:, column["p_alive"]] |= values[:, column["frequency"]] == 0
    if "recency_gap_ratio" in column:
        j = column["recency_gap_ratio"]
        # As printed ("{v:.1f}x"): 1.46 reads as 1.5.
        overdue = np.round(values[:, j], 1)
        late, on_time = overdue >= OVERDUE_READS_LATE, overdue <= OVERDUE_READS_ON_TIME
        hidden[:, j] |= (late & ~risk_up[:, j]) | (on_time & risk_up[:, j])
    if "purchase_model_value" in column:
        quoted = values[:, column["purchase_model_value"]]
        served = np.maximum(np.asarray(clv, dtype="float64"), 1e-9)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = quoted / served
        hidden[:, column["purchase_model_value"]] |= (ratio > VALUE_AGREEMENT) | (
            ratio < 1.0 / VALUE_AGREEMENT
        )
    if p_churn is not None and "purchase_model_p_no_order" in column:
        j = column["purchase_model_p_no_order"]
        # As printed ("{v:.0%}"), against the served figure.
        quoted = np.round(values[:, j] * 100.0) / 100.0
        with np.errstate(invalid="ignore"):
            apart = np.abs(quoted - np.asarray(p_churn, dtype="float64")) > PROBABILITY_AGREEMENT
        hidden[:, j] |= apart
    return hidden


def against_usual(
    contributions: np.ndarray,
    values: np.ndarray,
    names: Sequence[str],
    *,
    target: str,
    usual: Mapping[str, float],
) -> np.ndarray:
    """Whole-history reasons whose arrow says the opposite of the figure: not to be shown.

    A quantity of buying over the whole history (:data:`MORE_IS_BETTER`) more than the shop's
    usual customer's shown as raising the risk (or lowering the value), or less than it shown
    as lowering the risk (or raising the value). "↓ 360 spent in total" beside a usual 317
    reads as if spending lowered the value; the trees may mean "much once, little lately",
    which the recent windows' reasons say in words that read right.

    Parameters
    ----------
    contributions, values, names, target
        As for :func:`unreadable` (``contributions`` after :func:`same_facts_merged`: the
        arrow that is shown).
    usual : mapping
        Feature -> the usual value the model was trained on (``CustomerValueModel.usual_``).

    Returns
    -------
    numpy.ndarray
        rows x features booleans, True where the reason is not to be shown.
    """
    risk_up = _risky(contributions, target)
    hidden = np.zeros(contributions.shape, dtype=bool)
    for j, printed, typical in _against_usual(values, names, target, usual):
        with np.errstate(invalid="ignore"):
            above, below = printed > typical, printed < typical
        hidden[:, j] = (above & risk_up[:, j]) | (below & ~risk_up[:, j])
    return hidden


#: Recent quantities of the customer's own buying, which the trees may read one way only (more
#: of them is less risk and more value: ``training.model.monotone_directions``). Shown on the
#: risky side (raising the churn risk, lowering the value), the bare figure reads backwards to
#: a marketer: "↑ 50 spent in the last 365 days" as if spending raised the risk. It means the
#: figure is short of what keeps a customer, and the words say so: "↑ only 50 spent ...".
_SHORT_OF = re.compile(r"^(?:orders|revenue|expected_orders)_\d+d$")
#: The whole-history quantities whose words take an "only" ("only 38 spent in total", "only
#: bought on 2 repeat days"); the amounts per order ("average order value 30") do not read so.
_SHORT_TOTALS = frozenset({"orders_total", "revenue_total", "frequency"})


def shortfalls(
    contributions: np.ndarray,
    values: np.ndarray,
    names: Sequence[str],
    *,
    target: str,
    usual: Mapping[str, float] | None = None,
) -> np.ndarray:
    """Reasons that quote a quantity of buying as too little: to read "only <figure>".

    An order count, a spend or the purchase model's expected orders over a recent window
    (:data:`_SHORT_OF`) whose contribution raises the churn risk (``target="churn"``) or lowers
    the value (``target="clv"``), where the figure as printed is above zero ("0 spent" needs
    no "only"). A count or total over the whole history (:data:`_SHORT_TOTALS`) on that side
    reads so where it is under the shop's usual one ("↑ only 38 spent in total"); over it,
    such a reason is not shown at all (:func:`against_usual`).

    Parameters
    ----------
    contributions, values, names, target, usual
        As for :func:`unreadable`.

    Returns
    -------
    numpy.ndarray
        rows x features booleans.
    """
    risky = _risky(contributions, target)
    short = np.zeros(contributions.shape, dtype=bool)
    for j, name in enumerate(names):
        if _SHORT_OF.match(name) is None:
            continue
        with np.errstate(invalid="ignore"):
            short[:, j] = risky[:, j] & (np.round(values[:, j], _decimals(name)) > 0)
    for j, printed, typical in _against_usual(values, names, target, usual):
        if names[j] not in _SHORT_TOTALS:
            continue
        with np.errstate(invalid="ignore"):
            short[:, j] = risky[:, j] & (printed < typical) & (printed > 0)
    return short


def _risky(contributions: np.ndarray, target: str) -> np.ndarray:
    """Where a contribution reads as a risk: up for churn, down for the value."""
    if target not in ("churn", "clv"):
        raise ValueError(f"target must be 'churn' or 'clv'; got {target!r}")
    # An arrow up means more risk for churn and more value for CLV.
    return contributions > 0 if target == "churn" else contributions < 0


def _phrases(
    idx: np.ndarray, values: np.ndarray, up: np.ndarray, names: Sequence[str], only: np.ndarray
) -> pa.Array:
    """``"↑ <description>"`` per row for the (feature ``idx``, value) pairs.

    ``only``: the rows whose description reads as a shortfall (``"↑ only <description>"``).

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
        template = _template(name)[0] or ""
        if _WHOLE_NUMBER.search(template):
            # Printed with no decimals: rounding first collapses equal printed values before
            # formatting; describe() rounds the same way, so the words are identical.
            shown = _whole(shown)
        key = _printed(template, shown)
        if key is None:
            distinct, inverse = np.unique(shown, return_inverse=True)  # NaNs collapse to one
        else:
            # One value per printed figure: every value of a group prints the same words.
            _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
            distinct = shown[first]
        codes[rows] = len(vocabulary) + inverse.ravel()
        vocabulary.extend(_describe_many(name, distinct))
    described = pc.take(pa.array(vocabulary, type=pa.string()), pa.array(codes))
    if only.any():
        described = pc.if_else(
            pa.array(only), pc.binary_join_element_wise("only", described, " "), described
        )
    arrows = pc.if_else(pa.array(up), "↑", "↓")
    return pc.binary_join_element_wise(arrows, described, " ")


#: A template printing the value with a fixed number of decimals, or as a whole percentage.
_FIXED = re.compile(r"\{v:\+?,?\.(?P<digits>\d)f\}|\{v:\+?,?\.0%\}")


def _decimals(feature: str) -> int:
    """Decimals the feature's words print its value with (0 for whole numbers and percents)."""
    match = _FIXED.search(_template(feature)[0] or "")
    return int(match["digits"]) if match is not None and match["digits"] else 0


def _printed(template: str, values: np.ndarray) -> np.ndarray | None:
    """A key per value that is equal exactly where the template prints the same figure.

    For ``{v:.Nf}`` the figure is ``v * 10**N`` rounded to a whole number, for ``{v:.0%}``
    ``v * 100`` (Python multiplies by 100 in double precision, then rounds as ``.0f``; both
    round half to even). A product within a hair of a half is rounded by the exact decimal
    value, which the product may not show: such values (and NaN, infinities) keep keys of
    their own, so they are described one by one. Negative zero prints a minus sign: it keys
    apart from zero. None: the template is not one of these (or prints whole numbers, which
    :func:`_whole` already collapses).
    """
    match = _FIXED.search(template)
    if match is None or match["digits"] == "0":
        return None
    scaled = values * (10.0 ** int(match["digits"]) if match["digits"] else 100.0)
    whole = np.rint(scaled)
    with np.errstate(invalid="ignore"):
        safe = np.abs(np.abs(scaled - whole) - 0.5) > 1e-9 * np.maximum(1.0, np.abs(scaled))
    safe &= np.abs(scaled) < 2.0**52
    whole = np.where((whole == 0) & np.signbit(whole), -0.25, whole)  # apart from +0
    # Complex keys sort by the real part, then the imaginary: the rounded figures on the
    # real axis, the values described one by one at 0.5 + value j (only NaNs share one).
    key = np.empty(len(values), dtype="complex128")
    key.real = np.where(safe, whole, 0.5)
    key.imag = np.where(safe, 0.0, values)
    return key


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
