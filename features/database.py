"""Orders and service events read from a database: a table or a query, streamed in chunks.

An input may be a SQLAlchemy database URL instead of a file. It names a table with
``?table=`` (``sqlite:///shop.db?table=orders``, ``postgresql://shop@db/shop?table=sales.orders``)
or, with ``--orders-sql`` / ``--events-sql``, a query whose columns are the rows
(``--orders postgresql://shop@db/shop --orders-sql "select ..."``; the query travels in the
location as ``?sql=``). The rows are fetched in chunks of :data:`CHUNK_ROWS` from a
server-side cursor (``stream_results``), so the driver never holds the whole result besides
the frame, and then go through :mod:`features.io`'s column mapping, validation and quarantine
exactly as a Parquet file's rows do: the same messages, the same quarantine, the same counts
(``source_row`` is the row's 0-based place in the result; order a query with ``order by`` for
stable row numbers and synthesised order ids).

Refused with a message naming the table (and column): a URL SQLAlchemy cannot use, a database
that cannot be reached, a table that does not exist (the tables there are listed), a column
whose type cannot hold its contract type (a boolean or timestamp amount), a read that fails
part-way (a dropped connection; nothing is loaded). A password in the URL is refused too: the
location is written to the run's stamp, logs and MLflow, and a command line is visible to
every user of the machine; libpq reads it from ``PGPASSWORD`` or ``~/.pgpass``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus, unquote_plus

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, NoSuchTableError
from sqlalchemy.pool import NullPool

from features.files import DataValidationError
from features.io import (
    EVENT_OPTIONAL,
    EVENT_REQUIRED,
    ORDER_OPTIONAL,
    ORDER_REQUIRED,
    LoadResult,
    parse_column_mapping,
    renames_for,
    validate_events,
    validate_orders,
)

logger = logging.getLogger(__name__)

#: Rows fetched from the server at a time.
CHUNK_ROWS = 50_000
#: The URL parameters this module reads (SQLAlchemy would pass others on to the driver).
TABLE_PARAMETER, QUERY_PARAMETER = "table", "sql"
#: The location of a query given without a database (``--orders-sql`` without a URL in
#: ``--orders``): refused on reading, with what to give.
NO_DATABASE = "no-database://"

#: The contract's columns by the kind of value they hold, for the column type check.
_NUMBER_COLUMNS = frozenset({"amount", "score", "resolution_hours"})
_DATE_COLUMNS = frozenset({"ordered_at", "promised_at", "delivered_at", "occurred_at"})
_TEXT_COLUMNS = frozenset({"customer_id", "order_id", "kind", "status"})


class DatabaseReadError(DataValidationError):
    """Raised when a database input cannot be read: bad URL, unreachable, failed part-way."""


@dataclass(frozen=True)
class DatabaseInput:
    """A database input: where the database is, and the table or query that holds the rows.

    Attributes
    ----------
    url : sqlalchemy.engine.URL
        The database, without this module's parameters.
    table : str or None
        The table (``schema.table`` for another schema than the default).
    query : str or None
        The query, when there is no table.
    """

    url: URL
    table: str | None
    query: str | None

    def describe(self, kind: str) -> str:
        """How messages name the input: ``orders table 'orders' in sqlite:///shop.db``."""
        where = self.url.render_as_string(hide_password=True)
        if self.table is not None:
            return f"{kind} table {self.table!r} in {where}"
        return f"{kind} query in {where}"


def is_database(location: Path | str | None) -> bool:
    """Whether an input location is a database (a URL of a dialect SQLAlchemy knows).

    A location with ``?table=`` or ``?sql=`` is one whatever its scheme, so that a misspelt
    dialect is refused as such rather than looked for as a file. ``s3a://`` and other file
    URIs are not databases.
    """
    if location is None or isinstance(location, Path):
        return False
    text = str(location)
    if text.startswith(NO_DATABASE):
        return True
    if "://" not in text:
        return False
    if f"?{TABLE_PARAMETER}=" in text or f"?{QUERY_PARAMETER}=" in text:
        return True
    if f"&{TABLE_PARAMETER}=" in text or f"&{QUERY_PARAMETER}=" in text:
        return True
    try:
        sa.engine.make_url(text).get_dialect()
    except (ArgumentError, NoSuchModuleError, ImportError, ValueError):
        return False
    return True


def refuse_on_spark(locations: dict[str, Path | str | None]) -> None:
    """Refuse database inputs in a Spark command, which reads files only.

    Raises
    ------
    DataValidationError
        Naming the flag and what to do instead.
    """
    for flag, location in locations.items():
        if is_database(location):
            raise DataValidationError(
                f"{flag} names a database, which the Spark commands do not read; score it with "
                "python -m serving.batch (make score), or export the table to Parquet"
            )


def with_query(location: Path | str | None, query: str) -> str:
    """``location`` (a database URL) with ``query`` as the rows to read (``?sql=``).

    A location that is not a database URL gives :data:`NO_DATABASE` with the query, which
    :func:`database_input` refuses naming what to give.
    """
    text = str(location) if location is not None else ""
    if not is_database(text) or text.startswith(NO_DATABASE):
        return f"{NO_DATABASE}?{QUERY_PARAMETER}={quote_plus(query)}"
    separator = "&" if "?" in text else "?"
    return f"{text}{separator}{QUERY_PARAMETER}={quote_plus(query)}"


def pending_query(location: object) -> str | None:
    """The query of a location made by :func:`with_query` without a database, else None."""
    if not isinstance(location, str) or not location.startswith(NO_DATABASE):
        return None
    return unquote_plus(location.partition(f"?{QUERY_PARAMETER}=")[2])


def database_input(location: str, *, flag: str = "--orders") -> DatabaseInput:
    """Parse a database input location into its URL and its table or query.

    Raises
    ------
    DataValidationError
        Naming ``flag``: a URL SQLAlchemy cannot parse or has no dialect for, a password in
        the URL, neither or both of a table and a query, a query without a database.
    """
    if location.startswith(NO_DATABASE):
        raise DataValidationError(
            f"{flag}-sql names a query but {flag} names no database; give the database's URL "
            f"too, e.g. {flag} postgresql://user@host/shop {flag}-sql 'select ...'"
        )
    try:
        url = sa.engine.make_url(location)
    except ArgumentError as err:
        raise DataValidationError(
            f"{flag} {location!r} is not a database URL ({err}); expected e.g. "
            "sqlite:///shop.db?table=orders or postgresql://user@host/shop?table=orders"
        ) from err
    try:
        url.get_dialect()
    except (NoSuchModuleError, ImportError) as err:
        raise DataValidationError(
            f"{flag}: no database driver for {url.drivername!r} ({err}); expected a SQLAlchemy "
            "URL such as sqlite:///shop.db?table=orders or postgresql://user@host/shop?table=..."
        ) from err
    if url.password is not None:
        raise DataValidationError(
            f"{flag}: the URL holds a password, which would be written to the run's stamp and "
            "logs and is visible in the process list; leave it out of the URL and give it to "
            "the driver (PostgreSQL: PGPASSWORD or ~/.pgpass)"
        )
    params = dict(url.query)
    table = params.pop(TABLE_PARAMETER, None)
    query = params.pop(QUERY_PARAMETER, None)
    if isinstance(table, tuple) or isinstance(query, tuple):
        raise DataValidationError(f"{flag}: give ?{TABLE_PARAMETER}= or ?{QUERY_PARAMETER}= once")
    if (table is None) == (query is None):
        both = "both a table and a query" if table is not None else "neither a table nor a query"
        raise DataValidationError(
            f"{flag} {url.render_as_string(hide_password=True)!r} names {both}; expected one: "
            f"?{TABLE_PARAMETER}=orders in the URL, or {flag}-sql 'select ...'"
        )
    url = url.difference_update_query([TABLE_PARAMETER, QUERY_PARAMETER])
    return DatabaseInput(url=url, table=table or None, query=query or None)


def connect(url: URL, *, flag: str, reading: bool = True) -> Engine:
    """An engine on ``url`` that keeps no connection once the work is done.

    Reading a SQLite file that does not exist is refused (SQLite would create an empty one,
    and the message would be a missing table).
    """
    if reading and url.get_backend_name() == "sqlite":
        database = url.database or ""
        if database not in ("", ":memory:") and not database.startswith("file:"):
            if not Path(database).exists():
                raise FileNotFoundError(f"{flag}: database file {database!r} does not exist")
    engine = sa.create_engine(url, poolclass=NullPool)
    if url.get_backend_name() == "sqlite":
        _transactional_sqlite(engine)
    return engine


def _transactional_sqlite(engine: Engine) -> None:
    """Make SQLite's transactions hold schema changes too (SQLAlchemy's documented recipe).

    Python's sqlite3 module opens a transaction only before INSERT/UPDATE/DELETE, so a
    ``DROP`` or ``ALTER TABLE ... RENAME`` would commit on its own: a score table's swap would
    not be one step. The driver's own transaction handling is turned off and every SQLAlchemy
    transaction begins with ``BEGIN``.
    """

    @sa.event.listens_for(engine, "connect")
    def _no_driver_transactions(connection: Any, record: object) -> None:
        connection.isolation_level = None

    @sa.event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN")


def load_orders_table(
    location: str, *, columns: str | dict[str, str] | None = None, strict: bool = False
) -> LoadResult:
    """Read and validate orders from a database; see :func:`features.io.load_orders`.

    Parameters
    ----------
    location : str
        The database URL with ``?table=`` or ``?sql=`` (:func:`database_input`).
    columns : str or dict, optional
        The column mapping, as for a file.
    strict : bool
        Raise on any unusable row instead of quarantining it.

    Returns
    -------
    LoadResult
        As for a Parquet file: ``source_row`` is the row's place in the result, ``lines`` None.

    Raises
    ------
    DataValidationError
        Naming the table and column (see the module docstring); :class:`DatabaseReadError`
        when the database cannot be read.
    """
    source = database_input(location, flag="--orders")
    label = source.describe("orders")
    raw = read_rows(source, label, columns, ORDER_REQUIRED + ORDER_OPTIONAL, flag="--orders")
    return validate_orders(raw, source=label, strict=strict)


def load_events_table(
    location: str, *, columns: str | dict[str, str] | None = None, strict: bool = False
) -> LoadResult:
    """Read and validate service events from a database; see :func:`load_orders_table`."""
    source = database_input(location, flag="--events")
    label = source.describe("service events")
    raw = read_rows(source, label, columns, EVENT_REQUIRED + EVENT_OPTIONAL, flag="--events")
    return validate_events(raw, source=label, strict=strict)


def read_rows(
    source: DatabaseInput,
    label: str,
    columns: str | dict[str, str] | None,
    contract: tuple[str, ...],
    *,
    flag: str,
) -> pd.DataFrame:
    """The rows of a table or query with the mapping's names, as a Parquet file's would be.

    Fetched :data:`CHUNK_ROWS` at a time from a server-side cursor; each chunk is renamed and
    its column types checked (:func:`check_column_types`) as it arrives, so a wrong type stops
    the read at the first chunk.

    Raises
    ------
    DataValidationError
        A missing table, a column of a type that cannot hold its contract type.
    DatabaseReadError
        The database cannot be reached, or the read failed part-way (nothing is returned).
    """
    mapping = (
        parse_column_mapping(columns) if isinstance(columns, str) or columns is None else columns
    )
    engine = connect(source.url, flag=flag)
    chunks: list[pd.DataFrame] = []
    rows = 0
    try:
        opened = engine.connect()
    except DBAPIError as err:
        engine.dispose()
        raise DatabaseReadError(
            f"{label}: cannot connect ({driver_error(err)}); check the URL, that the server "
            "is up and that this user may connect"
        ) from err
    try:
        with opened as connection:
            statement = _statement(connection, source, label)
            streamed = connection.execution_options(stream_results=True, max_row_buffer=CHUNK_ROWS)
            for chunk in pd.read_sql(statement, streamed, chunksize=CHUNK_ROWS):
                chunk = chunk.rename(columns=renames_for(list(chunk.columns), mapping, label))
                check_column_types(chunk, label, contract)
                chunks.append(chunk)
                rows += len(chunk)
    except (DBAPIError, pd.errors.DatabaseError) as err:
        raise DatabaseReadError(
            f"{label}: reading failed after {rows:,} rows ({driver_error(err)}); "
            "nothing was loaded, check the database and the connection and run again"
        ) from err
    finally:
        engine.dispose()
    logger.info("%s: %d rows read in %d chunk(s)", label, rows, len(chunks))
    if not chunks:
        return pd.DataFrame()
    return pd.concat(chunks, ignore_index=True) if len(chunks) > 1 else chunks[0]


def driver_error(err: Exception) -> str:
    """What the database said: the driver's error class and first line.

    pandas wraps an error of a statement's execution in its own, SQLAlchemy in its own; the
    driver's is the one that says what happened.
    """
    cause = err if isinstance(err, DBAPIError) else err.__cause__
    driver = cause.orig if isinstance(cause, DBAPIError) else cause
    lines = str(driver or err).strip().splitlines()
    return f"{type(driver or err).__name__}: {lines[0] if lines else ''}"


def _statement(connection: Connection, source: DatabaseInput, label: str) -> sa.Executable:
    """The ``select`` of the table (reflected, so a missing one is named) or the query."""
    if source.query is not None:
        return sa.text(source.query)
    assert source.table is not None
    schema, _, name = source.table.rpartition(".")
    try:
        table = sa.Table(name, sa.MetaData(), schema=schema or None, autoload_with=connection)
    except NoSuchTableError as err:
        known = sa.inspect(connection).get_table_names(schema=schema or None)
        raise DataValidationError(
            f"{label} does not exist; the tables there are: {', '.join(sorted(known)) or '(none)'}"
        ) from err
    return sa.select(table)


def check_column_types(chunk: pd.DataFrame, label: str, contract: tuple[str, ...]) -> None:
    """Refuse a contract column whose database type cannot hold what the contract says.

    Values of a wrong kind in a column that can hold the right one (text in an amount column
    of type text) are the validation's: their rows are quarantined and counted as a file's.
    What is refused here is a column no value of which could be right but that validation
    would read as if it were: a boolean amount (0 or 1), a timestamp amount (nanoseconds), a
    boolean or timestamp id, a boolean date.
    """
    for name in contract:
        if name not in chunk.columns:
            continue
        values = chunk[name]
        if isinstance(values, pd.DataFrame):
            continue  # a repeated name: the validation names it
        boolean = pd.api.types.is_bool_dtype(values)
        dated = pd.api.types.is_datetime64_any_dtype(values) or isinstance(
            values.dtype, pd.PeriodDtype
        )
        if name in _NUMBER_COLUMNS and (boolean or dated):
            wrong, expected = values.dtype, "a number (integer, numeric, real) or text"
        elif name in _TEXT_COLUMNS and (boolean or dated):
            wrong, expected = values.dtype, "text or an integer"
        elif name in _DATE_COLUMNS and boolean:
            wrong, expected = values.dtype, "a timestamp, a date, ISO 8601 text or yyyymmdd"
        else:
            continue
        raise DataValidationError(
            f"{label}: column {name!r} has type {_type_name(wrong)}; expected {expected}. "
            "Cast it in a query (--orders-sql / --events-sql) or map another column to it"
        )


def _type_name(dtype: object) -> str:
    """A column's kind as a user knows it (``boolean``, ``timestamp``)."""
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if isinstance(dtype, np.dtype | pd.DatetimeTZDtype) and pd.api.types.is_datetime64_any_dtype(
        dtype
    ):
        return "timestamp"
    return str(dtype)
