"""The lookup store: one batch run's features and answers, shared by every API worker.

Loading the whole feature table and the scores into each API worker costs memory per worker
that grows with the base (1.5-2.3 GiB per worker at 1M customers, bench/RESULTS-store.md). A
lookup store holds them outside the workers, written by the batch run as ONE unit (features,
batch answers and the run's stamp together), and each request reads only its customers:

- **embedded** (the default, no server): one SQLite file, e.g.
  ``models/scores/online_store.sqlite``, written to a temp file and renamed into place, so a
  reader never sees half a run. Workers open it read-only; its pages are cached by the OS,
  shared by the workers, not held in their memory.
- **Redis** (``redis://host:port/db``): keys namespaced by run id
  (``cv:<run_id>:c:<customer_id>``, ``cv:<run_id>:meta``), written under a marker
  ``cv:<run_id>:writing`` that expires unless the writer refreshes it; once the whole run is
  written a compare-and-set script flips ``cv:current`` to it (only while the writer still
  holds its marker), and runs that are neither current, the previous one (kept for requests
  still reading it) nor being written are deleted, meta first.

A batch run writes in two phases (:func:`stage_lookup_store`, then
:meth:`StagedStore.publish`), so that it can publish the store together with its other
outputs. Readers check in the same read as the rows that the store still holds the run they
opened (:class:`StoreUnavailable` otherwise): an answer never mixes two runs.

One customer's value is its feature vector (float64, in the model's feature order) and its
batch answer (:data:`serving.run_files.SCORED_FIELDS`: the numbers as float64, then the texts
as a JSON list). The store's meta holds the :class:`~serving.run_files.RunStamp`, the feature
names, the base's value-tier thresholds and a sketch of its CLV distribution
(:data:`SKETCH_POINTS` quantiles, not every CLV; :meth:`serving.segments.Base.sketch` bounds
the approximation), which inline-history requests need to place a customer in the base.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sqlite3
import struct
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.history import as_cutoff
from serving.run_files import (
    DEFAULT_FEATURES_OUT,
    NUMBER_FIELDS,
    SCORED_FIELDS,
    TEXT_FIELDS,
    RunStamp,
    TableMismatch,
    temp_path,
)
from serving.segments import Base

logger = logging.getLogger(__name__)

#: The embedded store a batch run writes beside its online feature table.
STORE_NAME = "online_store.sqlite"
DEFAULT_STORE = DEFAULT_FEATURES_OUT.with_name(STORE_NAME)
#: Bumped when the layout changes; a reader refuses a store of another format.
FORMAT = "1"
#: Quantiles of the base's CLV kept for percentiles of inline requests (0.01 points apart).
SKETCH_POINTS = 10_001
#: Feature rows kept in the meta to warm the model up at start-up (XGBoost's first calls
#: allocate).
SAMPLE_ROWS = 16
#: Redis: the key space of this product, the key naming the served run, the list of runs.
REDIS_PREFIX = "cv"
REDIS_CURRENT = f"{REDIS_PREFIX}:current"
REDIS_RUNS = f"{REDIS_PREFIX}:runs"
#: Customers per Redis pipeline round trip when writing, and keys per UNLINK when deleting.
REDIS_CHUNK = 10_000

_NUMBERS_WIDTH = 8 * len(NUMBER_FIELDS)


def is_redis(target: str | Path) -> bool:
    """Whether ``target`` names a Redis store (``redis://`` or ``rediss://``) or a file."""
    return str(target).startswith(("redis://", "rediss://"))


def store_location(target: str | Path) -> str:
    """A store's location as logs show it: a resolved path, or a Redis URL without password."""
    if not is_redis(target):
        return str(Path(target).resolve())
    parts = urlsplit(str(target))
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


# --- the value of one customer -----------------------------------------------------------


def _texts(frame: pd.DataFrame) -> list[bytes]:
    """The text fields of each row as a compact JSON list (missing texts as null)."""
    columns = []
    for name in TEXT_FIELDS:
        column = frame[name].astype(object)
        columns.append(column.where(column.notna(), None).tolist())
    return [
        json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode()
        for row in zip(*columns, strict=True)
    ]


#: What ``json.dumps(..., ensure_ascii=False)`` escapes besides the backslash and the quote:
#: the control characters. A text holding one takes :func:`_texts`' path.
_CONTROL = r"[\x00-\x1f]"
#: Everything it escapes.
_ESCAPED = r"[\x00-\x1f\\\"]"


def _texts_arrow(frame: pd.DataFrame) -> pa.Array | None:
    """:func:`_texts` as one Arrow binary array, the same bytes, built column-wise.

    None when a text column is not plain strings (and nulls) or holds a control character:
    :func:`_texts` writes those rows (its escapes are then not two replacements).
    """
    quote, none, null = _large('"'), _large(""), _large("null")
    quoted = []
    for name in TEXT_FIELDS:
        try:
            column = pa.array(frame[name], from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return None
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            if column.null_count != len(column):
                return None
        column = column.cast(pa.large_string())
        escaped = column
        if pc.any(pc.match_substring_regex(column, _ESCAPED)).as_py():
            if pc.any(pc.match_substring_regex(column, _CONTROL)).as_py():
                return None
            escaped = pc.replace_substring(pc.replace_substring(column, "\\", "\\\\"), '"', '\\"')
        quoted.append(pc.fill_null(pc.binary_join_element_wise(quote, escaped, quote, none), null))
    joined = pc.binary_join_element_wise(*quoted, _large(","))
    return pc.binary_join_element_wise(_large("["), joined, _large("]"), none).cast(
        pa.large_binary()
    )


def _large(text: str) -> pa.Scalar:
    return pa.scalar(text, type=pa.large_string())


def _rows_of(packed: bytes, width: int, count: int) -> list[bytes]:
    """``packed`` cut into ``count`` values of ``width`` bytes each."""
    if count == 0:
        return []
    if width == 0:
        return [b""] * count
    fixed = pa.Array.from_buffers(pa.binary(width), count, [None, pa.py_buffer(packed)])
    return fixed.to_pylist()


def _pack(
    frame: pd.DataFrame, feature_names: Sequence[str]
) -> tuple[list[str], list[bytes], list[bytes]]:
    """Each row's id, packed feature vector and packed answer, with the columns checked."""
    missing = [c for c in ["customer_id", *feature_names, *SCORED_FIELDS] if c not in frame]
    if missing:
        raise ValueError(
            f"a frame for the lookup store is missing column(s) {missing}; expected "
            "customer_id, the model's features and the scored fields (serving.run_files."
            "SCORED_FIELDS)"
        )
    ids = frame["customer_id"].astype(str).tolist()
    features = np.ascontiguousarray(frame[list(feature_names)].to_numpy(dtype="float64"))
    numbers = np.ascontiguousarray(frame[list(NUMBER_FIELDS)].to_numpy(dtype="float64"))
    width = features.shape[1] * 8
    packed_features = _rows_of(features.tobytes(), width, len(ids))
    texts = _texts_arrow(frame)
    if texts is None:
        packed_numbers = numbers.tobytes()
        return (
            ids,
            packed_features,
            [
                packed_numbers[i * _NUMBERS_WIDTH : (i + 1) * _NUMBERS_WIDTH] + text
                for i, text in enumerate(_texts(frame))
            ],
        )
    # Each answer is its numbers' bytes then its texts' JSON: one Arrow join, one list.
    numbers_column = pa.Array.from_buffers(
        pa.binary(_NUMBERS_WIDTH), len(ids), [None, pa.py_buffer(numbers.tobytes())]
    ).cast(pa.large_binary())
    answers = pc.binary_join_element_wise(
        numbers_column, texts, pa.scalar(b"", type=pa.large_binary())
    )
    return ids, packed_features, answers.to_pylist()


_NUMBERS = struct.Struct(f"={len(NUMBER_FIELDS)}d")  # native order, as numpy packed them


def unpack_answer(packed: bytes) -> dict[str, Any]:
    """The scored fields of a packed answer, as :meth:`BatchAnswers.record` gives them."""
    # struct and a NaN test by self-inequality: every lookup decodes one answer, and numpy's
    # per-value calls cost more than the read itself (bench/RESULTS-online.md).
    record: dict[str, Any] = {
        name: None if value != value else value
        for name, value in zip(NUMBER_FIELDS, _NUMBERS.unpack_from(packed), strict=True)
    }
    record.update(zip(TEXT_FIELDS, json.loads(packed[_NUMBERS_WIDTH:]), strict=True))
    return record


# --- meta --------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoreMeta:
    """What a store says about its run, read once when a worker opens it.

    Attributes
    ----------
    stamp : RunStamp
        The batch run that wrote it (run id, cutoff, model, tracking store, settings, reasons).
    feature_names : list of str
        The order of each packed feature vector (the scoring model's features).
    base : Base
        The base's value-tier thresholds and CLV sketch (:meth:`Base.sketch`).
    customers : int
        Customers in the store.
    sample : numpy.ndarray
        A few feature rows (float64) to warm the model up with.
    """

    stamp: RunStamp
    feature_names: list[str]
    base: Base
    customers: int
    sample: np.ndarray

    @functools.cached_property
    def cutoff(self) -> pd.Timestamp:
        """The point in time the features describe (parsed once: every lookup asks)."""
        return as_cutoff(self.stamp.cutoff)

    def encode(self) -> dict[str, bytes]:
        """The meta as key -> bytes (the SQLite ``meta`` table, the Redis meta hash)."""
        base = self.base
        ranks = base.ranks if base.ranks is not None else np.arange(len(base.sorted_clv))
        return {
            "format": FORMAT.encode(),
            "stamp": json.dumps(asdict(self.stamp)).encode(),
            "feature_names": json.dumps(self.feature_names).encode(),
            "thresholds": json.dumps(base.thresholds).encode(),  # +-inf as (Python) Infinity
            "clv_sketch": np.asarray(base.sorted_clv, dtype="float64").tobytes(),
            "clv_ranks": np.asarray(ranks, dtype="int64").tobytes(),
            "customers": str(self.customers).encode(),
            "sample": np.ascontiguousarray(self.sample, dtype="float64").tobytes(),
        }

    @classmethod
    def decode(cls, meta: dict[str, bytes], where: str) -> StoreMeta:
        """Read :meth:`encode`'s output back; ValueError naming the store when unusable."""
        version = meta.get("format", b"").decode()
        if version != FORMAT:
            raise ValueError(
                f"lookup store {where} has format {version or 'none'!r}, expected {FORMAT!r}: "
                "it was not written by this version of `python -m serving.batch` (or the "
                "write did not finish); re-run `make score`"
            )
        try:
            stamp_fields = json.loads(meta["stamp"])
            stamp = RunStamp(
                **{f.name: str(stamp_fields.get(f.name, "")) for f in fields(RunStamp)}
            )
            names = [str(n) for n in json.loads(meta["feature_names"])]
            thresholds = {str(k): float(v) for k, v in json.loads(meta["thresholds"]).items()}
            customers = int(meta["customers"])
            base = Base(
                thresholds,
                np.frombuffer(meta["clv_sketch"], dtype="float64").copy(),
                np.frombuffer(meta["clv_ranks"], dtype="int64").copy(),
                customers,
            )
            sample = np.frombuffer(meta["sample"], dtype="float64").reshape(-1, len(names))
        except (KeyError, ValueError, TypeError) as err:
            raise ValueError(
                f"lookup store {where} has unreadable meta ({err!r}); re-run `make score`"
            ) from err
        if not stamp.cutoff:
            raise ValueError(
                f"lookup store {where} has no cutoff in its stamp; re-run `make score`"
            )
        return cls(stamp, names, base, customers, sample.copy())


# --- writing -----------------------------------------------------------------------------


class StagedStore(ABC):
    """One batch run written to a lookup store but not yet served: publish it, or discard it.

    A batch run writes all its outputs first and publishes them together at the end, so a run
    that fails midway leaves the store serving the previous run (:func:`stage_lookup_store`).
    Used as a context manager, a staged run that was not published is discarded on exit.

    Attributes
    ----------
    location : str
        Where the store is (:func:`store_location`).
    run_id : str
        The run staged.
    customers : int
        Customers written.
    """

    location: str
    run_id: str
    customers: int
    _settled: bool = False

    def publish(self) -> None:
        """Make the staged run the one readers are served; at most once.

        Raises
        ------
        RuntimeError
            When the run was already published or discarded.
        ValueError
            When the staged run was lost meanwhile (Redis: its writing marker expired or the
            server restarted) and could be incomplete; nothing is published then.
        """
        self._settle("published")
        self._publish()

    def discard(self) -> None:
        """Remove what was staged; the store keeps serving what it served. Idempotent."""
        if self._settled:
            return
        self._settled = True
        self._discard()

    def _settle(self, what: str) -> None:
        if self._settled:
            raise RuntimeError(
                f"run {self.run_id} for the lookup store {self.location} was already published "
                f"or discarded; expected a staged run to be {what} once"
            )
        self._settled = True

    @abstractmethod
    def _publish(self) -> None: ...

    @abstractmethod
    def _discard(self) -> None: ...

    def __enter__(self) -> StagedStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()


def stage_lookup_store(
    target: str | Path,
    frames: Iterable[pd.DataFrame],
    stamp: RunStamp,
    feature_names: Sequence[str],
) -> StagedStore:
    """Write one batch run's features and answers to a lookup store without serving them yet.

    The first of two phases (:meth:`StagedStore.publish` is the second): a batch run stages
    the store while it writes its other outputs, then publishes them all together.

    Parameters
    ----------
    target : str or Path
        A SQLite file (the run is written to a temp file beside it; publishing renames it over
        the file) or a ``redis://host:port/db`` URL (the run's keys are written under its run
        id, marked as being written; publishing flips ``cv:current`` to it with a
        compare-and-set and deletes runs that are neither current, previous nor being
        written).
    frames : iterable of pandas.DataFrame
        Chunks of whole customers, one row per customer, with ``customer_id``, every column of
        ``feature_names`` and the :data:`~serving.run_files.SCORED_FIELDS` (as the scores file
        has them). Any producer: the pandas batch run, or a distributed one's output read back
        in chunks. Frames may come in any order (sorted by id within a frame, the SQLite file
        comes out smallest); other columns are ignored.
    stamp : RunStamp
        The run's stamp, with ``reasons`` set to the reasons mode of the answers (the service
        serves them only for the same mode and model version).
    feature_names : sequence of str
        The scoring model's features, in its order (the order of each packed vector).

    Returns
    -------
    StagedStore
        To :meth:`~StagedStore.publish` or :meth:`~StagedStore.discard`.

    Raises
    ------
    ValueError
        When a frame lacks a column, a customer_id repeats, or the run id is already in the
        Redis store. Nothing staged is left behind.
    """
    names = list(feature_names)
    if is_redis(target):
        return _stage_redis(str(target), frames, stamp, names)
    return _stage_sqlite(Path(target), frames, stamp, names)


def write_lookup_store(
    target: str | Path,
    frames: Iterable[pd.DataFrame],
    stamp: RunStamp,
    feature_names: Sequence[str],
) -> int:
    """Write one batch run's features and answers to a lookup store and serve them, as one unit.

    :func:`stage_lookup_store` then :meth:`StagedStore.publish`; same parameters.

    Returns
    -------
    int
        Customers written.
    """
    with stage_lookup_store(target, frames, stamp, feature_names) as staged:
        staged.publish()
        return staged.customers


class _Collect:
    """What the meta needs from the frames as they stream past: CLVs and a few rows."""

    def __init__(self, width: int) -> None:
        self.clv: list[np.ndarray] = []
        self.sample = np.empty((0, width))
        self.count = 0

    def add(self, frame: pd.DataFrame, feature_names: Sequence[str]) -> None:
        self.clv.append(frame["clv"].to_numpy(dtype="float64"))
        self.count += len(frame)
        if len(self.sample) < SAMPLE_ROWS:
            rows = frame[list(feature_names)].head(SAMPLE_ROWS - len(self.sample))
            self.sample = np.vstack([self.sample, rows.to_numpy(dtype="float64")])

    def meta(self, stamp: RunStamp, feature_names: list[str]) -> StoreMeta:
        # Thresholds from every CLV (exactly the batch run's tiers), percentiles from a sketch.
        clv = np.concatenate(self.clv) if self.clv else np.array([], dtype="float64")
        base = Base.of(clv).sketch(SKETCH_POINTS)
        return StoreMeta(stamp, feature_names, base, self.count, self.sample)


class _StagedSqlite(StagedStore):
    """A fsynced temp file beside the store, renamed over it on publish."""

    def __init__(self, path: Path, tmp: Path, run_id: str, customers: int) -> None:
        self.location = str(path.resolve())
        self.run_id = run_id
        self.customers = customers
        self._path = path
        self._tmp = tmp

    def _publish(self) -> None:
        # A rename, never a copy: a reader that opened the previous file keeps reading it.
        os.replace(self._tmp, self._path)
        _fsync_folder(self._path.parent)

    def _discard(self) -> None:
        self._tmp.unlink(missing_ok=True)


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a crash right after it keeps the new file)."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _stage_sqlite(
    path: Path, frames: Iterable[pd.DataFrame], stamp: RunStamp, names: list[str]
) -> StagedStore:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)  # a killed run's is removed by the next (run_files.sweep_stale_work)
    tmp.unlink(missing_ok=True)
    collect = _Collect(len(names))
    try:
        connection = sqlite3.connect(tmp)
        try:
            # A private temp file renamed at the end: no journal, no fsync per statement.
            connection.execute("PRAGMA journal_mode=OFF")
            connection.execute("PRAGMA synchronous=OFF")
            connection.execute("PRAGMA cache_size=-262144")  # 256 MiB while writing
            connection.execute(
                "CREATE TABLE customers (customer_id TEXT PRIMARY KEY, features BLOB NOT NULL, "
                "answer BLOB NOT NULL) WITHOUT ROWID"
            )
            connection.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL)")
            for frame in frames:
                # In key order, pages fill up instead of splitting (see docs/lab-notes.md,
                # "Sorted writes of the SQLite store").
                if "customer_id" in frame:
                    frame = frame.sort_values("customer_id", kind="stable")
                ids, features, answers = _pack(frame, names)
                try:
                    connection.executemany(
                        "INSERT INTO customers VALUES (?, ?, ?)",
                        zip(ids, features, answers, strict=True),
                    )
                except sqlite3.IntegrityError as err:
                    raise ValueError(
                        f"a customer_id repeats in the frames for {path} ({err}); expected one "
                        "row per customer"
                    ) from err
                collect.add(frame, names)
            connection.executemany(
                "INSERT INTO meta VALUES (?, ?)", collect.meta(stamp, names).encode().items()
            )
            connection.commit()
        finally:
            connection.close()
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return _StagedSqlite(path, tmp, stamp.run_id, collect.count)


#: Redis socket timeouts of a batch run's writes (seconds): a batch run may wait for a busy
#: server; the service's reads have their own, short one (:func:`redis_client`).
WRITE_TIMEOUT = 30.0


@functools.lru_cache(maxsize=8)
def redis_client(url: str, timeout: float = WRITE_TIMEOUT) -> Any:
    """One client (a thread-safe connection pool) per URL, timeout and process.

    The reloader asks for ``cv:current`` as often as every request: a client per call would
    open a connection per call. ``timeout`` bounds every socket operation and the connect;
    a failed call is not retried (redis-py retries three times by default, which would make a
    hung server cost four timeouts per call).
    """
    import redis  # only a Redis store needs the client
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )


def _customer_key(run_id: str, customer_id: str) -> str:
    return f"{REDIS_PREFIX}:{run_id}:c:{customer_id}"


def _meta_key(run_id: str) -> str:
    return f"{REDIS_PREFIX}:{run_id}:meta"


def _writing_key(run_id: str) -> str:
    return f"{REDIS_PREFIX}:{run_id}:writing"


#: Seconds a run's "being written" marker lives unless its writer refreshes it (every third
#: of it): a killed writer's run becomes deletable this long after it died.
WRITING_TTL_SECONDS = 60
#: The flip, as one atomic script: only while this writer still holds its run's marker (no
#: clean-up can have touched a marked run, and a restarted server has lost it) and only to a
#: run whose meta, written last, is there.
_PUBLISH = """
if redis.call('GET', KEYS[3]) ~= ARGV[2] then return redis.error_reply('MARKER') end
if redis.call('EXISTS', KEYS[2]) == 0 then return redis.error_reply('META') end
local previous = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[3])
return previous
"""
#: Retire one run, atomically with the checks: not the current one, not being written. Its
#: meta goes first, so a reader that still finds the meta (in the same transaction as its
#: customers) knows the run is whole.
_RETIRE = """
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
if redis.call('GET', KEYS[1]) == ARGV[1] then return 0 end
redis.call('DEL', KEYS[2])
return 1
"""


class _Heartbeat:
    """Refreshes a run's writing marker from a daemon thread until stopped."""

    def __init__(self, client: Any, run_id: str, token: str) -> None:
        self._client = client
        self._key = _writing_key(run_id)
        self._token = token
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"cv-writing-{run_id}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import redis

        while not self._stop.wait(WRITING_TTL_SECONDS / 3):
            try:
                # Only our own marker: a lost one (server restarted) must stay lost, so that
                # publishing refuses a run that may be incomplete.
                self._client.set(self._key, self._token, ex=WRITING_TTL_SECONDS, xx=True)
            except redis.RedisError as err:
                logger.warning("could not refresh the writing marker %s: %s", self._key, err)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=WRITE_TIMEOUT)


class _StagedRedis(StagedStore):
    """A run's keys in Redis under its marker; published by the compare-and-set flip."""

    def __init__(
        self, url: str, run_id: str, token: str, customers: int, heartbeat: _Heartbeat
    ) -> None:
        self.location = store_location(url)
        self.run_id = run_id
        self.customers = customers
        self._client = redis_client(url)
        self._token = token
        self._heartbeat = heartbeat

    def _publish(self) -> None:
        import redis

        run_id = self.run_id
        keys = [REDIS_CURRENT, _meta_key(run_id), _writing_key(run_id)]
        try:
            previous = self._client.eval(_PUBLISH, len(keys), *keys, run_id, self._token)
        except redis.ResponseError as err:
            self._heartbeat.stop()
            _delete_run(self._client, run_id)
            raise ValueError(
                f"run {run_id} was not published to the lookup store {self.location}: its "
                f"writing marker {_writing_key(run_id)} was gone ({err}; the writer stalled for "
                f"over {WRITING_TTL_SECONDS} s or the server restarted), so its keys may be "
                "incomplete; re-run the batch run"
            ) from err
        finally:
            self._heartbeat.stop()
        keep = {run_id, previous.decode()} if previous else {run_id}
        logger.info("lookup store %s now serves run %s", self.location, run_id)
        _retire_runs(self._client, keep=keep)

    def _discard(self) -> None:
        self._heartbeat.stop()
        _delete_run(self._client, self.run_id)


def _stage_redis(
    url: str, frames: Iterable[pd.DataFrame], stamp: RunStamp, names: list[str]
) -> StagedStore:
    run_id = stamp.run_id
    if not run_id:
        raise ValueError("a run written to a Redis lookup store needs a run id in its stamp")
    client = redis_client(url)
    token = uuid.uuid4().hex
    # Claim the run id with the marker, then list it: a run listed without a marker is whole
    # (published) or dead (its writer stopped refreshing), and only those are ever retired.
    if client.exists(_meta_key(run_id)) or not client.set(
        _writing_key(run_id), token, ex=WRITING_TTL_SECONDS, nx=True
    ):
        raise ValueError(f"run {run_id} is already in the lookup store {store_location(url)}")
    heartbeat = _Heartbeat(client, run_id, token)
    try:
        client.rpush(REDIS_RUNS, run_id)
        collect = _Collect(len(names))
        for frame in frames:
            ids, features, answers = _pack(frame, names)
            for start in range(0, len(ids), REDIS_CHUNK):
                end = start + REDIS_CHUNK
                mapping = {
                    _customer_key(run_id, i): f + a
                    for i, f, a in zip(
                        ids[start:end], features[start:end], answers[start:end], strict=True
                    )
                }
                flat = [x for kv in mapping.items() for x in kv]
                added = client.execute_command("MSETNX", *flat)
                if not added or len(mapping) != len(ids[start:end]):
                    raise ValueError(
                        f"a customer_id repeats in the frames for {store_location(url)}; "
                        "expected one row per customer"
                    )
            collect.add(frame, names)
        client.hset(_meta_key(run_id), mapping=collect.meta(stamp, names).encode())
    except BaseException:
        heartbeat.stop()
        _delete_run(client, run_id)
        raise
    return _StagedRedis(url, run_id, token, collect.count, heartbeat)


def _retire_runs(client: Any, keep: set[str]) -> None:
    """Delete every listed run that is not in ``keep``, not current and not being written."""
    for old in {r.decode() for r in client.lrange(REDIS_RUNS, 0, -1)} - keep:
        keys = [REDIS_CURRENT, _meta_key(old), _writing_key(old)]
        if client.eval(_RETIRE, len(keys), *keys, old):
            _delete_run(client, old)


def _delete_run(client: Any, run_id: str) -> None:
    """Remove every key of a run (its meta first: readers see it gone at once) and list entry."""
    client.delete(_meta_key(run_id))
    batch: list[bytes] = []
    for key in client.scan_iter(match=f"{REDIS_PREFIX}:{run_id}:c:*", count=REDIS_CHUNK):
        batch.append(key)
        if len(batch) >= REDIS_CHUNK:
            client.unlink(*batch)
            batch.clear()
    if batch:
        client.unlink(*batch)
    client.delete(_writing_key(run_id))
    client.lrem(REDIS_RUNS, 0, run_id)


# --- reading -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Found:
    """What a batched lookup found: feature rows, and the batch answers when served.

    Attributes
    ----------
    features : dict
        ``customer_id`` -> float64 feature row in the served model's order (found ids only).
    answers : dict or None
        ``customer_id`` -> scored fields, when lookups are answered from the batch run.
    """

    features: dict[str, np.ndarray]
    answers: dict[str, dict[str, Any]] | None


class StoreUnavailable(RuntimeError):
    """The store cannot answer for the run a worker serves: the request gets 503, not a guess.

    Parameters
    ----------
    kind : str
        ``unreachable`` (a connection error or a timeout: worth failing fast for a moment),
        ``gone`` (the served run's keys are no longer there), ``changed`` (the store now holds
        another run than the one loaded) or ``unreadable`` (the file is damaged, e.g. being
        copied over in place).
    detail : str
        What happened, for the server log (may name the store's location).
    """

    KINDS = ("unreachable", "gone", "changed", "unreadable")

    def __init__(self, kind: str, detail: str) -> None:
        if kind not in self.KINDS:
            raise ValueError(f"kind {kind!r}; expected one of {', '.join(self.KINDS)}")
        super().__init__(detail)
        self.kind = kind
        self.detail = detail

    @property
    def transient(self) -> bool:
        """Whether asking again at once is pointless (the server is down or hung)."""
        return self.kind == "unreachable"

    def answer(self) -> str:
        """The caller's message: what is wrong and what to do, without paths or URLs."""
        return {
            "unreachable": "the lookup store does not answer (down or too slow); no lookup "
            "can be answered right now; retry in a moment",
            "gone": "the batch run this worker serves is no longer in the lookup store (it "
            "was deleted or the store restarted empty); lookups are refused until a complete "
            "run is current again; retry in a moment",
            "changed": "the lookup store was replaced under this worker; it is reloading; "
            "retry in a moment",
            "unreadable": "the lookup store cannot be read (damaged or being replaced in "
            "place); retry in a moment",
        }[self.kind]


class LookupStore(ABC):
    """A store opened for reading one run: its meta, and batched lookups.

    Every read checks, in the same read transaction as the rows, that the store still holds
    the run that was opened: an answer is never a mix of two runs, nor the rows of one run
    under another's stamp.

    Attributes
    ----------
    location : str
        Where it is (:func:`store_location`).
    meta : StoreMeta
        The run's meta.
    """

    location: str
    meta: StoreMeta

    @abstractmethod
    def fetch(self, ids: Sequence[str]) -> dict[str, tuple[bytes, bytes]]:
        """``customer_id`` -> (packed features, packed answer) for the ids found.

        Raises
        ------
        StoreUnavailable
            When the store cannot answer for this run (see its ``kind``).
        """

    def check(self) -> None:
        """Read nothing but the run's stamp: StoreUnavailable when it could not answer."""
        self.fetch([])

    @property
    def run_id(self) -> str:
        """The batch run this reader serves."""
        return self.meta.stamp.run_id


def _stamp_bytes(stamp: RunStamp) -> bytes:
    return json.dumps(asdict(stamp)).encode()


class SqliteStore(LookupStore):
    """The embedded store, opened read-only; safe to share between threads (one lock).

    The file is replaced by a rename, never rewritten in place: a reader that opened the
    previous file keeps reading it until it is dropped, whatever lands meanwhile. A file
    copied over in place is detected on the next read (its stamp, read in the same
    transaction as the rows, is another run's) and refused, never served under the old stamp.
    """

    def __init__(self, path: Path) -> None:
        self.location = str(path.resolve())
        if not path.exists():
            raise FileNotFoundError(
                f"lookup store {self.location!r} does not exist; run `make score` (python -m "
                f"serving.batch --store {path}) or set CUSTOMER_VALUE_STORE"
            )
        try:
            # isolation_level=None: autocommit, so each read statement is its own transaction.
            # immutable=1: no file locks and no change-counter check per statement (half the
            # cost of a one-customer read, bench/RESULTS-online.md). A run is never changed in
            # place (a new one is renamed over it, and this connection keeps the old file);
            # a file copied over in place anyway is caught by the size and modification time
            # checked around every read (_unchanged), as before.
            self._connection = sqlite3.connect(
                f"{path.resolve().as_uri()}?mode=ro&immutable=1",
                uri=True,
                check_same_thread=False,
                isolation_level=None,
            )
            meta = dict(self._connection.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as err:
            raise ValueError(
                f"lookup store {self.location!r} is not a readable SQLite store ({err}); re-run "
                "`make score` to rewrite it"
            ) from err
        self._lock = threading.Lock()
        self.meta = StoreMeta.decode({str(k): bytes(v) for k, v in meta.items()}, self.location)
        self._stamp = bytes(meta["stamp"])
        # The file as it was opened. SQLite keeps its page cache across reads while the
        # header's change counter is unchanged, and two freshly written stores have the same
        # counter: a file copied over in place was read as the old meta with new pages. Its
        # size and modification time, checked around each read, tell.
        self._file = open(path, "rb")  # held as long as the reader
        self._identity = _identity(self._file.fileno())
        if os.stat(path).st_ino != os.fstat(self._file.fileno()).st_ino:
            raise ValueError(f"lookup store {self.location!r} was replaced while it was opened")

    def __del__(self) -> None:
        file = getattr(self, "_file", None)
        if file is not None:
            file.close()

    def fetch(self, ids: Sequence[str]) -> dict[str, tuple[bytes, bytes]]:
        """The run's stamp and the customers' rows, read by one statement.

        One ``SELECT`` is one read transaction in SQLite, so the stamp and the rows come from
        the same state of the file; it replaced an explicit ``BEGIN``/``COMMIT`` around two
        reads (four round trips into SQLite per lookup instead of one). The stamp's row is
        joined to the customers found, so a request whose customers are all unknown still
        reads the stamp.
        """
        unique = list(dict.fromkeys(ids))
        query = (
            "SELECT meta.value, customers.customer_id, customers.features, customers.answer "
            "FROM meta LEFT JOIN customers ON customers.customer_id IN "
            f"({','.join('?' * len(unique))}) WHERE meta.key = 'stamp'"
        )
        with self._lock:
            self._unchanged()
            try:
                found = self._connection.execute(query, unique).fetchall()
            except sqlite3.DatabaseError as err:
                raise StoreUnavailable(
                    "unreadable",
                    f"lookup store {self.location} cannot be read ({err}); was it copied over in "
                    "place? Replace it by a rename (write beside it, then mv)",
                ) from err
            self._unchanged()  # (a copy that began during the read)
        if not found or bytes(found[0][0]) != self._stamp:
            raise StoreUnavailable(
                "changed",
                f"lookup store {self.location} no longer holds run {self.run_id} (it was "
                "rewritten in place); its answers are refused until the worker reloads",
            )
        return {r[1]: (r[2], r[3]) for r in found if r[1] is not None}

    def _unchanged(self) -> None:
        if _identity(self._file.fileno()) != self._identity:
            raise StoreUnavailable(
                "changed",
                f"lookup store {self.location} was rewritten in place (its size or modification "
                f"time changed) while it served run {self.run_id}; its answers are refused until "
                "the worker reloads. Replace it by a rename (write beside it, then mv)",
            )


def _identity(descriptor: int) -> tuple[int, int, int]:
    stat = os.fstat(descriptor)
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


class RedisStore(LookupStore):
    """The Redis store at the run ``cv:current`` named when it was opened.

    Parameters
    ----------
    url : str
        ``redis://host:port/db``.
    timeout : float
        Seconds any call may take (socket and connect) before the store counts as unreachable.
    """

    def __init__(self, url: str, timeout: float = WRITE_TIMEOUT) -> None:
        import redis

        self.location = store_location(url)
        self._client = redis_client(url, timeout)
        try:
            current = self._client.get(REDIS_CURRENT)
            if current is None:
                raise FileNotFoundError(
                    f"lookup store {self.location} has no run ({REDIS_CURRENT} is not set); run "
                    f"`make score` (python -m serving.batch --store {self.location})"
                )
            self._run = current.decode()
            meta = self._client.hgetall(_meta_key(self._run))
        except redis.RedisError as err:
            raise ConnectionError(f"lookup store {self.location} cannot be read: {err}") from err
        if not meta:
            raise ValueError(
                f"lookup store {self.location} names run {self._run} but has no meta for it"
            )
        self.meta = StoreMeta.decode({k.decode(): v for k, v in meta.items()}, self.location)
        self._stamp = meta[b"stamp"]
        self._width = 8 * len(self.meta.feature_names)

    def fetch(self, ids: Sequence[str]) -> dict[str, tuple[bytes, bytes]]:
        """The run's stamp and one ``MGET``, in one ``MULTI`` transaction.

        A retired run loses its meta before its customers (:func:`_delete_run`), so a stamp
        read in the same transaction as the customers proves they are the whole run's.
        """
        import redis

        unique = list(dict.fromkeys(ids))
        try:
            with self._client.pipeline(transaction=True) as pipe:
                pipe.hget(_meta_key(self._run), "stamp")
                if unique:
                    pipe.mget([_customer_key(self._run, i) for i in unique])
                replies = pipe.execute()
        except redis.RedisError as err:
            raise StoreUnavailable(
                "unreachable", f"lookup store {self.location} cannot be read: {err}"
            ) from err
        stamp = replies[0]
        if stamp is None:
            raise StoreUnavailable(
                "gone",
                f"lookup store {self.location} no longer holds run {self._run} (the server "
                "restarted empty, or the run was retired); lookups are refused until a "
                "complete run is current",
            )
        if stamp != self._stamp:
            raise StoreUnavailable(
                "changed", f"lookup store {self.location} holds another run {self._run}"
            )
        values = replies[1] if unique else []
        return {
            i: (v[: self._width], v[self._width :])
            for i, v in zip(unique, values, strict=True)
            if v is not None
        }


def open_lookup_store(target: str | Path, *, timeout: float = WRITE_TIMEOUT) -> LookupStore:
    """Open the store at ``target`` (a SQLite file or a ``redis://`` URL) for reading.

    ``timeout`` bounds each Redis call (the service passes its short
    ``CUSTOMER_VALUE_STORE_TIMEOUT``).

    Raises
    ------
    FileNotFoundError
        No such file, or no run in the Redis store.
    ConnectionError
        The Redis server cannot be reached.
    ValueError
        The file is not a store of this format.
    """
    if is_redis(target):
        return RedisStore(str(target), timeout)
    return SqliteStore(Path(target))


#: What changes when a new run lands in a store: for a file its inode, size, modification
#: time and run id; for Redis the run ``cv:current`` names.
StoreSignature = tuple[str, ...]


def store_signature(target: str | Path, *, timeout: float = WRITE_TIMEOUT) -> StoreSignature | None:
    """The store's :data:`StoreSignature`; None when there is none (missing, unreachable)."""
    if is_redis(target):
        import redis

        try:
            current = redis_client(str(target), timeout).get(REDIS_CURRENT)
        except redis.RedisError as err:
            logger.debug("lookup store %s cannot be read: %s", store_location(target), err)
            return None
        return None if current is None else ("redis", current.decode())
    path = Path(target)
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    try:
        with sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True) as connection:
            row = connection.execute("SELECT value FROM meta WHERE key = 'stamp'").fetchone()
        run_id = str(json.loads(row[0]).get("run_id", "")) if row else ""
    except (sqlite3.DatabaseError, ValueError):
        run_id = "unreadable"  # the reload will say what is wrong with it
    return ("sqlite", str(stat.st_ino), str(stat.st_size), str(stat.st_mtime_ns), run_id)


@dataclass(frozen=True)
class StoreView:
    """A store as the service reads it: in the served model's feature order, answers or not.

    Attributes
    ----------
    store : LookupStore
        The opened store.
    columns : list of str
        The served model's features.
    answers : bool
        Whether lookups are answered from the stored batch answers (same model version and
        reasons) or scored by the model from the stored features.
    """

    store: LookupStore
    columns: list[str]
    answers: bool

    @property
    def stamp(self) -> RunStamp:
        """The batch run that wrote the store."""
        return self.store.meta.stamp

    @property
    def cutoff(self) -> pd.Timestamp:
        """The point in time the features describe."""
        return self.store.meta.cutoff

    @property
    def run_id(self) -> str:
        """The batch run that wrote the store."""
        return self.stamp.run_id

    @property
    def model_version(self) -> str:
        """The model version of the batch run."""
        return self.stamp.model_version

    @property
    def path(self) -> str:
        """Where the store is (what the logs name)."""
        return self.store.location

    def __len__(self) -> int:
        return self.store.meta.customers

    def _order(self) -> np.ndarray | None:
        stored = self.store.meta.feature_names
        if stored == self.columns:
            return None
        positions = {name: i for i, name in enumerate(stored)}
        return np.array([positions[name] for name in self.columns])

    def sample(self) -> np.ndarray:
        """The meta's feature rows, in the model's order (to warm the model up)."""
        order = self._order()
        sample = self.store.meta.sample
        return sample if order is None else sample[:, order]

    def find(self, ids: Sequence[str]) -> Found:
        """One batched read for a request's lookups.

        Raises
        ------
        StoreUnavailable
            When the store cannot answer for the run this view serves.
        """
        found = self.store.fetch(ids)
        order = self._order()
        features = {}
        for customer_id, (packed, _) in found.items():
            row = np.frombuffer(packed, dtype="float64")
            features[customer_id] = row if order is None else row[order]
        answers = None
        if self.answers:
            answers = {i: unpack_answer(answer) for i, (_, answer) in found.items()}
        return Found(features, answers)


def open_view(
    target: str | Path,
    feature_names: Sequence[str],
    *,
    tracking_store: str | None,
    model_version: str,
    reasons: str,
    lookups: str,
    timeout: float = WRITE_TIMEOUT,
) -> StoreView:
    """Open a store for the service, with today's pairing and refusal rules.

    Parameters
    ----------
    target : str or Path
        ``CUSTOMER_VALUE_STORE``.
    feature_names : sequence of str
        The served model's features.
    tracking_store : str, optional
        The service's tracking store (:func:`serving.run_files.store_label`): a store written
        with another one's model is refused, naming both.
    model_version, reasons : str
        The served model version and the service's reasons mode: the stored answers are served
        only when both match the run's (else the model scores the stored features).
    lookups : str
        ``batch`` (answers when they fit) or ``model`` (always the model).
    timeout : float
        Seconds a Redis call may take (``CUSTOMER_VALUE_STORE_TIMEOUT``).

    Raises
    ------
    serving.run_files.TableMismatch
        A store of another tracking store.
    ValueError
        A store that lacks one of the model's features (or cannot be read:
        :func:`open_lookup_store`).
    """
    store = open_lookup_store(target, timeout=timeout)
    stamp = store.meta.stamp
    if tracking_store and stamp.store and stamp.store != tracking_store:
        raise TableMismatch(
            f"lookup store {store.location} was written with {stamp.model_name} "
            f"v{stamp.model_version} of the tracking store {stamp.store}, but this service reads "
            f"the store {tracking_store}; score with this store (make score) or point "
            "MLFLOW_TRACKING_URI / CUSTOMER_VALUE_STORE at matching ones"
        )
    missing = [n for n in feature_names if n not in store.meta.feature_names]
    if missing:
        raise ValueError(
            f"lookup store {store.location} is missing feature(s) {missing}; expected the "
            "model's features: re-run `make score` with the model being served"
        )
    answers = lookups == "batch"
    if answers and stamp.model_version != model_version:
        logger.warning(
            "lookup store %s was written with model version %r but version %r is served; "
            "lookups are scored by the model (re-run `make score` so batch and online agree)",
            store.location,
            stamp.model_version,
            model_version,
        )
        answers = False
    elif answers and stamp.reasons != reasons:
        logger.warning(
            "lookup store %s holds answers with reasons %r; the service answers with %r "
            "reasons, so lookups are scored by the model",
            store.location,
            stamp.reasons,
            reasons,
        )
        answers = False
    return StoreView(store, list(feature_names), answers)
