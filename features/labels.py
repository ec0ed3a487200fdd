"""Labels: future value and churn over the horizon that starts at the cutoff."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.history import as_cutoff, customer_codes, per_customer_sum, rows_before
from features.spec import FeatureSpec, is_paid, is_placed

LABEL_COLUMNS: tuple[str, ...] = ("future_value", "churned")


def build_labels(
    orders: pd.DataFrame, *, cutoff: str | pd.Timestamp, spec: FeatureSpec
) -> pd.DataFrame:
    """Labels for every customer with an order strictly before ``cutoff``.

    Parameters
    ----------
    orders : pandas.DataFrame
        Validated orders.
    cutoff : date-like
        Start of the label window ``[cutoff, cutoff + horizon)``.
    spec : FeatureSpec
        ``horizon_days`` sets the window length.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``customer_id``: ``future_value`` is the revenue (cancelled and returned
        orders excluded) in the window; ``churned`` is 1 when the customer placed no
        (non-cancelled) order in it, else 0; ``future_orders`` counts those orders and
        ``days_to_next_order`` is the days from the cutoff to the first of them (NaN: none).
    """
    cutoff = as_cutoff(cutoff)
    end = cutoff + pd.Timedelta(days=spec.horizon_days)
    _, population = customer_codes(rows_before(orders, "ordered_at", cutoff)["customer_id"])
    times = orders["ordered_at"].to_numpy()
    window = orders.loc[(times >= cutoff.to_datetime64()) & (times < end.to_datetime64())]
    codes = population.get_indexer(window["customer_id"])
    known = codes >= 0  # new customers acquired inside the window are not in this population
    status = window["status"]
    placed = is_placed(status) & known
    paid = is_paid(status) & known
    n = len(population)
    value = per_customer_sum(codes[paid], window["amount"].to_numpy(dtype="float64")[paid], n)
    placed_orders = per_customer_sum(codes[placed], None, n)
    # Days from the cutoff to each customer's first placed order in the window (NaN: none).
    wait = np.full(n, np.inf)
    days = (window["ordered_at"].to_numpy()[placed] - cutoff.to_datetime64()) / np.timedelta64(
        1, "D"
    )
    np.minimum.at(wait, codes[placed], days)
    return pd.DataFrame(
        {
            "future_value": value,
            "churned": (placed_orders == 0).astype(np.int8),
            "future_orders": placed_orders,
            "days_to_next_order": np.where(np.isfinite(wait), wait, np.nan),
        },
        index=population,
    )
