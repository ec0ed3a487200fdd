"""A batch run's scores written to a database table, swapped in whole with the run's stamp.

``python -m serving.batch --out 'postgresql://crm@db/shop?table=customer_scores'`` writes the
scores where a CRM or an email tool reads them. A reader never sees half a run:

1. the run's rows are written to a staging table ``<table>__staging`` (created afresh: a
   killed run's leftover is dropped) with the columns of the scores file
   (:data:`serving.run_files.SCORE_COLUMNS`) plus ``run_id``, in chunks (PostgreSQL: COPY),
   and indexed (SQLite, whose index names are database-wide, indexes in step 2);
2. one transaction renames the table in use to ``<table>__previous``, the staging table to
   ``<table>``, and adds the run's stamp (:class:`serving.run_files.RunStamp`, the row count,
   the time) to ``<table>_runs``; until it commits, readers see the previous run whole, and
   after it, this one (PostgreSQL resolves a waiting reader's table name again once the
   rename commits);
3. ``<table>__previous`` is dropped.

A run that fails before step 2 leaves the previous run's table and stamp as they were. A
table of that name that this command did not write is refused, never replaced. The
table has a unique index on ``customer_id`` (``<table>_customer_id``). Only databases whose
schema changes are transactional are written (PostgreSQL and SQLite): elsewhere the renames
could not be one step.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import DBAPIError

from features.database import connect, database_input, driver_error, is_database
from features.files import DataValidationError
from serving.run_files import NUMBER_FIELDS, SCORE_COLUMNS, RunStamp

logger = logging.getLogger(__name__)

#: Databases whose DDL is transactional, so the swap is one step.
WRITABLE_DIALECTS: tuple[str, ...] = ("postgresql", "sqlite")
#: Suffixes of the tables beside the scores table.
STAGING, PREVIOUS, RUNS = "__staging", "__previous", "_runs"
#: Longest table name PostgreSQL keeps (longer ones are cut, and would collide).
MAX_NAME = 63
#: Rows inserted per statement batch.
INSERT_ROWS = 10_000


@dataclass(frozen=True)
class ScoreTable:
    """Where a run's scores go in a database.

    Attributes
    ----------
    url : sqlalchemy.engine.URL
        The database (no password: refused as for inputs).
    name : str
        The scores table.
    schema : str or None
        Its schema (``?table=crm.customer_scores``), None for the default.
    """

    url: URL
    name: str
    schema: str | None

    def __str__(self) -> str:
        qualified = f"{self.schema}.{self.name}" if self.schema else self.name
        return f"table {qualified!r} in {self.url.render_as_string(hide_password=True)}"


def score_table(location: str) -> ScoreTable:
    """Parse ``--out``'s database URL (with ``?table=``) into a :class:`ScoreTable`.

    Raises
    ------
    DataValidationError
        A URL SQLAlchemy cannot use, a password in it, a query instead of a table, a
        database other than PostgreSQL or SQLite, a table name too long for its companions.
    """
    target = database_input(location, flag="--out")
    if target.table is None:
        raise DataValidationError(
            "--out names a query; expected a table to write the scores to, e.g. "
            "postgresql://user@host/shop?table=customer_scores"
        )
    backend = target.url.get_backend_name()
    if backend not in WRITABLE_DIALECTS:
        raise DataValidationError(
            f"--out: scores are written to {' or '.join(WRITABLE_DIALECTS)} only, where the "
            f"run's table is swapped in by one transaction; {backend!r} commits each schema "
            "change on its own, so a reader could see no table or half a run"
        )
    schema, _, name = target.table.rpartition(".")
    if len(name) + len(PREVIOUS) > MAX_NAME:
        raise DataValidationError(
            f"--out: table name {name!r} is too long; expected at most "
            f"{MAX_NAME - len(PREVIOUS)} characters (its staging and previous tables add "
            f"{PREVIOUS!r})"
        )
    return ScoreTable(target.url, name, schema or None)


def check_not_an_input(target: ScoreTable, inputs: Mapping[str, Path | str | None]) -> None:
    """Refuse scores written over one of the run's input tables (it would replace it)."""
    for flag, location in inputs.items():
        if not is_database(location):
            continue
        with contextlib.suppress(DataValidationError):
            source = database_input(str(location), flag=flag)
            same_database = source.url == target.url
            qualified = f"{target.schema}.{target.name}" if target.schema else target.name
            if same_database and source.table == qualified:
                raise ValueError(
                    f"--out {target} is the input {flag}: writing the scores would replace it; "
                    "expected another table"
                )


def score_columns(metadata: sa.MetaData, target: ScoreTable, name: str) -> sa.Table:
    """The scores table's definition (the README's "Scores in a database" lists it)."""
    kinds: dict[str, Any] = {"cutoff": sa.DateTime(), "horizon_days": sa.Integer()}
    kinds.update(dict.fromkeys(NUMBER_FIELDS, sa.Float(53)))
    columns = [sa.Column("customer_id", sa.Text, nullable=False)]
    columns += [sa.Column(c, kinds.get(c, sa.Text())) for c in SCORE_COLUMNS[1:]]
    columns.append(sa.Column("run_id", sa.Text, nullable=False))
    return sa.Table(name, metadata, *columns, schema=target.schema)


def runs_columns(metadata: sa.MetaData, target: ScoreTable) -> sa.Table:
    """``<table>_runs``: one row per published run, its stamp, row count and time."""
    stamp = [sa.Column(f.name, sa.Text, nullable=False) for f in fields(RunStamp)]
    return sa.Table(
        f"{target.name}{RUNS}",
        metadata,
        *stamp,
        sa.Column("rows", sa.BigInteger, nullable=False),
        sa.Column("published_at", sa.DateTime, nullable=False),
        schema=target.schema,
    )


class StagedScores:
    """A run's scores in ``<table>__staging``, to be swapped in by :meth:`publish`.

    Use :func:`stage_score_table`; leaving its block without publishing drops the staging
    table.
    """

    def __init__(self, target: ScoreTable, engine: Engine, stamp: RunStamp) -> None:
        self.target = target
        self.engine = engine
        self.stamp = stamp
        self.rows = 0
        self.published = False
        self.metadata = sa.MetaData()
        self.staging = score_columns(self.metadata, target, f"{target.name}{STAGING}")
        self.runs = runs_columns(self.metadata, target)

    def write(self, frames: Iterable[pd.DataFrame]) -> None:
        """Create the staging table afresh, insert the frames' rows, and index it.

        Raises
        ------
        DataValidationError
            When the table exists but no run of this command wrote it (it would be replaced).
        """
        with self.engine.begin() as connection:
            self._refuse_a_table_not_ours(connection)
            self.staging.drop(connection, checkfirst=True)  # a killed run's leftover
            self.staging.create(connection)
        for frame in frames:
            rows = frame[list(SCORE_COLUMNS)].assign(run_id=self.stamp.run_id)
            with self.engine.begin() as connection:
                if connection.dialect.name == "postgresql":
                    _copy_rows(connection, self.staging, rows)
                else:
                    rows.to_sql(
                        self.staging.name,
                        connection,
                        schema=self.target.schema,
                        if_exists="append",
                        index=False,
                        chunksize=INSERT_ROWS,
                    )
            self.rows += len(rows)
        if self.engine.dialect.name == "postgresql":
            # Built before the swap, so the swap's transaction only renames. SQLite names its
            # indexes database-wide and cannot rename one: it builds it in the swap.
            with self.engine.begin() as connection:
                _index(self.staging, self.staging.name).create(connection)

    def _refuse_a_table_not_ours(self, connection: Connection) -> None:
        """A table of that name that has no ``run_id`` and no ``<table>_runs`` is someone else's."""
        inspector = sa.inspect(connection)
        name, schema = self.target.name, self.target.schema
        if not inspector.has_table(name, schema=schema):
            return
        columns = {column["name"] for column in inspector.get_columns(name, schema=schema)}
        if "run_id" in columns and inspector.has_table(self.runs.name, schema=schema):
            return
        raise DataValidationError(
            f"--out {self.target} exists and was not written by serving.batch (no run_id "
            f"column and no {self.runs.name} table); the run would replace it. Name another "
            "table, or drop this one if it is an old copy of the scores"
        )

    def publish(self) -> None:
        """Swap the staging table in and record the stamp, in one transaction; drop the old."""
        name, schema = self.target.name, self.target.schema
        with self.engine.begin() as connection:
            inspector = sa.inspect(connection)
            self.runs.create(connection, checkfirst=True)
            had_table = inspector.has_table(name, schema=schema)
            postgresql = connection.dialect.name == "postgresql"
            if had_table:
                _drop(connection, f"{name}{PREVIOUS}", schema)
                _rename_table(connection, name, f"{name}{PREVIOUS}", schema)
                if postgresql:
                    _rename_index(connection, name, f"{name}{PREVIOUS}", schema)
                else:
                    _drop_index(connection, name, schema)
            _rename_table(connection, self.staging.name, name, schema)
            if postgresql:
                _rename_index(connection, self.staging.name, name, schema)
            else:
                _index(score_columns(sa.MetaData(), self.target, name), name).create(connection)
            connection.execute(
                self.runs.insert().values(
                    **{f.name: getattr(self.stamp, f.name) for f in fields(RunStamp)},
                    rows=self.rows,
                    published_at=pd.Timestamp.now(tz="UTC").tz_localize(None).to_pydatetime(),
                )
            )
        self.published = True
        if had_table:
            with self.engine.begin() as connection:
                _drop(connection, f"{name}{PREVIOUS}", schema)
        logger.info("published %d scores to %s (run %s)", self.rows, self.target, self.stamp.run_id)

    def discard(self) -> None:
        """Drop the staging table of a run that was not published."""
        if self.published:
            return
        with self.engine.begin() as connection:
            self.staging.drop(connection, checkfirst=True)


@contextlib.contextmanager
def stage_score_table(target: ScoreTable, stamp: RunStamp) -> Iterator[StagedScores]:
    """A :class:`StagedScores` for ``target``; its staging table is dropped unless published.

    Raises
    ------
    DatabaseWriteError
        When the database cannot be reached or refuses a statement (naming the table).
    """
    engine = connect(target.url, flag="--out", reading=False)
    staged = StagedScores(target, engine, stamp)
    try:
        yield staged
    except (DBAPIError, pd.errors.DatabaseError) as err:
        reason = driver_error(err)
        raise DatabaseWriteError(f"{target}: {reason}; the previous run is kept") from err
    finally:
        with contextlib.suppress(DBAPIError):
            # Best effort: the connection may be what failed; the next run drops it anyway.
            staged.discard()
        engine.dispose()


class DatabaseWriteError(ValueError):
    """Raised when the scores cannot be written to their table (the previous run is kept)."""


def _copy_rows(connection: Connection, table: sa.Table, rows: pd.DataFrame) -> None:
    """PostgreSQL: ``rows`` appended to ``table`` with COPY (psycopg's, each value typed).

    About 3x faster than pandas' batched INSERTs on 100k score rows (bench/database_bench.py).
    """
    preparer = connection.dialect.identifier_preparer
    names = ", ".join(preparer.quote(str(name)) for name in rows.columns)
    target = _quoted(connection, table.name, table.schema)
    values = rows.astype(object).where(rows.notna(), None)  # NaN and NA as NULL
    driver = connection.connection.driver_connection
    assert driver is not None
    with driver.cursor() as cursor, cursor.copy(f"COPY {target} ({names}) FROM STDIN") as copy:
        for row in values.itertuples(index=False, name=None):
            copy.write_row(row)


def _index(table: sa.Table, name: str) -> sa.Index:
    """The unique index on ``customer_id``, named after the table it belongs to."""
    return sa.Index(f"{name}_customer_id", table.c.customer_id, unique=True)


def _quoted(connection: Connection, name: str, schema: str | None = None) -> str:
    preparer = connection.dialect.identifier_preparer
    return (
        f"{preparer.quote_schema(schema)}.{preparer.quote(name)}"
        if schema
        else preparer.quote(name)
    )


def _drop(connection: Connection, name: str, schema: str | None) -> None:
    connection.execute(sa.text(f"DROP TABLE IF EXISTS {_quoted(connection, name, schema)}"))


def _rename_table(connection: Connection, old: str, new: str, schema: str | None) -> None:
    # The new name is never schema-qualified: a table keeps its schema when renamed.
    quoted_new = connection.dialect.identifier_preparer.quote(new)
    connection.execute(
        sa.text(f"ALTER TABLE {_quoted(connection, old, schema)} RENAME TO {quoted_new}")
    )


def _rename_index(connection: Connection, old: str, new: str, schema: str | None) -> None:
    """PostgreSQL: the index of table ``old`` named after table ``new``."""
    quoted_new = connection.dialect.identifier_preparer.quote(f"{new}_customer_id")
    connection.execute(
        sa.text(
            f"ALTER INDEX IF EXISTS {_quoted(connection, f'{old}_customer_id', schema)} "
            f"RENAME TO {quoted_new}"
        )
    )


def _drop_index(connection: Connection, table: str, schema: str | None) -> None:
    """SQLite: free the index name of table ``table`` for the table that takes its place."""
    index = _quoted(connection, f"{table}_customer_id", schema)
    connection.execute(sa.text(f"DROP INDEX IF EXISTS {index}"))
