"""Service-quality features: deliveries, cancellations, returns, tickets and reviews."""

import numpy as np
import pandas as pd
import pytest

from features import FeatureSpec, feature_names
from features.io import validate_events, validate_orders
from features.quality import quality_feature_names, quality_features
from features.rfm import rfm_features

CUTOFF = "2024-04-01"


def test_quality_values_for_hand_built_history(orders, events):
    f = quality_features(orders, events, cutoff=CUTOFF, spec=FeatureSpec())
    assert list(f.columns) == quality_feature_names(FeatureSpec())
    a, b = f.loc["a"], f.loc["b"]
    # a: 2 days late, early, 6 days late.
    assert a["late_deliveries_365d"] == 2
    assert a["late_delivery_rate_365d"] == pytest.approx(2 / 3)
    assert a["mean_days_late_365d"] == pytest.approx(8 / 3)
    assert a["cancellation_rate_365d"] == 0
    assert a["returns_365d"] == 1
    assert a["returned_value_share_365d"] == pytest.approx(20 / 60)
    assert b["cancellation_rate_365d"] == 0.5
    # a's ticket: resolved in 10 h with CSAT 2 (bad); b's ticket is still open.
    assert (a["tickets_90d"], a["tickets_365d"], a["bad_tickets_365d"]) == (1, 1, 1)
    assert a["mean_resolution_hours_365d"] == 10 and a["mean_ticket_csat_365d"] == 2
    assert (a["open_tickets"], b["open_tickets"]) == (0, 1)
    assert a["days_since_last_ticket"] == 86 and b["days_since_last_ticket"] == 41
    assert np.isnan(b["mean_resolution_hours_365d"])
    assert a["mean_review_score"] == 3.5 and a["last_review_score"] == 3


def test_delivery_after_cutoff_is_not_judged_yet(orders):
    # Order o3 (placed 03-02) is delivered 03-10: at a 03-05 cutoff its lateness is unknown.
    f = quality_features(orders, None, cutoff="2024-03-05", spec=FeatureSpec())
    assert f.loc["a", "late_deliveries_365d"] == 1
    assert f.loc["a", "late_delivery_rate_365d"] == 0.5


def test_ticket_resolution_is_known_only_once_resolved(orders, events):
    # The ticket of 01-06 takes 10 h: an hour after it was opened it is still open.
    f = quality_features(orders, events, cutoff="2024-01-06T01:00", spec=FeatureSpec())
    assert f.loc["a", "open_tickets"] == 1
    assert f.loc["a", "bad_tickets_365d"] == 0
    assert np.isnan(f.loc["a", "mean_resolution_hours_365d"])


def test_missing_optional_data_gives_nan_not_zero():
    # A CDNOW-style history: only customer, date and amount.
    orders = pd.DataFrame(
        {
            "customer_id": ["a", "a"],
            "ordered_at": pd.to_datetime(["2024-01-01", "2024-02-01"]),
            "amount": [1.0, 2.0],
        }
    )
    from features.io import validate_orders

    clean = validate_orders(orders, strict=True).frame
    f = quality_features(clean, None, cutoff=CUTOFF, spec=FeatureSpec())
    assert f.loc["a"].isna().all(), f.loc["a"][f.loc["a"].notna()]


def test_names_follow_the_spec_and_never_collide(orders, events):
    spec = FeatureSpec(windows=(7, 60), trend_days=60, quality_days=180)
    out = quality_features(orders, events, cutoff="2024-04-01", spec=spec)
    assert "tickets_60d" in out.columns and "tickets_180d" in out.columns
    names = feature_names(spec)
    assert len(names) == len(set(names))
    with pytest.raises(ValueError, match="trend_days and quality_days must differ"):
        FeatureSpec(trend_days=180, quality_days=180)


def test_a_return_counts_from_when_it_happened_not_from_the_export():
    # The status is the export's; the customer's own return events (or the delivery) date it.
    raw = pd.DataFrame(
        {
            "customer_id": ["a", "a", "b", "c"],
            "order_id": ["o4", "o1", "o2", "o3"],
            "ordered_at": ["2024-04-01", "2024-05-01", "2024-05-01", "2024-05-01"],
            "amount": [30.0, 100.0, 50.0, 20.0],
            "status": ["returned", "returned", "returned", "returned"],
            "promised_at": ["2024-04-05", "2024-05-05", "2024-05-05", "2024-05-05"],
            "delivered_at": ["2024-04-04", "2024-05-04", "2024-06-10", "2024-05-04"],
        }
    )
    orders = validate_orders(raw, strict=True).frame
    # a and c record their returns as events (a's first one, on 2024-04-20, before either
    # cutoff); b has none.
    raw_events = pd.DataFrame(
        {
            "customer_id": ["a", "a", "c"],
            "occurred_at": ["2024-04-20", "2024-06-15", "2024-05-20"],
            "kind": ["return", "return", "return"],
            "order_id": ["o4", "o1", "o3"],
        }
    )
    events = validate_events(raw_events, strict=True).frame
    spec = FeatureSpec()
    before = quality_features(orders, events, cutoff="2024-06-01", spec=spec)
    after = quality_features(orders, events, cutoff="2024-07-01", spec=spec)
    # a: o1 returned on 2024-06-15 (its event): not yet on 2024-06-01, then yes; o4 all along.
    assert before.loc["a", "returns_365d"] == 1 and after.loc["a", "returns_365d"] == 2
    assert before.loc["c", "returns_365d"] == 1
    # b has no return event of its own: the delivery dates its return (2024-06-10), whatever
    # a's and c's events say (a customer's features are its own rows' alone).
    assert before.loc["b", "returns_365d"] == 0 and after.loc["b", "returns_365d"] == 1
    # Without any return event, the delivery dates every return.
    no_events = quality_features(orders, None, cutoff="2024-06-01", spec=spec)
    assert no_events.loc["b", "returns_365d"] == 0 and no_events.loc["a", "returns_365d"] == 2
    later = quality_features(orders, None, cutoff="2024-07-01", spec=spec)
    assert later.loc["b", "returns_365d"] == 1
    # The revenue features agree: a kept order is revenue until its return is known.
    rfm = rfm_features(orders, events, cutoff="2024-06-01", spec=spec)
    assert rfm.loc["a", "revenue_total"] == 100.0
