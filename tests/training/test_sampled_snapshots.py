"""The window rows sampled before they are built are the rows sampled after (issue 25 item 1).

``sampled_window_snapshots`` counts the rows the whole history would give, keeps the hashed
customers' orders and events, and builds on those: the result must be
``sample_customers(window_snapshots(...))`` exactly (rows, order, labels, values, dtypes).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from demo.generator import generate
from features import FeatureSpec
from features.io import validate_events, validate_orders
from training.snapshots import (
    SAMPLE_RESOLUTION,
    kept_customers,
    sample_customers,
    sample_share,
    sampled_window_snapshots,
    window_row_counts,
    window_snapshots,
)

SPEC = FeatureSpec(horizon_days=180)
CUTOFFS = [pd.Timestamp("2023-03-01") + pd.Timedelta(days=45 * k) for k in range(6)]

#: Edge customers: first order exactly at a cutoff (not in that cutoff's population), only a
#: cancelled order before a cutoff (in it), a return dated by an event.
EDGE_ORDERS = [
    ("edge-at-cutoff", "e1", "2023-04-15", 50.0, "completed"),
    ("edge-at-cutoff", "e2", "2023-07-01", 20.0, "completed"),
    ("edge-cancelled", "e3", "2023-02-10", 30.0, "cancelled"),
    ("edge-cancelled", "e4", "2023-09-01", 40.0, "completed"),
    ("edge-returned", "e5", "2023-01-05", 90.0, "returned"),
    ("edge-returned", "e6", "2023-05-05", 10.0, "completed"),
]


@pytest.fixture(scope="module")
def history() -> tuple[pd.DataFrame, pd.DataFrame]:
    orders, events = generate(customers=300, seed=11, start="2022-01-01", end="2024-01-01")
    edge = pd.DataFrame(
        EDGE_ORDERS, columns=["customer_id", "order_id", "ordered_at", "amount", "status"]
    )
    edge["ordered_at"] = pd.to_datetime(edge["ordered_at"])
    edge_event = pd.DataFrame(
        {
            "customer_id": ["edge-returned"],
            "occurred_at": [pd.Timestamp("2023-03-01")],
            "kind": ["return"],
            "order_id": ["e5"],
        }
    )
    orders = validate_orders(pd.concat([orders, edge], ignore_index=True), strict=True).frame
    events = validate_events(pd.concat([events, edge_event], ignore_index=True), strict=True).frame
    return orders, events


def _both(orders, events, limit, seed=7):
    whole = window_snapshots(orders, events, CUTOFFS, SPEC, 60)
    return (
        whole,
        sample_customers(whole, limit, seed),
        sampled_window_snapshots(orders, events, CUTOFFS, SPEC, 60, limit=limit, seed=seed),
    )


@pytest.mark.parametrize("seed", [7, 8])
def test_sampling_first_gives_the_rows_sampling_after_gives(history, seed):
    orders, events = history
    whole, expected, got = _both(orders, events, limit=400, seed=seed)
    assert 0 < len(expected) < len(whole)  # the sample was taken
    pd.testing.assert_frame_equal(got, expected, check_index_type=True, check_exact=True)
    assert list(got.dtypes) == list(expected.dtypes)


def test_below_the_limit_every_row_is_built(history):
    orders, events = history
    whole, expected, got = _both(orders, events, limit=10**9)
    assert len(expected) == len(whole)
    pd.testing.assert_frame_equal(got, expected, check_index_type=True, check_exact=True)


def test_without_events_the_sample_is_the_same(history):
    orders, _ = history
    _, expected, got = _both(orders, None, limit=400)
    pd.testing.assert_frame_equal(got, expected, check_index_type=True, check_exact=True)


def test_the_row_count_is_the_population_with_an_order_strictly_before_each_cutoff(history):
    orders, events = history
    first = orders.groupby("customer_id")["ordered_at"].min().to_numpy(dtype="datetime64[ns]")
    counts = window_row_counts(first, CUTOFFS)
    whole = window_snapshots(orders, events, CUTOFFS, SPEC, 60)
    assert counts.tolist() == whole.groupby("cutoff").size().reindex(CUTOFFS).tolist()
    at_cutoff = whole.loc[whole["customer_id"] == "edge-at-cutoff", "cutoff"]
    assert at_cutoff.min() > pd.Timestamp("2023-04-15")
    assert (whole["customer_id"] == "edge-cancelled").any()


def test_the_share_and_the_hash_are_whole_millionths_of_the_customers():
    assert sample_share(10, 10) == SAMPLE_RESOLUTION
    assert sample_share(4_000, 1_000) == SAMPLE_RESOLUTION // 4
    ids = pd.Series([f"c{i}" for i in range(20_000)], dtype="str")
    kept = kept_customers(ids, SAMPLE_RESOLUTION // 4, seed=7)
    assert kept.dtype == np.bool_
    assert 0.22 < kept.mean() < 0.28
    assert kept_customers(ids, SAMPLE_RESOLUTION, seed=7).all()
