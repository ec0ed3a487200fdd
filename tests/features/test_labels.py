"""Label window edges: [cutoff, cutoff + horizon)."""

import pandas as pd

from features import FeatureSpec, build_labels
from features.io import validate_orders


def _orders(times, amounts, statuses=None):
    raw = pd.DataFrame(
        {
            "customer_id": ["a"] * len(times),
            "ordered_at": pd.to_datetime(times),
            "amount": amounts,
            "status": statuses or ["completed"] * len(times),
        }
    )
    return validate_orders(raw, strict=True).frame


def test_order_exactly_at_cutoff_is_future_and_at_cutoff_plus_horizon_is_not():
    orders = _orders(["2024-01-01", "2024-03-01", "2024-03-31"], [1.0, 10.0, 100.0])
    labels = build_labels(orders, cutoff="2024-03-01", spec=FeatureSpec(horizon_days=30))
    assert labels.loc["a", "future_value"] == 10
    assert labels.loc["a", "churned"] == 0


def test_no_order_in_window_is_churn_and_cancelled_orders_do_not_count():
    orders = _orders(
        ["2024-01-01", "2024-02-10", "2024-02-12"],
        [1.0, 10.0, 20.0],
        ["completed", "cancelled", "returned"],
    )
    labels = build_labels(orders, cutoff="2024-02-01", spec=FeatureSpec(horizon_days=30))
    # The returned order is a purchase (not churn) that brings no revenue.
    assert labels.loc["a", "future_value"] == 0
    assert labels.loc["a", "churned"] == 0
    only_cancelled = orders[orders["status"] != "returned"]
    labels = build_labels(only_cancelled, cutoff="2024-02-01", spec=FeatureSpec(horizon_days=30))
    assert labels.loc["a", "churned"] == 1


def test_population_is_customers_with_an_order_before_the_cutoff():
    orders = _orders(["2024-01-01"], [1.0])
    newcomer = orders.assign(customer_id="new", order_id="x", ordered_at=pd.Timestamp("2024-02-05"))
    labels = build_labels(
        pd.concat([orders, newcomer]), cutoff="2024-02-01", spec=FeatureSpec(horizon_days=30)
    )
    assert list(labels.index) == ["a"]
