"""What the service answers from, loaded as one piece and swapped when a new batch run lands.

The nightly ``make score`` rewrites the online feature table and the scores beside it (each by
an atomic rename), and the lookup store (:mod:`serving.lookup_store`: a new SQLite file renamed
into place, or a new run that ``cv:current`` names in Redis). A running service notices the
new table or store on a request, checking at most every ``CUSTOMER_VALUE_RELOAD_SECONDS``; it
loads the new table, answers and base (value tiers, percentiles) in a worker thread while it
keeps answering from the old ones, and then swaps everything at once. When the registry's
champion has changed too (the run after a retrain), the new model comes with it. No restart,
no request answered from a mix of two runs. A reload that fails keeps the old state and is
tried again when the file or store changes or after :data:`RETRY_SECONDS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import time
from dataclasses import dataclass

import anyio.to_thread
import mlflow

from serving.lookup_store import (
    StoreSignature,
    StoreUnavailable,
    StoreView,
    open_view,
    store_location,
    store_signature,
)
from serving.online.answers import ONLINE_REASONS, Lookups, load_base, score_rows, table_settings
from serving.online.batching import AdaptiveBatcher
from serving.online.settings import OnlineConfig
from serving.run_files import (
    BatchAnswers,
    Signature,
    TableMismatch,
    file_signature,
    load_batch_answers,
    load_feature_table,
    store_label,
)
from serving.scoring import ScoreSettings
from serving.segments import Base
from training import tracking
from training.model import CustomerValueModel

logger = logging.getLogger(__name__)

#: Adaptive batching of the model call: most feature rows per batch, and the longest a row may
#: wait in the queue before the dispatcher sheds it (the caller gets 503).
MAX_BATCH_ROWS = 500
MAX_LATENCY_MS = 1000

#: After a failed reload, the same file is tried again after this long (the registry or the
#: disk may have been down for a moment).
RETRY_SECONDS = 300.0

#: After a store call failed for want of an answer (down, hung), requests are refused at once
#: for this long instead of each waiting for its own timeout; then the store is asked again.
FAIL_FAST_SECONDS = 1.0
#: While the store cannot answer, the failure is logged once, then once per this many seconds
#: with the count of requests refused meanwhile (a line per request was 10 MB in 15 s).
LOG_EVERY_SECONDS = 60.0
#: How long a request whose run was replaced or retired under it waits for the worker to
#: load the store's current run (then it is answered from that run, or gets 503).
RECOVER_WAIT_SECONDS = 5.0

#: What tells that a new batch run landed: the table file's or the store's.
AnySignature = Signature | StoreSignature


def source_signature(config: OnlineConfig) -> AnySignature | None:
    """The signature of what ``config`` serves lookups from: the store, else the table file."""
    if config.store:
        return store_signature(config.store, timeout=config.store_timeout)
    return file_signature(config.features)


def source_name(config: OnlineConfig) -> str:
    """What ``config`` serves lookups from, as the logs name it (no credentials)."""
    if config.store:
        return f"lookup store {store_location(config.store)}"
    return f"feature table {config.features}"


@dataclass(frozen=True)
class Served:
    """Everything one answer is computed from: one model, one batch run's table and answers.

    Attributes
    ----------
    model : CustomerValueModel
        The served model.
    info : dict
        ``model_name`` and ``model_version`` (in every response).
    table : FeatureTable or StoreView
        The online feature table in memory, or the lookup store shared by the workers.
    answers : BatchAnswers or None
        The batch run's scores for lookups from the in-memory table, when they fit
        (:func:`load_batch_answers`); a store's view says itself whether its answers are
        served.
    base : Base
        The scored base: value tiers and percentiles.
    settings : ScoreSettings
        Interval level and discount rate of the batch run whose table is served.
    batcher : AdaptiveBatcher
        Adaptive batching of this model's calls.
    signature : tuple or None
        The table file's or store's signature (:func:`source_signature`) when it was read.
    """

    model: CustomerValueModel
    info: dict[str, str]
    table: Lookups
    answers: BatchAnswers | None
    base: Base
    settings: ScoreSettings
    batcher: AdaptiveBatcher
    signature: AnySignature | None


def load_served(
    config: OnlineConfig,
    current: Served | None = None,
    signature: AnySignature | None = None,
) -> Served:
    """Load the model behind ``config.model_uri`` and what lookups are answered from.

    That is the lookup store when ``config.store`` is set (only its meta is read: lookups read
    their customers per request), else the feature table and the batch answers, in memory.
    The model is reused from ``current`` when the registry still points at the same version.
    The model path is warmed (XGBoost's first calls allocate) before anything is served.
    ``signature`` is the table file's or store's, when the caller has just read it.
    """
    tick = time.perf_counter()
    signature = signature or source_signature(config)
    info = tracking.version_info(config.model_uri)
    if current is not None and current.info == info:
        model = current.model
    else:
        model = tracking.load_model(tracking.pinned_uri(config.model_uri, info))
    table: Lookups
    answers = None
    if config.store:
        table = open_view(
            config.store,
            model.feature_names_in_,
            tracking_store=store_label(mlflow.get_tracking_uri()),
            model_version=info["model_version"],
            reasons=ONLINE_REASONS,
            lookups=config.lookups,
            timeout=config.store_timeout,
        )
        warm = table.sample()
        answered = f"from the batch answers in {table.path}" if table.answers else "by the model"
    else:
        table = load_feature_table(
            config.features, model.feature_names_in_, store_label(mlflow.get_tracking_uri())
        )
        answers = (
            load_batch_answers(table, info["model_version"], ONLINE_REASONS)
            if config.lookups == "batch"
            else None
        )
        warm = table.matrix
        answered = "by the model" if answers is None else f"from the batch scores {answers.source}"
    stamped = table.stamp.model_name
    if stamped and stamped != info["model_name"]:
        # One shop, one model: a run scored by another shop's model is never served beside
        # this one (their version numbers may well coincide).
        raise TableMismatch(
            f"{table.path} was scored with the model {stamped} v{table.stamp.model_version}, "
            f"but this service serves {info['model_name']} ({config.model_uri}); set "
            f"CUSTOMER_VALUE_MODEL_URI=models:/{stamped}@champion (make serve ORDERS=... does) "
            "or score with this model"
        )
    base, source = load_base(table, model, answers)
    settings = table_settings(table)
    for rows in (1, 16):
        score_rows(model, warm[:rows], base, settings)
    batcher = AdaptiveBatcher(
        functools.partial(score_rows, model, base=base, settings=settings),
        max_batch_size=MAX_BATCH_ROWS,
        max_latency_ms=MAX_LATENCY_MS,
    )
    logger.info(
        "loaded %s v%s: %d customers at cutoff %s from %s; lookups answered %s; value "
        "tiers and percentiles from %s; interval %g, discount rate %g (%.1fs)",
        info["model_name"],
        info["model_version"],
        len(table),
        table.cutoff,
        table.path,
        answered,
        source,
        settings.interval,
        settings.discount_rate,
        time.perf_counter() - tick,
    )
    return Served(model, info, table, answers, base, settings, batcher, signature)


def freeze_heap(*, full: bool) -> None:
    """Move what is loaded out of the cyclic GC's reach (its full passes stalled ~0.4 s).

    ``full`` (at start-up) collects everything first. After a reload only the young
    generations are collected (milliseconds): the previous state is freed by reference
    counting once its batcher is closed, so a full pass over the heap is not needed.
    """
    gc.collect(2 if full else 1)
    gc.freeze()


class StoreHealth:
    """Whether the lookup store answers for the served run; one loud log line per outage.

    Parameters
    ----------
    location : str
        The store, as logs name it (``lookup store <where>``).
    fail_fast_seconds : float
        After a store call failed without an answer (down, hung), how long requests are
        refused without asking it.
    log_seconds : float
        While it lasts, how often the failure is logged again (with the count refused).
    """

    def __init__(
        self,
        location: str,
        fail_fast_seconds: float = FAIL_FAST_SECONDS,
        log_seconds: float = LOG_EVERY_SECONDS,
    ) -> None:
        self.location = location
        self.fail_fast_seconds = fail_fast_seconds
        self.log_seconds = log_seconds
        #: The last failure while the store cannot answer; None while it answers.
        self.down: StoreUnavailable | None = None
        self._since = self._logged_at = self._until = 0.0
        self._refused = 0

    def refused(self) -> StoreUnavailable | None:
        """The failure to answer with at once, without asking the store, while failing fast."""
        if self.down is None or not self.down.transient or time.monotonic() >= self._until:
            return None
        return self.down

    def failed(self, error: StoreUnavailable) -> None:
        """A request got 503 for ``error``: log it (once per outage, then every ``log_seconds``).

        ``error`` may be the one :meth:`refused` returned: counted, without extending the
        time the store is not asked.
        """
        now = time.monotonic()
        if error is self.down:
            self._count()
            return
        if self.down is None or self.down.kind != error.kind:
            self._since, self._logged_at, self._refused = now, now, 1
            logger.error(
                "%s cannot answer (%s): %s; requests that need it get 503 until it does (this "
                "is logged again every %.0f s while it lasts)",
                self.location,
                error.kind,
                error.detail,
                self.log_seconds,
            )
        else:
            self._count()
        self.down = error
        if error.transient:
            self._until = now + self.fail_fast_seconds

    def recovered(self) -> None:
        """A store call succeeded: the outage, if any, is over (logged once)."""
        if self.down is None:
            return
        logger.warning(
            "%s answers again after %.1f s (%s); %d request(s) got 503 meanwhile",
            self.location,
            time.monotonic() - self._since,
            self.down.kind,
            self._refused,
        )
        self.down = None

    def _count(self) -> None:
        self._refused += 1
        now = time.monotonic()
        if self.down is not None and now - self._logged_at >= self.log_seconds:
            logger.error(
                "%s still cannot answer (%s, for %.0f s): %s; %d request(s) got 503 so far",
                self.location,
                self.down.kind,
                now - self._since,
                self.down.detail,
                self._refused,
            )
            self._logged_at = now


class Reloader:
    """Swaps in a new :class:`Served` when the feature table file or the store changes.

    Parameters
    ----------
    config : OnlineConfig
        Where the model and table are.
    served : Served
        What is served now.
    interval : float
        Seconds between checks of the file (0: every call; < 0: never).
    """

    def __init__(self, config: OnlineConfig, served: Served, interval: float) -> None:
        self.config = config
        self.served = served
        self.interval = interval
        self.reloads = 0
        self._checked = time.monotonic()
        self._failed: AnySignature | None = None
        self._failed_at = 0.0
        self._task: asyncio.Task[bool] | None = None
        self.health = StoreHealth(source_name(config))

    def poke(self, *, now: bool = False) -> None:
        """Cheap, for the request path: look for a new run in the background, if it is time.

        The look itself (a file stat, a Redis GET) runs in a worker thread: a store that hangs
        must not hold up the event loop. ``now`` looks at once, whatever the interval (the
        served run was found replaced or gone).
        """
        if (self.interval < 0 and not now) or self._running():
            return
        moment = time.monotonic()
        if not now and moment - self._checked < self.interval:
            return
        self._checked = moment
        self._task = asyncio.get_running_loop().create_task(self._reload())

    async def recover(self, stale: Served) -> Served | None:
        """After ``stale``'s run was found replaced or gone: the state of the current run.

        Waits (at most :data:`RECOVER_WAIT_SECONDS`) for a reload of whatever the store now
        serves; None when there is none yet (no complete run is current, or it failed).
        """
        if self.served is stale:
            self.poke(now=True)
            task = self._task
            if task is not None and self._running():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(task), RECOVER_WAIT_SECONDS)
        return None if self.served is stale else self.served

    async def probe(self) -> bool:
        """For ``/readyz``: whether the served run can be read (always, without a store).

        Reads only the run's stamp, in a worker thread. A run replaced or gone is reloaded
        first (as a request would, :meth:`recover`); a failure is recorded in :attr:`health`
        (and logged once).
        """
        served = self.served
        if not isinstance(served.table, StoreView):
            return True
        if self.health.refused() is not None:
            return False
        try:
            await anyio.to_thread.run_sync(served.table.store.check)
        except StoreUnavailable as error:
            # A replaced or retired run: ready once this worker has loaded the current one
            # (a worker without requests would otherwise stay unready until its next one).
            recovered = None if error.transient else await self.recover(served)
            if recovered is None or not isinstance(recovered.table, StoreView):
                self.health.failed(error)
                return recovered is not None
            try:
                await anyio.to_thread.run_sync(recovered.table.store.check)
            except StoreUnavailable as again:
                self.health.failed(again)
                return False
        self.health.recovered()
        return True

    async def settled(self) -> None:
        """Wait for a reload that :meth:`poke` started, if one is running."""
        if self._task is not None and self._running():
            await self._task

    async def refresh(self) -> bool:
        """Reload now if a new run landed; True when a new state was swapped in."""
        await self.settled()  # one reload at a time
        self._task = asyncio.get_running_loop().create_task(self._reload())
        return await self._task

    def _running(self) -> bool:
        """Whether a reload task of this event loop is under way."""
        if self._task is None or self._task.done():
            return False
        if self._task.get_loop() is not asyncio.get_running_loop():
            # Left by another event loop (plain-class use with several asyncio.run calls):
            # it can never finish here.
            self._task = None
            return False
        return True

    async def _reload(self) -> bool:
        signature = await anyio.to_thread.run_sync(self._changed)
        if signature is None:
            return False
        try:
            served = await anyio.to_thread.run_sync(
                load_served, self.config, self.served, signature
            )
        except Exception:
            self._failed, self._failed_at = signature, time.monotonic()
            logger.exception(
                "reloading after the %s changed failed; still serving the table of cutoff %s "
                "(retried when it changes, or in %.0f s)",
                source_name(self.config),
                self.served.table.cutoff,
                RETRY_SECONDS,
            )
            return False
        previous, self.served = self.served, served
        self.reloads += 1
        # Requests that took the previous state before the swap finish on it; then its
        # batcher stops and the previous model and table are freed.
        await previous.batcher.close()
        del previous
        freeze_heap(full=False)
        return True

    def _changed(self) -> AnySignature | None:
        """The new signature if it differs from the served one (and a failed one)."""
        signature = source_signature(self.config)
        if signature is None or signature == self.served.signature:
            return None
        if signature == self._failed and time.monotonic() - self._failed_at < RETRY_SECONDS:
            return None
        return signature
