"""A batch run's files on disk: the scores, the online feature table, and their stamp.

One batch run (``python -m serving.batch``) writes two files that belong together: the scores
(``scores.parquet`` or a CSV) and the online feature table the service answers from. This
module is the one home of their format, for the writer (:mod:`serving.batch`) and the readers
(:mod:`serving.online.answers`, :mod:`serving.online.reload`):

- the columns (:data:`SCORED_FIELDS`, :data:`SCORE_COLUMNS`) and default paths;
- the run's stamp in the Parquet footer (:class:`RunStamp`): run id, cutoff, model, the
  tracking store the model came from and the orders file the features came from, so a reader
  can tell which store, model and data a table belongs to;
- the writers, and :class:`RunFiles`, which publishes a run's outputs together (staged beside
  their places, then put in place behind a commit journal that the next run rolls forward if
  the run was killed), and the clean-up of what a killed run left behind;
- the readers (:func:`load_feature_table`, :func:`load_batch_answers`) and the table file's
  :func:`file_signature`, which tells the service that a new run landed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.history import as_cutoff

if TYPE_CHECKING:
    from serving.lookup_store import StagedStore

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

#: The errno values a message can carry only in its text (pyarrow's ``[errno 28] ...``).
_ERRNO_TEXT = re.compile(r"\[errno (\d+)\]", re.IGNORECASE)


def with_path(err: OSError, path: str | Path) -> OSError:
    """``err`` with ``path`` as its file name, when it names none (so the message can).

    pyarrow reports a full disk as an ``OSError`` without errno or file name; the errno is
    recovered from its text, so the command line can say what to do about it.
    """
    if err.filename is not None:
        return err
    code = err.errno
    if code is None:
        found = _ERRNO_TEXT.search(str(err))
        code = int(found.group(1)) if found else None
    if code is None:
        return OSError(f"{err} (writing {path})")
    return OSError(code, os.strerror(code), str(path))


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
    # First finish what killed runs committed: their staged files are among what is removed
    # below, and a committed run's must be put in place, not deleted.
    for journal in sorted(folder.glob(f"{WORK_PREFIX}*{JOURNAL_SUFFIX}")):
        pid = _owner_pid(journal.name)
        if pid is not None and not _pid_alive(pid):
            roll_forward(journal)
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
    except OSError as err:
        raise with_path(err, out) from err
    finally:
        tmp.unlink(missing_ok=True)


#: The end of a commit journal's name (:class:`RunFiles`).
JOURNAL_SUFFIX = ".commit.json"


def _fsync(path: Path) -> None:
    """Flush a file, or a folder's entries and files, to disk (a rename after it is durable)."""
    if path.is_dir():
        for child in path.rglob("*"):
            if child.is_file():
                _fsync(child)
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _remove(path: Path) -> None:
    """Remove a file or a folder, if it is there."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _put_in_place(staged: Path, final: Path) -> None:
    """Rename ``staged`` to ``final``; idempotent (nothing staged: it is in place already).

    A file replaces the file atomically. A folder (a Spark dataset) cannot be renamed over a
    folder, so the old one is first moved aside: a kill between the two renames leaves
    ``final`` missing for the roll-forward to fill, never a mix of two runs' parts.
    """
    aside = final.with_name(f"{WORK_PREFIX}{os.getpid()}-{final.name}.old")
    if not os.path.lexists(staged):
        return
    if staged.is_dir() and final.is_dir():
        _remove(aside)
        os.replace(final, aside)
        os.replace(staged, final)
        _remove(aside)
    else:
        os.replace(staged, final)


def roll_forward(journal: Path) -> None:
    """Finish the publication a killed run committed in ``journal`` (see :class:`RunFiles`).

    Every staged file still there is put in place, every output the run had none of is
    removed, then every copy of the journal. A journal that cannot be read was never
    committed (it is written whole, then renamed into place): it is removed, and the run's
    staged files with it by :func:`sweep_stale_work`.
    """
    try:
        plan = json.loads(journal.read_text())
        moves = [(Path(staged), Path(final)) for staged, final in plan["moves"]]
        drops = [Path(p) for p in plan["drops"]]
        journals = [Path(p) for p in plan["journals"]]
    except (OSError, ValueError, KeyError, TypeError) as err:
        logger.warning("ignoring the unreadable commit journal %s (%s)", journal, err)
        journal.unlink(missing_ok=True)
        return
    for staged, final in moves:
        _put_in_place(staged, final)
    for final in drops:
        _remove(final)
    for folder in {final.parent for _, final in moves} | {final.parent for final in drops}:
        _fsync(folder)
    for copy in journals:
        copy.unlink(missing_ok=True)
    logger.warning(
        "finished publishing the outputs of the killed run %s: %s",
        plan.get("run_id", "?"),
        ", ".join(str(final) for _, final in moves) or "nothing to move",
    )


class RunFiles:
    """A run's outputs, staged beside their places and published together, or not at all.

    A batch run writes several outputs that belong together (the scores, the rejected list
    and quarantine files, the online feature table, the lookup store). Each is written to a
    temp path beside its place (:meth:`stage`); an output this run has none of, which an
    earlier run left, is marked to be removed (:meth:`drop`). Only when all are complete does
    :meth:`publish` put them in place:

    1. every staged file is flushed to disk;
    2. a Redis lookup store is published (its compare-and-set is the commit point: Redis may
       refuse a run whose writing marker was lost, and then nothing is published);
    3. a commit journal listing the renames and removals is written (whole, then renamed)
       into every folder involved: from here on the run is committed;
    4. the renames and removals are made, the SQLite lookup store published (a rename), the
       folders flushed, and the journals removed.

    The guarantee: a run that fails or is killed before step 3 (or whose Redis publish is
    refused) leaves every previous output as it was; its staged files are removed by the run
    itself or, if it was killed, by the next run (:func:`sweep_stale_work`). A run killed
    after step 3 is rolled forward by the next run that sweeps any of its folders: all its
    outputs are put in place. Until then a reader may see some outputs of each run; that
    window is only step 4's renames for a run that is not killed. With a Redis store, a kill
    between steps 2 and 3 (one small file written) leaves Redis serving the new run beside
    the previous files.

    Use as a context manager: on an error before the commit, what was staged is discarded.
    """

    def __init__(self, run_id: str | None = None) -> None:
        self.run_id = run_id or uuid.uuid4().hex
        self._moves: list[tuple[Path, Path]] = []
        self._drops: list[Path] = []
        self._committed = False

    @contextlib.contextmanager
    def stage(self, final: Path) -> Iterator[Path]:
        """A temp path beside ``final`` for the body to write; an error there names ``final``."""
        final.parent.mkdir(parents=True, exist_ok=True)
        staged = temp_path(final)
        self._moves.append((staged, final))
        try:
            yield staged
        except OSError as err:
            raise with_path(err, final) from err

    def drop(self, final: Path) -> None:
        """Remove ``final`` (an earlier run's output this run has none of) on publishing."""
        self._drops.append(final)

    @property
    def finals(self) -> list[Path]:
        """Where the staged outputs go."""
        return [final for _, final in self._moves]

    def publish(self, store: StagedStore | None = None, store_file: Path | None = None) -> None:
        """Put every staged output in place together with ``store``; see the class docstring.

        Parameters
        ----------
        store : StagedStore, optional
            The run's staged lookup store (:func:`serving.lookup_store.stage_lookup_store`).
        store_file : Path, optional
            Its file when it is a SQLite store (published by a rename that the journal can
            finish); None for Redis.
        """
        moves = list(self._moves)
        for staged, final in moves:
            if not os.path.lexists(staged):
                continue  # staged but nothing written (e.g. no quarantined row): nothing to move
            try:
                _fsync(staged)
            except OSError as err:
                raise with_path(err, final) from err
        if store is not None and store_file is None:
            store.publish()  # Redis: the commit point; raises if the run was lost meanwhile
        if store is not None and store_file is not None:
            moves.append((temp_path(store_file), store_file))
        folders = sorted({final.parent for _, final in moves} | {p.parent for p in self._drops})
        name = f"{WORK_PREFIX}{os.getpid()}-{self.run_id[:12]}{JOURNAL_SUFFIX}"
        journals = [folder / name for folder in folders]
        text = json.dumps(
            {
                "run_id": self.run_id,
                "moves": [[str(s.resolve()), str(f.resolve())] for s, f in moves],
                "drops": [str(p.resolve()) for p in self._drops],
                "journals": [str(j.resolve()) for j in journals],
            },
            indent=1,
        )
        for journal in journals:
            staged = temp_path(journal)  # a journal is whole under its name, or not there
            try:
                staged.write_text(text)
                _fsync(staged)
                os.replace(staged, journal)
                _fsync(journal.parent)
            except OSError as err:
                staged.unlink(missing_ok=True)
                for written in journals:
                    written.unlink(missing_ok=True)
                raise with_path(err, journal) from err
        self._committed = True  # from here on the run is published, by us or the next run
        _commit_hook(self)
        for staged, final in self._moves:
            _put_in_place(staged, final)
        for final in self._drops:
            _remove(final)
        if store is not None and store_file is not None:
            store.publish()
        for folder in folders:
            _fsync(folder)
        for journal in journals:
            journal.unlink(missing_ok=True)

    def discard(self) -> None:
        """Remove what was staged, unless the run was committed (then it is published)."""
        if self._committed:
            return
        for staged, _ in self._moves:
            _remove(staged)

    def __enter__(self) -> RunFiles:
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()


def _commit_hook(files: RunFiles) -> None:
    """Called once a run is committed, before its renames: a seam for tests (does nothing).

    The test of a run killed at the worst moment replaces it in a child process that then
    kills itself, so the kill lands at the same point every time.
    """


def _with_metadata(schema: pa.Schema, metadata: Mapping[bytes, bytes]) -> pa.Schema:
    """``schema`` with ``metadata`` added to what it has (pandas' own metadata is kept)."""
    return schema.with_metadata({**(schema.metadata or {}), **metadata})


def _target(out: Path, files: RunFiles | None) -> contextlib.AbstractContextManager[Path]:
    """Where a writer writes ``out``: staged in ``files``, else renamed over it at once."""
    return files.stage(out) if files is not None else atomic_file(out)


def write_scores(
    frames: Iterable[pd.DataFrame],
    out: Path,
    stamp: RunStamp,
    *,
    files: RunFiles | None = None,
) -> None:
    """Write scored frames (:data:`SCORE_COLUMNS`) to ``out`` (``.csv`` or Parquet), atomically.

    Parquet output carries ``stamp`` in its footer. Without any frame, the file is written
    with the columns and no rows, so a run that scored nobody still replaces the last one.
    With ``files``, the file is staged there, to be published with the run's other outputs.
    """
    csv = out.suffix.lower() == ".csv"
    with _target(out, files) as tmp:
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
    parts: Sequence[Path],
    feature_names: Sequence[str],
    out: Path,
    stamp: RunStamp,
    *,
    files: RunFiles | None = None,
) -> None:
    """Write the online feature table from the run's feature parts, atomically.

    Written even when nobody was scored (no rows, the model's columns), so the service never
    keeps serving an earlier run's table after this run. With ``files``, staged there.
    """
    with _target(out, files) as tmp:
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
