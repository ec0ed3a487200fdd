"""A customer base cut into chunks of whole customers, so a large base is scored piece by piece."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd


class CustomerChunks:
    """Orders and events cut into chunks of whole customers (``size`` customers each).

    With ``min_chunks``, chunks are smaller where needed so there are at least that many (when
    there are that many customers).

    Each customer's whole history lands in exactly one chunk, so features built per chunk are
    the same as features built on everything at once. Customers are numbered once (orders and
    events together, ids sorted), and each chunk is a boolean selection of the input frames:
    no sorted copy of the input is made (what that saves at scale: bench/RESULTS.md). Events of
    customers without orders cannot be scored and belong to no chunk.
    """

    def __init__(
        self, orders: pd.DataFrame, events: pd.DataFrame | None, size: int, min_chunks: int = 1
    ) -> None:
        if size <= 0:
            raise ValueError(f"chunk size must be > 0 customers; got {size}")
        if min_chunks <= 0:
            raise ValueError(f"min_chunks must be > 0; got {min_chunks}")
        ids = orders["customer_id"]
        if events is not None:
            ids = pd.concat([ids, events["customer_id"]], ignore_index=True)
        codes, uniques = pd.factorize(ids, sort=True)
        order_codes = codes[: len(orders)]
        has_orders = np.bincount(order_codes, minlength=len(uniques)) > 0
        # Smaller chunks when asked for more of them (worker processes to keep busy); never
        # larger than `size`, which bounds memory.
        size = max(1, min(size, -(-int(has_orders.sum()) // min_chunks)))
        # Chunk of each customer: its rank among the customers with orders, by `size`.
        chunk_of = ((np.cumsum(has_orders) - 1) // size).astype("int32")
        chunk_of[~has_orders] = -1
        self.customers = pd.Index(uniques[has_orders], name="customer_id")
        self.orders = orders
        self.order_chunk = chunk_of[order_codes]
        self.events = events
        self.event_chunk = chunk_of[codes[len(orders) :]] if events is not None else None
        self.size = size

    def __len__(self) -> int:
        return -(-len(self.customers) // self.size)

    def __iter__(self) -> Iterator[tuple[pd.DataFrame, pd.DataFrame | None]]:
        for chunk in range(len(self)):
            orders = self.orders.loc[self.order_chunk == chunk]
            events = None
            if self.events is not None:
                events = self.events.loc[self.event_chunk == chunk]
            yield orders, events
