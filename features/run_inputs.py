"""A run's inputs: the flags that name them, the one loader, and the data end.

Every command that reads a shop's files (``training.train``, ``training.backtest``,
``training.readiness``, ``serving.batch``, ``serving.impact``; ``serving.spark`` reads on Spark
and shares the flags and the refusal) declares its orders, events, columns and strict flags
with :func:`add_input_arguments` and loads them with :func:`load_run_inputs`, so that a file is
read, validated, quarantined and refused the same way whichever command is given it.

An input may also be a database table or query (:mod:`features.database`): ``--orders`` takes
a SQLAlchemy URL with ``?table=``, or the database's URL with ``--orders-sql`` for a query
(likewise ``--events`` / ``--events-sql``); its rows are validated and quarantined as a file's.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from features.database import (
    is_database,
    load_events_table,
    load_orders_table,
    pending_query,
    with_query,
)
from features.files import DataValidationError, input_location
from features.io import LoadResult, load_events, load_orders
from features.presets import MappingFlag, add_preset_argument, split_presets

logger = logging.getLogger(__name__)

#: ``--events none``: no service events. The output flags take ``none`` for "do not write
#: it" (``--features-out none``, ``--store none``); the input flag takes it for "there is
#: none", so that the demo orders, which otherwise bring the demo events, can be scored
#: without them. A file named ``none`` is ``./none``.
NO_EVENTS = "none"


def optional_input(text: str) -> Path | str:
    """An optional input file's flag (an argparse ``type``): a path or URI, or ``none``."""
    return NO_EVENTS if text.lower() == NO_EVENTS else input_location(text)


def given_events(flag: Path | str | None) -> Path | str | None:
    """The events file an ``--events`` flag names: None for ``none`` or no flag."""
    return None if flag is None or flag == NO_EVENTS else flag


class _DatabaseQuery(argparse.Action):
    """``--orders`` / ``--events`` and their ``-sql`` flags, joined in either order.

    The query travels in the input's location (:func:`features.database.with_query`), so every
    command that passes ``--orders`` on reads a query without knowing of it, and the flags add
    nothing else to the parsed arguments (commands build their config from all of them). A
    query given before its database URL waits in the location as one without a database;
    a query never given its URL is refused by the loader, naming what to give.
    """

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        current = getattr(namespace, self.dest, None)
        if option_string is not None and option_string.endswith("-sql"):
            setattr(namespace, self.dest, with_query(current, str(values)))
            return
        waiting = pending_query(current)
        location = values if isinstance(values, Path | str) else None
        setattr(namespace, self.dest, with_query(location, waiting) if waiting else values)


def add_input_arguments(
    parser: argparse.ArgumentParser,
    *,
    orders_default: Path | None = None,
    orders_required: bool = False,
    orders_help: str = "orders CSV/TSV/Parquet",
    events_help: str = "service events CSV/TSV/Parquet, or 'none' (optional)",
    strict: bool = True,
) -> None:
    """Add the flags that name a run's inputs: orders, events, columns and strict.

    ``--strict`` only where the command honours it. ``--orders-sql`` / ``--events-sql`` put a
    query into the ``--orders`` / ``--events`` location (:class:`_DatabaseQuery`), so the
    parsed arguments hold one location per input, as without them.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The command's parser.
    orders_default : Path, optional
        The orders read when ``--orders`` is not given (the demo's, for the serving commands).
    orders_required : bool
        Whether ``--orders`` must be given (the commands that judge a shop's own data).
    orders_help, events_help : str
        What the command does with each file, for ``--help``.
    strict : bool
        Whether the command offers ``--strict`` (fail on any unusable row).
    """
    parser.add_argument(
        "--orders",
        type=input_location,
        action=_DatabaseQuery,
        default=orders_default,
        required=orders_required,
        help=orders_help + ", or a database table (sqlite:///shop.db?table=orders)",
    )
    parser.add_argument(
        "--events",
        type=optional_input,
        action=_DatabaseQuery,
        default=None,
        help=events_help + "; or a database table (postgresql://user@host/shop?table=tickets)",
    )
    for name in ("orders", "events"):
        parser.add_argument(
            f"--{name}-sql",
            dest=name,
            action=_DatabaseQuery,
            default=argparse.SUPPRESS,
            metavar="QUERY",
            help=f"read the {name} from this query on the database --{name} names (its URL "
            "without ?table=)",
        )
    parser.add_argument(
        "--columns",
        default="",
        action=MappingFlag,
        help="column mapping, e.g. customer_id=cust,ordered_at=date",
    )
    add_preset_argument(parser)
    if strict:
        parser.add_argument("--strict", action="store_true", help="fail on any unusable input row")


def data_end(orders: pd.DataFrame) -> pd.Timestamp:
    """The day after the last order: the first cutoff at which all of ``orders`` is known."""
    return orders["ordered_at"].max().normalize() + pd.Timedelta(days=1)


def no_usable_orders(
    path: Path | str, rows_read: int, rows_quarantined: int, problems: Sequence[str]
) -> str:
    """The refusal of an orders file with no usable row: the file, its counts and why.

    The quarantine is named only when rows went there: a file without data rows has no
    quarantine to look for.
    """
    set_aside = f", {rows_quarantined:,} quarantined" if rows_quarantined else ""
    return (
        f"no usable orders in {path}: {rows_read:,} rows read{set_aside} "
        f"({'; '.join(problems) or 'no data rows'})"
    )


class NoUsableOrders(DataValidationError):
    """Raised when no order row of an orders file survives validation."""


@dataclass(frozen=True)
class RunInputs:
    """A run's validated orders and service events (None: the run has none)."""

    orders: LoadResult
    events: LoadResult | None

    @property
    def data_end(self) -> pd.Timestamp:
        """The day after the last usable order (:func:`data_end`)."""
        return data_end(self.orders.frame)

    @property
    def quarantined(self) -> dict[str, int]:
        """Rows set aside on load, by table (``orders``, and ``service_events`` when read)."""
        counts = {"orders": self.orders.rows_quarantined}
        if self.events is not None:
            counts["service_events"] = self.events.rows_quarantined
        return counts


def load_run_inputs(
    orders_path: Path | str,
    events_path: Path | str | None,
    *,
    columns: str = "",
    strict: bool = False,
    quarantine_dir: Path | None = None,
) -> RunInputs:
    """Load and validate a run's orders and service events; refuse orders with no usable row.

    Parameters
    ----------
    orders_path, events_path : Path or str
        The files, or database locations (:func:`features.database.is_database`: a URL with
        ``?table=`` or ``?sql=``), read by :mod:`features.database` and validated the same
        way (``events_path`` None: no service events).
    columns : str
        The column mapping (``canonical=yours,...``), with the presets (``preset=shopify``,
        :mod:`features.presets`) that read an export instead of the mapping.
    strict : bool
        Fail on the first unusable row instead of setting it aside.
    quarantine_dir : Path, optional
        Where the unusable rows are written (``orders.quarantine.csv``, ...) and their counts
        logged; None leaves them to the caller (batch scoring stages them with its outputs,
        the impact notes them, readiness reports them).

    Returns
    -------
    RunInputs

    Raises
    ------
    NoUsableOrders
        When no order row is usable (every row quarantined, or no data rows).
    DataValidationError, FileNotFoundError
        A file that cannot be read as it is (strict: any unusable row).
    """
    presets, columns = split_presets(columns)
    load_o, load_e = (
        load_orders_table if is_database(orders_path) else load_orders,
        load_events_table if is_database(events_path) else load_events,
    )

    def read_events() -> LoadResult | None:
        if events_path and "service_events" in presets:
            return presets["service_events"].load(events_path, strict)
        if events_path:
            return load_e(str(events_path), columns=columns, strict=strict)
        return None

    # The events are read and checked in a thread while the orders are: much of both is Arrow
    # work without the GIL (a 1M-customer load: 6.6-7.2 -> 5.9-6.7 s). An error in
    # the orders is still the one raised when both files have one.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="events") as pool:
        events_read = pool.submit(read_events)
        if "orders" in presets:
            orders = presets["orders"].load(orders_path, strict)
        else:
            orders = load_o(str(orders_path), columns=columns, strict=strict)
        events = events_read.result()
    if quarantine_dir is not None:
        for name, result in (("orders", orders), ("service_events", events)):
            if result is None:
                continue
            result.write_quarantine(quarantine_dir, name)
            logger.info(
                "%s: %d rows read, %d loaded, %d quarantined",
                name,
                result.rows_read,
                result.rows_loaded,
                result.rows_quarantined,
            )
    if orders.frame.empty:
        raise NoUsableOrders(
            no_usable_orders(
                orders_path, orders.rows_read, orders.rows_quarantined, orders.problems
            )
        )
    return RunInputs(orders, events)
