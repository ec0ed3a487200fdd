"""Tiny hand-built inputs shared by the feature tests."""

import pandas as pd
import pytest

from features.io import validate_events, validate_orders


def ts(*values: str | None) -> pd.Series:
    return pd.Series(pd.to_datetime(list(values), format="ISO8601"), dtype="datetime64[ns]")


@pytest.fixture
def orders() -> pd.DataFrame:
    """Customer a: three orders (one returned, two late); b: one order + one cancelled."""
    raw = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "b", "b"],
            "order_id": ["o1", "o2", "o3", "o4", "o5"],
            "ordered_at": ts(
                "2024-01-01", "2024-02-01", "2024-03-02", "2024-02-15", "2024-02-15T12:00"
            ),
            "amount": [10.0, 20.0, 30.0, 5.0, 7.0],
            "status": ["completed", "returned", "completed", "completed", "cancelled"],
            "promised_at": ts("2024-01-03", "2024-02-03", "2024-03-04", "2024-02-17", None),
            "delivered_at": ts("2024-01-05", "2024-02-02", "2024-03-10", "2024-02-16", None),
        }
    )
    return validate_orders(raw, strict=True).frame


@pytest.fixture
def events() -> pd.DataFrame:
    raw = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "b"],
            "occurred_at": ts("2024-01-06", "2024-03-01", "2024-03-20", "2024-02-20"),
            "kind": ["ticket", "review", "review", "ticket"],
            "score": [2.0, 4.0, 3.0, None],
            "resolution_hours": [10.0, None, None, None],
        }
    )
    return validate_events(raw, strict=True).frame
