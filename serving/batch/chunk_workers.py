"""The chunks of a batch run built and scored: in this process, or in worker processes.

Building a chunk's features is pandas work that holds the GIL most of the time, so threads
cannot use a second core for it; worker processes can. With more than one worker, each chunk
(its customers' orders and events) goes to a worker process that builds its features, scores
them and writes the chunk's part files; the parent only cuts the chunks and collects the CLVs.
With one worker, the next chunk's features are built in a thread while this one is scored
(what overlaps there: XGBoost and Arrow release the GIL).

Either way each chunk is built and scored alone, from its own customers' rows, so the figures
are the same whichever path, worker count or chunk size ran them (tests/serving/test_batch.py).
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pyarrow import feather

from features import FeatureSpec, build_features
from features.arrow_memory import use_system_allocator
from serving.customer_chunks import CustomerChunks
from serving.run_files import with_path
from serving.scoring import ScoreSettings, score_frame
from training.model import CustomerValueModel

#: Below this many customers a run scores in its own process: starting a worker (a fresh
#: interpreter importing pandas, XGBoost and the model) costs about 2 s of CPU, more than the
#: second core gains on a small base.
PROCESS_MIN_CUSTOMERS = 100_000

#: With worker processes, each worker gets at least this many chunks, so the last chunk to
#: finish leaves the other workers idle only briefly (chunks are still at most the run's
#: chunk size; smaller chunks change no figure).
CHUNKS_PER_WORKER = 4


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def chosen_workers(workers: int | None, customers: int) -> int:
    """How many processes score: ``workers`` when given, else every core for a large base.

    Raises
    ------
    ValueError
        ``workers`` below 1.
    """
    if workers is not None:
        if workers < 1:
            raise ValueError(f"--workers must be at least 1; got {workers}")
        return workers
    return available_cores() if customers >= PROCESS_MIN_CUSTOMERS else 1


@dataclass(frozen=True)
class ChunkPaths:
    """Where one chunk's scores (and, when kept, its features) are written."""

    scores: Path
    features: Path | None

    def handed(self, name: str) -> Path:
        """Where the chunk's ``name`` rows (orders, events) wait for a worker process."""
        return self.scores.with_name(f"{self.scores.stem}.{name}.arrow")


@dataclass(frozen=True)
class ChunkResult:
    """What a scored chunk gives back: its CLVs (none: nobody to score) and its timings."""

    clv: np.ndarray
    features_seconds: float
    predict_seconds: float

    @property
    def written(self) -> bool:
        """Whether the chunk had customers, so its part files exist."""
        return len(self.clv) > 0


def _score_and_write(
    model: CustomerValueModel,
    features: pd.DataFrame,
    settings: ScoreSettings,
    paths: ChunkPaths,
    building: float,
) -> ChunkResult:
    """Score one chunk's features and write its part files."""
    if features.empty:  # every customer of this chunk starts after the cutoff
        return ChunkResult(np.array([], dtype="float64"), building, 0.0)
    tick = time.perf_counter()
    scored = score_frame(model, features, settings)
    predicting = time.perf_counter() - tick
    scored.reset_index().to_parquet(paths.scores, index=False)
    if paths.features is not None:
        features.reset_index().to_parquet(paths.features, index=False)
    return ChunkResult(scored["clv"].to_numpy(), building, predicting)


def _timed_features(
    orders: pd.DataFrame, events: pd.DataFrame | None, cutoff: pd.Timestamp, spec: FeatureSpec
) -> tuple[pd.DataFrame, float]:
    """One chunk's features and the seconds they took."""
    tick = time.perf_counter()
    features = build_features(orders, events, cutoff=cutoff, spec=spec)
    return features, time.perf_counter() - tick


# --- worker processes ----------------------------------------------------------------------------

_WORKER_MODEL: CustomerValueModel | None = None


def _start_worker(model_file: str, threads: int) -> None:
    """Pool initializer: load the run's model, predicting with this worker's share of cores."""
    global _WORKER_MODEL
    use_system_allocator()  # as the parent's command does (training.config.run_entrypoint)
    # The parent's own pickle of the model it loaded, in a file only this user can read.
    model = pickle.loads(Path(model_file).read_bytes())
    model.use_threads(threads)
    _WORKER_MODEL = model


def _worker_ready() -> None:
    """A no-op: submitted once per worker so the pool starts while the parent cuts the chunks."""


def _hand_over(frame: pd.DataFrame, path: Path) -> Path:
    """Write a chunk's rows for a worker process: an uncompressed Arrow file beside its parts.

    Not pickled down the pool's pipe: that pipe is fed 64 KiB at a time by a thread of the
    parent, which waits for the GIL between writes while the parent cuts the next chunk, so a
    worker waited 0.3-0.6 s for each chunk of a 1M run. Read from the page cache, it waits
    about 0.1 s. The index and column types travel with the rows (exactly the same frame).
    """
    try:
        feather.write_feather(frame, path, compression="uncompressed")
    except OSError as err:  # a full disk, named with the file (pyarrow names neither)
        raise with_path(err, path) from err
    return path


def _taken(path: Path) -> pd.DataFrame:
    """A chunk's rows handed over by :func:`_hand_over`; the file goes once read."""
    frame = feather.read_table(path, memory_map=False).to_pandas()
    path.unlink()
    return frame


def _score_in_worker(
    orders_file: Path,
    events_file: Path | None,
    cutoff: pd.Timestamp,
    settings: ScoreSettings,
    paths: ChunkPaths,
) -> ChunkResult:
    model = _WORKER_MODEL
    if model is None:  # the initializer runs before any task; this would be a pool misuse
        raise RuntimeError("a batch worker process was given a chunk before its model")
    orders = _taken(orders_file)
    events = _taken(events_file) if events_file is not None else None
    features, building = _timed_features(orders, events, cutoff, model.spec)
    return _score_and_write(model, features, settings, paths, building)


class ChunkScorer:
    """Scores a run's chunks with ``workers`` processes (1: in this process).

    Use as a context manager. Entering it with more than one worker starts the worker
    processes at once, so they import and unpack the model while the parent reads the input;
    leaving it stops them (a failed run included).
    """

    def __init__(self, model: CustomerValueModel, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1; got {workers}")
        self.model = model
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._model_file: Path | None = None

    def __enter__(self) -> ChunkScorer:
        if self.workers > 1:
            # The model goes to the workers as a file, not in the pool's start-up arguments:
            # those are written down a pipe the parent blocks on until the child has imported
            # its modules (about a second), so the workers would start one after the other
            # while the parent waits. From a file they start side by side.
            fd, name = tempfile.mkstemp(prefix="customer-value-model-", suffix=".pickle")
            self._model_file = Path(name)
            with os.fdopen(fd, "wb") as out:
                pickle.dump(self.model, out, protocol=pickle.HIGHEST_PROTOCOL)
            # Spawned, not forked: the parent has threads (MLflow's, Arrow's) and OpenMP state
            # a forked child would inherit half-way.
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker,
                initargs=(str(self._model_file), max(1, available_cores() // self.workers)),
            )
            for _ in range(self.workers):  # the pool starts a process per submit
                self._pool.submit(_worker_ready)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def release(self) -> None:
        """Let the worker processes go without waiting for them to exit (:meth:`close` waits).

        Once the last chunk is in, the workers can give their memory back while the parent
        writes the outputs; waiting for them there cost a 1M run about a second.
        """
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Stop the worker processes (waiting for them); a no-op once closed or in-process."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._model_file is not None:
            self._model_file.unlink(missing_ok=True)
            self._model_file = None

    def min_chunks(self) -> int:
        """The fewest chunks that keep every worker busy to the end (1 in this process)."""
        return self.workers * CHUNKS_PER_WORKER if self.workers > 1 else 1

    def score(
        self,
        chunks: CustomerChunks,
        cutoff: pd.Timestamp,
        settings: ScoreSettings,
        paths: list[ChunkPaths],
    ) -> Iterator[ChunkResult]:
        """Each chunk's result, in chunk order; ``paths[i]`` is where chunk ``i`` is written."""
        if len(paths) != len(chunks):
            raise ValueError(f"{len(paths)} part paths for {len(chunks)} chunks")
        if self._pool is None:
            yield from self._score_here(chunks, cutoff, settings, paths)
        else:
            yield from self._score_in_workers(self._pool, chunks, cutoff, settings, paths)

    def _score_here(
        self,
        chunks: CustomerChunks,
        cutoff: pd.Timestamp,
        settings: ScoreSettings,
        paths: list[ChunkPaths],
    ) -> Iterator[ChunkResult]:
        # The next chunk's features are built in a thread while this one is scored.
        spec = self.model.spec
        parts = iter(chunks)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="chunk-features") as pool:
            first = next(parts, None)
            ahead = (
                pool.submit(_timed_features, *first, cutoff, spec) if first is not None else None
            )
            for where in paths:
                if ahead is None:  # as many paths as chunks: not reached
                    raise RuntimeError("fewer chunks than part paths")
                current, following = ahead, next(parts, None)
                ahead = (
                    pool.submit(_timed_features, *following, cutoff, spec)
                    if following is not None
                    else None
                )
                features, building = current.result()
                yield _score_and_write(self.model, features, settings, where, building)

    def _score_in_workers(
        self,
        pool: ProcessPoolExecutor,
        chunks: CustomerChunks,
        cutoff: pd.Timestamp,
        settings: ScoreSettings,
        paths: list[ChunkPaths],
    ) -> Iterator[ChunkResult]:
        # One chunk waits beside those being scored, so a worker that finishes starts the
        # next at once; the parent's memory holds a few chunks' copies, not the base twice.
        pending: deque[Future[ChunkResult]] = deque()
        done = 0
        try:
            for (orders, events), where in zip(chunks, paths, strict=True):
                pending.append(
                    pool.submit(
                        _score_in_worker,
                        _hand_over(orders, where.handed("orders")),
                        _hand_over(events, where.handed("events")) if events is not None else None,
                        cutoff,
                        settings,
                        where,
                    )
                )
                if len(pending) > self.workers:
                    yield pending.popleft().result()
                    done += 1
            while pending:
                yield pending.popleft().result()
                done += 1
        except BrokenProcessPool as err:
            # A worker killed from outside (most often the kernel, out of memory): the
            # pool's own message names no cause and no way out.
            raise RuntimeError(
                f"a batch worker process died while scoring chunk {done + 1} of {len(paths)} "
                "(killed, most often for lack of memory); nothing was written. Rerun with "
                "fewer --workers or a smaller --chunk-customers"
            ) from err
