"""Training snapshots built on Spark are the pandas path's rows; training on them agrees."""

from __future__ import annotations

import pandas as pd
import pytest

from features import FeatureSpec
from training.snapshots import sample_customers, window_snapshots
from training.spark_snapshots import load_history, snapshot_source

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def history(store, spark, tmp_path_factory):
    return load_history(
        spark,
        store.orders_path,
        store.events_path,
        columns="",
        sample_customers=None,
        seed=7,
        quarantine_dir=tmp_path_factory.mktemp("quarantine"),
    )


def test_the_whole_history_comes_to_the_driver_as_features_io_reads_it(store, history):
    orders = history.orders_result.frame
    expected = store.orders.sort_values("order_id").reset_index(drop=True)
    got = orders.sort_values("order_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(got[expected.columns], expected, check_dtype=False)
    assert history.sampled == history.customers == store.orders["customer_id"].nunique()
    assert history.orders_result.rows_quarantined == 0


@pytest.mark.parametrize("limit", [10**9, 5_000])
def test_spark_snapshots_are_the_pandas_rows_in_the_same_order(store, history, limit):
    spec = FeatureSpec(horizon_days=180)
    cutoffs = list(pd.date_range("2024-01-01", periods=4, freq="30D"))
    source = snapshot_source(history, spec=spec, window_days=90, limit=limit, seed=7)
    got = source(cutoffs)
    expected = sample_customers(
        window_snapshots(store.orders, store.events, cutoffs, spec, 90), limit, 7
    ).reset_index(drop=True)
    assert len(got) == len(expected) > 0
    if limit < 10**9:
        assert len(expected) < limit * 1.2  # the sample was taken
    pd.testing.assert_frame_equal(
        got[expected.columns], expected, check_dtype=False, atol=1e-9, rtol=0
    )


def test_a_customer_sample_keeps_whole_customers(store, spark, tmp_path):
    sampled = load_history(
        spark,
        store.orders_path,
        store.events_path,
        columns="",
        sample_customers=500,
        seed=7,
        quarantine_dir=tmp_path,
    )
    ids = sampled.orders_result.frame["customer_id"].unique()
    assert 350 <= len(ids) <= 650 and sampled.sampled == len(ids)
    everything = store.orders[store.orders["customer_id"].isin(ids)]
    assert len(sampled.orders_result.frame) == len(everything)
    events = sampled.events_result.frame
    assert set(events["customer_id"]) <= set(ids)


@pytest.mark.slow
def test_training_on_spark_gives_the_pandas_model(
    store, trained_store, own_tracking_store, tmp_path
):
    """The same configuration as the trained_store fixture, with --spark: the same metrics."""
    from training.config import TrainConfig
    from training.train import run

    result = run(
        TrainConfig(
            orders=store.orders_path,
            events=store.events_path,
            horizon_days=180,
            step_days=30,
            max_train_cutoffs=6,
            max_trials=0,
            output_dir=tmp_path,
            spark=True,
            spark_master="local[2]",
        )
    )
    expected = trained_store.result.metrics["model"]
    for name, value in result.metrics["model"].items():
        assert value == pytest.approx(expected[name], rel=1e-9, abs=1e-12), name
