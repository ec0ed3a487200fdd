"""The store's seasonal index for a horizon: how its revenue in that season compares with a year."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.history import as_cutoff, rows_before
from features.spec import is_paid

#: A year of history is needed to compare a season with its year; this much slack at the start
#: of the file is allowed (a file that starts on the 3rd of the month still counts).
_START_SLACK_DAYS = 30


def seasonal_index(
    orders: pd.DataFrame,
    *,
    cutoff: str | pd.Timestamp,
    horizon_days: int,
    window_start: object | None = None,
) -> float:
    """Repeat-order revenue per day in a horizon-long window, over the year before ``cutoff``.

    By default the window is the horizon ``[cutoff, cutoff + horizon)`` mirrored one year
    back: the season the horizon will cover, as it was last year. Another ``window_start``
    measures a window that has already happened (it must end by ``cutoff``); training uses it
    to take the season out of the revenue its stack is fit on. The index is the revenue per
    day of repeat orders (every paid order after a customer's first) in the window divided by
    the revenue per day over the year before ``cutoff``. Repeat orders keep the acquisition of
    new customers, which the CLV of existing customers does not include, out of the index.
    1.0 when the horizon is a year or longer (every season is in it), when there is less than
    a year of history, or when the year has no repeat revenue.

    Parameters
    ----------
    orders : pandas.DataFrame
        Validated orders; only rows before ``cutoff`` are read.
    cutoff : date-like
        The point in time.
    horizon_days : int
        Length of the horizon.
    window_start : date-like, optional
        Start of the measured window (default: ``cutoff`` - 365 days).

    Returns
    -------
    float
        The index, > 0.
    """
    cutoff = as_cutoff(cutoff)
    if horizon_days >= 365 or orders.empty:
        return 1.0
    year_start = cutoff - pd.Timedelta(days=365)
    start = year_start if window_start is None else as_cutoff(window_start)
    season_end = start + pd.Timedelta(days=horizon_days)
    if start < year_start or season_end > cutoff:
        raise ValueError(
            f"the window {start.date()} + {horizon_days} days must lie in the year before "
            f"{cutoff.date()}"
        )
    past = rows_before(orders, "ordered_at", cutoff)
    if past.empty or past["ordered_at"].min() > year_start + pd.Timedelta(days=_START_SLACK_DAYS):
        return 1.0
    times = past["ordered_at"]
    first = times.groupby(past["customer_id"]).transform("min")
    paid = is_paid(past["status"])
    repeat = (times > first).to_numpy() & paid & (times >= year_start).to_numpy()
    amount = past["amount"].to_numpy(dtype="float64")
    year = float(amount[repeat].sum()) / 365.0
    in_season = repeat & ((times >= start) & (times < season_end)).to_numpy()
    season = float(amount[in_season].sum()) / horizon_days
    if year <= 0 or season <= 0 or not np.isfinite(season / year):
        return 1.0
    return season / year
