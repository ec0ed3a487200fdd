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
        ids = orders["customer_id"]
        if events is not None:
            ids = pd.concat([ids, events["customer_id"]], ignore_index=True)
        # The one hashing of the ids a run needs: the id sets and first orders below reuse it.
        codes, uniques = pd.factorize(ids, sort=True)
        self._order_codes = codes[: len(orders)]
        self._event_codes = codes[len(orders) :] if events is not None else None
        self._has_orders = np.bincount(self._order_codes, minlength=len(uniques)) > 0
        #: Every customer id of the frames, orders and events (sorted).
        self.ids = pd.Index(uniques, name="customer_id")
        #: The customers with orders (sorted): the ones the chunks hold.
        self.customers = pd.Index(uniques[self._has_orders], name="customer_id")
        self.orders = orders
        self.events = events
        self.cut(size, min_chunks)

    def cut(self, size: int, min_chunks: int = 1) -> None:
        """Cut the customers into chunks of ``size``, smaller where needed for ``min_chunks``.

        Raises
        ------
        ValueError
            A size or count below 1.
        """
        if size <= 0:
            raise ValueError(f"chunk size must be > 0 customers; got {size}")
        if min_chunks <= 0:
            raise ValueError(f"min_chunks must be > 0; got {min_chunks}")
        # Smaller chunks when asked for more of them (worker processes to keep busy); never
        # larger than `size`, which bounds memory.
        size = max(1, min(size, -(-len(self.customers) // min_chunks)))
        # Chunk of each customer: its rank among the customers with orders, by `size`.
        chunk_of = ((np.cumsum(self._has_orders) - 1) // size).astype("int32")
        chunk_of[~self._has_orders] = -1
        self.order_chunk = chunk_of[self._order_codes]
        self.event_chunk = chunk_of[self._event_codes] if self._event_codes is not None else None
        self.size = size

    def first_orders(self) -> pd.Series:
        """Each customer's first ``ordered_at`` (index: :attr:`customers`)."""
        first = (
            pd.Series(self.orders["ordered_at"].to_numpy())
            .groupby(self._order_codes, sort=True)
            .min()
        )
        return pd.Series(first.to_numpy(), index=self.ids[first.index], name="ordered_at")

    def __len__(self) -> int:
        return -(-len(self.customers) // self.size)

    def __iter__(self) -> Iterator[tuple[pd.DataFrame, pd.DataFrame | None]]:
        for chunk in range(len(self)):
            orders = self.orders.loc[self.order_chunk == chunk]
            events = None
            if self.events is not None:
                events = self.events.loc[self.event_chunk == chunk]
            yield orders, events
