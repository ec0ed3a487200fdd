"""Training rows: features and short-window labels at past cutoffs, and their sample by customer.

Light on purpose (features only): Spark's Python workers import it to build the same rows on
groups of customers (:mod:`training.spark_snapshots`).

The sample rule lives here once (:func:`sample_share`, :func:`kept_customers`): a seeded hash
of ``customer_id`` keeps a share, in millionths, of the customers, sized so that about
``limit`` of the window rows remain. :func:`sampled_window_snapshots` applies it before the
rows are built (a customer's rows depend on that customer's history alone), so a large base
costs the sample's rows, not everyone's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from features import FeatureSpec, build_features, build_labels
from features.history import customer_codes

#: Gives the (sampled) window rows of a list of window cutoffs (see training.pipeline.fit_cutoff).
SnapshotSource = Callable[[list[pd.Timestamp]], pd.DataFrame]

#: Resolution of the customer sample: shares are whole millionths.
SAMPLE_RESOLUTION = 1_000_000


def window_snapshots(
    orders: pd.DataFrame,
    events: pd.DataFrame | None,
    cutoffs: list[pd.Timestamp],
    spec: FeatureSpec,
    window_days: int,
) -> pd.DataFrame:
    """Features (built with ``spec``) and short-window labels at each cutoff.

    Returns
    -------
    pandas.DataFrame
        ``customer_id``, ``cutoff``, the features, ``window_value``, ``window_churned``.
    """
    window_spec = replace(spec, horizon_days=window_days)
    frames = []
    for cutoff in tqdm(cutoffs, desc="window snapshots", unit="cutoff", leave=False):
        features = build_features(orders, events, cutoff=cutoff, spec=spec)
        labels = build_labels(orders, cutoff=cutoff, spec=window_spec)
        frame = features.join(
            labels.rename(columns={"future_value": "window_value", "churned": "window_churned"})
        )
        frame.insert(0, "cutoff", cutoff)
        frames.append(frame.reset_index())
    return pd.concat(frames, ignore_index=True)


def sample_share(rows: int, limit: int) -> int:
    """Millionths of the customers kept so that about ``limit`` of ``rows`` window rows remain.

    Every customer (:data:`SAMPLE_RESOLUTION`) when ``rows <= limit``.
    """
    if rows <= limit:
        return SAMPLE_RESOLUTION
    return int(SAMPLE_RESOLUTION * limit // rows)


def kept_customers(customer_ids: pd.Series, share: int, seed: int) -> np.ndarray:
    """Which of ``customer_ids`` the seeded hash keeps at ``share`` millionths (a bool array)."""
    hashed = pd.util.hash_pandas_object(
        customer_ids, index=False, hash_key=f"{seed + 3:016d}"
    ).to_numpy()
    return (hashed % SAMPLE_RESOLUTION) < share


def sample_customers(rows: pd.DataFrame, limit: int, seed: int) -> pd.DataFrame:
    """At most ``limit`` rows, keeping whole customers (seeded hash)."""
    if len(rows) <= limit:
        return rows
    return rows.loc[kept_customers(rows["customer_id"], sample_share(len(rows), limit), seed)]


def window_row_counts(first_orders: np.ndarray, cutoffs: list[pd.Timestamp]) -> np.ndarray:
    """Rows :func:`window_snapshots` gives at each cutoff, from each customer's first order time.

    The population at a cutoff is every customer with an order row (any status) strictly
    before it (``features.build_features``): a customer is in it from their first order on.
    """
    bounds = np.array([c.to_datetime64() for c in cutoffs], dtype="datetime64[ns]")
    return np.searchsorted(np.sort(first_orders), bounds, side="left").astype("int64")


def sampled_window_snapshots(
    orders: pd.DataFrame,
    events: pd.DataFrame | None,
    cutoffs: list[pd.Timestamp],
    spec: FeatureSpec,
    window_days: int,
    *,
    limit: int,
    seed: int,
) -> pd.DataFrame:
    """``sample_customers(window_snapshots(...), limit, seed)``, built on the sample only.

    The share is computed from the row count the whole history would give
    (:func:`window_row_counts`); only the kept customers' orders and events are built on, and
    their rows keep the labels they have among everyone's. Equal to the two-step form row for
    row (tests/training/test_sampled_snapshots.py) because a customer's features and labels
    depend on that customer's rows alone.
    """
    codes, ids = customer_codes(orders["customer_id"])
    # Every code has a row, so the groups are the codes 0..n-1 in order.
    times = pd.Series(orders["ordered_at"].to_numpy(dtype="datetime64[ns]"))
    first = times.groupby(codes, sort=True).min().to_numpy()
    counts = window_row_counts(first, cutoffs)
    total = int(counts.sum())
    if total <= limit:
        return window_snapshots(orders, events, cutoffs, spec, window_days)
    keep = kept_customers(pd.Series(ids), sample_share(total, limit), seed)
    kept_events = None
    if events is not None:
        kept_events = events.loc[events["customer_id"].isin(ids[keep]).to_numpy()]
    rows = window_snapshots(orders.loc[keep[codes]], kept_events, cutoffs, spec, window_days)
    rows.index = _labels_among_all(first, keep, cutoffs, counts)
    return rows


def _labels_among_all(
    first: np.ndarray, keep: np.ndarray, cutoffs: list[pd.Timestamp], counts: np.ndarray
) -> pd.Index:
    """The row labels the kept customers' rows have in ``window_snapshots`` of everyone.

    There, each cutoff's block lists its population in id order (the order of ``first`` and
    ``keep``), and the blocks follow one another: a row's label is its block's offset plus its
    rank in the block.
    """
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    labels = []
    for cutoff, offset in zip(cutoffs, offsets, strict=True):
        present = first < cutoff.to_datetime64()
        labels.append(offset + (np.cumsum(present) - 1)[present & keep])
    return pd.Index(np.concatenate(labels).astype("int64"))
