"""The final frames handed from a batch run's writer to its lookup-store thread."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest

from serving.batch.frame_handoff import FrameHandoff, HandoffAborted


def _frames(count: int) -> list[pd.DataFrame]:
    return [pd.DataFrame({"customer_id": [f"c{i}"], "clv": [float(i)]}) for i in range(count)]


def test_the_consumer_gets_every_frame_in_order_while_the_producer_writes_them():
    handoff = FrameHandoff(depth=1)
    frames = _frames(6)
    with ThreadPoolExecutor(max_workers=1) as pool:
        taken = pool.submit(lambda: list(handoff.frames()))
        written = list(handoff.passing(frames))
        got = taken.result(timeout=10)
    assert all(a is b for a, b in zip(written, frames, strict=True))
    assert all(a is b for a, b in zip(got, frames, strict=True))


def test_a_producer_that_fails_makes_the_consumer_raise_instead_of_waiting():
    handoff = FrameHandoff()

    def failing():
        yield from _frames(2)
        raise OSError("disk full")

    with ThreadPoolExecutor(max_workers=1) as pool:
        taken = pool.submit(lambda: list(handoff.frames()))
        with pytest.raises(OSError, match="disk full"):
            list(handoff.passing(failing()))
        with pytest.raises(HandoffAborted):
            taken.result(timeout=10)


def test_a_producer_stopped_before_its_first_frame_is_aborted_by_its_owner():
    # What the batch run's exit does when it fails before writing: nothing came, none will.
    handoff = FrameHandoff()
    with ThreadPoolExecutor(max_workers=1) as pool:
        taken = pool.submit(lambda: list(handoff.frames()))
        handoff.abort()
        with pytest.raises(HandoffAborted):
            taken.result(timeout=10)


def test_a_consumer_that_stops_never_blocks_the_producer():
    handoff = FrameHandoff(depth=1)
    stopped = threading.Event()

    def consume_one():
        for _ in handoff.frames():
            break  # the store failed on its first frame
        handoff.stop_consuming()
        stopped.set()

    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(consume_one)
        # More frames than the handoff holds: without the stop, the third put would block.
        assert len(list(handoff.passing(_frames(5)))) == 5
    assert stopped.is_set()


def test_abort_after_the_last_frame_changes_nothing():
    handoff = FrameHandoff()
    with ThreadPoolExecutor(max_workers=1) as pool:
        taken = pool.submit(lambda: list(handoff.frames()))
        list(handoff.passing(_frames(2)))
        handoff.abort()
        assert len(taken.result(timeout=10)) == 2


def test_depth_below_one_is_refused():
    with pytest.raises(ValueError, match="depth must be at least 1"):
        FrameHandoff(depth=0)
