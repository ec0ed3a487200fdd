"""Recency / frequency / monetary features at a cutoff, plus the BG/NBD summary."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.history import (
    DAY,
    PastOrders,
    as_cutoff,
    days_before,
    per_customer_sum,
    safe_ratio,
)
from features.spec import FeatureSpec, is_paid, is_placed


def rfm_feature_names(spec: FeatureSpec) -> list[str]:
    """Column names :func:`rfm_features` returns, in order."""
    t = spec.trend_days
    return [
        "days_since_first_order",
        "days_since_last_order",
        *[f"orders_{w}d" for w in spec.windows],
        "orders_total",
        *[f"revenue_{w}d" for w in spec.windows],
        "revenue_total",
        "avg_order_value",
        "repeat_order_value_mean",
        "days_between_orders_mean",
        "days_between_orders_std",
        f"orders_trend_{t}d",
        f"revenue_trend_{t}d",
        "frequency",
        "recency",
        "T",
    ]


def rfm_features(
    orders: pd.DataFrame,
    events: pd.DataFrame | None,
    *,
    cutoff: object,
    spec: FeatureSpec,
    history: PastOrders | None = None,
) -> pd.DataFrame:
    """RFM features for every customer with an order strictly before ``cutoff``.

    Parameters
    ----------
    orders : pandas.DataFrame
        Validated orders (:func:`features.io.validate_orders`).
    events : pandas.DataFrame or None
        Unused here; part of the common feature-function signature.
    cutoff : date-like
        Only orders with ``ordered_at < cutoff`` are used.
    spec : FeatureSpec
        Windows and trend length.
    history : PastOrders, optional
        The orders before ``cutoff`` with their status, when the caller has built them
        (:func:`features.build.build_features` shares them between the families).

    Returns
    -------
    pandas.DataFrame
        Indexed by ``customer_id``, columns :func:`rfm_feature_names`. "Orders" are placed
        (not cancelled) orders; "revenue" excludes cancelled and returned orders. ``frequency``
        (repeat purchase days), ``recency`` (days from first to last purchase day) and ``T``
        (days from first purchase day to the cutoff) follow the BG/NBD convention.
    """
    cutoff = as_cutoff(cutoff)
    # Returns dated by the events (or the delivery): a later return is not known at the cutoff.
    history = history if history is not None else PastOrders.at(orders, events, cutoff)
    past, codes, index, status = history.rows, history.codes, history.index, history.status
    n = len(index)
    age = days_before(past["ordered_at"], cutoff)
    placed = is_placed(status)
    paid = is_paid(status)
    revenue = np.where(paid, past["amount"].to_numpy(dtype="float64"), 0.0)

    out: dict[str, np.ndarray] = {}
    # Recency over any order row: a cancelled order is still a visit with intent to buy.
    by_customer = pd.DataFrame({"code": codes, "age": age}).groupby("code", sort=True)["age"]
    out["days_since_first_order"] = by_customer.max().to_numpy()
    out["days_since_last_order"] = by_customer.min().to_numpy()
    for w in spec.windows:
        inside = placed & (age <= w)
        out[f"orders_{w}d"] = per_customer_sum(codes[inside], None, n)
    out["orders_total"] = per_customer_sum(codes[placed], None, n)
    for w in spec.windows:
        inside = age <= w
        out[f"revenue_{w}d"] = per_customer_sum(codes[inside], revenue[inside], n)
    out["revenue_total"] = per_customer_sum(codes, revenue, n)
    paid_count = per_customer_sum(codes[paid], None, n)
    out["avg_order_value"] = safe_ratio(out["revenue_total"], paid_count)
    out.update(
        _sequence_features(
            codes[placed],
            past["ordered_at"].to_numpy()[placed],
            paid[placed],
            revenue[placed],
            cutoff,
            n,
        )
    )
    t = spec.trend_days
    recent = placed & (age <= t)
    previous = placed & (age > t) & (age <= 2 * t)
    out[f"orders_trend_{t}d"] = per_customer_sum(codes[recent], None, n) - per_customer_sum(
        codes[previous], None, n
    )
    out[f"revenue_trend_{t}d"] = per_customer_sum(
        codes[recent], revenue[recent], n
    ) - per_customer_sum(codes[previous], revenue[previous], n)
    return pd.DataFrame(out, index=index)[rfm_feature_names(spec)]


def _sequence_features(
    codes: np.ndarray,
    times: np.ndarray,
    paid: np.ndarray,
    revenue: np.ndarray,
    cutoff: pd.Timestamp,
    n: int,
) -> dict[str, np.ndarray]:
    """Features that need each customer's orders in time order: gaps, repeats, BG/NBD."""
    order = np.lexsort((times, codes))
    codes, times, paid, revenue = codes[order], times[order], paid[order], revenue[order]
    first_of_customer = np.ones(len(codes), dtype=bool)
    first_of_customer[1:] = codes[1:] != codes[:-1]

    gaps = np.zeros(len(codes))
    gaps[1:] = (times[1:] - times[:-1]) / DAY
    is_gap = ~first_of_customer
    gap_count = per_customer_sum(codes[is_gap], None, n)
    gap_sum = per_customer_sum(codes[is_gap], gaps[is_gap], n)
    gap_sq = per_customer_sum(codes[is_gap], gaps[is_gap] ** 2, n)
    gap_mean = safe_ratio(gap_sum, gap_count)
    # Sample standard deviation; needs at least two gaps (three orders).
    gap_var = safe_ratio(gap_sq - gap_count * np.nan_to_num(gap_mean) ** 2, gap_count - 1)
    gap_std = np.where(gap_count >= 2, np.sqrt(np.clip(gap_var, 0.0, None)), np.nan)

    # Repeat orders: every paid order after the customer's first order.
    repeat = is_gap & paid
    repeat_value = safe_ratio(
        per_customer_sum(codes[repeat], revenue[repeat], n),
        per_customer_sum(codes[repeat], None, n),
    )

    # BG/NBD counts purchase *days*: several orders on one day are one transaction.
    day = times.astype("datetime64[D]")
    new_day = first_of_customer.copy()
    new_day[1:] |= day[1:] != day[:-1]
    first_day = np.full(n, np.datetime64("NaT"), dtype="datetime64[D]")
    last_day = first_day.copy()
    first_day[codes[first_of_customer]] = day[first_of_customer]
    last_of_customer = np.ones(len(codes), dtype=bool)
    last_of_customer[:-1] = codes[:-1] != codes[1:]
    last_day[codes[last_of_customer]] = day[last_of_customer]
    frequency = per_customer_sum(codes[new_day], None, n) - 1.0
    recency = (last_day - first_day) / np.timedelta64(1, "D")
    age = (cutoff.to_datetime64() - first_day.astype("datetime64[ns]")) / DAY
    return {
        "days_between_orders_mean": gap_mean,
        "days_between_orders_std": gap_std,
        "repeat_order_value_mean": repeat_value,
        # A customer with only cancelled orders has no purchase history for BG/NBD.
        "frequency": np.where(frequency >= 0, frequency, np.nan),
        "recency": recency.astype("float64"),
        "T": age.astype("float64"),
    }
