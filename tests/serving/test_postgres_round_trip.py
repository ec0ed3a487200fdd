"""Orders and events read from, and scores written to, a real PostgreSQL server.

The server is Debian's PostgreSQL, started on a free port for this module
(tests/postgres_server.py); ``make test`` installs it. Marked ``postgres``: never skipped, a
server that cannot start fails the tests.
"""

import threading
import time

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest
import sqlalchemy as sa
from postgres_server import postgres_server

from features import database
from features.database import DatabaseReadError
from features.files import DataValidationError
from features.run_inputs import load_run_inputs
from serving.batch import score_tables
from serving.batch.base_scoring import BatchConfig, run
from serving.run_files import NUMBER_FIELDS, SCORE_COLUMNS

pytestmark = pytest.mark.postgres

#: The reader's connections carry this name, so the tests can find (and end) them.
READER = "customer-value-reader"


@pytest.fixture(scope="module")
def server():
    with postgres_server() as running:
        yield running


@pytest.fixture(scope="module")
def engine(server):
    engine = sa.create_engine(server.url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def shop(store, engine):
    """The demo store's orders and events as PostgreSQL tables (timestamps typed)."""
    with engine.begin() as connection:
        store.orders.to_sql("orders", connection, index=False)
        store.events.to_sql("service_events", connection, index=False)
    return store


def location(server, table, **params):
    extra = "".join(f"&{k}={v}" for k, v in params.items())
    return f"{server.url}?table={table}&application_name={READER}{extra}"


def write(engine, name, frame, **types):
    with engine.begin() as connection:
        frame.to_sql(name, connection, index=False, if_exists="replace", dtype=types or None)


def test_the_demo_store_reads_as_its_files_in_many_chunks(server, engine, shop, monkeypatch):
    monkeypatch.setattr(database, "CHUNK_ROWS", 2_000)
    assert len(shop.orders) > 3 * database.CHUNK_ROWS
    seen = []
    check = database.check_column_types

    def watch(chunk, label, contract):
        # From a second connection: what the reader's sessions are doing between two chunks.
        # Only the sessions inside a read (a cursor open in a transaction): an earlier
        # test's reader, closed by its client, can still be listed for a moment after its
        # ROLLBACK, because a backend exits asynchronously (seen in CI). The events are read
        # beside the orders, so their session may be between two fetches or still reading
        # the table's columns (seen in CI): the orders' session is the one that must be
        # fetching.
        if "orders" in label and len(seen) < 2:
            with engine.connect() as other:
                seen.append(
                    other.execute(
                        sa.text(
                            "select query from pg_stat_activity where application_name = :a "
                            "and state = 'idle in transaction'"
                        ),
                        {"a": READER},
                    )
                    .scalars()
                    .all()
                )
        check(chunk, label, contract)

    monkeypatch.setattr(database, "check_column_types", watch)
    from_db = load_run_inputs(location(server, "orders"), location(server, "service_events"))
    from_file = load_run_inputs(shop.orders_path, shop.events_path)
    pdt.assert_frame_equal(from_db.orders.frame, from_file.orders.frame)
    assert from_db.events is not None and from_file.events is not None
    pdt.assert_frame_equal(from_db.events.frame, from_file.events.frame)
    assert from_db.quarantined == from_file.quarantined
    # A server-side cursor: between two chunks of orders, a reader is fetching the next batch.
    assert len(seen) == 2 and all(
        any(q.upper().startswith("FETCH FORWARD") for q in queries) for queries in seen
    ), seen


def test_a_column_of_the_wrong_type(server, engine):
    frame = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c"],
            "ordered_at": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"]),
            "amount": [True, False, True],
        }
    )
    write(engine, "boolean_amounts", frame)
    with pytest.raises(
        DataValidationError,
        match=r"orders table 'boolean_amounts' in .*: column 'amount' has type boolean; "
        r"expected a number",
    ):
        load_run_inputs(location(server, "boolean_amounts"), None)
    # Text that holds numbers is read as a CSV's text is: the rows that are not are counted.
    write(engine, "text_amounts", frame.assign(amount=["1.50", "n/a", "2"]), amount=sa.Text())
    result = load_run_inputs(location(server, "text_amounts"), None).orders
    assert result.rows_loaded == 2 and result.quarantine["reason"].tolist() == [
        "non-numeric amount"
    ]
    assert any("column 'amount' has 1 missing or non-numeric" in p for p in result.problems)


def test_nulls_in_required_columns(server, engine):
    frame = pd.DataFrame(
        {
            "customer_id": ["a", None, "c", "d", "e"],
            "ordered_at": pd.to_datetime(["2024-01-01", "2024-01-02", None, "2024-01-04", None]),
            "amount": [1.0, 2.0, 3.0, None, 5.0],
        }
    )
    write(engine, "orders_with_nulls", frame)
    result = load_run_inputs(location(server, "orders_with_nulls"), None).orders
    assert (result.rows_read, result.rows_loaded, result.rows_quarantined) == (5, 1, 4)
    assert sorted(result.quarantine["reason"]) == [
        "missing customer_id",
        "non-numeric amount",
        "unparseable ordered_at",
        "unparseable ordered_at",
    ]
    with pytest.raises(DataValidationError, match=r"4 of 5 rows are unusable"):
        load_run_inputs(location(server, "orders_with_nulls"), None, strict=True)


def test_a_dropped_connection_mid_read_is_a_clear_error_and_nothing_is_written(
    server, engine, shop, served_store, monkeypatch, tmp_path
):
    monkeypatch.setattr(database, "CHUNK_ROWS", 1_000)
    calls = []
    check = database.check_column_types

    def terminate_on_second_chunk(chunk, label, contract):
        calls.append(label)
        if len(calls) == 2:
            with engine.connect() as other:
                ended = other.execute(
                    sa.text(
                        "select count(pg_terminate_backend(pid)) from pg_stat_activity "
                        "where application_name = :a"
                    ),
                    {"a": READER},
                ).scalar()
            assert ended == 1
        check(chunk, label, contract)

    monkeypatch.setattr(database, "check_column_types", terminate_on_second_chunk)
    out = tmp_path / "scores.parquet"
    with pytest.raises(
        DatabaseReadError,
        match=r"orders table 'orders' in postgresql://postgres@127\.0\.0\.1:\d+/postgres"
        r".*: reading failed after 2,000 rows \(AdminShutdown: terminating connection .*\); "
        r"nothing was loaded",
    ):
        run(
            BatchConfig(
                orders=location(server, "orders"),
                events=None,
                out=out,
                features_out=None,
                model_uri=served_store.model_uri,
            )
        )
    assert not out.exists() and list(tmp_path.iterdir()) == []


def count_run(connection, table):
    row = connection.execute(
        sa.text(f"select count(*), count(distinct run_id), min(run_id) from {table}")
    ).one()
    return tuple(row)


def test_scores_round_trip_and_the_swap_is_atomic(
    server, engine, shop, served_store, monkeypatch, tmp_path
):
    common = dict(features_out=None, model_uri=served_store.model_uri)
    parquet = tmp_path / "scores.parquet"
    run(BatchConfig(orders=shop.orders_path, events=shop.events_path, out=parquet, **common))
    target = f"{server.url}?table=customer_scores"
    from_db = dict(
        orders=location(server, "orders"), events=location(server, "service_events"), **common
    )
    first = run(BatchConfig(out=target, cutoff="2024-07-01", **from_db))

    # The second run (another cutoff: another number of customers) is watched twice: when its
    # rows are all staged, and inside the swap's transaction, once the renames are made.
    seen = {}
    publish, rename = score_tables.StagedScores.publish, score_tables._rename_table

    def publish_watched(self):
        with engine.connect() as reader:
            seen["staged"] = count_run(reader, "customer_scores")
            seen["staging"] = count_run(reader, "customer_scores__staging")
        publish(self)

    def rename_watched(connection, old, new, schema):
        rename(connection, old, new, schema)
        if new != "customer_scores":
            return
        # A reader arriving now waits for the swap's lock; it must then see the new run whole.
        result = {}

        def read():
            with engine.connect() as reader:
                result["during"] = count_run(reader, "customer_scores")

        thread = threading.Thread(target=read)
        thread.start()
        waiting = 0
        with engine.connect() as other:
            for _ in range(600):
                waiting = other.execute(
                    sa.text("select count(*) from pg_locks where not granted")
                ).scalar()
                if waiting or not thread.is_alive():
                    break
                time.sleep(0.05)
        seen["reader"] = (thread, result, waiting)

    monkeypatch.setattr(score_tables.StagedScores, "publish", publish_watched)
    monkeypatch.setattr(score_tables, "_rename_table", rename_watched)
    second = run(BatchConfig(out=target, cutoff="2025-01-01", **from_db))
    thread, result, waiting = seen["reader"]
    thread.join(timeout=60)
    assert waiting == 1  # the reader did wait for the swap's lock

    with engine.connect() as connection:
        runs = pd.read_sql(sa.text("select * from customer_scores_runs"), connection)
        scores = pd.read_sql(sa.text("select * from customer_scores"), connection)
        tables = set(sa.inspect(connection).get_table_names())
    first_id, second_id = runs["run_id"].tolist()
    assert first.scored != second.scored
    assert seen["staged"] == (first.scored, 1, first_id)  # the previous run, whole
    assert seen["staging"] == (second.scored, 1, second_id)
    assert result["during"] == (second.scored, 1, second_id)  # waited, then the new run whole
    assert tables >= {"customer_scores", "customer_scores_runs"}
    assert not {"customer_scores__staging", "customer_scores__previous"} & tables
    with engine.connect() as connection:
        indexes = sa.inspect(connection).get_indexes("customer_scores")
    assert [(i["name"], i["column_names"], i["unique"]) for i in indexes] == [
        ("customer_scores_customer_id", ["customer_id"], True)
    ]

    # The database run at the file run's cutoff: the Parquet file's scores to 1e-6.
    monkeypatch.undo()
    run(BatchConfig(out=target, **from_db))
    with engine.connect() as connection:
        scores = pd.read_sql(sa.text("select * from customer_scores"), connection)
    file = pd.read_parquet(parquet).sort_values("customer_id", ignore_index=True)
    db = scores.drop(columns="run_id").sort_values("customer_id", ignore_index=True)
    assert list(db.columns) == list(SCORE_COLUMNS) and len(db) == len(file)
    for column in SCORE_COLUMNS:
        if column in NUMBER_FIELDS:
            np.testing.assert_allclose(db[column], file[column], rtol=1e-6, atol=1e-6)
        elif column == "cutoff":
            assert (pd.to_datetime(db[column]) == file[column]).all()
        else:
            assert db[column].astype("str").tolist() == file[column].astype("str").tolist(), column
