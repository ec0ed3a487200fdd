"""Training on a history too large for one machine: customers sampled, snapshots built on Spark.

How training scales (the README's "Training at scale" says why this path and not XGBoost's own
Spark estimators): the model learns per-customer patterns, and a few hundred thousand customers
already give the boosted parts their ``max_fit_rows`` (400,000 window rows by default), so a
uniform sample of whole customers trains as well as everyone does, while holding a
fraction of the history. What costs time is building the window snapshots: the features and
labels of every sampled customer at each of up to 26 window cutoffs, twice (the evaluation twin
and the serving model). That is spread over Spark.

1. Spark reads and validates the whole history with the project's rules
   (:mod:`features.spark_input`), and keeps a seeded hash sample of whole customers
   (``--sample-customers``; every customer by default).
2. The sample's valid rows are brought to the driver (what the purchase model, the holdout and
   the baselines need) and the cutoffs are planned there, as ``training.train`` plans them.
3. For each fit, Spark builds the window snapshots per group of customers with
   :func:`training.snapshots.window_snapshots` (``applyInPandas``), samples them to
   ``max_fit_rows`` with :func:`training.snapshots.sample_customers`' rule, and only those rows
   come back to the driver. They are the rows the pandas path builds, in the same order.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from features import FeatureSpec, feature_names
from features.io import LoadResult
from features.spark_input import per_customer_group, read_rows, validate_rows, write_quarantine
from features.spark_slices import EVENT_TYPES, ORDER_TYPES, ROW, naive_utc, restore
from training.snapshots import (
    SAMPLE_RESOLUTION,
    SnapshotSource,
    kept_customers,
    sample_share,
    window_snapshots,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

logger = logging.getLogger(__name__)

#: Customers per group of the snapshot pass (one window_snapshots call per group).
CUSTOMERS_PER_GROUP = 50_000


def snapshot_group(
    orders: pd.DataFrame,
    events: pd.DataFrame | None = None,
    *,
    cutoffs: list[pd.Timestamp],
    spec: FeatureSpec,
    window_days: int,
    limit: int,
    total: int,
    seed: int,
) -> pd.DataFrame:
    """``applyInPandas``: one group's window snapshots, kept as the pandas fit would keep them.

    ``total`` is the number of window rows of every group together, so the share kept is the
    one :func:`training.snapshots.sample_customers` computes for the whole (the same
    :func:`~training.snapshots.sample_share` and :func:`~training.snapshots.kept_customers`).
    """
    orders = restore(orders.sort_values(ROW, kind="stable"), ORDER_TYPES)
    if events is not None:
        events = restore(events.sort_values(ROW, kind="stable"), EVENT_TYPES)
    rows = window_snapshots(orders, events, cutoffs, spec, window_days)
    if total > limit:
        rows = rows.loc[kept_customers(rows["customer_id"], sample_share(total, limit), seed)]
    rows = rows.copy()
    rows["customer_id"] = rows["customer_id"].astype("object")
    rows["cutoff"] = rows["cutoff"].astype("datetime64[us]")
    return rows


def _rows_schema(spec: FeatureSpec) -> str:
    names = feature_names(spec)
    return ", ".join(
        ["`customer_id` string", "`cutoff` timestamp"]
        + [f"`{n}` double" for n in names]
        + [
            "`window_value` double",
            "`window_churned` tinyint",
            "`future_orders` long",
            "`days_to_next_order` double",
        ]
    )


@dataclass
class SparkHistory:
    """A validated history on Spark, sampled by customer, and what came back to the driver."""

    spark: SparkSession
    orders: DataFrame
    events: DataFrame | None
    orders_result: LoadResult
    events_result: LoadResult | None
    customers: int
    sampled: int
    groups: int


def load_history(
    spark: SparkSession,
    orders_path: Path | str,
    events_path: Path | str | None,
    *,
    columns: str,
    sample_customers: int | None,
    seed: int,
    quarantine_dir: Path,
) -> SparkHistory:
    """Read, validate and sample the history on Spark; bring the sample's rows to the driver.

    The quarantined rows are written as Parquet datasets under ``quarantine_dir``
    (``orders.quarantine``, ``service_events.quarantine``); their counts are in the returned
    :class:`~features.io.LoadResult` objects' ``problems`` and ``rows_read``.
    """
    from pyspark.sql import functions as F

    from features.database import refuse_on_spark
    from features.io import parse_column_mapping
    from features.presets import refuse_presets_on_spark

    refuse_on_spark({"--orders": orders_path, "--events": events_path})
    refuse_presets_on_spark(columns)
    tick = time.perf_counter()
    mapping = parse_column_mapping(columns)
    orders = validate_rows(
        read_rows(spark, orders_path, mapping, f"orders file {str(orders_path)!r}"), "orders"
    )
    events = (
        validate_rows(
            read_rows(spark, events_path, mapping, f"service events file {str(events_path)!r}"),
            "events",
        )
        if events_path is not None
        else None
    )
    quarantined: dict[str, dict[str, int]] = {}
    for name, validated in (("orders", orders), ("service_events", events)):
        if validated is not None:
            quarantined[name] = write_quarantine(validated, quarantine_dir / f"{name}.quarantine")
    customers = orders.valid.select("customer_id").distinct().count()
    share = (
        SAMPLE_RESOLUTION
        if not sample_customers
        else min(SAMPLE_RESOLUTION, -(-SAMPLE_RESOLUTION * sample_customers // max(customers, 1)))
    )
    # A seeded hash of the id: whole customers, the same ones in every run with this seed.
    keep = F.pmod(F.xxhash64(F.lit(str(seed)), "customer_id"), F.lit(SAMPLE_RESOLUTION)) < share
    valid_orders = orders.valid.where(keep) if share < SAMPLE_RESOLUTION else orders.valid
    valid_events = None
    if events is not None:
        valid_events = events.valid.where(keep) if share < SAMPLE_RESOLUTION else events.valid
    valid_orders = valid_orders.persist()
    sampled = valid_orders.select("customer_id").distinct().count()
    order_frame = _to_driver(valid_orders, ORDER_TYPES)
    event_frame = _to_driver(valid_events, EVENT_TYPES) if valid_events is not None else None
    logger.info(
        "spark: %d customers, %d sampled (%d order rows on the driver) in %.1fs",
        customers,
        sampled,
        len(order_frame),
        time.perf_counter() - tick,
    )
    groups = max(-(-sampled // CUSTOMERS_PER_GROUP), 2 * spark.sparkContext.defaultParallelism)
    events_result = None
    if events is not None and event_frame is not None:
        events_result = _load_result(
            event_frame, events.rows_read, quarantined["service_events"], "service_events"
        )
    return SparkHistory(
        spark,
        valid_orders,
        valid_events,
        _load_result(order_frame, orders.rows_read, quarantined["orders"], "orders"),
        events_result,
        customers,
        sampled,
        groups,
    )


def _to_driver(frame: DataFrame, types: dict[str, str]) -> pd.DataFrame:
    """Valid rows in file order as features.io gives them (``str``, ``datetime64[ns]``)."""
    table = frame.select(*types, ROW).toArrow()
    pandas = table.to_pandas().sort_values(ROW, kind="stable")
    return restore(pandas, types)


def _load_result(
    frame: pd.DataFrame, rows_read: int, quarantined: dict[str, int], name: str
) -> LoadResult:
    """The driver's view of a Spark-validated input: its rows, and the quarantine as counts."""
    problems = [f"{name}: {n:,} rows quarantined ({reason})" for reason, n in quarantined.items()]
    # The quarantined rows themselves are a dataset on Spark's side; the driver keeps one
    # reason per row, so the counts (rows_quarantined, readiness) are the same as pandas'.
    reasons = np.repeat(np.array(list(quarantined), dtype=object), list(quarantined.values()))
    return LoadResult(
        frame=frame,
        quarantine=pd.DataFrame({"reason": pd.Series(reasons, dtype="str")}),
        problems=problems,
        rows_read=rows_read,
    )


def snapshot_source(
    history: SparkHistory, *, spec: FeatureSpec, window_days: int, limit: int, seed: int
) -> SnapshotSource:
    """The window rows of a list of window cutoffs, built on Spark (a ``SnapshotSource``)."""
    window = min(window_days, spec.horizon_days)
    schema = _rows_schema(spec)

    def rows_of(cutoffs: list[pd.Timestamp]) -> pd.DataFrame:
        tick = time.perf_counter()
        total = _window_row_count(history.orders, cutoffs)
        build = functools.partial(
            snapshot_group,
            cutoffs=list(cutoffs),
            spec=spec,
            window_days=window,
            limit=limit,
            total=total,
            seed=seed,
        )
        rows = per_customer_group(history.orders, history.events, history.groups, build, schema)
        frame = rows.toArrow().to_pandas()
        frame["customer_id"] = frame["customer_id"].astype("str")
        frame["cutoff"] = naive_utc(frame["cutoff"])
        # The order window_snapshots gives on the whole history: cutoff by cutoff, customers
        # in id order.
        frame = frame.sort_values(["cutoff", "customer_id"], kind="stable").reset_index(drop=True)
        logger.info(
            "spark: %d window rows of %d at %d cutoffs in %.1fs",
            len(frame),
            total,
            len(cutoffs),
            time.perf_counter() - tick,
        )
        return frame

    return rows_of


def _window_row_count(orders: DataFrame, cutoffs: Iterable[pd.Timestamp]) -> int:
    """Rows window_snapshots gives: per cutoff, the customers with an order before it."""
    from pyspark.sql import functions as F

    first = orders.groupBy("customer_id").agg(F.min("ordered_at").alias("first"))
    expressions = [
        F.sum(
            (F.col("first") < F.to_timestamp(F.lit(c.strftime("%Y-%m-%d %H:%M:%S")))).cast("long")
        ).alias(f"c{i}")
        for i, c in enumerate(cutoffs)
    ]
    row = first.agg(*expressions).collect()[0]
    return int(sum(row[f"c{i}"] or 0 for i in range(len(expressions))))
