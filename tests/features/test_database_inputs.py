"""Orders and events read from a database (SQLite, no server): the same rows as from a file."""

import argparse
import socket
import sqlite3

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest

from features import database
from features.database import DatabaseReadError, is_database
from features.files import DataValidationError
from features.run_inputs import NoUsableOrders, add_input_arguments, load_run_inputs


def with_bad_rows(orders: pd.DataFrame) -> pd.DataFrame:
    """The demo orders with rows the validation quarantines, spread through the table."""
    bad = orders.sample(6, random_state=3).copy()
    bad["order_id"] = bad["order_id"].astype("str") + "-bad"
    bad.iloc[0, bad.columns.get_loc("amount")] = -5.0
    bad.iloc[1, bad.columns.get_loc("customer_id")] = None
    bad.iloc[2, bad.columns.get_loc("ordered_at")] = pd.NaT
    bad.iloc[3, bad.columns.get_loc("amount")] = np.nan
    bad.iloc[4, bad.columns.get_loc("order_id")] = orders["order_id"].iloc[0]  # a repeat
    bad.iloc[5, bad.columns.get_loc("status")] = "lost"
    mixed = pd.concat([orders.iloc[:700], bad.iloc[:3], orders.iloc[700:], bad.iloc[3:]])
    return mixed.reset_index(drop=True)


def write_sqlite(path, **tables):
    with sqlite3.connect(path) as connection:
        for name, frame in tables.items():
            frame.to_sql(name, connection, index=False)


def assert_same_load(from_db, from_file):
    pdt.assert_frame_equal(from_db.frame, from_file.frame)
    assert from_db.rows_read == from_file.rows_read
    assert from_db.rows_quarantined == from_file.rows_quarantined
    assert list(from_db.quarantine["reason"]) == list(from_file.quarantine["reason"])
    assert list(from_db.quarantine["source_row"]) == list(from_file.quarantine["source_row"])
    assert list(from_db.quarantined_customers) == list(from_file.quarantined_customers)
    assert len(from_db.problems) == len(from_file.problems)


def test_demo_store_round_trip_through_sqlite(store, tmp_path, monkeypatch):
    # Small chunks: the table is read in several, and must come out as the file does.
    monkeypatch.setattr(database, "CHUNK_ROWS", 5_000)
    orders = with_bad_rows(store.orders)
    orders_file = tmp_path / "orders.parquet"
    orders.to_parquet(orders_file, index=False)
    db = tmp_path / "shop.db"
    write_sqlite(db, orders=orders, service_events=store.events)
    assert len(orders) > 3 * database.CHUNK_ROWS

    from_file = load_run_inputs(orders_file, store.events_path, quarantine_dir=tmp_path / "qf")
    from_db = load_run_inputs(
        f"sqlite:///{db}?table=orders",
        f"sqlite:///{db}?table=service_events",
        quarantine_dir=tmp_path / "qd",
    )
    assert from_file.orders.rows_quarantined == 6
    assert_same_load(from_db.orders, from_file.orders)
    assert from_db.events is not None and from_file.events is not None
    assert_same_load(from_db.events, from_file.events)
    assert from_db.quarantined == from_file.quarantined
    assert from_db.data_end == from_file.data_end
    quarantine = pd.read_csv(tmp_path / "qd" / "orders.quarantine.csv")
    assert len(quarantine) == 6


def test_a_query_with_the_mapping(tmp_path):
    db = tmp_path / "shop.db"
    write_sqlite(
        db,
        sales=pd.DataFrame(
            {
                "cust": ["a", "b", "c"],
                "day": ["2024-01-01", "2024-02-01", "2024-03-01"],
                "net": [10.0, 20.0, -1.0],
                "region": ["eu", "us", "eu"],
            }
        ),
    )
    parser = argparse.ArgumentParser()
    add_input_arguments(parser)
    # Either order of the two flags gives the same input.
    query = "select cust, day, net from sales where region = 'eu' order by day"
    first = parser.parse_args(["--orders-sql", query, "--orders", f"sqlite:///{db}"])
    second = parser.parse_args(["--orders", f"sqlite:///{db}", "--orders-sql", query])
    assert first.orders == second.orders
    inputs = load_run_inputs(
        first.orders, None, columns="customer_id=cust,ordered_at=day,amount=net"
    )
    assert list(inputs.orders.frame["customer_id"]) == ["a"]
    assert inputs.orders.rows_read == 2
    assert inputs.orders.quarantine["reason"].tolist() == ["negative amount"]


def test_missing_table_names_the_tables_there(tmp_path):
    db = tmp_path / "shop.db"
    write_sqlite(db, orders=pd.DataFrame({"customer_id": ["a"]}))
    with pytest.raises(
        DataValidationError,
        match=r"orders table 'order' in .* does not exist; "
        r"the tables there are: orders",
    ):
        load_run_inputs(f"sqlite:///{db}?table=order", None)


def test_missing_column_names_the_table_and_its_columns(tmp_path):
    db = tmp_path / "shop.db"
    write_sqlite(db, orders=pd.DataFrame({"customer_id": ["a"], "ordered_at": ["2024-01-01"]}))
    with pytest.raises(
        DataValidationError,
        match=r"orders table 'orders' in .* is missing required column\(s\) 'amount'; "
        r"its columns are: customer_id, ordered_at",
    ):
        load_run_inputs(f"sqlite:///{db}?table=orders", None)


def test_nulls_in_required_columns_are_quarantined_and_counted(tmp_path):
    db = tmp_path / "shop.db"
    orders = pd.DataFrame(
        {
            "customer_id": ["a", None, "c", "d"],
            "ordered_at": ["2024-01-01", "2024-01-02", None, "2024-01-04"],
            "amount": [1.0, 2.0, 3.0, None],
        }
    )
    write_sqlite(db, orders=orders)
    url = f"sqlite:///{db}?table=orders"
    result = load_run_inputs(url, None).orders
    assert result.rows_read == 4 and result.rows_loaded == 1 and result.rows_quarantined == 3
    assert any("column 'amount' has 1 missing or non-numeric" in p for p in result.problems)
    with pytest.raises(DataValidationError, match=r"3 of 4 rows are unusable"):
        load_run_inputs(url, None, strict=True)


def test_a_table_of_unusable_rows_is_refused_with_its_counts(tmp_path):
    db = tmp_path / "shop.db"
    write_sqlite(
        db, orders=pd.DataFrame({"customer_id": [None], "ordered_at": ["x"], "amount": [1.0]})
    )
    with pytest.raises(NoUsableOrders, match=r"no usable orders in .*: 1 rows read, 1 quarantined"):
        load_run_inputs(f"sqlite:///{db}?table=orders", None)


def test_a_column_of_a_type_no_value_of_which_is_right_is_refused(tmp_path):
    # SQLite keeps no column types; a query gives the boolean a database would.
    db = tmp_path / "shop.db"
    write_sqlite(db, orders=pd.DataFrame({"customer_id": ["a"], "day": ["2024-01-01"]}))
    frame = pd.DataFrame({"customer_id": ["a"], "ordered_at": ["2024-01-01"], "amount": [True]})
    with pytest.raises(
        DataValidationError, match=r"orders query .*: column 'amount' has type boolean; expected"
    ):
        database.check_column_types(frame, "orders query in sqlite://", ("amount",))


@pytest.mark.parametrize(
    ("location", "error", "message"),
    [
        ("sqlite:///{db}", DataValidationError, r"names neither a table nor a query"),
        ("sqlite:///{missing}?table=orders", FileNotFoundError, r"database file .* not exist"),
        ("postgresql://u:secret@h/shop?table=orders", DataValidationError, r"holds a password"),
        ("postgressql://h/shop?table=orders", DataValidationError, r"no database driver for"),
        ("sqlite:///{db}?sql=select+nonsense", DatabaseReadError, r"orders query in .* failed"),
        ("no-database://?sql=select+1", DataValidationError, r"--orders-sql names a query but"),
        ("postgresql://nobody@127.0.0.1:{port}/shop?table=o", DatabaseReadError, r"cannot connect"),
    ],
)
def test_locations_that_cannot_be_read_say_why(tmp_path, location, error, message):
    db = tmp_path / "shop.db"
    write_sqlite(db, orders=pd.DataFrame({"customer_id": ["a"]}))
    with socket.socket() as unused:  # a port nothing listens on
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    text = location.format(db=db, missing=tmp_path / "missing.db", port=port)
    with pytest.raises(error, match=message):
        load_run_inputs(text, None)


def test_spark_commands_refuse_a_database():
    database.refuse_on_spark({"--orders": "s3a://lake/orders/", "--events": None})
    with pytest.raises(DataValidationError, match=r"--events names a database, which the Spark"):
        database.refuse_on_spark({"--events": "sqlite:///shop.db?table=tickets"})


def test_which_locations_are_databases():
    assert is_database("sqlite:///shop.db?table=orders")
    assert is_database("postgresql://shop@db/shop")
    assert not is_database("s3a://lake/orders/")
    assert not is_database("orders.csv")


def test_each_table_of_a_database_is_its_own_model():
    from training.config import model_name_for

    eu = model_name_for("sqlite:///data/shop.db?table=orders_eu")
    assert eu == "customer-value-shop-orders_eu"
    assert (
        model_name_for("sqlite:///other/shop.db?table=orders_us") == "customer-value-shop-orders_us"
    )
    assert (
        model_name_for("postgresql://u@db/shop?table=sales.orders")
        == "customer-value-shop-sales.orders"
    )
    query = model_name_for("postgresql://u@db/shop?sql=select+1")
    assert query.startswith("customer-value-shop-query-") and query != eu
    assert model_name_for("postgresql://u@db/shop?sql=select+1", "my-shop") == "my-shop"


def test_the_orders_error_is_raised_when_both_inputs_are_bad(tmp_path):
    # The events are read in a thread beside the orders; the orders' error still wins.
    (tmp_path / "orders.csv").write_text("customer_id,amount\na,1\n")
    (tmp_path / "events.csv").write_text("customer_id\na\n")
    with pytest.raises(DataValidationError, match="orders file .* missing required column"):
        load_run_inputs(tmp_path / "orders.csv", tmp_path / "events.csv")
    (tmp_path / "orders.csv").write_text("customer_id,ordered_at,amount\na,2024-01-01,1\n")
    with pytest.raises(DataValidationError, match="service events file .* missing required"):
        load_run_inputs(tmp_path / "orders.csv", tmp_path / "events.csv")
