"""Spark scoring gives what serving.batch gives: the same rows and values, the same quarantine.

Spark runs in local mode (``local[2]``), a real session with real Python workers. The input is
the session's synthetic store with unusable rows planted in it (every kind the validation
knows, a repeated order_id, a customer whose only order is unusable, a customer seen only in
the service events), scored at a cutoff that leaves some customers too new.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pyarrow.dataset as pads
import pytest

from serving.batch.base_scoring import BatchConfig
from serving.batch.base_scoring import run as batch_run
from serving.batch.spark import (
    SparkConfig,
    load_spark_scores,
    quarantine_path,
    rejected_dataset,
)
from serving.batch.spark import run as spark_run
from serving.run_files import SCORE_COLUMNS, load_batch_answers, load_feature_table

pytestmark = pytest.mark.spark

CUTOFF = "2025-01-01"


def _messy(served_store, folder):
    """The store's orders and events as CSV, with unusable rows planted; and as Parquet."""
    orders = served_store.orders.copy()
    events = served_store.events.copy()
    for frame in (orders, events):
        for column in frame.columns:
            if pd.api.types.is_datetime64_any_dtype(frame[column]):
                frame[column] = frame[column].dt.strftime("%Y-%m-%dT%H:%M:%S")
    orders = orders.astype("object")
    first = orders.iloc[0].to_dict()
    planted = [
        {**first, "customer_id": None, "order_id": "X-1"},  # missing customer_id
        {**first, "order_id": "X-2", "amount": "abc"},  # non-numeric amount
        {**first, "order_id": "X-3", "amount": "-5"},  # negative amount
        {**first, "order_id": "X-4", "ordered_at": "1600-01-01"},  # out of range
        {**first, "order_id": first["order_id"], "amount": "1"},  # repeated order_id
        {**first, "order_id": "X-5", "status": "lost in space"},  # unknown status
        {**first, "order_id": "X-6", "promised_at": "not a date"},  # optional date: missing
        {**first, "customer_id": "ONLY-BAD", "order_id": "X-7", "amount": "n/a"},
    ]
    orders = pd.concat([orders, pd.DataFrame(planted)], ignore_index=True)
    ev_first = events.astype("object").iloc[0].to_dict()
    events = pd.concat(
        [
            events.astype("object"),
            pd.DataFrame(
                [
                    {**ev_first, "customer_id": "EVENTS-ONLY"},
                    {**ev_first, "score": "9"},  # score outside 1-5
                    {**ev_first, "occurred_at": "yesterday"},
                ]
            ),
        ],
        ignore_index=True,
    )
    paths = {}
    for name, frame in (("orders", orders), ("events", events)):
        csv = folder / f"{name}.csv"
        frame.to_csv(csv, index=False)
        parquet = folder / f"{name}.parquet"
        # Small row groups, so Spark splits the Parquet file too.
        frame.astype("str").where(frame.notna(), None).to_parquet(
            parquet, index=False, row_group_size=2_000
        )
        paths[name] = (csv, parquet)
    return paths


@pytest.fixture(scope="module")
def both_runs(served_store, spark, tmp_path_factory):
    """The same messy CSV input scored by serving.batch and by Spark."""
    folder = tmp_path_factory.mktemp("spark-equality")
    paths = _messy(served_store, folder)
    orders, events = paths["orders"][0], paths["events"][0]
    batch_out = folder / "batch" / "scores.parquet"
    batch = batch_run(
        BatchConfig(
            orders=orders,
            events=events,
            cutoff=CUTOFF,
            out=batch_out,
            features_out=batch_out.with_name("online_features.parquet"),
            model_uri=served_store.model_uri,
            chunk_customers=500,
        )
    )
    spark_out = folder / "spark" / "scores"
    on_spark = spark_run(
        SparkConfig(
            orders=orders,
            events=events,
            cutoff=CUTOFF,
            out=spark_out,
            features_out=spark_out.parent / "online" / "online_features.parquet",
            model_uri=served_store.model_uri,
            groups=3,  # several groups on purpose
        ),
        spark,
    )
    return paths, (batch_out, batch), (spark_out, on_spark)


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values("customer_id").reset_index(drop=True)


def assert_same_scores(expected: pd.DataFrame, actual: pd.DataFrame) -> None:
    assert list(actual.columns) == list(SCORE_COLUMNS)
    expected, actual = _sorted(expected), _sorted(actual)
    assert expected["customer_id"].tolist() == actual["customer_id"].tolist()
    for column in SCORE_COLUMNS:
        a, b = expected[column], actual[column]
        if pd.api.types.is_float_dtype(a):
            np.testing.assert_allclose(
                b.to_numpy(), a.to_numpy(), rtol=0, atol=1e-6, equal_nan=True, err_msg=column
            )
        else:
            assert (
                a.astype("object").where(a.notna(), None).tolist()
                == b.astype("object").where(b.notna(), None).tolist()
            ), column


def test_spark_scores_every_customer_as_batch_does(both_runs):
    _, (batch_out, batch), (spark_out, on_spark) = both_runs
    assert on_spark.scored == batch.scored > 1000
    assert on_spark.input_customers == batch.input_customers
    assert on_spark.rejected == batch.rejected
    assert set(on_spark.rejected) == {
        "every order row was quarantined",
        "service events but no orders",
        "no order before the cutoff",
    }
    assert_same_scores(pd.read_parquet(batch_out), load_spark_scores(spark_out))
    assert on_spark.total_clv == pytest.approx(batch.total_clv, abs=1e-6)
    assert on_spark.segments == batch.segments


def test_spark_rejects_and_quarantines_the_same_rows(both_runs):
    _, (batch_out, _), (spark_out, on_spark) = both_runs
    rejected = pd.read_csv(batch_out.with_name("scores.rejected.csv"), dtype=str)
    spark_rejected = pads.dataset(rejected_dataset(spark_out)).to_table().to_pandas()
    key = ["customer_id", "reason"]
    assert _rows(rejected[key]) == _rows(spark_rejected[key])
    for name in ("orders", "service_events"):
        expected = pd.read_csv(batch_out.with_name(f"scores.{name}.quarantine.csv"), dtype=str)
        actual = pads.dataset(quarantine_path(spark_out, name)).to_table().to_pandas()
        pairs = ["source_row", "reason"]
        assert _rows(expected[pairs]) == _rows(actual[pairs].astype("str"))
        assert sum(on_spark.quarantined[name].values()) == len(expected) > 0
        # The raw values are kept as read, as text.
        for column in ("customer_id",):
            raw = f"__raw_{column}"
            got = actual.sort_values("source_row")[raw].fillna("").tolist()
            want = expected.sort_values("source_row", key=lambda s: s.astype(int))[column]
            assert got == want.fillna("").tolist()


def test_spark_writes_the_table_and_answers_the_service_reads(both_runs, served_store):
    _, (batch_out, _), (spark_out, on_spark) = both_runs
    expected = load_feature_table(batch_out.with_name("online_features.parquet"), _names(batch_out))
    table = load_feature_table(on_spark.features_out, expected.columns)
    assert table.cutoff == expected.cutoff
    assert set(table.positions) == set(expected.positions)
    order = [table.positions[c] for c in expected.positions]
    np.testing.assert_allclose(table.matrix[order], expected.matrix, atol=1e-9)
    answers = load_batch_answers(table, str(served_store.version), "approximate")
    assert answers is not None  # paired by run id, same model: lookups answered from them
    assert len(answers.clv) == len(table)


def test_parquet_input_gives_the_same_scores(both_runs, served_store, spark, tmp_path):
    paths, (batch_out, _), _ = both_runs
    out = tmp_path / "scores"
    spark_run(
        SparkConfig(
            orders=paths["orders"][1],
            events=paths["events"][1],
            cutoff=CUTOFF,
            out=out,
            model_uri=served_store.model_uri,
        ),
        spark,
    )
    assert_same_scores(pd.read_parquet(batch_out), load_spark_scores(out))


def _names(batch_out):
    import pyarrow.parquet as pq

    schema = pq.read_schema(batch_out.with_name("online_features.parquet"))
    return [n for n in schema.names if n != "customer_id"]


def _rows(frame: pd.DataFrame) -> list[tuple]:
    return sorted(map(tuple, frame.astype("str").to_numpy().tolist()))


def test_spark_writes_the_lookup_store_the_service_answers_from(both_runs, served_store):
    from serving.lookup_store import open_lookup_store, unpack_answer

    _, (batch_out, _), (spark_out, on_spark) = both_runs
    store = open_lookup_store(on_spark.store)
    assert store.meta.customers == on_spark.scored
    assert store.meta.stamp.model_version == str(served_store.version)
    scores = _sorted(pd.read_parquet(batch_out)).set_index("customer_id")
    some = list(scores.index[:: max(1, len(scores) // 50)])
    found = store.fetch(some)
    assert set(found) == set(some)
    for customer_id in some:
        answer = unpack_answer(found[customer_id][1])
        assert answer["clv"] == pytest.approx(scores.loc[customer_id, "clv"], abs=1e-6)
        assert answer["value_segment"] == scores.loc[customer_id, "value_segment"]


def test_rows_are_numbered_across_partitions_as_in_the_file(spark, both_runs):
    from features.spark_input import read_rows

    paths, _, _ = both_runs
    for path in paths["orders"]:
        rows = read_rows(spark, path, {}, "orders")
        assert rows.frame.rdd.getNumPartitions() > 1, path
        numbers = rows.frame.select("__row", "order_id").toPandas()
        expected = pd.read_csv(paths["orders"][0], dtype=str)["order_id"]
        assert sorted(numbers["__row"]) == list(range(len(expected)))
        ordered = numbers.sort_values("__row")["order_id"].fillna("").tolist()
        assert ordered == expected.fillna("").tolist()


def test_a_folder_of_part_files_gives_the_same_scores(served_store, spark, tmp_path):
    """A folder of Parquet part files (as a data lake holds them), read by both paths."""
    folder = tmp_path / "orders"
    folder.mkdir()
    orders = served_store.orders
    half = len(orders) // 2
    orders.iloc[:half].to_parquet(folder / "part-00000.parquet", index=False)
    orders.iloc[half:].to_parquet(folder / "part-00001.parquet", index=False)
    batch_out = tmp_path / "batch" / "scores.parquet"
    batch_run(
        BatchConfig(
            orders=folder,
            events=served_store.events_path,
            cutoff=CUTOFF,
            out=batch_out,
            features_out=None,
            model_uri=served_store.model_uri,
        )
    )
    out = tmp_path / "spark" / "scores"
    spark_run(
        SparkConfig(
            orders=folder,
            events=served_store.events_path,
            cutoff=CUTOFF,
            out=out,
            model_uri=served_store.model_uri,
        ),
        spark,
    )
    assert_same_scores(pd.read_parquet(batch_out), load_spark_scores(out))


def _tree(folder):
    """Every file under ``folder`` (the run's datasets and files) with its bytes' digest."""
    import hashlib

    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and ".scoring-" not in str(p.relative_to(folder))
    }


def test_a_failed_spark_run_leaves_every_previous_output(
    served_store, spark, tmp_path, monkeypatch
):
    # Issue 21 M9 on Spark: the datasets, the table, the scores beside it and the store are
    # published together; a run whose store write fails replaces none of them.
    import serving.batch.spark as spark_module

    out = tmp_path / "scores"
    config = SparkConfig(
        orders=served_store.orders_path,
        events=served_store.events_path,
        cutoff=CUTOFF,
        out=out,
        features_out=tmp_path / "online_features.parquet",
        model_uri=served_store.model_uri,
        groups=2,
    )
    spark_run(config, spark)
    before = _tree(tmp_path)
    assert "online_store.sqlite" in before and "scores.online/_SUCCESS" in before

    def full_disk(path):
        yield from []
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(spark_module, "_dataset_frames", full_disk)
    with pytest.raises(OSError, match="No space left on device") as info:
        spark_run(replace(config, cutoff="2024-10-01", groups=3), spark)
    assert _tree(tmp_path) == before
    assert not list(tmp_path.glob(".scoring-*"))
    assert info.value.filename == str(tmp_path / "scores.parquet")  # beside --features-out
    monkeypatch.undo()
    # A run that completes replaces each dataset whole (no part file of the previous run).
    spark_run(replace(config, cutoff="2024-10-01", groups=3), spark)
    after = load_spark_scores(out)
    assert (after["cutoff"] == pd.Timestamp("2024-10-01")).all()
    assert not list(tmp_path.glob(".scoring-*"))
