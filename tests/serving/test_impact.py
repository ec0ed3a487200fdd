"""Service-quality impact: counterfactual histories, the what-if estimate and its command line."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import build_features
from serving.insight.impact import (
    FAILURE_KINDS,
    KINDS,
    bad_ticket_rows,
    estimate_impact,
    late_delivery_rows,
    main,
    return_event_rows,
    returned_order_rows,
    without_bad_tickets,
    without_failures,
    without_late_deliveries,
    without_returns,
)

CUTOFF = pd.Timestamp("2025-01-01")


@pytest.fixture(scope="module")
def history(served_store):
    """The store's validated orders and events."""
    from features.io import validate_events, validate_orders

    orders = validate_orders(served_store.orders, strict=True).frame
    events = validate_events(served_store.events, strict=True).frame
    return orders, events


@pytest.fixture(scope="module")
def model(served_store):
    from training import tracking

    tracking.configure()
    return tracking.load_model(served_store.model_uri)


@pytest.fixture(scope="module")
def impact(model, history):
    orders, events = history
    # Small chunks, so the estimate is also checked across chunk boundaries.
    return estimate_impact(model, orders, events, CUTOFF, chunk_customers=700)


def _after(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    return frame.loc[frame[column] >= CUTOFF]


def _unchanged_after_cutoff(before: pd.DataFrame, after: pd.DataFrame, column: str) -> None:
    pd.testing.assert_frame_equal(_after(before, column), _after(after, column))


def test_the_store_has_every_kind_of_failure(history):
    orders, events = history
    assert late_delivery_rows(orders, CUTOFF).sum() > 0
    assert returned_order_rows(orders, CUTOFF).sum() > 0
    assert return_event_rows(events, CUTOFF).sum() > 0
    assert bad_ticket_rows(events, CUTOFF).sum() > 0


def test_no_late_delivery_before_the_cutoff_and_the_rest_untouched(history, model):
    orders, events = history
    late = late_delivery_rows(orders, CUTOFF)
    cf_orders, cf_events = without_late_deliveries(orders, events, CUTOFF)
    assert late_delivery_rows(cf_orders, CUTOFF).sum() == 0
    assert cf_events is events
    _unchanged_after_cutoff(orders, cf_orders, "ordered_at")
    pd.testing.assert_frame_equal(orders.loc[~late], cf_orders.loc[~late])
    assert (cf_orders.loc[late, "delivered_at"] == orders.loc[late, "promised_at"]).all()
    # The feature code agrees: no late delivery left in its window.
    features = build_features(cf_orders, cf_events, cutoff=CUTOFF, spec=model.spec)
    q = model.spec.quality_days
    assert features[f"late_deliveries_{q}d"].fillna(0).eq(0).all()


def test_no_return_before_the_cutoff_and_the_rest_untouched(history, model):
    orders, events = history
    cf_orders, cf_events = without_returns(orders, events, CUTOFF)
    assert returned_order_rows(cf_orders, CUTOFF).sum() == 0
    assert return_event_rows(cf_events, CUTOFF).sum() == 0
    _unchanged_after_cutoff(orders, cf_orders, "ordered_at")
    _unchanged_after_cutoff(events, cf_events, "occurred_at")
    # Only the return events went; every other event is still there.
    kept = events.loc[~return_event_rows(events, CUTOFF)]
    pd.testing.assert_frame_equal(kept, cf_events)
    features = build_features(cf_orders, cf_events, cutoff=CUTOFF, spec=model.spec)
    assert features[f"returns_{model.spec.quality_days}d"].fillna(0).eq(0).all()


def test_bad_tickets_are_made_good_not_removed(history, model):
    orders, events = history
    bad = bad_ticket_rows(events, CUTOFF)
    cf_orders, cf_events = without_bad_tickets(orders, events, CUTOFF)
    assert bad_ticket_rows(cf_events, CUTOFF).sum() == 0
    assert cf_orders is orders
    assert len(cf_events) == len(events)
    _unchanged_after_cutoff(events, cf_events, "occurred_at")
    pd.testing.assert_frame_equal(events.loc[~bad], cf_events.loc[~bad])
    features = build_features(cf_orders, cf_events, cutoff=CUTOFF, spec=model.spec)
    actual = build_features(orders, events, cutoff=CUTOFF, spec=model.spec)
    assert features[f"bad_tickets_{model.spec.quality_days}d"].eq(0).all()
    # The contacts themselves stay: ticket counts and recency do not move.
    for column in (f"tickets_{model.spec.quality_days}d", "open_tickets", "days_since_last_ticket"):
        pd.testing.assert_series_equal(features[column], actual[column])


def test_all_together_has_no_failure_of_any_kind(history):
    orders, events = history
    cf_orders, cf_events = without_failures(orders, events, CUTOFF)
    assert late_delivery_rows(cf_orders, CUTOFF).sum() == 0
    assert returned_order_rows(cf_orders, CUTOFF).sum() == 0
    assert return_event_rows(cf_events, CUTOFF).sum() == 0
    assert bad_ticket_rows(cf_events, CUTOFF).sum() == 0
    _unchanged_after_cutoff(orders, cf_orders, "ordered_at")
    _unchanged_after_cutoff(events, cf_events, "occurred_at")


def test_customers_without_a_failure_have_zero_difference(impact):
    frame = impact.customers
    for kind in KINDS:
        clean = ~frame[f"affected_{kind}"]
        assert clean.sum() > 0, kind
        assert (frame.loc[clean, f"gain_{kind}"] == 0).all(), kind
        assert (frame.loc[clean, f"churn_change_{kind}"] == 0).all(), kind
        assert (frame.loc[clean, f"clv_{kind}"] == frame.loc[clean, "clv"]).all(), kind
        np.testing.assert_array_equal(frame[f"gain_{kind}"], frame[f"clv_{kind}"] - frame["clv"])


def test_affected_customers_are_seen_differently(impact):
    frame = impact.customers
    for kind in KINDS:
        assert 0 < impact.by_kind.loc[kind, "features_changed"] <= frame[f"affected_{kind}"].sum()
    # The test model is small (a few shallow trees) and need not read every service feature,
    # so only the three together are required to move a prediction.
    assert (frame.loc[frame["affected_all"], "gain_all"] != 0).any()


def test_all_together_affects_the_union(impact):
    frame = impact.customers
    union = np.logical_or.reduce([frame[f"affected_{kind}"] for kind in FAILURE_KINDS])
    np.testing.assert_array_equal(frame["affected_all"], union)


def test_the_scores_are_the_batch_scores(impact, model, history):
    from serving.scoring import score_frame

    orders, events = history
    features = build_features(orders, events, cutoff=CUTOFF, spec=model.spec)
    scored = score_frame(model, features)
    frame = impact.customers.set_index("customer_id")
    assert frame.index.equals(scored.index)
    np.testing.assert_allclose(frame["clv"], scored["clv"], rtol=1e-12)
    np.testing.assert_allclose(frame["p_churn"], scored["p_churn"], rtol=1e-12)


def test_summaries_add_up(impact):
    frame = impact.customers
    for kind in KINDS:
        row = impact.by_kind.loc[kind]
        assert row["affected"] == frame[f"affected_{kind}"].sum()
        assert row["clv_gain"] == pytest.approx(frame[f"gain_{kind}"].sum())
        per_segment = impact.by_segment.xs(kind, level="kind")
        assert per_segment["affected"].sum() == row["affected"]
        assert per_segment["clv_gain"].sum() == pytest.approx(row["clv_gain"])
    assert set(frame["value_segment"]) <= {"top", "high", "medium", "low"}


def test_cli_writes_the_file(served_store, tmp_path, capsys):
    out = tmp_path / "impact.parquet"
    argv = [
        "--orders", str(served_store.orders_path),
        "--events", str(served_store.events_path),
        "--model-uri", served_store.model_uri,
        "--cutoff", "2025-01-01",
        "--out", str(out),
    ]  # fmt: skip
    assert main(argv) == 0
    written = pd.read_parquet(out)
    assert {"customer_id", "value_segment", "clv", "p_churn", "gain_all", "affected_all"} <= set(
        written.columns
    )
    printed = capsys.readouterr().out
    assert "model-based what-if" in printed
    assert "confounding" in printed
    assert "late deliveries" in printed


def test_cli_refuses_orders_without_events(served_store, tmp_path, capsys):
    out = tmp_path / "impact.parquet"
    argv = ["--orders", str(served_store.orders_path), "--out", str(out)]
    assert main([*argv, "--model-uri", served_store.model_uri]) == 2
    err = capsys.readouterr().err
    assert "service impact cannot be measured without service data" in err
    assert not out.exists()


def test_cli_refuses_an_events_file_without_rows(served_store, tmp_path, capsys):
    empty = tmp_path / "events.csv"
    empty.write_text("customer_id,occurred_at,kind\n")
    argv = [
        "--orders", str(served_store.orders_path),
        "--events", str(empty),
        "--model-uri", served_store.model_uri,
        "--out", str(tmp_path / "impact.parquet"),
    ]  # fmt: skip
    assert main(argv) == 2
    assert "no usable service events" in capsys.readouterr().err


def test_without_events_tickets_are_not_measured_and_said_so(model, history):
    orders, _ = history
    result = estimate_impact(model, orders, None, CUTOFF, kinds=("bad_tickets", "all"))
    frame = result.customers
    assert not frame["affected_bad_tickets"].any()
    assert (frame["gain_bad_tickets"] == 0).all()
    assert any("badly resolved tickets cannot be measured" in note for note in result.notes)


def test_an_unknown_kind_is_refused(model, history):
    orders, events = history
    with pytest.raises(ValueError, match="unknown kind"):
        estimate_impact(model, orders, events, CUTOFF, kinds=("cancellations",))
