"""Online scoring behind the BentoML service: feature-table lookups, inline history, results."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features import build_features
from features.history import as_cutoff, format_cutoff
from features.io import EVENT_REQUIRED, DataValidationError, validate_events, validate_orders
from features.spec import FeatureSpec
from serving.batch import (
    DEFAULT_FEATURES_OUT,
    DEFAULT_MODEL_URI,
    META_CUTOFF,
    META_MODEL_NAME,
    META_MODEL_VERSION,
    META_REASONS,
    META_RUN_ID,
    SCORED_FIELDS,
)
from serving.scoring import score_matrix
from serving.segments import segment_labels, value_thresholds
from training.model import CustomerValueModel

logger = logging.getLogger(__name__)

MODEL_URI_ENV = "CUSTOMER_VALUE_MODEL_URI"
FEATURES_ENV = "CUSTOMER_VALUE_FEATURES"
API_KEY_ENV = "CUSTOMER_VALUE_API_KEY"
LOOKUPS_ENV = "CUSTOMER_VALUE_LOOKUPS"
#: How lookups are answered: from the batch run's scores when they belong to the served model
#: and the table's cutoff (``batch``, the default), or by the model on every request (``model``).
LOOKUP_MODES: tuple[str, ...] = ("batch", "model")
#: The batch scores file the feature table was written with; its CLVs give the value thresholds.
SCORES_NAME = "scores.parquet"
#: The reasons every online answer carries (serving.scoring.REASON_MODES); batch answers are
#: served only when the batch run computed them the same way.
ONLINE_REASONS = "approximate"

STATUS_OK = "ok"
STATUS_UNKNOWN = "unknown_customer"
STATUS_INVALID = "invalid"
SOURCE_TABLE = "feature_table"
SOURCE_INLINE = "inline"


@dataclass(frozen=True)
class OnlineConfig:
    """Where the service finds its model and feature table (infrastructure, from environment)."""

    model_uri: str = DEFAULT_MODEL_URI
    features: Path = DEFAULT_FEATURES_OUT
    lookups: str = "batch"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> OnlineConfig:
        """Read the service's settings from the environment.

        ``CUSTOMER_VALUE_MODEL_URI``, ``CUSTOMER_VALUE_FEATURES`` and ``CUSTOMER_VALUE_LOOKUPS``
        (else the defaults).

        Raises
        ------
        ValueError
            When ``CUSTOMER_VALUE_LOOKUPS`` is not one of :data:`LOOKUP_MODES`.
        """
        env = os.environ if environ is None else environ
        lookups = env.get(LOOKUPS_ENV) or "batch"
        if lookups not in LOOKUP_MODES:
            raise ValueError(
                f"{LOOKUPS_ENV}={lookups!r}; expected one of {', '.join(LOOKUP_MODES)}"
            )
        return cls(
            model_uri=env.get(MODEL_URI_ENV) or DEFAULT_MODEL_URI,
            features=Path(env.get(FEATURES_ENV) or DEFAULT_FEATURES_OUT),
            lookups=lookups,
        )


@dataclass(frozen=True)
class FeatureTable:
    """The materialised features of every scored customer at one cutoff, held in memory.

    Attributes
    ----------
    matrix : numpy.ndarray
        One float64 row per customer, columns in the model's feature order.
    positions : dict
        ``customer_id`` -> row of ``matrix``.
    columns : list of str
        The feature names (the model's ``feature_names_in_``).
    cutoff : pandas.Timestamp
        The point in time the features describe.
    model_name, model_version : str
        The model of the batch run that wrote the table.
    run_id : str
        The batch run that wrote it (empty for tables written before run ids).
    path : pathlib.Path
        Where it was read from.
    """

    matrix: np.ndarray
    positions: dict[str, int]
    columns: list[str]
    cutoff: pd.Timestamp
    model_name: str
    model_version: str
    run_id: str
    path: Path

    def __len__(self) -> int:
        return len(self.positions)

    def frame(self) -> pd.DataFrame:
        """The whole table as a DataFrame indexed by ``customer_id``."""
        ids = np.empty(len(self.positions), dtype=object)
        for customer_id, row in self.positions.items():
            ids[row] = customer_id
        return pd.DataFrame(
            self.matrix, index=pd.Index(ids, name="customer_id", dtype="str"), columns=self.columns
        )


def load_feature_table(path: str | Path, feature_names: Sequence[str]) -> FeatureTable:
    """Read the online feature table written by ``python -m serving.batch --features-out``.

    Raises
    ------
    FileNotFoundError
        When the file is missing (run ``make score`` first).
    ValueError
        When the table lacks a feature the model needs, has no cutoff metadata, or repeats a
        customer_id.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"online feature table {str(path)!r} does not exist; run `make score` (python -m "
            f"serving.batch --features-out {path}) or set {FEATURES_ENV}"
        )
    table = pq.read_table(path)
    meta = table.schema.metadata or {}
    if META_CUTOFF not in meta:
        raise ValueError(
            f"online feature table {str(path)!r} has no {META_CUTOFF.decode()!r} metadata; "
            "expected a table written by `python -m serving.batch --features-out`"
        )
    names = list(feature_names)
    missing = [c for c in ["customer_id", *names] if c not in table.column_names]
    if missing:
        raise ValueError(
            f"online feature table {str(path)!r} is missing column(s) {missing}; expected the "
            "model's features: re-run `make score` with the model being served"
        )
    ids = table.column("customer_id").to_pylist()
    positions = {str(customer_id): row for row, customer_id in enumerate(ids)}
    if len(positions) != len(ids):
        raise ValueError(
            f"online feature table {str(path)!r} has {len(ids) - len(positions)} repeated "
            "customer_id values; expected one row per customer"
        )
    matrix = table.select(names).to_pandas().to_numpy(dtype="float64")
    return FeatureTable(
        matrix=np.ascontiguousarray(matrix),
        positions=positions,
        columns=names,
        cutoff=as_cutoff(meta[META_CUTOFF].decode()),
        model_name=meta.get(META_MODEL_NAME, b"").decode(),
        model_version=meta.get(META_MODEL_VERSION, b"").decode(),
        run_id=meta.get(META_RUN_ID, b"").decode(),
        path=path,
    )


@dataclass(frozen=True)
class BatchAnswers:
    """The batch run's answers for the customers of the feature table, in table row order.

    Batch scoring writes the feature table and the scores from the same features with the same
    code (:func:`serving.scoring.score_matrix`), so for a lookup at the table's cutoff the
    scores file already holds the answer the model would compute; serving it from memory
    takes the model call (milliseconds of XGBoost fixed cost per call) off the request path.
    Strings stay in Arrow arrays (a million customers' reasons in a few hundred MB, not
    several times that as Python objects).

    Attributes
    ----------
    clv, p_churn : numpy.ndarray
        float64 per table row.
    labels : dict
        ``value_segment``, ``risk_segment``, ``action``, ``reasons``, ``value_reasons``:
        pyarrow arrays per table row.
    source : pathlib.Path
        The scores file.
    """

    clv: np.ndarray
    p_churn: np.ndarray
    labels: dict[str, pa.Array]
    source: Path

    def record(self, row: int) -> dict[str, Any]:
        """The scored fields (:data:`SCORED_FIELDS`) of one table row."""
        record: dict[str, Any] = {"clv": float(self.clv[row]), "p_churn": float(self.p_churn[row])}
        for name, values in self.labels.items():
            record[name] = values[row].as_py()
        return record


def load_batch_answers(table: FeatureTable, model_version: str) -> BatchAnswers | None:
    """The scores written beside the feature table by the same batch run, if they fit.

    They are used only when the scores file (``scores.parquet`` beside the table) was written
    by the same batch run as the table (same run id, hence the same model version, cutoff and
    customers), for the served model version, with the reasons the service gives
    (:data:`ONLINE_REASONS`); otherwise the reason is logged and None returned (lookups are
    then scored by the model).
    """
    scores_path = table.path.with_name(SCORES_NAME)
    if table.model_version != model_version:
        logger.warning(
            "feature table %s was written with model version %r but version %r is served; "
            "re-run `make score` so batch and online agree",
            table.path,
            table.model_version,
            model_version,
        )
        return None
    if not scores_path.exists():
        logger.warning(
            "no %s beside the feature table; lookups are scored by the model", scores_path
        )
        return None
    # One open for the metadata and the data: a file renamed in between cannot pass the check
    # with another run's rows.
    scores_file = pq.ParquetFile(scores_path)
    meta = scores_file.schema_arrow.metadata or {}
    run_id = meta.get(META_RUN_ID, b"").decode()
    reasons = meta.get(META_REASONS, b"").decode()
    if not table.run_id or run_id != table.run_id:
        logger.warning(
            "%s and the feature table come from different batch runs (%r, %r), e.g. a run "
            "wrote its scores elsewhere (--out); lookups are scored by the model",
            scores_path,
            run_id,
            table.run_id,
        )
        return None
    if reasons != ONLINE_REASONS:
        logger.warning(
            "%s was written with reasons %r; the service answers with %r reasons, so lookups "
            "are scored by the model",
            scores_path,
            reasons,
            ONLINE_REASONS,
        )
        return None
    scores = scores_file.read(columns=["customer_id", *SCORED_FIELDS])
    ids = scores.column("customer_id").cast(pa.string()).to_pylist()
    rows = np.fromiter((table.positions.get(i, -1) for i in ids), dtype="int64", count=len(ids))
    if len(ids) != len(table) or (rows < 0).any() or len(np.unique(rows)) != len(rows):
        logger.warning(
            "%s scores %d customers, the feature table holds %d (not the same set); lookups "
            "are scored by the model",
            scores_path,
            len(ids),
            len(table),
        )
        return None
    order = pa.array(np.argsort(rows))  # scores row for each table row
    taken = scores.take(order)
    return BatchAnswers(
        clv=taken.column("clv").to_numpy().astype("float64"),
        p_churn=taken.column("p_churn").to_numpy().astype("float64"),
        labels={
            name: taken.column(name).combine_chunks()
            for name in SCORED_FIELDS
            if name not in ("clv", "p_churn")
        },
        source=scores_path,
    )


def load_value_thresholds(
    table: FeatureTable, model: CustomerValueModel, answers: BatchAnswers | None = None
) -> tuple[dict[str, float], str]:
    """Value-segment thresholds equal to the ones batch scoring used for the same base.

    Value tiers are shares of the whole base's predicted CLV, so they cannot be computed from
    one request. With the batch run's answers (:func:`load_batch_answers`) they are computed
    from its CLVs, exactly as batch did. Otherwise the served model predicts the whole feature
    table once at startup and the thresholds are computed on those CLVs, as batch would with
    this model.

    Returns
    -------
    (dict, str)
        The thresholds (:func:`serving.segments.value_thresholds`) and where they came from.
    """
    if answers is not None:
        return value_thresholds(answers.clv), f"clv of {answers.source}"
    clv, _ = model.predict_matrix(table.matrix.astype("float32"))
    return value_thresholds(clv), f"clv predicted on {table.path} at startup"


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
    cutoff: pd.Timestamp | None,
    error: str | None = None,
) -> dict[str, Any]:
    return {
        "customer_id": customer_id,
        "status": status,
        "cutoff": None if cutoff is None else format_cutoff(cutoff),
        "horizon_days": horizon_days,
        "clv": None,
        "p_churn": None,
        "value_segment": None,
        "risk_segment": None,
        "action": None,
        "reasons": None,
        "value_reasons": None,
        "source": source,
        "error": error,
    }


def prepare(
    items: Sequence[Mapping[str, Any]],
    table: FeatureTable,
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
    table : FeatureTable
        The materialised features.
    spec : FeatureSpec
        The served model's feature spec.
    answers : BatchAnswers, optional
        The batch run's answers for the table's customers; found lookups are answered from
        them and need no model call.

    Returns
    -------
    Pending
    """
    horizon = spec.horizon_days
    results: list[dict[str, Any]] = []
    lookup_slots: list[int] = []
    lookup_rows: list[int] = []
    inline: list[tuple[int, pd.Timestamp, pd.DataFrame, pd.DataFrame | None]] = []
    for slot, item in enumerate(items):
        customer_id = str(item["customer_id"])
        cutoff_text = item.get("cutoff")
        if item.get("orders") is None:
            result = _result(customer_id, STATUS_OK, SOURCE_TABLE, horizon, table.cutoff)
            if cutoff_text is not None and as_cutoff(cutoff_text) != table.cutoff:
                result["status"] = STATUS_INVALID
                result["error"] = (
                    f"cutoff {cutoff_text!r} differs from the feature table's cutoff "
                    f"{format_cutoff(table.cutoff)}; omit cutoff, or send the customer's orders "
                    "to score at another cutoff"
                )
            elif (row := table.positions.get(customer_id)) is None:
                result["status"] = STATUS_UNKNOWN
                result["error"] = (
                    f"customer_id {customer_id!r} is not in the feature table (cutoff "
                    f"{format_cutoff(table.cutoff)}); send its orders to score it from its history"
                )
            elif answers is not None:
                result.update(answers.record(row))
            else:
                lookup_slots.append(slot)
                lookup_rows.append(row)
            results.append(result)
            continue
        cutoff = as_cutoff(cutoff_text)
        result = _result(customer_id, STATUS_OK, SOURCE_INLINE, horizon, cutoff)
        results.append(result)
        try:
            orders, events = validate_history(slot, item["orders"], item.get("service_events"))
        except DataValidationError as err:
            result["status"] = STATUS_INVALID
            result["error"] = str(err)
            continue
        inline.append((slot, cutoff, orders, events))

    parts: list[np.ndarray] = []
    slots: list[int] = []
    if lookup_rows:
        parts.append(table.matrix[lookup_rows])
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
    model: CustomerValueModel, matrix: np.ndarray, thresholds: dict[str, float]
) -> list[dict[str, Any]]:
    """Predictions, segments, action and reasons for feature rows, one record per row.

    The numbers and reasons come from :func:`serving.scoring.score_matrix` and the segments
    from :func:`serving.segments.segment_labels` with the base's thresholds: the same functions
    and thresholds batch scoring uses, so online and batch answers are identical. Rows of
    several requests are scored together (the service batches them).

    Returns
    -------
    list of dict
        Keys :data:`SCORED_FIELDS`, in row order.
    """
    scores = score_matrix(model, matrix, reasons=ONLINE_REASONS)
    value, risk, action = segment_labels(scores.clv, scores.p_churn, thresholds)
    columns = {
        "clv": scores.clv.tolist(),
        "p_churn": scores.p_churn.tolist(),
        "value_segment": value.tolist(),
        "risk_segment": risk.tolist(),
        "action": action.tolist(),
        "reasons": scores.reasons.to_pylist(),
        "value_reasons": scores.value_reasons.to_pylist(),
    }
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
            value = record[name]
            result[name] = float(value) if name in ("clv", "p_churn") else str(value)
    return pending.results
