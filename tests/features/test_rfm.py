"""RFM features on a hand-built history with hand-computed expected values."""

import numpy as np
import pandas as pd
import pytest

from features import FeatureSpec
from features.rfm import rfm_feature_names, rfm_features

CUTOFF = "2024-04-01"


def test_rfm_values_for_hand_built_history(orders):
    f = rfm_features(orders, None, cutoff=CUTOFF, spec=FeatureSpec())
    assert list(f.columns) == rfm_feature_names(FeatureSpec())
    a, b = f.loc["a"], f.loc["b"]
    # a ordered on 01-01 (10), 02-01 (20, returned), 03-02 (30); cutoff 04-01 (2024 is leap).
    assert a["days_since_first_order"] == 91
    assert a["days_since_last_order"] == 30
    # Windows are [cutoff - w, cutoff): the order exactly 30 days back is inside orders_30d.
    assert (a["orders_30d"], a["orders_90d"], a["orders_365d"], a["orders_total"]) == (1, 2, 3, 3)
    # The returned order brings no revenue.
    assert (a["revenue_90d"], a["revenue_total"]) == (30, 40)
    assert a["avg_order_value"] == 20  # 40 over the two paid orders
    assert a["repeat_order_value_mean"] == 30  # paid orders after the first
    assert a["days_between_orders_mean"] == pytest.approx(30.5)
    assert a["days_between_orders_std"] == pytest.approx(np.std([31, 30], ddof=1))
    assert a["orders_trend_90d"] == 1  # two in the last 90 days, one in the 90 before
    assert a["revenue_trend_90d"] == 20
    assert (a["frequency"], a["recency"], a["T"]) == (2, 61, 91)
    # b: the cancelled order counts for recency but is not an order placed.
    assert b["days_since_last_order"] == 45.5
    assert b["orders_total"] == 1
    assert np.isnan(b["repeat_order_value_mean"]) and np.isnan(b["days_between_orders_std"])
    assert (b["frequency"], b["recency"]) == (0, 0)


def test_same_day_orders_are_one_bgnbd_transaction(orders):
    extra = orders.iloc[[2]].assign(order_id="o6", ordered_at=pd.Timestamp("2024-03-02T18:00"))
    f = rfm_features(pd.concat([orders, extra]), None, cutoff=CUTOFF, spec=FeatureSpec())
    assert f.loc["a", "orders_total"] == 4
    assert f.loc["a", "frequency"] == 2


def test_customer_with_only_cancelled_orders_is_in_population_without_purchases(orders):
    cancelled = orders.iloc[[4]].assign(customer_id="c", order_id="o9")
    f = rfm_features(pd.concat([orders, cancelled]), None, cutoff=CUTOFF, spec=FeatureSpec())
    assert f.loc["c", "orders_total"] == 0
    assert np.isnan(f.loc["c", "frequency"]) and np.isnan(f.loc["c", "avg_order_value"])


def test_windows_follow_the_spec(orders):
    spec = FeatureSpec(windows=(7, 60), trend_days=30)
    f = rfm_features(orders, None, cutoff=CUTOFF, spec=spec)
    assert {"orders_7d", "orders_60d", "revenue_60d", "orders_trend_30d"} <= set(f.columns)
    assert f.loc["a", "orders_60d"] == 2  # 02-01 is exactly 60 days before the cutoff
    assert f.loc["a", "orders_7d"] == 0


def test_cutoff_is_required_and_validated(orders):
    with pytest.raises(ValueError, match="cutoff is required"):
        rfm_features(orders, None, cutoff=None, spec=FeatureSpec())
    with pytest.raises(ValueError, match="cutoff 'soon' is not a date"):
        rfm_features(orders, None, cutoff="soon", spec=FeatureSpec())
