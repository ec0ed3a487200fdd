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

    **Growth.** Within one year a growing shop's earlier months are smaller because its base
    was, not because of the season, and the ratio of two windows of that year mixes the two
    (docs/experiments.md, entries 11, 12 and 21). Where two years of history allow it, the
    year-over-year growth of repeat revenue (:func:`repeat_growth`) is taken as a steady
    exponential trend and divided out: the index is the window's revenue per day over what
    the trend alone gives it, relative to the year's. With less than two years the two cannot
    be told apart and the index is the season and the growth together (:func:`season_basis`
    says which).

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
    times, amount, repeat = _repeat_revenue(past)
    in_year = repeat & (times >= year_start).to_numpy()
    year = float(amount[in_year].sum()) / 365.0
    in_season = in_year & ((times >= start) & (times < season_end)).to_numpy()
    season = float(amount[in_season].sum()) / horizon_days
    if year <= 0 or season <= 0 or not np.isfinite(season / year):
        return 1.0
    growth = _growth(times, amount, repeat, cutoff)
    if growth is None:
        return season / year
    rate = np.log(growth) / 365.0
    # The trend's mean over the window, relative to its mean over the year (exact for an
    # exponential trend; 1 for no growth).
    offset = (start - cutoff) / pd.Timedelta(days=1)
    trend = _mean_exp(rate, offset, horizon_days) / _mean_exp(rate, -365.0, 365)
    return season / year / trend


def _repeat_revenue(past: pd.DataFrame) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """Order times, amounts, and which orders are paid repeat orders (after a first order)."""
    times = past["ordered_at"]
    first = times.groupby(past["customer_id"]).transform("min")
    repeat = (times > first).to_numpy() & is_paid(past["status"])
    return times, past["amount"].to_numpy(dtype="float64"), repeat


def _growth(
    times: pd.Series, amount: np.ndarray, repeat: np.ndarray, cutoff: pd.Timestamp
) -> float | None:
    """Repeat revenue of the year before ``cutoff`` over the year before that (None: unknown)."""
    year_start = cutoff - pd.Timedelta(days=365)
    prior_start = year_start - pd.Timedelta(days=365)
    if times.min() > prior_start + pd.Timedelta(days=_START_SLACK_DAYS):
        return None
    last = float(amount[repeat & (times >= year_start).to_numpy()].sum())
    prior = float(amount[repeat & ((times >= prior_start) & (times < year_start)).to_numpy()].sum())
    if last <= 0 or prior <= 0:
        return None
    return last / prior


def _mean_exp(rate: float, start: float, length: float) -> float:
    """Mean of ``exp(rate * t)`` over ``[start, start + length)``, ``t`` in days from the cutoff."""
    if rate == 0.0:
        return 1.0
    return float(np.exp(rate * start) * np.expm1(rate * length) / (rate * length))


def repeat_growth(orders: pd.DataFrame, *, cutoff: str | pd.Timestamp) -> float | None:
    """Year-over-year growth of repeat-order revenue at ``cutoff`` (1.25: up 25%).

    The repeat revenue (paid orders after a customer's first) of the year before ``cutoff``
    over that of the year before it; None with less than two years of history (a month's
    slack at the start of the file) or no repeat revenue in either year.
    """
    cutoff = as_cutoff(cutoff)
    past = rows_before(orders, "ordered_at", cutoff)
    if past.empty:
        return None
    times, amount, repeat = _repeat_revenue(past)
    return _growth(times, amount, repeat, cutoff)


def season_basis(orders: pd.DataFrame, *, cutoff: str | pd.Timestamp, horizon_days: int) -> str:
    """One sentence: what :func:`seasonal_index` at ``cutoff`` measures (for the reports)."""
    if horizon_days >= 365:
        return "no seasonal index: the horizon covers every season"
    growth = repeat_growth(orders, cutoff=cutoff)
    if growth is not None:
        return (
            f"the seasonal index has the trend taken out: repeat revenue changed by "
            f"{100.0 * (growth - 1.0):+.1f}% year over year"
        )
    return (
        "the seasonal index holds season and growth together: with less than two years of "
        "history they cannot be told apart"
    )
