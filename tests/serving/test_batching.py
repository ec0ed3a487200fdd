"""Adaptive batching of the model call: order kept, batches formed, failures isolated."""

import asyncio
import time

import numpy as np
import pytest

from serving.online.batching import AdaptiveBatcher


def test_adaptive_batcher_batches_concurrent_calls_and_keeps_order():
    sizes = []

    def func(matrix: np.ndarray) -> list[dict]:
        sizes.append(len(matrix))
        time.sleep(0.005)
        return [{"value": float(v)} for v in matrix[:, 0]]

    batcher = AdaptiveBatcher(func, max_batch_size=64, max_latency_ms=10_000)
    matrices = [np.full((1 + i % 3, 2), float(i)) for i in range(120)]
    matrices.append(np.arange(150, dtype="float64").reshape(75, 2))  # bigger than a batch

    async def call_all():
        return await asyncio.gather(*(batcher(m) for m in matrices))

    answers = asyncio.run(call_all())
    for matrix, answer in zip(matrices, answers, strict=True):
        assert [r["value"] for r in answer] == matrix[:, 0].tolist()
    assert batcher.rows == sum(len(m) for m in matrices) == sum(sizes)
    assert max(sizes) <= 64
    assert len(sizes) < len(matrices) / 3  # concurrent calls were scored together
    # A second event loop (e.g. another asyncio.run) gets a fresh dispatcher.
    assert asyncio.run(batcher(np.ones((2, 2)))) == [{"value": 1.0}, {"value": 1.0}]


def test_adaptive_batcher_fails_only_the_call_whose_rows_fail():
    def func(matrix: np.ndarray) -> list[dict]:
        if np.isinf(matrix).any():
            raise ValueError("Input data contains inf")
        time.sleep(0.005)
        return [{"value": float(v)} for v in matrix[:, 0]]

    batcher = AdaptiveBatcher(func, max_batch_size=64, max_latency_ms=10_000)
    matrices = [np.full((2, 2), float(i)) for i in range(40)]
    matrices[17] = np.full((1, 2), np.inf)

    async def call_all():
        return await asyncio.gather(*(batcher(m) for m in matrices), return_exceptions=True)

    answers = asyncio.run(call_all())
    assert isinstance(answers[17], ValueError)
    for i, (matrix, answer) in enumerate(zip(matrices, answers, strict=True)):
        if i != 17:
            assert [r["value"] for r in answer] == matrix[:, 0].tolist()


def test_a_closed_batcher_answers_its_calls_in_flight_then_stops():
    def func(matrix: np.ndarray) -> list[dict]:
        time.sleep(0.05)
        return [{"value": float(v)} for v in matrix[:, 0]]

    batcher = AdaptiveBatcher(func, max_batch_size=64, max_latency_ms=10_000)

    async def close_while_busy():
        calls = [asyncio.create_task(batcher(np.full((1, 2), float(i)))) for i in range(5)]
        while batcher.in_flight < 5:
            await asyncio.sleep(0)
        await batcher.close()
        answers = await asyncio.gather(*calls)
        with pytest.raises(RuntimeError, match="closed"):
            await batcher(np.ones((1, 2)))
        return answers

    answers = asyncio.run(close_while_busy())
    assert [a[0]["value"] for a in answers] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert batcher.closed and batcher.in_flight == 0
