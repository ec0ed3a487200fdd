"""What the service answers from, loaded as one piece and swapped when a new batch run lands.

The nightly ``make score`` rewrites the online feature table and the scores beside it (each by
an atomic rename). A running service notices the new table (its file changed) within
``CUSTOMER_VALUE_RELOAD_SECONDS``, loads the new table, answers and value thresholds in a
worker thread while it keeps answering from the old ones, and then swaps everything at once;
when the registry's champion has changed too (the run after a retrain), the new model comes
with it. No restart, no request answered from a mix of two runs. A reload that fails keeps the
old state and is retried only when the file changes again.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import anyio.to_thread

from serving.batching import AdaptiveBatcher
from serving.online import (
    BatchAnswers,
    FeatureTable,
    OnlineConfig,
    load_batch_answers,
    load_feature_table,
    load_value_thresholds,
    score_rows,
)
from training import tracking
from training.scorer import CustomerValueModel

logger = logging.getLogger(__name__)

RELOAD_ENV = "CUSTOMER_VALUE_RELOAD_SECONDS"
#: How often (at most) a request checks whether the feature table file changed.
DEFAULT_RELOAD_SECONDS = 30.0
#: Adaptive batching of the model call: most feature rows per batch, and the longest a row may
#: wait in the queue before the dispatcher sheds it (the caller gets 503).
MAX_BATCH_ROWS = 500
MAX_LATENCY_MS = 1000

#: A file's identity and version: (inode, size, modification time in ns).
Signature = tuple[int, int, int]


def file_signature(path: Path) -> Signature | None:
    """What changes when ``path`` is rewritten or replaced; None when it is missing."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


def reload_interval(environ: dict[str, str] | None = None) -> float:
    """``CUSTOMER_VALUE_RELOAD_SECONDS`` (default 30; 0 checks on every request; < 0 never)."""
    text = (os.environ if environ is None else environ).get(RELOAD_ENV, "")
    try:
        return float(text) if text else DEFAULT_RELOAD_SECONDS
    except ValueError:
        raise ValueError(f"{RELOAD_ENV}={text!r}; expected a number of seconds") from None


@dataclass(frozen=True)
class Served:
    """Everything one answer is computed from: one model, one batch run's table and answers.

    Attributes
    ----------
    model : CustomerValueModel
        The served model.
    info : dict
        ``model_name`` and ``model_version`` (in every response).
    table : FeatureTable
        The online feature table.
    answers : BatchAnswers or None
        The batch run's scores for lookups, when they fit (:func:`load_batch_answers`).
    thresholds : dict
        Value-segment thresholds of the base.
    batcher : AdaptiveBatcher
        Adaptive batching of this model's calls.
    signature : tuple or None
        The table file's :func:`file_signature` when it was read.
    """

    model: CustomerValueModel
    info: dict[str, str]
    table: FeatureTable
    answers: BatchAnswers | None
    thresholds: dict[str, float]
    batcher: AdaptiveBatcher
    signature: Signature | None


def load_served(config: OnlineConfig, current: Served | None = None) -> Served:
    """Load the model behind ``config.model_uri``, the feature table and the batch answers.

    The model is reused from ``current`` when the registry still points at the same version.
    The model path is warmed (XGBoost's first calls allocate) before anything is served.
    """
    tick = time.perf_counter()
    signature = file_signature(config.features)
    info = tracking.version_info(config.model_uri)
    if current is not None and current.info == info:
        model = current.model
    else:
        # By the version just resolved, so the model and the version reported always agree
        # even if the alias moves meanwhile.
        pinned = (
            f"models:/{info['model_name']}/{info['model_version']}"
            if info["model_version"] != "unregistered"
            else config.model_uri
        )
        model = tracking.load_model(pinned)
    table = load_feature_table(config.features, model.feature_names_in_)
    answers = (
        load_batch_answers(table, info["model_version"]) if config.lookups == "batch" else None
    )
    thresholds, source = load_value_thresholds(table, model, answers)
    for rows in (1, 16):
        score_rows(model, table.matrix[:rows], thresholds)
    batcher = AdaptiveBatcher(
        functools.partial(score_rows, model, thresholds=thresholds),
        max_batch_size=MAX_BATCH_ROWS,
        max_latency_ms=MAX_LATENCY_MS,
    )
    logger.info(
        "loaded %s v%s: %d customers at cutoff %s from %s; lookups answered %s; value "
        "thresholds from %s (%.1fs)",
        info["model_name"],
        info["model_version"],
        len(table),
        table.cutoff,
        table.path,
        "by the model" if answers is None else f"from the batch scores {answers.source}",
        source,
        time.perf_counter() - tick,
    )
    return Served(model, info, table, answers, thresholds, batcher, signature)


def freeze_heap() -> None:
    """Move what is loaded out of the cyclic GC's reach (its full passes stalled ~0.4 s)."""
    gc.unfreeze()  # the previous state's objects, so they can be collected
    gc.collect()
    gc.freeze()


class Reloader:
    """Swaps in a new :class:`Served` when the feature table file changes.

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
        self._failed: Signature | None = None
        self._task: asyncio.Task[None] | None = None

    def poke(self) -> None:
        """Cheap, for the request path: start a background reload if the table changed."""
        if self.interval < 0 or self._task is not None and not self._task.done():
            return
        now = time.monotonic()
        if now - self._checked < self.interval:
            return
        self._checked = now
        if self._changed() is not None:
            self._task = asyncio.get_running_loop().create_task(self.refresh())

    async def settled(self) -> None:
        """Wait for a reload that :meth:`poke` started, if one is running."""
        if self._task is not None:
            await self._task

    async def refresh(self) -> bool:
        """Reload now if the table file changed; True when a new state was swapped in."""
        signature = self._changed()
        if signature is None:
            return False
        try:
            served = await anyio.to_thread.run_sync(load_served, self.config, self.served)
        except Exception:
            self._failed = signature
            logger.exception(
                "reloading after %s changed failed; still serving the table of cutoff %s",
                self.config.features,
                self.served.table.cutoff,
            )
            return False
        self.served = served
        self.reloads += 1
        freeze_heap()
        return True

    def _changed(self) -> Signature | None:
        """The file's new signature if it differs from the served and the failed ones."""
        signature = file_signature(self.config.features)
        if signature is None or signature in (self.served.signature, self._failed):
            return None
        return signature
