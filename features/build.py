"""Assemble feature tables and training snapshots from the feature families."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import pandas as pd
from tqdm.auto import tqdm

from features.history import PastOrders, as_cutoff
from features.labels import build_labels
from features.quality import quality_feature_names, quality_features
from features.rfm import rfm_feature_names, rfm_features
from features.spec import FeatureSpec

logger = logging.getLogger(__name__)


def feature_names(spec: FeatureSpec) -> list[str]:
    """All feature columns :func:`build_features` returns, in model order."""
    return rfm_feature_names(spec) + quality_feature_names(spec)


def build_features(
    orders: pd.DataFrame, events: pd.DataFrame | None, *, cutoff: object, spec: FeatureSpec
) -> pd.DataFrame:
    """Every feature for every customer with an order strictly before ``cutoff``.

    Parameters
    ----------
    orders : pandas.DataFrame
        Validated orders (:func:`features.io.validate_orders`).
    events : pandas.DataFrame or None
        Validated service events, or None when there are none (their features are NaN).
    cutoff : date-like
        The point in time; rows at or after it are never read.
    spec : FeatureSpec
        Windows and horizon.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``customer_id`` (sorted), float columns :func:`feature_names`.
    """
    cutoff = as_cutoff(cutoff)
    # The orders before the cutoff, their customers and statuses: built once for both.
    history = PastOrders.at(orders, events, cutoff)
    rfm = rfm_features(orders, events, cutoff=cutoff, spec=spec, history=history)
    quality = quality_features(orders, events, cutoff=cutoff, spec=spec, history=history)
    # Both families index the same population (customers with an order before the cutoff).
    return pd.concat([rfm, quality], axis=1)[feature_names(spec)]


def build_snapshots(
    orders: pd.DataFrame,
    events: pd.DataFrame | None,
    cutoffs: Iterable[object],
    spec: FeatureSpec,
    *,
    progress: bool = False,
) -> pd.DataFrame:
    """Stack features and labels for several cutoffs: one row per (customer_id, cutoff).

    Parameters
    ----------
    orders, events : pandas.DataFrame
        Validated inputs; ``events`` may be None.
    cutoffs : iterable of date-like
        Snapshot dates. The caller makes sure each label window ends within the data.
    spec : FeatureSpec
        Windows and horizon.
    progress : bool
        Show a progress bar over cutoffs.

    Returns
    -------
    pandas.DataFrame
        Columns ``customer_id``, ``cutoff``, the features, ``future_value``, ``churned``.
    """
    cutoffs = sorted({as_cutoff(c) for c in cutoffs})
    if not cutoffs:
        raise ValueError("cutoffs is empty; give at least one snapshot date")
    frames = []
    for cutoff in tqdm(cutoffs, desc="snapshots", unit="cutoff", disable=not progress):
        features = build_features(orders, events, cutoff=cutoff, spec=spec)
        labels = build_labels(orders, cutoff=cutoff, spec=spec)
        snapshot = features.join(labels, how="left")
        snapshot.insert(0, "cutoff", cutoff)
        frames.append(snapshot.reset_index())
        logger.info("snapshot %s: %d customers", cutoff.date(), len(snapshot))
    return pd.concat(frames, ignore_index=True)
