"""The point-in-time contract: rows at or after the cutoff never change a feature."""

import numpy as np
import pandas as pd
import pytest

from demo.generator import generate
from features import FeatureSpec, build_features, build_snapshots
from features.history import as_cutoff

SPEC = FeatureSpec(horizon_days=180)


@pytest.fixture(scope="module")
def history():
    return generate(customers=1000, seed=3, start="2022-01-01", end="2024-01-01")


@pytest.mark.parametrize("cutoff", ["2022-06-15", "2023-01-01", "2023-06-30", "2023-12-31"])
def test_appending_future_rows_changes_no_feature(history, cutoff):
    orders, events = history
    cut = pd.Timestamp(cutoff)
    past_orders = orders[orders["ordered_at"] < cut]
    past_events = events[events["occurred_at"] < cut]
    before = build_features(past_orders, past_events, cutoff=cut, spec=SPEC)
    # Everything from the cutoff on: later orders of known customers, new customers, and events
    # (including returns and tickets about orders placed before the cutoff).
    after = build_features(orders, events, cutoff=cut, spec=SPEC)
    pd.testing.assert_frame_equal(before, after)
    assert len(before) > 50


def test_features_ignore_delivery_and_resolution_known_only_later(history):
    orders, events = history
    cut = pd.Timestamp("2023-01-01")
    base = build_features(orders, events, cutoff=cut, spec=SPEC)
    # Move every delivery and ticket resolution that falls after the cutoff further out.
    moved = orders.copy()
    later = moved["delivered_at"] >= cut
    moved.loc[later, "delivered_at"] += pd.Timedelta(days=30)
    moved_events = events.copy()
    resolved_at = events["occurred_at"] + pd.to_timedelta(events["resolution_hours"], unit="h")
    late_fix = resolved_at >= cut
    moved_events.loc[late_fix, "resolution_hours"] += 24 * 30
    pd.testing.assert_frame_equal(base, build_features(moved, moved_events, cutoff=cut, spec=SPEC))


def test_snapshots_stack_one_row_per_customer_and_cutoff(history):
    orders, events = history
    cutoffs = ["2022-07-01", "2023-01-01"]
    snaps = build_snapshots(orders, events, cutoffs, SPEC)
    assert not snaps.duplicated(["customer_id", "cutoff"]).any()
    for cutoff in cutoffs:
        rows = snaps[snaps["cutoff"] == pd.Timestamp(cutoff)]
        assert len(rows) == orders.loc[orders["ordered_at"] < cutoff, "customer_id"].nunique()
    assert set(snaps["churned"].unique()) <= {0, 1}
    assert np.isfinite(snaps["future_value"]).all()


def test_relabelling_customer_ids_changes_no_feature_values(history):
    orders, events = history
    renamed = {cid: f"z{cid[::-1]}" for cid in orders["customer_id"].unique()}
    a = build_features(orders, events, cutoff="2023-01-01", spec=SPEC)
    b = build_features(
        orders.assign(customer_id=orders["customer_id"].map(renamed)),
        events.assign(customer_id=events["customer_id"].map(renamed)),
        cutoff="2023-01-01",
        spec=SPEC,
    )
    b.index = b.index.map({v: k for k, v in renamed.items()})
    pd.testing.assert_frame_equal(a, b.loc[a.index], check_names=False, check_index_type=False)


@pytest.mark.parametrize("value", ["now", "today", " Today ", 20250630, 1.5])
def test_a_cutoff_is_an_explicit_date_never_the_clock_or_a_bare_number(value):
    with pytest.raises(ValueError, match="is not a date; expected e.g. '2025-06-30'"):
        as_cutoff(value)


def test_a_tz_aware_cutoff_becomes_naive_utc():
    assert as_cutoff("2025-07-01T00:00:00+02:00") == pd.Timestamp("2025-06-30T22:00:00")
