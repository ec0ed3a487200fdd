"""Dates outside 1900-01-01..2200-01-01 are refused like unparseable ones, whatever their form."""

import datetime as dt
import string

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import settings

from features.history import as_cutoff, as_timestamp
from features.io import (
    DATE_RANGE,
    EARLIEST_DATE,
    LATEST_DATE,
    DataValidationError,
    load_events,
    load_orders,
    parse_timestamps,
    validate_orders,
)

#: Placeholders and typos seen in exports: far outside the range, just outside it, and dates
#: pandas can hold in nanoseconds (1677-2262) that still overflow day counts downstream.
OUT_OF_RANGE = ["0001-01-01", "9999-12-31", "1700-05-05", "1899-12-31T23:59:59", "2200-01-01"]


def test_the_range_is_1900_to_2200():
    assert (EARLIEST_DATE, LATEST_DATE) == (pd.Timestamp("1900-01-01"), pd.Timestamp("2200-01-01"))
    assert DATE_RANGE == "1900-01-01 to 2200-01-01 (exclusive)"


def test_the_range_ends_are_exact():
    parsed = parse_timestamps(
        pd.Series(["1900-01-01", "2199-12-31T23:59:59.999999", "1899-12-31T23:59:59", "22000101"])
    )
    assert parsed.dtype == "datetime64[ns]"
    assert parsed[:2].tolist() == [
        pd.Timestamp("1900-01-01"),
        pd.Timestamp("2199-12-31T23:59:59.999999"),
    ]
    assert parsed[2:].isna().all()


@pytest.mark.parametrize("value", [*OUT_OF_RANGE, "00010101", "99991231"])
def test_out_of_range_text_quarantines_the_order_and_names_column_count_and_range(tmp_path, value):
    path = tmp_path / "orders.csv"
    path.write_text(f"customer_id,ordered_at,amount\nc,2024-01-01,1\nc,{value},2\nd,{value},3\n")
    result = load_orders(path)
    assert result.frame["ordered_at"].tolist() == [pd.Timestamp("2024-01-01")]
    assert result.quarantine[["reason", "source_line"]].values.tolist() == [
        ["ordered_at out of range", 3],
        ["ordered_at out of range", 4],
    ]
    message = (
        "column 'ordered_at' has 2 dates outside 1900-01-01 to 2200-01-01 (exclusive); "
        "expected plausible dates"
    )
    assert result.problems == [f"orders file {str(path)!r}: {message}"]
    with pytest.raises(DataValidationError, match=r"2 of 3 rows are unusable:\n.*outside 1900"):
        load_orders(path, strict=True)


def test_out_of_range_yyyymmdd_integers_and_datetime_columns_of_any_unit(tmp_path):
    dates = [dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31), dt.datetime(1700, 5, 5)]
    columns = {
        "yyyymmdd": pa.array([10000101, 99991231, 17000505, 20240101]),
        **{
            unit: pa.array([*dates, dt.datetime(2024, 1, 1)], pa.timestamp(unit))
            for unit in ("s", "ms", "us")
        },
        "tz_aware": pa.array([*dates, dt.datetime(2024, 1, 1)], pa.timestamp("us", tz="UTC")),
        "date32": pa.array([d.date() for d in dates] + [dt.date(2024, 1, 1)], pa.date32()),
    }
    for name, ordered_at in columns.items():
        table = pa.table({"customer_id": ["a", "b", "c", "d"], "ordered_at": ordered_at})
        pq.write_table(table.append_column("amount", pa.array([1.0] * 4)), tmp_path / "o.parquet")
        result = load_orders(tmp_path / "o.parquet")
        assert result.frame["customer_id"].tolist() == ["d"], name
        assert set(result.quarantine["reason"]) == {"ordered_at out of range"}, name
        assert "column 'ordered_at' has 3 dates outside 1900-01-01" in result.problems[0], name


def test_a_ns_column_beyond_the_range_is_refused_too():
    # datetime64[ns] holds 1677-2262: 1700 and 2250 fit it, and are still outside the range.
    values = pd.Series(pd.to_datetime(["1700-01-01", "2250-01-01", "2024-05-05"]), dtype="M8[ns]")
    assert values.dtype == "datetime64[ns]"
    assert parse_timestamps(values).isna().tolist() == [True, True, False]


def test_out_of_range_optional_dates_become_missing_and_are_reported(tmp_path):
    path = tmp_path / "orders.csv"
    path.write_text(
        "customer_id,ordered_at,amount,promised_at,delivered_at\n"
        "c,2024-01-01,1,9999-12-31,0001-01-01\nc,2024-01-02,1,2024-01-04,soon\n"
    )
    result = load_orders(path)
    assert result.rows_loaded == 2 and result.rows_quarantined == 0
    assert result.frame["promised_at"].isna().tolist() == [True, False]
    assert result.frame["delivered_at"].isna().all()
    assert [p.split(": ", 1)[1] for p in result.problems] == [
        "column 'promised_at' has 1 dates outside 1900-01-01 to 2200-01-01 (exclusive); "
        "treated as missing (expected plausible dates)",
        "column 'delivered_at' has 1 dates outside 1900-01-01 to 2200-01-01 (exclusive); "
        "treated as missing (expected plausible dates)",
        "column 'delivered_at' has 1 unparseable values; treated as missing (expected ISO 8601 "
        "or yyyymmdd)",
    ]


def test_out_of_range_event_dates_are_quarantined(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("customer_id,occurred_at,kind\nc,2024-01-01,ticket\nc,0001-01-01,ticket\n")
    result = load_events(path)
    assert result.quarantine["reason"].tolist() == ["occurred_at out of range"]


def test_a_placeholder_beside_nanosecond_timestamps_is_still_out_of_range():
    # pandas picks one unit per column; a nanosecond value would make 0001-01-01 NaT and the
    # message would call it unparseable.
    raw = pd.DataFrame(
        {
            "customer_id": ["a", "b"],
            "ordered_at": ["2024-01-01T00:00:00.000000001", "0001-01-01"],
            "amount": [1.0, 2.0],
        }
    )
    result = validate_orders(raw)
    assert result.frame["ordered_at"].tolist() == [pd.Timestamp("2024-01-01T00:00:00.000000001")]
    assert result.quarantine["reason"].tolist() == ["ordered_at out of range"]


def _share(full: int) -> int:
    """``full`` random cases, or a share of them in ``make test-fast``'s profile (100 examples
    is the default; tests/conftest.py)."""
    return full * min(settings.default.max_examples, 100) // 100


def test_parsing_never_raises_whatever_the_value():
    rng = np.random.default_rng(7)
    alphabet = list(string.printable + "éü\u2028\ufffd")
    digits = list("0123456789-:T+Z. ")
    values = [
        "9" * 40,
        "0001-01-01T00:00:00.000000001",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
        "2024-01-01T00:00:00+99:00",
        "-0001-01-01",
        "",
        None,
        *("".join(rng.choice(alphabet, rng.integers(1, 25))) for _ in range(_share(2000))),
        *("".join(rng.choice(digits, rng.integers(1, 25))) for _ in range(_share(5000))),
    ]
    for start in range(0, len(values), 101):
        for dtype in ("object", "str"):
            parsed = parse_timestamps(pd.Series(values[start : start + 101], dtype=dtype))
            assert parsed.dtype == "datetime64[ns]"
            assert ((parsed >= EARLIEST_DATE) & (parsed < LATEST_DATE) | parsed.isna()).all()
    mixed = [dt.datetime(1, 1, 1), dt.date(9999, 12, 31), 10**30, -1.5, True, object()]
    assert parse_timestamps(pd.Series(mixed, dtype="object")).isna().all()


@pytest.mark.parametrize("value", [*OUT_OF_RANGE[:-1], "1677-01-01", "2200-01-02"])
def test_a_cutoff_outside_the_range_is_a_value_error_naming_it_and_the_range(value):
    with pytest.raises(ValueError, match=f"cutoff '{value}' is outside the supported dates 1900-"):
        as_cutoff(value)


def test_a_cutoff_may_be_the_end_of_the_range():
    # "latest" scores with the day after the last order: 2200-01-01 for one on 2199-12-31.
    assert as_cutoff("2200-01-01") == LATEST_DATE
    assert as_cutoff("1900-01-01") == EARLIEST_DATE
    with pytest.raises(ValueError, match="start '2200-01-01' is outside the supported dates"):
        as_timestamp("2200-01-01", "start")


def test_cutoff_text_only_ever_raises_value_error():
    rng = np.random.default_rng(11)
    alphabet = list(string.printable + "éü\ufffd")
    for _ in range(_share(3000)):
        text = "".join(rng.choice(alphabet, rng.integers(0, 30)))
        try:
            as_cutoff(text)
        except ValueError:
            pass
    for text in ("9" * 40, "2024-01-01T00:00+99:00", "0001-01-01T00:00:00.000000001", "\x00"):
        with pytest.raises(ValueError):
            as_cutoff(text)
