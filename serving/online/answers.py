"""Online scoring behind the BentoML service: lookups (feature table or store), inline history."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from features import build_features
from features.history import as_cutoff, format_cutoff
from features.io import EVENT_REQUIRED, DataValidationError, validate_events, validate_orders
from features.spec import FeatureSpec
from serving.lookup_store import Found, StoreView
from serving.run_files import SCORED_FIELDS, BatchAnswers, FeatureTable
from serving.scoring import ScoreSettings, next_order_dates, score_matrix
from serving.segments import Base
from training.model import CustomerValueModel
from training.profile import DEFAULT_LEVEL

logger = logging.getLogger(__name__)

#: The reasons every online answer carries (serving.scoring.REASON_MODES); batch answers are
#: served only when the batch run computed them the same way.
ONLINE_REASONS = "approximate"

STATUS_OK = "ok"
STATUS_UNKNOWN = "unknown_customer"
STATUS_INVALID = "invalid"
SOURCE_TABLE = "feature_table"
SOURCE_INLINE = "inline"


#: Where lookups are answered from: the batch run's feature table in this process's memory,
#: or a lookup store shared by the workers (:mod:`serving.lookup_store`).
Lookups = FeatureTable | StoreView


def load_base(
    table: Lookups, model: CustomerValueModel, answers: BatchAnswers | None = None
) -> tuple[Base, str]:
    """The scored base's tiers and sorted CLVs, equal to the ones batch scoring used.

    Value tiers and percentiles rank a customer in the whole base's predicted CLV, so they
    cannot be computed from one request. With the batch run's answers
    (:func:`serving.run_files.load_batch_answers`) they come from its CLVs, exactly as batch
    computed them. Otherwise the served model predicts the whole feature table once at start-up
    and the base is that, as batch would compute it with this model.

    A lookup store holds the batch run's tiers and a sketch of its CLVs
    (:meth:`serving.segments.Base.sketch`): the base comes from there, whatever answers lookups
    (with another model version than the run's, the new model's CLVs are placed in the run's
    base until the next batch run).

    Returns
    -------
    (Base, str)
        The base (:class:`serving.segments.Base`) and where its CLVs came from.
    """
    if isinstance(table, StoreView):
        return table.store.meta.base, f"the batch run's tiers and CLV sketch in {table.path}"
    if answers is not None:
        return Base.of(answers.clv), f"clv of {answers.source}"
    clv, _ = model.predict_matrix(table.matrix.astype("float32"))
    return Base.of(clv), f"clv predicted on {table.path} at startup"


def table_settings(table: Lookups) -> ScoreSettings:
    """How the batch run that wrote ``table`` scored: the service answers the same way.

    The interval level and discount rate come from the table's stamp (defaults for tables
    written before they were recorded); reasons are always :data:`ONLINE_REASONS`.
    """
    stamp = table.stamp
    return ScoreSettings(
        reasons=ONLINE_REASONS,
        interval=float(stamp.interval) if stamp.interval else DEFAULT_LEVEL,
        discount_rate=float(stamp.discount_rate) if stamp.discount_rate else 0.0,
    )


@dataclass
class Pending:
    """A request split into the feature rows to score and the answers already known.

    Attributes
    ----------
    results : list of dict
        One result per request item, in request order; items still to be scored have
        ``status`` ``"ok"`` and no numbers yet.
    slots : list of int
        For each row of ``matrix``, the request item it belongs to.
    matrix : numpy.ndarray or None
        The feature rows to score (float64, the model's feature order), None when no item
        needs the model.
    """

    results: list[dict[str, Any]]
    slots: list[int] = field(default_factory=list)
    matrix: np.ndarray | None = None


def _result(
    customer_id: str,
    status: str,
    source: str,
    horizon_days: int,
    cutoff: str,
    error: str | None = None,
) -> dict[str, Any]:
    return {
        "customer_id": customer_id,
        "status": status,
        "cutoff": cutoff,
        "horizon_days": horizon_days,
        **dict.fromkeys(SCORED_FIELDS),
        "source": source,
        "error": error,
    }


def unknown_error(customer_id: str, table_cutoff: str) -> str:
    """The ``error`` of an unknown customer's result (``status: unknown_customer``)."""
    return (
        f"customer_id {customer_id!r} is not in the feature table (cutoff {table_cutoff}); "
        "send its orders to score it from its history"
    )


def find(table: Lookups, answers: BatchAnswers | None, ids: Sequence[str]) -> Found:
    """The feature rows (and batch answers, when served) of ``ids``, in one batched read.

    A lookup store is read once for the whole request; the in-memory table is indexed.
    """
    if isinstance(table, StoreView):
        return table.find(ids)
    rows = {i: row for i in ids if (row := table.positions.get(i)) is not None}
    return Found(
        {i: table.matrix[row] for i, row in rows.items()},
        None if answers is None else {i: answers.record(row) for i, row in rows.items()},
    )


def prepare(
    items: Sequence[Mapping[str, Any]],
    table: Lookups,
    spec: FeatureSpec,
    answers: BatchAnswers | None = None,
) -> Pending:
    """Find or build the features of every request item (or its answer, for a lookup).

    Parameters
    ----------
    items : sequence of mapping
        ``{"customer_id": ..., "cutoff": ... (optional), "orders": [...] (optional),
        "service_events": [...] (optional)}``. Items without ``orders`` are looked up in
        ``table``; items with ``orders`` have their features built from that history with the
        same code as training and batch (strict validation: any unusable row makes the item
        ``invalid`` with the validation message).
    table : FeatureTable or StoreView
        The materialised features: in memory, or a lookup store (whose view says whether its
        batch answers are served).
    spec : FeatureSpec
        The served model's feature spec.
    answers : BatchAnswers, optional
        The batch run's answers for the in-memory table's customers; found lookups are
        answered from them and need no model call.

    Returns
    -------
    Pending
    """
    horizon = spec.horizon_days
    table_cutoff = format_cutoff(table.cutoff)  # once per request, not per item
    results: list[dict[str, Any]] = []
    lookup_slots: list[int] = []
    lookup_rows: list[np.ndarray] = []
    wanted: list[tuple[int, str]] = []
    inline: list[tuple[int, pd.Timestamp, pd.DataFrame, pd.DataFrame | None]] = []
    for slot, item in enumerate(items):
        customer_id = str(item["customer_id"])
        cutoff_text = item.get("cutoff")
        if item.get("orders") is None:
            result = _result(customer_id, STATUS_OK, SOURCE_TABLE, horizon, table_cutoff)
            if cutoff_text is not None and as_cutoff(cutoff_text) != table.cutoff:
                result["status"] = STATUS_INVALID
                result["error"] = (
                    f"cutoff {cutoff_text!r} differs from the feature table's cutoff "
                    f"{table_cutoff}; omit cutoff, or send the customer's orders "
                    "to score at another cutoff"
                )
            else:
                wanted.append((slot, customer_id))
            results.append(result)
            continue
        cutoff = as_cutoff(cutoff_text)
        result = _result(customer_id, STATUS_OK, SOURCE_INLINE, horizon, format_cutoff(cutoff))
        results.append(result)
        try:
            orders, events = validate_history(slot, item["orders"], item.get("service_events"))
        except DataValidationError as err:
            result["status"] = STATUS_INVALID
            result["error"] = str(err)
            continue
        inline.append((slot, cutoff, orders, events))

    if wanted:
        found = find(table, answers, [customer_id for _, customer_id in wanted])
        for slot, customer_id in wanted:
            result = results[slot]
            if (row := found.features.get(customer_id)) is None:
                result["status"] = STATUS_UNKNOWN
                result["error"] = unknown_error(customer_id, table_cutoff)
            elif found.answers is not None:
                result.update(found.answers[customer_id])
            else:
                lookup_slots.append(slot)
                lookup_rows.append(row)

    parts: list[np.ndarray] = []
    slots: list[int] = []
    if lookup_rows:
        parts.append(np.vstack(lookup_rows))
        slots.extend(lookup_slots)
    if inline:
        built_slots, built = build_inline_features(inline, spec, table.columns)
        for slot in {s for s, *_ in inline} - set(built_slots):
            results[slot]["status"] = STATUS_INVALID
            results[slot]["error"] = (
                f"no order before the cutoff {results[slot]['cutoff']}; expected at least one "
                "order with ordered_at < cutoff"
            )
        if built_slots:
            parts.append(built.to_numpy(dtype="float64"))
            slots.extend(built_slots)
    matrix = np.concatenate(parts) if parts else None
    return Pending(results=results, slots=slots, matrix=matrix)


def validate_history(
    slot: int, orders: Sequence[Mapping[str, Any]], events: Sequence[Mapping[str, Any]] | None
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Validate one item's inline orders and events with the loader's rules, strictly.

    The rows get ``customer_id = str(slot)`` (the item's position), so several items can be
    built together without mixing histories even when they share a customer_id.

    Raises
    ------
    features.io.DataValidationError
        Naming the field (``customers[3].orders``), the column and the number of bad rows.
    """
    key = str(slot)
    raw_orders = pd.DataFrame.from_records(list(orders)).assign(customer_id=key)
    checked_orders = validate_orders(
        raw_orders, source=f"customers[{slot}].orders", strict=True
    ).frame
    checked_events = None
    if events is not None:
        # An empty list is data too: the customer had no service events (zeros, as in batch
        # scoring with an events file), while no list at all means unknown (NaN features).
        raw_events = pd.DataFrame.from_records(
            list(events), columns=None if events else EVENT_REQUIRED
        )
        raw_events = raw_events.assign(customer_id=key)
        checked_events = validate_events(
            raw_events, source=f"customers[{slot}].service_events", strict=True
        ).frame
    return checked_orders, checked_events


def build_inline_features(
    inline: Sequence[tuple[int, pd.Timestamp, pd.DataFrame, pd.DataFrame | None]],
    spec: FeatureSpec,
    columns: Sequence[str],
) -> tuple[list[int], pd.DataFrame]:
    """Features of validated inline histories, one :func:`build_features` call per cutoff.

    Returns
    -------
    (list of int, pandas.DataFrame)
        The request slots that have at least one order before their cutoff and their feature
        rows (RangeIndex, ``columns``) in the same order.
    """
    # Customers sent with service events (even none) and without them are built apart: with an
    # events table, a customer without events has zero tickets; without one, unknown.
    groups: dict[tuple[pd.Timestamp, bool], list[tuple[pd.DataFrame, pd.DataFrame | None]]] = {}
    for _, cutoff, orders, events in inline:
        groups.setdefault((cutoff, events is not None), []).append((orders, events))
    slots: list[int] = []
    frames: list[pd.DataFrame] = []
    for (cutoff, with_events), histories in groups.items():
        orders = pd.concat([o for o, _ in histories], ignore_index=True)
        events = pd.concat([e for _, e in histories], ignore_index=True) if with_events else None
        features = build_features(orders, events, cutoff=cutoff, spec=spec)
        slots.extend(int(key) for key in features.index)
        frames.append(features[list(columns)])
    if not frames:
        return [], pd.DataFrame(columns=list(columns), dtype="float64")
    return slots, pd.concat(frames, ignore_index=True)


def score_rows(
    model: CustomerValueModel, matrix: np.ndarray, base: Base, settings: ScoreSettings
) -> list[dict[str, Any]]:
    """Predictions, profile, segments, action and reasons for feature rows, one record each.

    The numbers and reasons come from :func:`serving.scoring.score_matrix`, the segments and
    percentiles from the base (:class:`serving.segments.Base`): the same functions and base
    batch scoring uses, so online and batch answers are identical. Rows of several requests
    are scored together (the service batches them).

    Returns
    -------
    list of dict
        Keys :data:`SCORED_FIELDS` but ``next_order_date``, which :func:`finish` makes from
        ``next_order_days`` and each item's cutoff; NaN as None.
    """
    scores = score_matrix(model, matrix, settings)
    new = scores.profile["new_customer"] == 1.0
    value, risk, action = base.labels(scores.clv, scores.p_churn, new)
    numbers = {
        "clv": scores.clv,
        "p_churn": scores.p_churn,
        "clv_percentile": base.percentile(scores.clv),
        **scores.profile,
    }
    columns: dict[str, list[Any]] = {
        name: [None if np.isnan(v) else v for v in values.tolist()]
        for name, values in numbers.items()
    }
    columns.update(
        value_segment=value.tolist(),
        risk_segment=risk.tolist(),
        action=action.tolist(),
        reasons=scores.reasons.to_pylist(),
        value_reasons=scores.value_reasons.to_pylist(),
    )
    return [dict(zip(columns, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def finish(pending: Pending, scored: Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """Fill the records of :func:`score_rows` into the results of the scored items."""
    if scored is None or not pending.slots:
        return pending.results
    if len(scored) != len(pending.slots):
        raise RuntimeError(
            f"the model returned {len(scored)} rows for {len(pending.slots)} customers"
        )
    for slot, record in zip(pending.slots, scored, strict=True):
        result = pending.results[slot]
        for name in SCORED_FIELDS:
            if name != "next_order_date":
                result[name] = record[name]
        days = record["next_order_days"]
        result["next_order_date"] = (
            None
            if days is None
            else next_order_dates(as_cutoff(result["cutoff"]), np.array([days]))[0]
        )
    return pending.results
