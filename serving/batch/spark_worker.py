"""The code Spark's Python workers run for :mod:`serving.batch.spark`: slices in, slices out.

Kept apart from the driver module so a worker imports only what it runs (the project's
validation, features, scoring and model; not MLflow or the command line), and so what runs on
the executors is easy to find. Every function here takes and returns pandas frames; the rules
themselves are the project's (:mod:`features.io`, :func:`features.build_features`,
:func:`serving.scoring.score_frame`, :func:`serving.scoring.finish_scores`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import pandas as pd

from features import build_features
from features.spark_slices import EVENT_TYPES, ORDER_TYPES, ROW, restore
from serving.run_files import TEXT_FIELDS
from serving.scoring import PROFILE_COLUMNS, ScoreSettings, finish_scores, score_frame
from training.model import CustomerValueModel

#: Prefix of the feature columns beside the scores in :func:`score_group`'s output.
FEATURE_PREFIX = "f__"


def group_schema(feature_names: list[str]) -> str:
    """The Spark schema of :func:`score_group`' output: scores, then ``f__<feature>``."""
    numbers = [f"`{n}` double" for n in ("clv", "p_churn", *PROFILE_COLUMNS)]
    texts = ["`reasons` string", "`value_reasons` string"]
    features = [f"`{FEATURE_PREFIX}{n}` double" for n in feature_names]
    return ", ".join(["`customer_id` string", *numbers, *texts, *features])


# --- scoring per group of customers -----------------------------------------------------------

_MODELS: dict[str, CustomerValueModel] = {}


def _model_at(name: str) -> CustomerValueModel:
    """The model shipped with ``addFile``, loaded once per Python worker process."""
    model = _MODELS.get(name)
    if model is None:
        from pyspark import SparkFiles

        # One XGBoost thread per worker: Spark already runs one worker per core.
        model = CustomerValueModel.load(SparkFiles.get(name), n_jobs=1)
        _MODELS[name] = model
    return model


def score_group(
    orders: pd.DataFrame,
    events: pd.DataFrame | None = None,
    *,
    model_name: str,
    cutoff: pd.Timestamp,
    settings: ScoreSettings,
) -> pd.DataFrame:
    """``applyInPandas``: one group of whole customers scored as one chunk of serving.batch."""
    model = _model_at(model_name)
    orders = restore(orders.sort_values(ROW, kind="stable"), ORDER_TYPES)
    if events is not None:
        events = restore(events.sort_values(ROW, kind="stable"), EVENT_TYPES)
    features = build_features(orders, events, cutoff=cutoff, spec=model.spec)
    names = list(model.feature_names_in_)
    if features.empty:
        return pd.DataFrame(
            columns=[
                "customer_id",
                "clv",
                "p_churn",
                *PROFILE_COLUMNS,
                "reasons",
                "value_reasons",
                *[f"{FEATURE_PREFIX}{n}" for n in names],
            ]
        )
    scored = score_frame(model, features, settings)
    for name in names:
        scored[f"{FEATURE_PREFIX}{name}"] = features[name].to_numpy(dtype="float64")
    scored = scored.reset_index()
    for column in ("customer_id", "reasons", "value_reasons"):
        scored[column] = scored[column].astype("object")
    return scored


def finish_partition(
    batches: Iterable[pd.DataFrame],
    *,
    base: Any,
    cutoff: pd.Timestamp,
    horizon_days: int,
    info: dict[str, str],
    feature_names: Sequence[str] = (),
) -> Iterator[pd.DataFrame]:
    """``mapInPandas``: scored rows to the run's columns, ranked in the broadcast ``base``.

    The ``f__<feature>`` columns of ``feature_names`` are kept after them (the online unit:
    a customer's features beside its answer).
    """
    kept = [f"{FEATURE_PREFIX}{name}" for name in feature_names]
    for batch in batches:
        frame = batch[
            ["customer_id", "clv", "p_churn", *PROFILE_COLUMNS, "reasons", "value_reasons"]
        ]
        done = finish_scores(frame, base.value, cutoff, horizon_days, info)
        # Spark holds microseconds; text columns go over as Python strings (None: null).
        done["cutoff"] = done["cutoff"].astype("datetime64[us]")
        for column in ("customer_id", *TEXT_FIELDS, "model_name", "model_version"):
            done[column] = done[column].astype("object").where(done[column].notna(), None)
        for column in kept:
            done[column] = batch[column].to_numpy(dtype="float64")
        yield done
