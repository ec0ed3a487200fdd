"""Distributed batch scoring on Apache Spark, with the project's own validation, features and model.

``python -m serving.spark`` scores a customer base that outgrows one machine the way
``python -m serving.batch`` scores one that fits. Nothing is implemented twice: Spark reads the
files and moves rows; every rule runs in the project's pandas code, on slices of the input.

1. **Read** CSV/TSV (values as text, as :mod:`features.files` reads them) or Parquet (a file or
   a folder of part files) with Spark, and number the rows in the order read (``source_row``).
2. **Validate** each slice with :func:`features.io.validate_orders` /
   :func:`~features.io.validate_events`, given the rows' numbers, so the quarantine's
   ``source_row`` and the ``row-N`` ids of orders without one are those of the whole file.
   The one rule that needs all rows, a repeated ``order_id`` (the first in the file is kept),
   is a Spark window over the valid rows. Lines Spark cannot split are quarantined as
   ``malformed line``.
3. **Score** per group of whole customers: the valid rows are grouped by a hash of the
   customer id (orders and events cogrouped), and each group is one
   :func:`features.build_features` + :func:`serving.scoring.score_frame` call, like one chunk
   of ``serving.batch``. The model is saved once by the driver, shipped with
   ``SparkContext.addFile`` and loaded once per Python worker.
4. **Rank** in the whole base: the CLVs are collected on the driver (8 bytes a customer) for
   :class:`serving.segments.Base`, which is broadcast; each partition is finished with
   :func:`serving.batch.base_scoring.finish_scores`.

Outputs: the scores as a Parquet dataset at ``--out`` (the columns of ``serving.batch``), the
quarantined rows and the rejected customers as datasets beside it, and with
``--features-out`` the online feature table the service answers from (one Parquet file with the
run's stamp, as ``serving.batch`` writes it) and the scores beside it, so ``make serve``
answers lookups from this run.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import logging
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from features.database import refuse_on_spark
from features.io import (
    parse_column_mapping,
)
from features.presets import refuse_presets_on_spark
from features.run_inputs import NoUsableOrders, no_usable_orders
from features.spark_input import (
    per_customer_group,
    read_rows,
    spark_session,
    validate_rows,
    write_quarantine,
)
from features.spark_slices import naive_utc
from serving.base_inputs import (
    DEFAULT_MODEL_URI,
    DEMO_EVENTS,
    DEMO_ORDERS,
    add_input_arguments,
    chosen_events,
    chosen_model_uri,
    resolve_cutoff,
)
from serving.batch.base_scoring import (
    REJECT_NO_HISTORY,
    REJECT_NO_ORDERS,
    REJECT_QUARANTINED,
    BatchSummary,
)
from serving.batch.base_scoring import print_summary as print_batch_summary
from serving.batch.spark_worker import (
    FEATURE_PREFIX,
    finish_partition,
    group_schema,
    score_group,
)
from serving.lookup_store import STORE_NAME, is_redis, stage_lookup_store, store_location
from serving.run_files import (
    NUMBER_FIELDS,
    SCORE_COLUMNS,
    SCORED_FIELDS,
    SCORES_NAME,
    TEXT_FIELDS,
    RunFiles,
    RunStamp,
    store_label,
    sweep_stale_work,
    with_path,
    write_scores,
)
from serving.scoring import REASON_MODES, SEGMENT_COLUMNS, ScoreSettings
from serving.segments import Base
from training import tracking
from training.config import check_run_paths, run_entrypoint
from training.profile import DEFAULT_LEVEL

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

logger = logging.getLogger(__name__)

#: Session settings every run needs, whatever the cluster's defaults:
#: - timestamps are naive UTC in the contract, so Spark must not shift them to a local zone;
#: - Parquet written by pandas stores nanosecond timestamps, which Spark cannot read as
#:   timestamps: it reads them as int64 nanoseconds and the slices convert them back;
#: - Arrow moves rows between the JVM and the Python workers (applyInPandas needs it).
#: serving.batch (whose default is 200,000); smaller groups spread the work over more cores.
CUSTOMERS_PER_GROUP = 50_000
STAMP_NAME = "_customer_value_run.json"


# --- the run -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SparkConfig:
    """What to score, with which model and Spark master, and where the outputs go."""

    orders: Path | str = DEMO_ORDERS
    events: Path | str | None = DEMO_EVENTS
    columns: str = ""
    cutoff: str = "latest"
    out: Path = Path("models/scores/spark/scores")
    features_out: Path | None = None
    model_uri: str = DEFAULT_MODEL_URI
    master: str | None = None
    store: str | None = None
    groups: int | None = None
    reasons: str = "approximate"
    interval: float = DEFAULT_LEVEL
    discount_rate: float = 0.0

    def score_settings(self) -> ScoreSettings:
        """How to score (checked: a bad level or rate raises ValueError naming it)."""
        return ScoreSettings(self.reasons, self.interval, self.discount_rate)


@dataclass
class SparkSummary(BatchSummary):
    """What a Spark run did (the customer counts add up as in serving.batch), and its inputs."""

    quarantined: dict[str, dict[str, int]] = field(default_factory=dict)
    rows_read: dict[str, int] = field(default_factory=dict)
    groups: int = 0

    @property
    def rejected_file(self) -> Path | None:
        """The dataset of the customers the run could not score, with the reason."""
        return rejected_dataset(self.out) if self.out is not None else None


def quarantine_path(out: Path, name: str) -> Path:
    """The dataset of an input's quarantined rows, beside the scores dataset ``out``."""
    return out.with_name(f"{out.name}.{name}.quarantine")


def rejected_dataset(out: Path) -> Path:
    """The dataset of the customers a run could not score, with the reason."""
    return out.with_name(f"{out.name}.rejected")


def run_paths(config: SparkConfig) -> tuple[dict[str, Path | str | None], dict[str, Path | None]]:
    """What a Spark run reads and writes, named as its user knows them (for the check)."""
    store = _store_target(config)
    inputs: dict[str, Path | str | None] = {
        "--orders": config.orders,
        "--events": config.events,
        "the MLflow tracking store": tracking.store_path(tracking.active_uri()),
    }
    outputs: dict[str, Path | None] = {
        "--out": config.out,
        "the rejected dataset (from --out)": rejected_dataset(config.out),
        "the online dataset (from --out)": online_dataset(config.out),
        **{
            f"the {name} quarantine (from --out)": quarantine_path(config.out, name)
            for name in ("orders", "service_events")
        },
        "--features-out": config.features_out,
        f"the scores beside --features-out ({SCORES_NAME})": (
            config.features_out.with_name(SCORES_NAME) if config.features_out else None
        ),
        "--store": Path(store) if store is not None and not is_redis(store) else None,
    }
    return inputs, outputs


def run(config: SparkConfig, spark: SparkSession | None = None) -> SparkSummary:
    """Score every customer with an order before the cutoff on Spark; see the module docstring.

    As in :func:`serving.batch.base_scoring.run`, the outputs are checked against the inputs and
    each other before anything is written, and are staged and published together at the end
    (:class:`serving.run_files.RunFiles`; the datasets are folders, renamed as a whole).
    """
    settings = config.score_settings()
    refuse_on_spark({"--orders": config.orders, "--events": config.events})
    refuse_presets_on_spark(config.columns)
    check_run_paths(*run_paths(config))
    # After the checks: a bad path is refused as such also where the spark extra is missing.
    from pyspark.sql import functions as F

    timings: dict[str, float] = {}
    tick = time.perf_counter()
    spark = spark or spark_session(config.master)
    timings["session"] = time.perf_counter() - tick

    tick = time.perf_counter()
    model, info = tracking.open_model(config.model_uri)
    ship = Path(tempfile.mkdtemp(prefix="customer-value-model-"))
    model_name = f"model-{uuid.uuid4().hex[:12]}"
    model.save(ship / model_name)
    spark.sparkContext.addFile(str(ship / model_name), recursive=True)
    timings["load_model"] = time.perf_counter() - tick
    store = _store_target(config)
    store_file = Path(store) if store is not None and not is_redis(store) else None
    for folder in {
        config.out.parent,
        *([config.features_out.parent] if config.features_out else []),
        *([store_file.parent] if store_file else []),
    }:
        sweep_stale_work(folder)

    with contextlib.ExitStack() as stack:
        files = stack.enter_context(RunFiles())
        tick = time.perf_counter()
        mapping = parse_column_mapping(config.columns)
        orders = validate_rows(
            read_rows(spark, config.orders, mapping, f"orders file {str(config.orders)!r}"),
            "orders",
        )
        events = (
            validate_rows(
                read_rows(
                    spark, config.events, mapping, f"service events file {str(config.events)!r}"
                ),
                "events",
            )
            if config.events is not None
            else None
        )
        inputs = {"orders": orders, **({"service_events": events} if events is not None else {})}
        quarantined: dict[str, dict[str, int]] = {}
        for name in ("orders", "service_events"):
            target = quarantine_path(config.out, name)
            validated = inputs.get(name)
            counts: dict[str, int] = {}
            if validated is not None:
                with files.stage(target) as staged:
                    counts = write_quarantine(validated, staged)
                quarantined[name] = counts
            if not counts:
                files.drop(target)  # an earlier run's rows would be taken for this run's
        # As text in the session's zone (UTC): a collected timestamp would be converted to the
        # driver machine's local time.
        last = orders.valid.agg(
            F.date_format(F.max("ordered_at"), "yyyy-MM-dd HH:mm:ss.SSSSSS")
        ).collect()[0][0]
        if last is None:
            # The reasons are counted, by reason, in the quarantine (not collected here).
            reasons = [f"{n:,} {reason}" for reason, n in sorted(quarantined["orders"].items())]
            message = no_usable_orders(
                config.orders, orders.rows_read, sum(quarantined["orders"].values()), reasons
            )
            raise NoUsableOrders(f"{message}; nothing was written")
        cutoff = resolve_cutoff(config.cutoff, pd.DataFrame({"ordered_at": [pd.Timestamp(last)]}))
        timings["load_data"] = time.perf_counter() - tick

        tick = time.perf_counter()
        with_orders = orders.valid.select("customer_id").distinct()
        lost = orders.quarantined_ids.join(with_orders, "customer_id", "left_anti")
        event_ids = (
            events.valid.select("customer_id").unionByName(events.quarantined_ids).distinct()
            if events is not None
            else None
        )
        first = orders.valid.groupBy("customer_id").agg(F.min("ordered_at").alias("first"))
        cutoff_literal = F.to_timestamp(F.lit(cutoff.strftime("%Y-%m-%d %H:%M:%S")))
        too_new = first.where(F.col("first") >= cutoff_literal).select("customer_id")
        rejects = lost.withColumn("reason", F.lit(REJECT_QUARANTINED))
        everyone = with_orders.unionByName(orders.quarantined_ids)
        if event_ids is not None:
            orderless = event_ids.join(with_orders, "customer_id", "left_anti").join(
                lost, "customer_id", "left_anti"
            )
            rejects = rejects.unionByName(orderless.withColumn("reason", F.lit(REJECT_NO_ORDERS)))
            everyone = everyone.unionByName(event_ids)
        rejects = rejects.unionByName(too_new.withColumn("reason", F.lit(REJECT_NO_HISTORY)))
        input_customers = everyone.distinct().count()
        customers = with_orders.count()
        rejected = {
            str(r["reason"]): int(r["count"]) for r in rejects.groupBy("reason").count().collect()
        }
        if rejected:
            with files.stage(rejected_dataset(config.out)) as staged:
                rejects.write.mode("overwrite").parquet(str(staged))
        else:
            files.drop(rejected_dataset(config.out))

        # At least two groups per core, so every core scores; more for large bases, so that one
        # group stays the size of one serving.batch chunk at most.
        groups = config.groups or max(
            -(-customers // CUSTOMERS_PER_GROUP), 2 * spark.sparkContext.defaultParallelism
        )
        names = list(model.feature_names_in_)
        score = functools.partial(
            score_group, model_name=model_name, cutoff=cutoff, settings=settings
        )
        scored = per_customer_group(
            orders.valid,
            events.valid if events is not None else None,
            groups,
            score,
            group_schema(names),
        )
        scored = scored.persist()
        clv = np.asarray(
            scored.select("clv").toArrow().column("clv").to_numpy(zero_copy_only=False),
            dtype="float64",
        )
        timings["score"] = time.perf_counter() - tick

        tick = time.perf_counter()
        base = spark.sparkContext.broadcast(Base.of(clv))
        stamp = RunStamp(
            run_id=files.run_id,
            cutoff=str(cutoff),
            model_name=info["model_name"],
            model_version=info["model_version"],
            store=store_label(tracking.active_uri()),
            orders=str(
                config.orders if isinstance(config.orders, str) else config.orders.resolve()
            ),
            interval=f"{settings.interval:g}",
            discount_rate=f"{settings.discount_rate:g}",
        )
        finish = functools.partial(
            finish_partition,
            base=base,
            cutoff=cutoff,
            horizon_days=model.spec.horizon_days,
            info=info,
            feature_names=names,
        )
        features_schema = ", ".join(f"`{FEATURE_PREFIX}{n}` double" for n in names)
        final = scored.mapInPandas(finish, f"{_score_schema()}, {features_schema}").persist()
        with files.stage(config.out) as scores_dataset:
            final.select(*SCORE_COLUMNS).write.mode("overwrite").parquet(str(scores_dataset))
            (scores_dataset / STAMP_NAME).write_text(
                json.dumps({**stamp.__dict__, "reasons": settings.reasons}, indent=2)
            )
        # The online unit: each customer's features beside its answer (what a lookup needs).
        with files.stage(online_dataset(config.out)) as online:
            final.select(
                "customer_id",
                *[F.col(f"`{FEATURE_PREFIX}{n}`").alias(n) for n in names],
                *SCORED_FIELDS,
            ).write.mode("overwrite").parquet(str(online))
        timings["write"] = time.perf_counter() - tick

        summary = SparkSummary(
            cutoff,
            info["model_name"],
            info["model_version"],
            input_customers,
            len(clv),
            rejected,
            quarantined=quarantined,
            rows_read={name: v.rows_read for name, v in inputs.items()},
            groups=groups,
        )
        tick = time.perf_counter()
        _summarise(scores_dataset, summary)
        if config.features_out is not None:
            # What the service reads, streamed from the datasets a batch at a time: the feature
            # table with the scores beside it (paired by run id), and the lookup store.
            _write_table(online, names, config.features_out, stamp, files)
            answers_stamp = replace(stamp, reasons=settings.reasons)
            write_scores(
                _dataset_frames(scores_dataset),
                config.features_out.with_name(SCORES_NAME),
                answers_stamp,
                files=files,
            )
            timings["online"] = time.perf_counter() - tick
        staged_store = None
        if store is not None:
            tick = time.perf_counter()
            try:
                staged_store = stack.enter_context(
                    stage_lookup_store(
                        store,
                        _dataset_frames(online),
                        replace(stamp, reasons=settings.reasons),
                        names,
                    )
                )
            except OSError as err:
                raise with_path(err, store_location(store)) from err
            summary.store = store_location(store)
            timings["store"] = time.perf_counter() - tick
        for v in inputs.values():
            v.valid.unpersist()
        scored.unpersist()
        final.unpersist()
        if summary.scored + summary.rejected_total != summary.input_customers:
            raise RuntimeError(
                f"row accounting failed: {summary.scored} scored + {summary.rejected_total} "
                f"rejected != {summary.input_customers} input customers; nothing was written"
            )
        tick = time.perf_counter()
        files.publish(staged_store, store_file)
        timings["publish"] = time.perf_counter() - tick
    summary.seconds = timings
    summary.out = config.out
    summary.features_out = config.features_out
    shutil.rmtree(ship, ignore_errors=True)
    return summary


def _score_schema() -> str:
    types = {
        "customer_id": "string",
        "cutoff": "timestamp",
        "horizon_days": "long",
        **dict.fromkeys(NUMBER_FIELDS, "double"),
        **dict.fromkeys(TEXT_FIELDS, "string"),
        "model_name": "string",
        "model_version": "string",
    }
    return ", ".join(f"`{name}` {types[name]}" for name in SCORE_COLUMNS)


def online_dataset(out: Path) -> Path:
    """The dataset of each customer's features beside its answer, beside the scores ``out``."""
    return out.with_name(f"{out.name}.online")


def _store_target(config: SparkConfig) -> str | None:
    """The lookup store to write: asked for, or the embedded one beside the feature table."""
    if config.store is not None:
        return None if config.store.lower() == "none" else config.store
    if config.features_out is None:
        return None
    return str(config.features_out.with_name(STORE_NAME))


def _write_table(
    online: Path, names: list[str], out: Path, stamp: RunStamp, files: RunFiles
) -> None:
    """The online feature table (one Parquet file with the stamp) from the online dataset."""
    dataset = pads.dataset(str(online), format="parquet")
    schema = pa.schema(
        [("customer_id", pa.string())] + [(name, pa.float64()) for name in names],
        metadata=stamp.metadata(),
    )
    with files.stage(out) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for batch in dataset.to_batches(columns=["customer_id", *names], batch_size=200_000):
            writer.write_table(pa.Table.from_batches([batch]).cast(schema))


def _dataset_frames(path: Path) -> Iterator[pd.DataFrame]:
    """A Parquet dataset's rows in pandas frames, one record batch at a time."""
    dataset = pads.dataset(str(path), format="parquet")
    for batch in dataset.to_batches(batch_size=200_000):
        frame = batch.to_pandas()
        if "cutoff" in frame.columns:
            frame["cutoff"] = naive_utc(frame["cutoff"])
        yield frame


def _summarise(out: Path, summary: SparkSummary) -> None:
    """Total CLV and segment counts, read back from the written scores (small columns only)."""
    table = pads.dataset(str(out), format="parquet").to_table(columns=["clv", *SEGMENT_COLUMNS])
    summary.total_clv = float(pa.compute.sum(table.column("clv")).as_py() or 0.0)
    for name in SEGMENT_COLUMNS:
        counts = table.column(name).value_counts()
        summary.segments[name] = {
            str(item["values"]): int(item["counts"]) for item in counts.to_pylist()
        }


def load_spark_scores(out: str | Path) -> pd.DataFrame:
    """A Spark run's scores dataset as one DataFrame (tests and small bases)."""
    frame = pads.dataset(str(out), format="parquet").to_table().to_pandas()
    frame["cutoff"] = naive_utc(frame["cutoff"])
    return frame


# --- command line ------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> SparkConfig:
    """Build a :class:`SparkConfig` from flags (defaults score the demo data)."""
    d = SparkConfig()
    parser = argparse.ArgumentParser(
        prog="python -m serving.spark",
        description="Score the whole customer base at a cutoff on Apache Spark.",
    )
    add_input_arguments(parser)
    parser.add_argument("--out", type=Path, default=d.out, help="the scores dataset (a folder)")
    parser.add_argument(
        "--features-out",
        type=Path,
        default=None,
        help="also write the online feature table the service reads (one Parquet file) and "
        "the scores beside it (scores.parquet), e.g. models/scores/online_features.parquet",
    )
    parser.add_argument(
        "--store",
        default=None,
        help="the lookup store to write: a SQLite file or redis://host:port/db, or 'none' "
        "(default: online_store.sqlite beside --features-out, none without it)",
    )
    parser.add_argument(
        "--master",
        default=None,
        help="Spark master URL (local[2], spark://host:7077, yarn, k8s://...); default: "
        "spark-submit's, or local[*]",
    )
    parser.add_argument(
        "--groups",
        type=int,
        default=None,
        help=f"customer groups scored as one pandas call each (default: one per "
        f"{CUSTOMERS_PER_GROUP:,} customers)",
    )
    parser.add_argument("--reasons", choices=REASON_MODES, default=d.reasons)
    parser.add_argument("--interval", type=float, default=d.interval)
    parser.add_argument("--discount-rate", type=float, default=d.discount_rate)
    args = parser.parse_args(argv)
    if args.groups is not None and args.groups <= 0:
        parser.error(f"--groups must be > 0; got {args.groups}")
    return SparkConfig(
        orders=args.orders,
        events=chosen_events(args),
        columns=args.columns,
        cutoff=args.cutoff,
        out=args.out,
        features_out=args.features_out,
        model_uri=chosen_model_uri(args),
        master=args.master,
        store=args.store,
        groups=args.groups,
        reasons=args.reasons,
        interval=args.interval,
        discount_rate=args.discount_rate,
    )


def print_summary(summary: SparkSummary) -> None:
    """Human-readable summary of a Spark run: its inputs, then what serving.batch prints."""
    print(f"on Spark, {summary.groups} customer groups")
    for name, read in summary.rows_read.items():
        counts = summary.quarantined.get(name, {})
        where = f" ({quarantine_path(summary.out, name)})" if counts and summary.out else ""
        print(f"  {name}: {read:,} rows read, {sum(counts.values()):,} quarantined{where}")
        for reason, count in sorted(counts.items()):
            print(f"    {reason}: {count:,}")
    print_batch_summary(summary)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (``python -m serving.spark``)."""
    config = parse_args(argv)

    def work() -> None:
        tracking.configure(read_only=True)
        print_summary(run(config))

    return run_entrypoint(work)


if __name__ == "__main__":
    sys.exit(main())
