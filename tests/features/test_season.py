"""The store's seasonal index: revenue in the horizon's season last year over the year."""

import pandas as pd
import pytest

from features.io import validate_orders
from features.season import seasonal_index


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
