"""What Spark's Python workers run to validate an input: slices of rows in, typed rows out.

Kept apart from the driver code (:mod:`features.spark_input`) so a worker imports only what it
runs. The rules are :mod:`features.io`'s, applied to one slice at a time with the rows' places
in the whole input (``row_numbers``), so the quarantine and synthesised ids are the file's.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from features.io import validate_events, validate_orders

REJECT_MALFORMED_LINE = "malformed line"
REASON_DUPLICATE_ORDER_ID = "duplicate order_id"
#: Columns the slices add to the rows they return (double underscores: never a contract name).
ROW, KIND, REASON, RAW = "__row", "__kind", "__reason", "__raw_"
KIND_VALID, KIND_QUARANTINED, KIND_QUARANTINED_ID = "valid", "quarantined", "quarantined_id"
CORRUPT = "_corrupt_record"
#: The contract's date columns (orders and events).
DATE_COLUMNS: tuple[str, ...] = ("ordered_at", "promised_at", "delivered_at", "occurred_at")
#: Nanoseconds since 1970 pass this 100 s after 1970; a yyyymmdd integer stays below 1e8.
NANOSECONDS_FLOOR = 1e11
#: Prefix of the feature columns beside the scores in :func:`score_group`'s output.

ORDER_TYPES: dict[str, str] = {
    "customer_id": "string",
    "ordered_at": "timestamp",
    "amount": "double",
    "order_id": "string",
    "status": "string",
    "promised_at": "timestamp",
    "delivered_at": "timestamp",
}
EVENT_TYPES: dict[str, str] = {
    "customer_id": "string",
    "occurred_at": "timestamp",
    "kind": "string",
    "order_id": "string",
    "score": "double",
    "resolution_hours": "double",
    "amount": "double",
}


def validated_schema(kind: str, data_columns: list[str]) -> str:
    """The Spark schema of :func:`validate_slices`' output for ``kind`` (orders or events)."""
    types = ORDER_TYPES if kind == "orders" else EVENT_TYPES
    canonical = ", ".join(f"`{name}` {t}" for name, t in types.items())
    raw = ", ".join(f"`{RAW}{name}` string" for name in data_columns)
    return f"{canonical}, `{ROW}` long, `{KIND}` string, `{REASON}` string" + (
        f", {raw}" if raw else ""
    )


def _as_text(values: pd.Series) -> pd.Series:
    """Raw values as the quarantine keeps them: text, missing as null."""
    if pd.api.types.is_datetime64_any_dtype(values):
        text = values.dt.strftime("%Y-%m-%dT%H:%M:%S.%f")
    else:
        text = values.astype("str")
    return text.where(values.notna(), None).astype("object")


def validate_slices(
    batches: Iterable[pa.RecordBatch], kind: str, nanos: list[str], data_columns: list[str]
) -> Iterator[pa.RecordBatch]:
    """``mapInArrow``: each slice validated by features.io, valid and quarantined rows out.

    Arrow in and out (not ``mapInPandas``): the slice becomes the frame features.files would
    give (Arrow-backed text), and the columns a row does not use (a valid row's raw text) go
    back as Arrow nulls rather than millions of Python ``None``.
    """
    types = ORDER_TYPES if kind == "orders" else EVENT_TYPES
    schema = _arrow_schema(types, data_columns)
    validate = validate_orders if kind == "orders" else validate_events
    for batch in batches:
        raw = batch.to_pandas()
        rows = raw.pop(ROW).to_numpy(dtype="int64")
        corrupt = raw.pop(CORRUPT) if CORRUPT in raw.columns else None
        for name in nanos:
            if name in raw.columns and _holds_nanoseconds(raw[name]):
                raw[name] = pd.to_datetime(raw[name], unit="ns")
        malformed = corrupt.notna().to_numpy() if corrupt is not None else np.zeros(len(raw), bool)
        out: list[pd.DataFrame] = []
        if malformed.any():
            bad = raw.loc[malformed]
            out.append(_quarantine_rows(bad, rows[malformed], REJECT_MALFORMED_LINE, data_columns))
        good_raw = raw.loc[~malformed]
        good_rows = rows[~malformed]
        if len(good_raw):
            kwargs: dict[str, Any] = {"row_numbers": good_rows}
            if kind == "orders":
                kwargs["unique_order_ids"] = False
            result = validate(good_raw.reset_index(drop=True), **kwargs)
            quarantine = result.quarantine
            if len(quarantine):
                positions = pd.Index(good_rows).get_indexer(quarantine["source_row"].to_numpy())
                out.append(
                    _quarantine_rows(
                        good_raw.iloc[positions],
                        quarantine["source_row"].to_numpy(),
                        quarantine["reason"].astype("object").to_numpy(),
                        data_columns,
                    )
                )
            kept = good_rows[~np.isin(good_rows, quarantine["source_row"].to_numpy())]
            frame = result.frame.copy()
            frame[ROW] = kept
            frame[KIND] = KIND_VALID
            out.append(frame)
            if len(result.quarantined_customers):
                ids = pd.DataFrame({"customer_id": result.quarantined_customers.astype("object")})
                ids[KIND] = KIND_QUARANTINED_ID
                out.append(ids)
        for part in out:
            yield _to_batch(part, schema)


def _arrow_schema(types: dict[str, str], data_columns: list[str]) -> pa.Schema:
    """:func:`validated_schema` as Arrow (Spark's timestamps: microseconds, UTC)."""
    arrow = {"string": pa.string(), "double": pa.float64(), "timestamp": pa.timestamp("us", "UTC")}
    return pa.schema(
        [(name, arrow[t]) for name, t in types.items()]
        + [(ROW, pa.int64()), (KIND, pa.string()), (REASON, pa.string())]
        + [(f"{RAW}{name}", pa.string()) for name in data_columns]
    )


def _to_batch(frame: pd.DataFrame, schema: pa.Schema) -> pa.RecordBatch:
    """A frame's columns in ``schema``'s order and types; absent columns as nulls."""
    n = len(frame)
    arrays = []
    for field in schema:
        if field.name not in frame.columns:
            arrays.append(pa.nulls(n, field.type))
            continue
        values = frame[field.name]
        if pa.types.is_timestamp(field.type):
            values = pd.to_datetime(values).astype("datetime64[us]")
        elif pa.types.is_floating(field.type):
            values = pd.to_numeric(values).astype("float64")
        elif pa.types.is_string(field.type):
            values = values.astype("str")
        arrays.append(pa.array(values, type=field.type, from_pandas=True))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _holds_nanoseconds(values: pd.Series) -> bool:
    """An int64 date column in nanoseconds since 1970, not yyyymmdd (those stay below 1e8)."""
    numbers = pd.to_numeric(values, errors="coerce")
    return bool((numbers.abs() > NANOSECONDS_FLOOR).any())


def _quarantine_rows(
    raw: pd.DataFrame,
    rows: np.ndarray,
    reason: str | np.ndarray,
    data_columns: list[str],
) -> pd.DataFrame:
    frame = pd.DataFrame({ROW: rows})
    frame[KIND] = KIND_QUARANTINED
    frame[REASON] = reason
    for name in data_columns:
        frame[f"{RAW}{name}"] = (
            _as_text(raw[name].reset_index(drop=True)) if name in raw.columns else None
        )
    return frame


def restore(frame: pd.DataFrame, types: dict[str, str]) -> pd.DataFrame:
    """Spark's pandas rows back in the dtypes features.io gives (``str``, ``datetime64[ns]``)."""
    out = pd.DataFrame(index=pd.RangeIndex(len(frame)))
    for name, kind in types.items():
        values = frame[name].reset_index(drop=True)
        if kind == "timestamp":
            out[name] = naive_utc(values)
        elif kind == "double":
            out[name] = values.astype("float64")
        else:
            out[name] = values.astype("str")
    return out


def naive_utc(values: pd.Series) -> pd.Series:
    """Timestamps as the contract holds them: naive UTC ``datetime64[ns]``.

    Arrow hands Spark's timestamps over with the session's zone (UTC) attached, or without
    one (inside applyInPandas); both become the same naive values.
    """
    values = pd.to_datetime(values)
    if values.dt.tz is not None:
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
    return values.astype("datetime64[ns]")
