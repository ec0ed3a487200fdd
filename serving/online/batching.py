"""Adaptive batching of the model call inside one API process (BentoML's dispatcher).

Concurrent requests' feature rows queue in BentoML's ``CorkDispatcher`` (the class behind
``@bentoml.api(batchable=True)``) and are scored together in a worker thread, so the model's
fixed cost per call is paid once per batch instead of once per request.

Why the dispatcher is used directly: a ``batchable`` API only batches calls that reach its HTTP
route (``self.method(...)`` bypasses the dispatcher), and a separate model service
(``bentoml.depends``) adds an HTTP hop per request that, on BentoML 1.4.39, needed two
workarounds (a DataFrame batch-size bug; sessions closed under in-flight calls,
bentoml/BentoML#5540) and cost about twice the server CPU per request; see
bench/RESULTS-online.md.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, cast

import anyio.to_thread
import numpy as np
from bentoml._internal.marshal.dispatcher import CorkDispatcher
from bentoml.exceptions import ServiceUnavailable

logger = logging.getLogger(__name__)

#: The 503 body when requests are shed: BentoML replaces every 5xx message with a generic
#: "unexpected error" text, which would send an operator looking for a fault that is not there.
OVERLOADED = (
    "the service is overloaded: requests waited longer than the model queue allows; retry "
    "after a moment"
)


def _overloaded() -> NoReturn:
    raise ServiceUnavailable(OVERLOADED)


class AdaptiveBatcher:
    """BentoML's adaptive batching around a function of feature rows, inside one process.

    Concurrent calls queue in a ``CorkDispatcher``, which releases them as one batch (at most
    ``max_batch_size`` rows, after a wait it tunes from the observed batch times); the batch is
    scored in a worker thread while the event loop keeps serving. Calls that would wait longer
    than ``max_latency_ms`` are shed with 503.

    Parameters
    ----------
    func : callable
        Feature matrix (rows x features) -> one record per row.
    max_batch_size : int
        Most rows per batch (a larger call is split).
    max_latency_ms : int
        Longest a call may wait for its batch.
    """

    def __init__(
        self,
        func: Callable[[np.ndarray], list[dict[str, Any]]],
        *,
        max_batch_size: int,
        max_latency_ms: int,
    ) -> None:
        self.func = func
        self.max_batch_size = max_batch_size
        self.max_latency_ms = max_latency_ms
        self.batches = 0
        self.rows = 0
        self.in_flight = 0
        self.closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dispatcher: CorkDispatcher | None = None
        self._dispatch: Callable[[np.ndarray], Any] | None = None

    async def __call__(self, matrix: np.ndarray) -> list[dict[str, Any]]:
        """Score ``matrix`` together with whatever else is queued; one record per row."""
        if self.closed:
            raise RuntimeError("this batcher was closed (its model is no longer served)")
        loop = asyncio.get_running_loop()
        if self._dispatch is None or self._loop is not loop:
            # The dispatcher lives in one event loop; a plain-class caller may use several.
            self._loop = loop
            self._dispatcher = CorkDispatcher(
                max_latency_in_ms=self.max_latency_ms,
                max_batch_size=self.max_batch_size,
                fallback=_overloaded,
                get_batch_size=len,
            )
            self._dispatch = self._dispatcher(self._score)
        self.in_flight += 1
        try:
            # The dispatcher is typed as returning Optional; it returns what _score returns.
            return cast(list[dict[str, Any]], await self._dispatch(matrix))
        finally:
            self.in_flight -= 1

    async def close(self, timeout: float | None = None) -> None:
        """Stop the dispatcher once the calls in flight are answered (or ``timeout`` passed).

        The dispatcher's controller task runs forever and, with this batcher, forms a cycle
        that holds the model: a batcher that is no longer served must be closed to be freed.
        """
        self.closed = True
        deadline = time.monotonic() + (timeout or 2 * self.max_latency_ms / 1000 + 30)
        while self.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self._dispatcher is not None and self._loop is asyncio.get_running_loop():
            self._dispatcher.shutdown()  # (a dispatcher of a closed loop has nothing to stop)
        self._dispatcher = self._dispatch = None  # break the cycle for reference counting

    async def _score(self, jobs: Sequence[np.ndarray]) -> list[list[dict[str, Any]] | Exception]:
        try:
            records = await anyio.to_thread.run_sync(self.func, np.concatenate(jobs))
        except Exception:
            if len(jobs) == 1:
                raise
            # The dispatcher would hand one exception to every call in the batch: score each
            # call alone, so only the call whose rows fail gets the error (the dispatcher
            # raises a returned exception in that caller only). One thread hop for all of
            # them: the dispatcher runs one batch at a time and the queue waits meanwhile.
            logger.exception("a batch of %d calls failed; scoring each call alone", len(jobs))
            return await anyio.to_thread.run_sync(self._score_each, jobs)
        self.batches += 1
        self.rows += len(records)
        _batch_rows_histogram().observe(len(records))
        bounds = np.cumsum([0, *(len(job) for job in jobs)])
        return [records[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

    def _score_each(self, jobs: Sequence[np.ndarray]) -> list[list[dict[str, Any]] | Exception]:
        results: list[list[dict[str, Any]] | Exception] = []
        for job in jobs:
            try:
                results.append(self.func(job))
            except Exception as error:
                results.append(error)
        return results


@functools.cache
def _batch_rows_histogram() -> Any:
    """Prometheus histogram of rows per model batch, created once per process."""
    # Imported late: BentoML sets PROMETHEUS_MULTIPROC_DIR in the worker after importing us.
    import prometheus_client

    return prometheus_client.Histogram(
        "customer_value_model_batch_rows",
        "Feature rows scored per adaptive batch of the model call",
        buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
    )
