"""The store's seasonal index: revenue in the horizon's season last year over the year."""

import numpy as np
import pandas as pd
import pytest

from features.io import validate_orders
from features.season import repeat_growth, season_basis, seasonal_index


def daily_orders(start: str, end: str, busy_months: tuple[int, ...] = ()) -> pd.DataFrame:
    """Customer c1 orders 10 every day (20 in busy months); c2 orders once (a first order)."""
    days = pd.date_range(start, end, freq="D")
    amount = [20.0 if d.month in busy_months else 10.0 for d in days]
    raw = pd.DataFrame(
        {
            "customer_id": ["c1"] * len(days) + ["c2"],
            "ordered_at": [*days, days[-1]],
            "amount": [*amount, 1000.0],
        }
    )
    return validate_orders(raw, strict=True).frame


def test_flat_store_has_index_one_and_a_busy_season_raises_it():
    flat = daily_orders("2023-01-01", "2024-12-31")
    assert seasonal_index(flat, cutoff="2024-07-01", horizon_days=90) == pytest.approx(1.0)
    busy = daily_orders("2023-01-01", "2024-12-31", busy_months=(7, 8, 9))
    index = seasonal_index(busy, cutoff="2024-07-01", horizon_days=92)
    # July-September last year: 20 a day; the year: (92 * 20 + 273 * 10) / 365.
    assert index == pytest.approx(20 / ((92 * 20 + 273 * 10) / 365), rel=0.02)


def test_no_index_without_a_year_of_history_or_for_a_year_long_horizon():
    busy = daily_orders("2024-03-01", "2024-12-31", busy_months=(7, 8, 9))
    assert seasonal_index(busy, cutoff="2024-12-01", horizon_days=90) == 1.0
    busy = daily_orders("2023-01-01", "2024-12-31", busy_months=(7, 8, 9))
    assert seasonal_index(busy, cutoff="2024-07-01", horizon_days=365) == 1.0


def test_rows_at_or_after_the_cutoff_are_never_read():
    orders = daily_orders("2023-01-01", "2024-06-30", busy_months=(7,))
    later = daily_orders("2024-07-01", "2024-12-31", busy_months=(1, 2, 3, 4, 5, 6, 7, 8, 9))
    both = pd.concat([orders, later], ignore_index=True)
    assert seasonal_index(orders, cutoff="2024-07-01", horizon_days=60) == seasonal_index(
        both, cutoff="2024-07-01", horizon_days=60
    )


def growing_orders(start: str, end: str, growth: float, busy_months: tuple[int, ...] = ()):
    """One customer ordering daily, growing by ``growth`` a year (twice as much in busy months)."""
    days = pd.date_range(start, end, freq="D")
    years = (days - days[0]).days.to_numpy() / 365.0
    amount = 10.0 * growth**years * np.where(days.month.isin(busy_months), 2.0, 1.0)
    raw = pd.DataFrame({"customer_id": "c1", "ordered_at": days, "amount": amount})
    return validate_orders(raw, strict=True).frame


def test_with_two_years_the_trend_is_taken_out_and_with_less_it_reads_as_season():
    cutoff = "2024-07-01"
    # Growth alone, no season: the mirrored half-year (July-December 2023) is the year's
    # first half, smaller only because the shop was.
    two_years = growing_orders("2022-06-01", "2024-12-31", growth=2.0)
    assert repeat_growth(two_years, cutoff=cutoff) == pytest.approx(2.0, rel=0.01)
    assert seasonal_index(two_years, cutoff=cutoff, horizon_days=182) == pytest.approx(
        1.0, abs=0.01
    )
    assert "trend taken out" in season_basis(two_years, cutoff=cutoff, horizon_days=182)
    assert "+100.0% year over year" in season_basis(two_years, cutoff=cutoff, horizon_days=182)
    short = two_years[two_years["ordered_at"] >= pd.Timestamp("2023-05-01")]
    assert repeat_growth(short, cutoff=cutoff) is None
    assert seasonal_index(short, cutoff=cutoff, horizon_days=182) < 0.9
    assert "cannot be told apart" in season_basis(short, cutoff=cutoff, horizon_days=182)
    assert "every season" in season_basis(short, cutoff=cutoff, horizon_days=365)


def test_a_season_in_a_growing_shop_is_measured_as_in_a_flat_one():
    cutoff = pd.Timestamp("2024-07-01")
    busy = (7, 8, 9)
    flat = growing_orders("2022-06-01", "2024-12-31", growth=1.0, busy_months=busy)
    last = cutoff - pd.Timedelta(days=92)
    for window_start in (None, last):  # the coming season, and the window the stack is fit on
        expected = seasonal_index(flat, cutoff=cutoff, horizon_days=92, window_start=window_start)
        for growth in (1.6, 0.7):
            shop = growing_orders("2022-06-01", "2024-12-31", growth=growth, busy_months=busy)
            index = seasonal_index(shop, cutoff=cutoff, horizon_days=92, window_start=window_start)
            # Within 5%: the year's revenue weighs the busy months by the trend at their place
            # in the year, which one trend factor per window does not undo exactly.
            assert index == pytest.approx(expected, rel=0.05)
            # Without the second year the same shop's index is off by far more.
            short = shop[shop["ordered_at"] >= pd.Timestamp("2023-05-01")]
            mixed = seasonal_index(short, cutoff=cutoff, horizon_days=92, window_start=window_start)
            assert abs(mixed / expected - 1.0) > 2.0 * abs(index / expected - 1.0)
