"""Frames handed from the thread that makes them to a thread that consumes them, a few at a time.

A batch run's final frames (each part's scores with the base's segments and percentiles) feed
two outputs: the score file, written by the run's own thread, and the lookup store, built in a
thread beside it. Both used to compute the frames from the scored parts, each for itself; the
store's thread now takes the ones the writer made. At most ``depth`` frames wait, so memory
holds a few parts, not the base.

Neither side can hang on the other: a producer that fails (or stops early) aborts the handoff
and the consumer raises :class:`HandoffAborted`; a consumer that stops makes further frames be
dropped instead of blocking the producer.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator

import pandas as pd

#: How often a blocked side looks whether the other one gave up (seconds).
_POLL = 0.05


class HandoffAborted(RuntimeError):
    """The producing side stopped before its last frame (its own error is the one to report)."""


class FrameHandoff:
    """One producer's frames to one consumer, in order, at most ``depth`` waiting."""

    _END = object()

    def __init__(self, depth: int = 2) -> None:
        if depth < 1:
            raise ValueError(f"depth must be at least 1; got {depth}")
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._aborted = threading.Event()
        self._consumer_gone = threading.Event()
        self._ended = False

    def passing(self, frames: Iterable[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        """Yield ``frames`` unchanged, each handed over first; the end is handed over too.

        If the iteration stops early (an error in ``frames`` or in whoever iterates), the
        handoff is aborted, so the consumer raises instead of waiting for frames never coming.
        """
        try:
            for frame in frames:
                self._put(frame)
                yield frame
        except BaseException:
            self.abort()
            raise
        self._put(self._END)
        self._ended = True

    def abort(self) -> None:
        """Tell the consumer no more frames will come; a no-op after the last frame."""
        if not self._ended:
            self._aborted.set()

    def frames(self) -> Iterator[pd.DataFrame]:
        """The consumer's side: each frame in order, until the producer's end.

        Raises
        ------
        HandoffAborted
            The producer stopped before its end.
        """
        try:
            while True:
                try:
                    item = self._queue.get(timeout=_POLL)
                except queue.Empty:
                    if self._aborted.is_set():
                        raise HandoffAborted("the frames' producer stopped early") from None
                    continue
                if item is self._END:
                    return
                assert isinstance(item, pd.DataFrame)
                yield item
        finally:
            self.stop_consuming()

    def stop_consuming(self) -> None:
        """The consumer's side is done (or failed): frames still coming are dropped.

        Call it where the consumer stops, whatever the reason: a consumer that raised may
        keep its generator (and so this side's ``finally``) alive in a traceback.
        """
        self._consumer_gone.set()

    def _put(self, item: object) -> None:
        while not self._consumer_gone.is_set():
            try:
                self._queue.put(item, timeout=_POLL)
                return
            except queue.Full:
                continue
