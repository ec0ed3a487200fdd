"""Segments, actions and readable reasons."""

import numpy as np
import pandas as pd
import pytest

from serving.explain import describe, top_reasons
from serving.segments import ACTIONS, assign_segments, value_thresholds


def test_value_tiers_follow_share_of_predicted_value():
    # One customer holds 60% of the value: alone in "top".
    clv = pd.Series([60.0, 20.0, 10.0, 5.0, 3.0, 2.0])
    thresholds = value_thresholds(clv.to_numpy())
    seg = assign_segments(clv, pd.Series([0.1] * 6), thresholds)
    assert seg["value_segment"].tolist() == ["top", "high", "medium", "medium", "low", "low"]


def test_risk_tiers_and_every_pair_has_an_action():
    clv = pd.Series([10.0, 10.0, 10.0])
    seg = assign_segments(clv, pd.Series([0.1, 0.5, 0.9]), value_thresholds(clv.to_numpy()))
    assert seg["risk_segment"].tolist() == ["low", "medium", "high"]
    assert seg["action"].tolist() == ["maintain (VIP care)", "retain", "win back"]
    assert len(ACTIONS) == 12


def test_all_zero_predictions_do_not_crash():
    clv = pd.Series([0.0, 0.0])
    seg = assign_segments(clv, pd.Series([0.9, 0.9]), value_thresholds(clv.to_numpy()))
    assert len(seg) == 2


@pytest.mark.parametrize(
    ("feature", "value", "text"),
    [
        ("late_deliveries_365d", 3.0, "3 late deliveries in the last 365 days"),
        ("days_since_last_order", 210.4, "last order 210 days ago"),
        ("orders_90d", 1.0, "1 orders in the last 90 days"),
        ("late_delivery_rate_365d", 0.25, "25% of deliveries late in the last 365 days"),
        ("last_review_score", np.nan, "no reviews"),
        ("returns_365d", np.nan, "no order statuses known for the last 365 days"),
        ("bad_tickets_365d", np.nan, "no support data"),
        ("mystery", 2.0, "mystery = 2"),
    ],
)
def test_describe(feature, value, text):
    assert describe(feature, value) == text


def test_top_reasons_pick_largest_contributions_with_direction():
    contrib = pd.DataFrame(
        {
            "days_since_last_order": [2.0, -0.1],
            "late_deliveries_365d": [0.5, 0.0],
            "orders_90d": [-1.0, 0.3],
            "bias": [9.0, 9.0],
        },
        index=["a", "b"],
    )
    features = pd.DataFrame(
        {
            "days_since_last_order": [300.0, 5.0],
            "late_deliveries_365d": [2.0, 0.0],
            "orders_90d": [0.0, 4.0],
        },
        index=["a", "b"],
    )
    reasons = top_reasons(contrib, features, k=2)
    assert reasons["a"] == "↑ last order 300 days ago; ↓ 0 orders in the last 90 days"
    assert reasons["b"] == "↑ 4 orders in the last 90 days; ↓ last order 5 days ago"
