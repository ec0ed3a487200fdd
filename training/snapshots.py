"""Training rows: features and short-window labels at past cutoffs, and their sample by customer.

Light on purpose (features only): Spark's Python workers import it to build the same rows on
groups of customers (:mod:`training.spark_snapshots`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pandas as pd
from tqdm.auto import tqdm

from features import FeatureSpec, build_features, build_labels

#: Gives the (sampled) window rows of a list of window cutoffs (see training.pipeline.fit_cutoff).
SnapshotSource = Callable[[list[pd.Timestamp]], pd.DataFrame]


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


def sample_customers(rows: pd.DataFrame, limit: int, seed: int) -> pd.DataFrame:
    """At most ``limit`` rows, keeping whole customers (seeded hash)."""
    if len(rows) <= limit:
        return rows
    hashed = pd.util.hash_pandas_object(
        rows["customer_id"], index=False, hash_key=f"{seed + 3:016d}"
    ).to_numpy()
    share = int(1_000_000 * limit // len(rows))
    return rows.loc[(hashed % 1_000_000) < share]
