"""Reading and validating a store's inputs on Apache Spark, with the project's own rules.

Used by distributed scoring (:mod:`serving.batch.spark`) and training
(:mod:`training.spark_snapshots`):

- :func:`spark_session`: a session with the settings every run needs;
- :func:`read_rows`: CSV/TSV (values as text, as :mod:`features.files` reads them) or Parquet
  (a file or a folder of part files), renamed to the contract and numbered in the order read;
- :func:`validate_rows`: each slice validated by :mod:`features.io` (in the workers, see
  :mod:`features.spark_slices`), the one rule across slices (a repeated order_id) as a window.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import sys
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.files import PARQUET, DataValidationError, input_format, parquet_parts_schema
from features.io import (
    EVENT_OPTIONAL,
    EVENT_REQUIRED,
    ORDER_OPTIONAL,
    ORDER_REQUIRED,
    renames_for,
    require_columns,
)
from features.spark_slices import (
    CORRUPT,
    DATE_COLUMNS,
    EVENT_TYPES,
    KIND,
    KIND_QUARANTINED,
    KIND_QUARANTINED_ID,
    KIND_VALID,
    ORDER_TYPES,
    RAW,
    REASON,
    REASON_DUPLICATE_ORDER_ID,
    ROW,
    validate_slices,
    validated_schema,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

logger = logging.getLogger(__name__)

SESSION_CONF: dict[str, str] = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.legacy.parquet.nanosAsLong": "true",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.ui.showConsoleProgress": "false",
    # Validation runs once per Arrow batch: larger batches, fewer Python calls (10,000 default).
    "spark.sql.execution.arrow.maxRecordsPerBatch": "100000",
}
PANDAS_WARNING = "ignore:PySpark does not yet fully support pandas:FutureWarning"

# --- the session -------------------------------------------------------------------------------


def spark_session(master: str | None = None, app_name: str = "customer-value") -> SparkSession:
    """A Spark session with :data:`SESSION_CONF`; ``master`` None keeps spark-submit's choice.

    Without ``--master`` and outside spark-submit, Spark runs in ``local[*]`` (every core of
    this machine, no cluster). The Python workers run this interpreter unless
    ``PYSPARK_PYTHON`` says otherwise, so the project's packages and pins are theirs too.
    """
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    # PySpark 4 warns in every worker that it does not fully support pandas 3; the slices use
    # only Arrow-backed frames of plain types, and the equality test checks the results.
    os.environ.setdefault("PYTHONWARNINGS", PANDAS_WARNING)
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")
    builder = SparkSession.builder.appName(app_name)
    if master:
        builder = builder.master(master)
    launching = "PYSPARK_GATEWAY_PORT" not in os.environ  # not under spark-submit
    if launching and (master or "local").startswith("local") and not _driver_memory_set():
        # In local mode the executors live in the driver's JVM, whose heap is 1 GiB by
        # default: too little to cache a few million rows. Half the machine, up to 16 GiB.
        builder = builder.config("spark.driver.memory", f"{local_heap_gib()}g")
    for key, value in SESSION_CONF.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    if str(spark.sparkContext.master).startswith("local"):
        # Spark's 200 shuffle partitions are for clusters; on one machine each is a Python
        # worker round trip for a few rows.
        parallelism = spark.sparkContext.defaultParallelism
        spark.conf.set("spark.sql.shuffle.partitions", str(max(2, 2 * parallelism)))
    else:
        _ship_code(spark)
    return spark


def local_heap_gib() -> int:
    """Half this machine's memory in GiB, between 1 and 16 (the local-mode JVM heap)."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return int(min(16, max(1, total // 2**31)))


def _driver_memory_set() -> bool:
    """Whether the user already chose the driver's memory (environment or spark-submit args)."""
    return bool(os.environ.get("SPARK_DRIVER_MEMORY")) or "driver-memory" in os.environ.get(
        "PYSPARK_SUBMIT_ARGS", ""
    )


def _ship_code(spark: SparkSession) -> None:
    """Send this checkout's packages to the executors (a cluster's nodes may not have them).

    Their Python environment must still have the dependencies (``pip install .[spark]`` on the
    nodes, or a packed environment with ``--archives``): see the README.
    """
    root = Path(__file__).resolve().parent.parent
    folder = Path(tempfile.mkdtemp(prefix="customer-value-code-"))
    archive = folder / "customer_value_code.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for package in ("features", "training", "serving"):
            for path in sorted((root / package).rglob("*.py")):
                zf.write(path, path.relative_to(root))
    spark.sparkContext.addPyFile(str(archive))


# --- reading and numbering the rows ------------------------------------------------------------


def _nanosecond_columns(schema: pa.Schema) -> list[str]:
    """Columns a Parquet input stores as nanosecond timestamps (Spark reads them as int64)."""
    return [f.name for f in schema if pa.types.is_timestamp(f.type) and f.type.unit == "ns"]


def _read_parquet(spark: SparkSession, location: str, source: str) -> DataFrame:
    """A Parquet file or folder as Spark reads it, with every part's columns (merged schema).

    Spark, like pandas, takes a folder's schema from one part file: a column that part lacks
    vanished from every part, and a part with another type for a column failed in the tasks
    with a JVM traceback of hundreds of lines. ``mergeSchema`` makes a column missing from
    some parts null there. A local folder is checked before (:func:`read_rows`); a conflict
    Spark finds when merging a remote one is one line naming the input.
    """
    try:
        return spark.read.option("mergeSchema", "true").parquet(location)
    except Exception as err:
        # Spark raises JVM errors of several classes here; only a schema merge is the input's
        # fault (and worth one line), anything else is re-raised as it is.
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if "merge" not in first.lower():
            raise
        raise DataValidationError(
            f"{source}: its part files give a column different types ({first}); "
            "expected each column to have one type in every part file (write the parts with "
            "the same schema)"
        ) from None


def read_rows(spark: SparkSession, path: str | Path, columns: dict[str, str], source: str) -> Rows:
    """Read a CSV/TSV/Parquet input with Spark, rename it to the contract and number its rows.

    Which format the input is, is :func:`features.files.input_format`'s rule, the pandas
    reader's: an unknown suffix is refused with the same message, before Spark reads anything.

    Rows are numbered 0, 1, ... in the order Spark reads them, which for one file is the
    file's order (the numbering of :mod:`features.files`). A file scan splits the same way
    every time it runs, so every later pass over the input sees the same numbers uncached.
    """
    location = str(path)
    # A URI (s3a://, hdfs://, abfss://, ...) is Spark's to read; a local path is checked here.
    remote = "://" in location
    if not remote and not Path(location).exists():
        raise FileNotFoundError(f"{source} {location!r} does not exist")
    # The one rule of which format an input is, shared with the pandas reader.
    fmt = input_format(location)
    if fmt.compression == "zip":
        raise DataValidationError(
            f"{source} {location!r} is a zip archive, which Spark cannot read; expected a CSV/TSV "
            "file compressed with .gz or .bz2 (or unzipped), or Parquet, for the Spark commands"
        )
    parquet = fmt.kind == PARQUET

    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    nanos: list[str] = []
    if parquet:
        if not remote:
            # Every part's footer (features.files.parquet_parts_schema): a column whose type
            # differs between parts is refused here, naming the part file and the column.
            local = Path(location)
            schema = parquet_parts_schema(local) if fmt.parts else pq.read_schema(local)
            nanos = _nanosecond_columns(schema)
        frame = _read_parquet(spark, location, source)
    else:
        options = {
            "header": "true",
            "sep": fmt.separator,
            "quote": '"',
            # RFC 4180: a quote inside a quoted value is doubled (Spark's default is a backslash).
            "escape": '"',
            # As features.files reads them: a value never spans lines.
            "multiLine": "false",
            "mode": "PERMISSIVE",
            "columnNameOfCorruptRecord": CORRUPT,
            "encoding": "UTF-8",
        }
        names = spark.read.options(**options).csv(location).columns
        schema = T.StructType(
            [T.StructField(n, T.StringType()) for n in names]
            + [T.StructField(CORRUPT, T.StringType())]
        )
        frame = spark.read.options(**options).schema(schema).csv(location)
    present = renames_for(frame.columns, columns, source)
    frame = frame.withColumnsRenamed(present)
    nanos = [present.get(name, name) for name in nanos]
    if parquet and remote:
        # No footer to read from here: a date column Spark holds as int64 is either
        # nanoseconds (pandas' timestamps) or yyyymmdd; the slices tell them apart by size.
        types = dict(frame.dtypes)
        nanos = [c for c in DATE_COLUMNS if types.get(c) == "bigint"]
    # monotonically_increasing_id is (partition << 33) + the row's place in its partition;
    # with each partition's row count, that is the row's place in the whole input.
    tagged = frame.withColumn("__pid", F.spark_partition_id()).withColumn(
        "__mono", F.monotonically_increasing_id()
    )
    counts = sorted(tagged.groupBy("__pid").count().collect())
    offsets, total = [], 0
    for pid, count in counts:
        offsets.append((int(pid), total))
        total += int(count)
    offset_frame = spark.createDataFrame(offsets or [(0, 0)], "__pid int, __offset long")
    numbered = (
        tagged.join(F.broadcast(offset_frame), "__pid")
        # The partition id is an int: shifting it 33 places needs it as a long first.
        .withColumn(
            ROW,
            F.col("__offset") + F.col("__mono") - F.shiftleft(F.col("__pid").cast("long"), 33),
        )
        .drop("__pid", "__mono", "__offset")
    )
    return Rows(numbered, total, nanos, source)


@dataclass
class Rows:
    """An input read by Spark, with :data:`ROW` numbers; ``nanos``: int64 nanosecond columns."""

    frame: DataFrame
    count: int
    nanos: list[str]
    source: str

    @property
    def data_columns(self) -> list[str]:
        """The input's own columns (renamed), without the row number and corrupt-record text."""
        return [c for c in self.frame.columns if c not in (ROW, CORRUPT)]


# --- validation, one slice at a time ------------------------------------------------------------


@dataclass
class Validated:
    """One input after validation: its valid rows, its quarantine and the numbers."""

    valid: DataFrame
    quarantine: DataFrame
    quarantined_ids: DataFrame
    rows_read: int
    source: str


def validate_rows(rows: Rows, kind: str) -> Validated:
    """Validate an input read by :func:`read_rows`, slice by slice (see the module docstring)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    required = ORDER_REQUIRED if kind == "orders" else EVENT_REQUIRED
    optional = ORDER_OPTIONAL if kind == "orders" else EVENT_OPTIONAL
    data_columns = rows.data_columns
    require_columns(data_columns, required, optional, rows.source)
    contract = [c for c in data_columns if c in required + optional]
    schema = validated_schema(kind, contract)
    source_columns = [*contract, ROW] + ([CORRUPT] if CORRUPT in rows.frame.columns else [])

    nanos = list(rows.nanos)  # the closure is shipped to the workers: no DataFrame in it

    def slices(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        return validate_slices(batches, kind, nanos, contract)

    checked = rows.frame.select(*source_columns).mapInArrow(slices, schema)
    checked = checked.persist()
    types = ORDER_TYPES if kind == "orders" else EVENT_TYPES
    valid = checked.where(F.col(KIND) == KIND_VALID).select(*types, ROW)
    quarantine = checked.where(F.col(KIND) == KIND_QUARANTINED)
    ids = checked.where(F.col(KIND) == KIND_QUARANTINED_ID).select("customer_id").distinct()
    if kind == "orders" and "order_id" in contract:
        # The one rule across slices: an order_id seen again (among usable rows) is
        # quarantined, the first in the file kept, as features.io does for a whole file.
        first = Window.partitionBy("order_id").orderBy(ROW)
        ranked = valid.withColumn(
            "__n", F.when(F.col("order_id").isNull(), 1).otherwise(F.row_number().over(first))
        )
        # Kept: every later pass over the orders would otherwise sort them again.
        ranked = ranked.persist()
        repeated = ranked.where(F.col("__n") > 1).select(ROW, "customer_id")
        valid = ranked.where(F.col("__n") == 1).drop("__n")
        raw = rows.frame.select(
            ROW, *[F.col(c).cast("string").alias(f"{RAW}{c}") for c in contract]
        )
        dup = (
            repeated.join(raw, ROW)
            .withColumn(KIND, F.lit(KIND_QUARANTINED))
            .withColumn(REASON, F.lit(REASON_DUPLICATE_ORDER_ID))
        )
        quarantine = quarantine.select(ROW, REASON, *[f"{RAW}{c}" for c in contract]).unionByName(
            dup.select(ROW, REASON, *[f"{RAW}{c}" for c in contract])
        )
        ids = ids.unionByName(repeated.select("customer_id")).distinct()
    else:
        quarantine = quarantine.select(ROW, REASON, *[f"{RAW}{c}" for c in contract])
    return Validated(valid, quarantine, ids, rows.count, rows.source)


def per_customer_group(
    orders: DataFrame,
    events: DataFrame | None,
    groups: int,
    function: Callable[..., pd.DataFrame],
    schema: str,
) -> DataFrame:
    """``function(orders, events)`` on each group of whole customers (``applyInPandas``).

    Customers are grouped by a hash of their id into ``groups`` groups; a group's orders and
    events meet in one call (``cogroup``), each in the order Spark holds them (sort by
    :data:`~features.spark_slices.ROW` for the file's). Without events, ``events=None``.
    """
    from pyspark.sql import functions as F

    bucket = F.pmod(F.xxhash64("customer_id"), F.lit(groups))
    by_order = orders.withColumn("__group", bucket).groupBy("__group")
    if events is None:
        return by_order.applyInPandas(functools.partial(function, events=None), schema)
    by_event = events.withColumn("__group", bucket).groupBy("__group")
    return by_order.cogroup(by_event).applyInPandas(function, schema)


def write_quarantine(validated: Validated, path: Path) -> dict[str, int]:
    """Count an input's quarantined rows per reason and write them as a dataset at ``path``.

    The dataset has ``reason``, ``source_row`` and the raw values as text; with nothing
    quarantined, a dataset an earlier run left at ``path`` is removed (it is not this run's).
    """
    counts = {
        str(r[REASON]): int(r["count"])
        for r in validated.quarantine.groupBy(REASON).count().collect()
    }
    if counts:
        validated.quarantine.withColumnRenamed(ROW, "source_row").withColumnRenamed(
            REASON, "reason"
        ).write.mode("overwrite").parquet(str(path))
        logger.warning(
            "%d rows of %s quarantined to %s: %s",
            sum(counts.values()),
            validated.source,
            path,
            ", ".join(f"{reason} {n:,}" for reason, n in sorted(counts.items())),
        )
    elif path.exists():
        shutil.rmtree(path)
    return counts
