"""Scores written back to a database (SQLite, no server): the Parquet file's rows, swapped whole."""

import sqlite3

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest
import sqlalchemy as sa

from features.files import DataValidationError
from serving.batch import score_tables
from serving.batch.base_scoring import BatchConfig, parse_args, run
from serving.batch.score_tables import score_table
from serving.run_files import NUMBER_FIELDS, SCORE_COLUMNS, RunStamp


def read_scores(url: str, table: str) -> pd.DataFrame:
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        frame = pd.read_sql(sa.text(f"select * from {table}"), connection, parse_dates=["cutoff"])
    engine.dispose()
    return frame


def same_scores(from_db: pd.DataFrame, from_file: pd.DataFrame) -> None:
    db = from_db.drop(columns="run_id").sort_values("customer_id", ignore_index=True)
    file = from_file.sort_values("customer_id", ignore_index=True)
    assert list(db.columns) == list(SCORE_COLUMNS)
    for column in SCORE_COLUMNS:
        if column in NUMBER_FIELDS:
            np.testing.assert_allclose(
                db[column].astype("float64"), file[column], rtol=1e-6, atol=1e-6, err_msg=column
            )
        elif column == "cutoff":
            assert (db[column] == file[column]).all()
        else:
            left = db[column].astype("str").where(db[column].notna())
            right = file[column].astype("str").where(file[column].notna())
            pdt.assert_series_equal(left, right, check_names=False, check_dtype=False)


@pytest.fixture(scope="module")
def shop_db(store, tmp_path_factory):
    path = tmp_path_factory.mktemp("shop") / "shop.db"
    with sqlite3.connect(path) as connection:
        store.orders.to_sql("orders", connection, index=False)
        store.events.to_sql("service_events", connection, index=False)
    return path


def test_database_in_and_out_equal_the_files(served_store, shop_db, tmp_path):
    parquet = tmp_path / "scores.parquet"
    common = dict(cutoff="2025-01-01", features_out=None, model_uri=served_store.model_uri)
    file_run = run(
        BatchConfig(
            orders=served_store.orders_path, events=served_store.events_path, out=parquet, **common
        )
    )
    url = f"sqlite:///{tmp_path / 'scores.db'}"
    db_run = run(
        BatchConfig(
            orders=f"sqlite:///{shop_db}?table=orders",
            events=f"sqlite:///{shop_db}?table=service_events",
            out=f"{url}?table=customer_scores",
            chunk_customers=700,  # several inserts
            **common,
        )
    )
    assert db_run.scored == file_run.scored and db_run.rejected == file_run.rejected
    assert db_run.table is not None and "customer_scores" in db_run.table
    same_scores(read_scores(url, "customer_scores"), pd.read_parquet(parquet))
    runs = read_scores(url, "customer_scores_runs")
    assert len(runs) == 1 and runs.loc[0, "rows"] == db_run.scored
    assert runs.loc[0, "orders"] == f"sqlite:///{shop_db}?table=orders"
    indexes = sa.inspect(sa.create_engine(url)).get_indexes("customer_scores")
    assert [(i["column_names"], bool(i["unique"])) for i in indexes] == [(["customer_id"], True)]


def test_a_second_run_replaces_the_first_and_keeps_both_stamps(served_store, tmp_path):
    url = f"sqlite:///{tmp_path / 'scores.db'}"
    location = f"{url}?table=scores"
    common = dict(
        orders=served_store.orders_path,
        events=served_store.events_path,
        out=location,
        features_out=None,
        model_uri=served_store.model_uri,
    )
    run(BatchConfig(cutoff="2024-07-01", **common))
    second = run(BatchConfig(cutoff="2025-01-01", **common))
    scores = read_scores(url, "scores")
    assert len(scores) == second.scored
    assert set(scores["cutoff"]) == {pd.Timestamp("2025-01-01")}
    runs = read_scores(url, "scores_runs")
    assert list(runs["cutoff"]) == [pd.Timestamp("2024-07-01"), pd.Timestamp("2025-01-01")]
    assert scores["run_id"].unique().tolist() == [runs["run_id"].iloc[-1]]
    tables = set(sa.inspect(sa.create_engine(url)).get_table_names())
    assert tables == {"scores", "scores_runs"}  # no staging or previous table left
    # The run's own files are named after the table, in the default scores folder.
    assert BatchConfig(out=location).files_out.name == "scores.parquet"


def test_a_failed_run_leaves_the_previous_one(served_store, tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'scores.db'}"
    config = BatchConfig(
        orders=served_store.orders_path,
        events=served_store.events_path,
        out=f"{url}?table=scores",
        cutoff="2025-01-01",
        features_out=None,
        model_uri=served_store.model_uri,
    )
    first = run(config)
    before = read_scores(url, "scores")

    def fail(self):
        raise sa.exc.OperationalError("rename", {}, sqlite3.OperationalError("disk I/O error"))

    monkeypatch.setattr("serving.batch.score_tables.StagedScores.publish", fail)
    with pytest.raises(ValueError, match=r"table 'scores' in .*disk I/O error; the previous run"):
        run(config)
    pdt.assert_frame_equal(read_scores(url, "scores"), before)
    assert len(read_scores(url, "scores_runs")) == 1 and len(before) == first.scored
    assert "scores__staging" not in sa.inspect(sa.create_engine(url)).get_table_names()


def test_a_reader_during_the_swap_sees_one_whole_run(served_store, tmp_path, monkeypatch):
    path = tmp_path / "scores.db"
    common = dict(
        orders=served_store.orders_path,
        events=served_store.events_path,
        out=f"sqlite:///{path}?table=scores",
        features_out=None,
        model_uri=served_store.model_uri,
    )
    first = run(BatchConfig(cutoff="2024-07-01", **common))
    seen = []
    rename = score_tables._rename_table

    def rename_watched(connection, old, new, schema):
        rename(connection, old, new, schema)
        # Another connection, between the swap's two renames: the previous run, whole.
        with sqlite3.connect(path) as reader:
            row = reader.execute("select count(*), count(distinct run_id) from scores").fetchone()
            seen.append(row)

    monkeypatch.setattr(score_tables, "_rename_table", rename_watched)
    second = run(BatchConfig(cutoff="2025-01-01", **common))
    assert first.scored != second.scored
    assert seen == [(first.scored, 1), (first.scored, 1)]


def test_scores_over_an_input_table_are_refused(shop_db):
    table = f"sqlite:///{shop_db}?table=orders"
    with pytest.raises(ValueError, match=r"--out table 'orders' .* is the input --orders"):
        run(BatchConfig(orders=table, events=None, out=table))


def test_a_table_the_command_did_not_write_is_never_replaced(served_store, tmp_path):
    path = tmp_path / "crm.db"
    with sqlite3.connect(path) as connection:
        pd.DataFrame({"customer_id": ["a"], "email": ["a@example.com"]}).to_sql(
            "customers", connection, index=False
        )
    config = BatchConfig(
        orders=served_store.orders_path,
        events=served_store.events_path,
        out=f"sqlite:///{path}?table=customers",
        features_out=None,
        model_uri=served_store.model_uri,
    )
    with pytest.raises(ValueError, match=r"table 'customers' .* was not written by serving.batch"):
        run(config)
    assert read_scores(f"sqlite:///{path}", "customers")["email"].tolist() == ["a@example.com"]


@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("sqlite:///s.db", r"names neither a table nor a query"),
        ("mysql://u@h/shop?table=scores", r"written to postgresql or sqlite only"),
        ("sqlite:///s.db?table=" + "x" * 60, r"table name .* is too long"),
    ],
)
def test_score_tables_that_cannot_be_written_say_why(out, message):
    with pytest.raises(DataValidationError, match=message):
        score_table(out)


def test_the_command_line_takes_a_database_out():
    config = parse_args(["--out", "sqlite:///scores.db?table=scores"])
    assert config.out == "sqlite:///scores.db?table=scores"
    assert config.features_out is None and config.store is None
    assert RunStamp("r", "c", "m", "1").orders == ""


def test_the_report_reads_a_database_run_s_orders_and_events(served_store, shop_db, tmp_path):
    from serving.insight import report

    out = tmp_path / "scores.parquet"
    run(
        BatchConfig(
            orders=f"sqlite:///{shop_db}?table=orders",
            events=f"sqlite:///{shop_db}?table=service_events",
            out=out,
            cutoff="2025-01-01",
            features_out=None,
            model_uri=served_store.model_uri,
        )
    )
    html = tmp_path / "report.html"
    argv = ["--scores", str(out), "--out", str(html), "--no-log"]
    # The orders from the run's stamp (the database location), the events named.
    events = f"sqlite:///{shop_db}?table=service_events"
    assert report.main([*argv, "--events", events, "--runs", str(tmp_path / "runs")]) == 0
    text = html.read_text(encoding="utf-8")
    assert "First order (month)" in text  # the cohorts: the orders were read
    assert report.NO_SERVICE_DATA not in text
