"""A batch run's files on disk: the scores, the online feature table, and their stamp.

One batch run (``python -m serving.batch``) writes two files that belong together: the scores
(``scores.parquet`` or a CSV) and the online feature table the service answers from. This
module is the one home of their format, for the writer (:mod:`serving.batch`) and the readers
(:mod:`serving.online`, :mod:`serving.reload`):

- the columns (:data:`SCORED_FIELDS`, :data:`SCORE_COLUMNS`) and default paths;
- the run's stamp in the Parquet footer (:class:`RunStamp`): run id, cutoff, model, the
  tracking store the model came from and the orders file the features came from, so a reader
  can tell which store, model and data a table belongs to;
- the atomic writers (a crash leaves the previous files in place) and the clean-up of what a
  killed run left behind;
- the readers (:func:`load_feature_table`, :func:`load_batch_answers`) and the table file's
  :func:`file_signature`, which tells the service that a new run landed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.history import as_cutoff

logger = logging.getLogger(__name__)

DEFAULT_OUT = Path("models/scores/scores.parquet")
DEFAULT_FEATURES_OUT = Path("models/scores/online_features.parquet")
#: The scores file the service pairs with a feature table: the one beside it.
SCORES_NAME = DEFAULT_OUT.name

#: What scoring gives every customer (the batch file's columns and the online answer's
#: fields): the prediction with its range, the profile, segments, action and reasons. Numbers
#: are float64 (NaN / null where a figure does not apply), the rest text.
SCORED_FIELDS: tuple[str, ...] = (
    "clv",
    "clv_low",
    "clv_high",
    "clv_discounted",
    "clv_percentile",
    "p_churn",
    "p_active",
    "expected_orders",
    "next_order_date",
    "avg_days_between_orders",
    "historic_value",
    "total_value",
    "value_segment",
    "risk_segment",
    "action",
    "reasons",
    "value_reasons",
)
TEXT_FIELDS: tuple[str, ...] = (
    "next_order_date",
    "value_segment",
    "risk_segment",
    "action",
    "reasons",
    "value_reasons",
)
NUMBER_FIELDS: tuple[str, ...] = tuple(f for f in SCORED_FIELDS if f not in TEXT_FIELDS)
SCORE_COLUMNS: tuple[str, ...] = (
    "customer_id",
    "cutoff",
    "horizon_days",
    *SCORED_FIELDS,
    "model_name",
    "model_version",
)
#: Column types of a scores file without customers, so readers need no special case.
_EMPTY_SCORE_TYPES = {
    "cutoff": "datetime64[ns]",
    "horizon_days": "int64",
    **dict.fromkeys(NUMBER_FIELDS, "float64"),
}

#: Prefix of the Parquet footer keys of a run's stamp.
META_PREFIX = "customer_value."
#: Prefix of a run's work folder and temp files; a killed run's are removed by the next run.
WORK_PREFIX = ".scoring-"


@dataclass(frozen=True)
class RunStamp:
    """What one batch run wrote its files from, kept in both files' Parquet footers.

    Attributes
    ----------
    run_id : str
        One id per batch run: the service answers lookups from the scores only when the scores
        and the feature table carry the same one.
    cutoff : str
        The point in time the features describe (``YYYY-MM-DD HH:MM:SS``).
    model_name, model_version : str
        The registered model that scored.
    store : str
        The MLflow tracking store the model came from (:func:`store_label`), so a service on
        another store does not take the table for its own.
    orders : str
        The orders file the features were built from (absolute path).
    interval : str
        The level of ``clv_low``-``clv_high`` (e.g. ``0.8``); the service answers with the
        level of the run whose table it serves.
    discount_rate : str
        The yearly rate of ``clv_discounted``; likewise.
    reasons : str
        The reasons mode of the scores (:data:`serving.scoring.REASON_MODES`); empty in the
        feature table.
    """

    run_id: str
    cutoff: str
    model_name: str
    model_version: str
    store: str = ""
    orders: str = ""
    interval: str = ""
    discount_rate: str = ""
    reasons: str = ""

    def metadata(self) -> dict[bytes, bytes]:
        """The stamp as Parquet footer key-values (empty fields are left out)."""
        return {
            f"{META_PREFIX}{f.name}".encode(): getattr(self, f.name).encode()
            for f in fields(self)
            if getattr(self, f.name)
        }

    @classmethod
    def from_metadata(cls, metadata: Mapping[bytes, bytes] | None) -> RunStamp:
        """Read a stamp from a Parquet footer; missing fields (older runs) are empty."""
        meta = metadata or {}
        return cls(
            **{
                f.name: meta.get(f"{META_PREFIX}{f.name}".encode(), b"").decode()
                for f in fields(cls)
            }
        )


def store_label(tracking_uri: str) -> str:
    """A tracking store's identity as recorded in a run's files, without any credentials.

    A local SQLite or file store is named by its absolute path (the same store reached by two
    spellings of the path is one store); any other URI keeps its scheme, host and path but
    drops the user and password.
    """
    if tracking_uri.startswith("sqlite:///"):
        return "sqlite:///" + str(Path(tracking_uri.removeprefix("sqlite:///")).resolve())
    parts = urlsplit(tracking_uri)
    if parts.scheme in ("", "file"):
        return str(Path(parts.path or tracking_uri).resolve())
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def rejected_path(out: Path) -> Path:
    """Where a run writing ``out`` lists the customers it could not score, with the reason."""
    return out.with_name(f"{out.stem}.rejected.csv")


# --- writing ------------------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (it may be another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner_pid(name: str) -> int | None:
    """The process id written into a work file's name by :func:`work_folder`, if any."""
    digits = name.removeprefix(WORK_PREFIX).split("-", 1)[0]
    return int(digits) if digits.isdigit() else None


def sweep_stale_work(folder: Path) -> list[Path]:
    """Remove the work folders and temp files that killed batch runs left in ``folder``.

    A run's work files carry its process id (:func:`work_folder`, :func:`temp_path`); those of
    a process that no longer runs are removed, those of a run still going are left alone.
    Files from before process ids were in the names (``.scoring-<random>``) are removed too:
    no run of this version writes them.

    Returns
    -------
    list of pathlib.Path
        What was removed.
    """
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for path in folder.glob(f"{WORK_PREFIX}*"):
        pid = _owner_pid(path.name)
        if pid is not None and _pid_alive(pid):
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    if removed:
        logger.info("removed %d file(s) left by killed batch runs in %s", len(removed), folder)
    return removed


@contextlib.contextmanager
def work_folder(folder: Path) -> Iterator[Path]:
    """A temporary folder for a run's parts in ``folder``, removed when the run ends.

    Its name carries the process id, so a later run can tell a killed run's folder from a
    running one's (:func:`sweep_stale_work`).
    """
    folder.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{WORK_PREFIX}{os.getpid()}-", dir=folder))
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def temp_path(out: Path) -> Path:
    """Where a file bound for ``out`` is written before the atomic rename."""
    return out.with_name(f"{WORK_PREFIX}{os.getpid()}-{out.name}.tmp")


@contextlib.contextmanager
def atomic_file(out: Path) -> Iterator[Path]:
    """Write to a temp path, then rename it over ``out``: a crash leaves ``out`` untouched.

    The body writes the yielded path; on a clean exit it replaces ``out``, on an error it is
    removed.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(out)
    try:
        yield tmp
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def _with_metadata(schema: pa.Schema, metadata: Mapping[bytes, bytes]) -> pa.Schema:
    """``schema`` with ``metadata`` added to what it has (pandas' own metadata is kept)."""
    return schema.with_metadata({**(schema.metadata or {}), **metadata})


def write_scores(frames: Iterable[pd.DataFrame], out: Path, stamp: RunStamp) -> None:
    """Write scored frames (:data:`SCORE_COLUMNS`) to ``out`` (``.csv`` or Parquet), atomically.

    Parquet output carries ``stamp`` in its footer. Without any frame, the file is written
    with the columns and no rows, so a run that scored nobody still replaces the last one.
    """
    csv = out.suffix.lower() == ".csv"
    with atomic_file(out) as tmp:
        writer = None
        empty = True
        try:
            for frame in frames:
                frame = frame[list(SCORE_COLUMNS)]
                if csv:
                    frame.to_csv(tmp, mode="w" if empty else "a", header=empty, index=False)
                else:
                    table = pa.Table.from_pandas(frame, preserve_index=False)
                    if writer is None:
                        schema = _with_metadata(table.schema, stamp.metadata())
                        writer = pq.ParquetWriter(tmp, schema)
                    writer.write_table(table.cast(writer.schema))
                empty = False
        finally:
            if writer is not None:
                writer.close()
        if empty:
            frame = pd.DataFrame(
                {c: pd.Series(dtype=_EMPTY_SCORE_TYPES.get(c, "str")) for c in SCORE_COLUMNS}
            )
            if csv:
                frame.to_csv(tmp, index=False)
            else:
                table = pa.Table.from_pandas(frame, preserve_index=False)
                pq.write_table(table.replace_schema_metadata(stamp.metadata()), tmp)


def write_feature_table(
    parts: Sequence[Path], feature_names: Sequence[str], out: Path, stamp: RunStamp
) -> None:
    """Write the online feature table from the run's feature parts, atomically.

    Written even when nobody was scored (no rows, the model's columns), so the service never
    keeps serving an earlier run's table after this run.
    """
    with atomic_file(out) as tmp:
        writer = None
        try:
            for part in parts:
                table = pq.read_table(part)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, _with_metadata(table.schema, stamp.metadata()))
                writer.write_table(table.cast(writer.schema))
        finally:
            if writer is not None:
                writer.close()
        if writer is None:
            schema = pa.schema(
                [("customer_id", pa.string())] + [(name, pa.float64()) for name in feature_names]
            )
            pq.write_table(schema.empty_table().replace_schema_metadata(stamp.metadata()), tmp)


# --- reading ------------------------------------------------------------------------------

#: A feature table's identity and version: inode, size, modification time in ns, and the batch
#: run id in its footer (a copy that keeps size and mtime, e.g. ``cp -p``, still differs).
Signature = tuple[int, int, int, bytes]


def file_signature(path: Path) -> Signature | None:
    """What changes when the table at ``path`` is rewritten or replaced; None when missing."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    try:
        run_id = RunStamp.from_metadata(pq.read_schema(path).metadata).run_id.encode()
    except (OSError, pa.ArrowException):
        run_id = b"unreadable"  # the reload will say what is wrong with it
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns, run_id)


@dataclass(frozen=True)
class FeatureTable:
    """The materialised features of every scored customer at one cutoff, held in memory.

    Attributes
    ----------
    matrix : numpy.ndarray
        One float64 row per customer, columns in the model's feature order.
    positions : dict
        ``customer_id`` -> row of ``matrix``.
    columns : list of str
        The feature names (the model's ``feature_names_in_``).
    cutoff : pandas.Timestamp
        The point in time the features describe.
    stamp : RunStamp
        The batch run that wrote it (model, store, orders file, run id).
    path : pathlib.Path
        Where it was read from.
    """

    matrix: np.ndarray
    positions: dict[str, int]
    columns: list[str]
    cutoff: pd.Timestamp
    stamp: RunStamp
    path: Path

    @property
    def model_version(self) -> str:
        """The model version of the batch run that wrote the table."""
        return self.stamp.model_version

    @property
    def run_id(self) -> str:
        """The batch run that wrote the table (empty for tables from before run ids)."""
        return self.stamp.run_id

    def __len__(self) -> int:
        return len(self.positions)

    def frame(self) -> pd.DataFrame:
        """The whole table as a DataFrame indexed by ``customer_id``."""
        ids = np.empty(len(self.positions), dtype=object)
        for customer_id, row in self.positions.items():
            ids[row] = customer_id
        return pd.DataFrame(
            self.matrix, index=pd.Index(ids, name="customer_id", dtype="str"), columns=self.columns
        )


class TableMismatch(ValueError):
    """A feature table that belongs to another tracking store than the service's."""


def load_feature_table(
    path: str | Path, feature_names: Sequence[str], store: str | None = None
) -> FeatureTable:
    """Read the online feature table written by ``python -m serving.batch``.

    Parameters
    ----------
    path : str or Path
        The table file.
    feature_names : sequence of str
        The served model's features, in its order.
    store : str, optional
        The service's tracking store (:func:`store_label`); a table stamped with another one
        is refused (its model versions are another registry's).

    Raises
    ------
    FileNotFoundError
        When the file is missing (run ``make score`` first).
    TableMismatch
        When the table was written with a model of another tracking store.
    ValueError
        When the file is not a readable Parquet table, lacks a feature the model needs, has no
        cutoff in its stamp, or repeats a customer_id.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"online feature table {str(path)!r} does not exist; run `make score` (python -m "
            f"serving.batch --features-out {path}) or set CUSTOMER_VALUE_FEATURES"
        )
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as err:
        raise ValueError(
            f"online feature table {str(path)!r} is not a readable Parquet file ({err}); "
            "re-run `make score` to rewrite it"
        ) from err
    stamp = RunStamp.from_metadata(table.schema.metadata)
    if not stamp.cutoff:
        raise ValueError(
            f"online feature table {str(path)!r} has no '{META_PREFIX}cutoff' metadata; "
            "expected a table written by `python -m serving.batch`"
        )
    if store and stamp.store and stamp.store != store:
        raise TableMismatch(
            f"online feature table {str(path)!r} was written with {stamp.model_name} "
            f"v{stamp.model_version} of the tracking store {stamp.store}, but this service "
            f"reads the store {store}; score with this store (make score) or point "
            "MLFLOW_TRACKING_URI / CUSTOMER_VALUE_FEATURES at matching ones"
        )
    names = list(feature_names)
    missing = [c for c in ["customer_id", *names] if c not in table.column_names]
    if missing:
        raise ValueError(
            f"online feature table {str(path)!r} is missing column(s) {missing}; expected the "
            "model's features: re-run `make score` with the model being served"
        )
    ids = table.column("customer_id").to_pylist()
    positions = {str(customer_id): row for row, customer_id in enumerate(ids)}
    if len(positions) != len(ids):
        raise ValueError(
            f"online feature table {str(path)!r} has {len(ids) - len(positions)} repeated "
            "customer_id values; expected one row per customer"
        )
    matrix = table.select(names).to_pandas().to_numpy(dtype="float64")
    return FeatureTable(
        matrix=np.ascontiguousarray(matrix),
        positions=positions,
        columns=names,
        cutoff=as_cutoff(stamp.cutoff),
        stamp=stamp,
        path=path,
    )


@dataclass(frozen=True)
class BatchAnswers:
    """The batch run's answers for the customers of the feature table, in table row order.

    Batch scoring writes the feature table and the scores from the same features with the same
    code (:func:`serving.scoring.score_matrix`), so for a lookup at the table's cutoff the
    scores file already holds the answer the model would compute; serving it from memory
    takes the model call (milliseconds of XGBoost fixed cost per call) off the request path.
    Strings stay in Arrow arrays (a million customers' reasons in a few hundred MB, not
    several times that as Python objects).

    Attributes
    ----------
    numbers : dict
        :data:`NUMBER_FIELDS` -> float64 array per table row.
    texts : dict
        :data:`TEXT_FIELDS` -> pyarrow array per table row.
    source : pathlib.Path
        The scores file.
    """

    numbers: dict[str, np.ndarray]
    texts: dict[str, pa.Array]
    source: Path

    @property
    def clv(self) -> np.ndarray:
        """The batch run's CLV per table row (what the base's tiers and percentiles rank)."""
        return self.numbers["clv"]

    def record(self, row: int) -> dict[str, Any]:
        """The scored fields (:data:`SCORED_FIELDS`) of one table row; NaN as None."""
        record: dict[str, Any] = {}
        for name, values in self.numbers.items():
            value = float(values[row])
            record[name] = None if np.isnan(value) else value
        for name, texts in self.texts.items():
            record[name] = texts[row].as_py()
        return record


def load_batch_answers(
    table: FeatureTable, model_version: str, reasons: str
) -> BatchAnswers | None:
    """The scores written beside the feature table by the same batch run, if they fit.

    They are used only when the scores file (:data:`SCORES_NAME` beside the table) is readable
    and was written by the same batch run as the table (same run id, hence the same model
    version, cutoff and customers), for the served model version, with ``reasons`` (the
    reasons the service gives); otherwise the reason is logged and None returned (lookups are
    then scored by the model). The scores are optional, so a bad one never stops the service.
    """
    scores_path = table.path.with_name(SCORES_NAME)
    if table.model_version != model_version:
        logger.warning(
            "feature table %s was written with model version %r but version %r is served; "
            "re-run `make score` so batch and online agree",
            table.path,
            table.model_version,
            model_version,
        )
        return None
    if not scores_path.exists():
        logger.warning(
            "no %s beside the feature table; lookups are scored by the model", scores_path
        )
        return None
    try:
        # One open for the stamp and the data: a file renamed in between cannot pass the check
        # with another run's rows.
        scores_file = pq.ParquetFile(scores_path)
        stamp = RunStamp.from_metadata(scores_file.schema_arrow.metadata)
        if not table.run_id or stamp.run_id != table.run_id:
            logger.warning(
                "%s and the feature table come from different batch runs (%r, %r), e.g. a run "
                "wrote its scores elsewhere (--out); lookups are scored by the model",
                scores_path,
                stamp.run_id,
                table.run_id,
            )
            return None
        if stamp.reasons != reasons:
            logger.warning(
                "%s was written with reasons %r; the service answers with %r reasons, so "
                "lookups are scored by the model",
                scores_path,
                stamp.reasons,
                reasons,
            )
            return None
        scores = scores_file.read(columns=["customer_id", *SCORED_FIELDS])
    except (OSError, pa.ArrowException, KeyError) as err:
        logger.warning(
            "the batch scores %s cannot be read (%s); lookups are scored by the model",
            scores_path,
            err,
        )
        return None
    ids = scores.column("customer_id").cast(pa.string()).to_pylist()
    rows = np.fromiter((table.positions.get(i, -1) for i in ids), dtype="int64", count=len(ids))
    if len(ids) != len(table) or (rows < 0).any() or len(np.unique(rows)) != len(rows):
        logger.warning(
            "%s scores %d customers, the feature table holds %d (not the same set); lookups "
            "are scored by the model",
            scores_path,
            len(ids),
            len(table),
        )
        return None
    order = pa.array(np.argsort(rows))  # scores row for each table row
    taken = scores.take(order)
    return BatchAnswers(
        numbers={
            name: taken.column(name).to_numpy(zero_copy_only=False).astype("float64")
            for name in NUMBER_FIELDS
        },
        texts={name: taken.column(name).combine_chunks() for name in TEXT_FIELDS},
        source=scores_path,
    )
