"""Spark reads what the pandas loader reads and scores each customer as pandas does (issue 21).

- A Parquet folder whose first part lacks columns is read with every part's columns (M4).
- A part whose column has another type is one line naming the part file and column, not a
  JVM traceback of hundreds of lines.
- Float ids beyond int64 stay three customers (M3), as the same validation runs in the workers.
- Spark's groups of customers give each customer the score pandas batch gives (M1/M2), on a
  store where some customers log returns as events and some do not.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.files import DataValidationError
from features.spark_input import read_rows, validate_rows
from serving.batch.base_scoring import BatchConfig
from serving.batch.base_scoring import run as batch_run
from serving.batch.spark import SparkConfig, load_spark_scores, main, parse_args
from serving.batch.spark import run as spark_run

pytestmark = pytest.mark.spark

CUTOFF = "2025-01-01"


def _subset(served_store, customers: int = 300, without_return_events: int = 120):
    """The store's first customers; the return events of the first ones left out."""
    orders, events = served_store.orders, served_store.events
    ids = sorted(orders["customer_id"].unique())[:customers]
    first = set(ids[:without_return_events])
    orders = orders.loc[orders["customer_id"].isin(ids)].reset_index(drop=True)
    events = events.loc[events["customer_id"].isin(ids)]
    events = events.loc[~((events["kind"] == "return") & events["customer_id"].isin(first))]
    return orders, events.reset_index(drop=True)


def _batch_scores(served_store, orders, events, out, chunk: int = 200_000) -> pd.DataFrame:
    batch_run(
        BatchConfig(
            orders=orders,
            events=events,
            cutoff=CUTOFF,
            out=out,
            features_out=None,
            model_uri=served_store.model_uri,
            chunk_customers=chunk,
        )
    )
    return pd.read_parquet(out).set_index("customer_id").sort_index()


def _spark_scores(served_store, spark, orders, events, out, groups: int) -> pd.DataFrame:
    spark_run(
        SparkConfig(
            orders=orders,
            events=events,
            cutoff=CUTOFF,
            out=out,
            model_uri=served_store.model_uri,
            groups=groups,
        ),
        spark,
    )
    return load_spark_scores(out).set_index("customer_id").sort_index()


def assert_same(expected: pd.DataFrame, actual: pd.DataFrame) -> None:
    assert list(actual.index) == list(expected.index)
    for column in expected.columns:
        a, b = expected[column], actual[column]
        if pd.api.types.is_float_dtype(a):
            np.testing.assert_allclose(
                b.to_numpy(), a.to_numpy(), rtol=0, atol=1e-9, equal_nan=True, err_msg=column
            )
        elif column in ("value_segment", "risk_segment", "action", "reasons"):
            assert a.tolist() == b.tolist(), column


def test_spark_scores_each_customer_as_pandas_batch_does(served_store, spark, tmp_path):
    orders, events = _subset(served_store)
    returned = orders.loc[orders["status"] == "returned", "customer_id"]
    with_events = set(events.loc[events["kind"] == "return", "customer_id"])
    assert returned.isin(with_events).any() and (~returned.isin(with_events)).any()
    orders_path, events_path = tmp_path / "orders.parquet", tmp_path / "events.parquet"
    orders.to_parquet(orders_path, index=False)
    events.to_parquet(events_path, index=False)
    # Each customer alone (chunks of one customer): what every grouping must give.
    pandas_scores = _batch_scores(
        served_store, orders_path, events_path, tmp_path / "b.parquet", chunk=1
    )
    for groups in (1, 7):
        spark_scores = _spark_scores(
            served_store, spark, orders_path, events_path, tmp_path / f"s{groups}", groups
        )
        assert_same(pandas_scores, spark_scores)


def test_a_folder_whose_first_part_lacks_columns_is_read_whole(served_store, spark, tmp_path):
    """The m4 reproduction on Spark: the same scores as the same rows in one file."""
    orders, events = _subset(served_store, customers=200, without_return_events=0)
    early = orders["ordered_at"] < "2024-07-01"
    old = orders.loc[early].drop(columns=["status", "promised_at", "delivered_at"])
    new = orders.loc[~early]
    assert new["status"].isin(["cancelled", "returned"]).any()
    folder = tmp_path / "orders"
    folder.mkdir()
    old.to_parquet(folder / "part-0000.parquet", index=False)
    new.to_parquet(folder / "part-0001.parquet", index=False)
    one_file = tmp_path / "orders.parquet"
    pd.concat([old, new], ignore_index=True).to_parquet(one_file, index=False)
    events_path = tmp_path / "events.parquet"
    events.to_parquet(events_path, index=False)
    rows = read_rows(spark, folder, {}, "orders")
    assert {"status", "promised_at", "delivered_at"} <= set(rows.data_columns)
    expected = _batch_scores(served_store, one_file, events_path, tmp_path / "b.parquet")
    actual = _spark_scores(served_store, spark, folder, events_path, tmp_path / "s", 3)
    assert_same(expected, actual)


def test_a_part_with_text_amounts_is_one_line_naming_the_part_and_column(
    served_store, spark, tmp_path, capsys
):
    folder = tmp_path / "orders"
    folder.mkdir()
    orders = served_store.orders.head(50)
    orders.to_parquet(folder / "part-0000.parquet", index=False)
    orders.astype({"amount": "str"}).to_parquet(folder / "part-0001.parquet", index=False)
    with pytest.raises(DataValidationError, match=r"part-0001\.parquet' has column 'amount'"):
        read_rows(spark, folder, {}, "orders")
    code = main(
        ["--orders", str(folder), "--cutoff", CUTOFF, "--out", str(tmp_path / "scores")]
        + ["--model-uri", served_store.model_uri]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "part-0001.parquet" in err[0] and "'amount'" in err[0], err


def test_float_ids_beyond_int64_stay_apart_on_spark(spark, tmp_path):
    path = tmp_path / "orders.parquet"
    pd.DataFrame(
        {
            "customer_id": [1e19, 2e19, 3e19, np.inf],
            "ordered_at": pd.to_datetime(["2024-01-01", "2024-02-01", "2024-03-01", "2024-04-01"]),
            "amount": [1.0, 2.0, 3.0, 4.0],
        }
    ).to_parquet(path, index=False)
    validated = validate_rows(read_rows(spark, path, {}, "orders"), "orders")
    ids = sorted(r["customer_id"] for r in validated.valid.select("customer_id").collect())
    assert ids == ["10000000000000000000", "20000000000000000000", "30000000000000000000"]
    reasons = [r["__reason"] for r in validated.quarantine.collect()]
    assert reasons == ["non-finite customer_id"]


def test_the_spark_command_passes_a_uri_through():
    config = parse_args(["--orders", "s3a://lake/orders/", "--events", "s3a://lake/events/"])
    assert config.orders == "s3a://lake/orders/"
    assert config.events == "s3a://lake/events/"
