"""Loading: column mapping, date and id parsing, every validation message, quarantine counts."""

import pandas as pd
import pytest

from features.io import (
    DataValidationError,
    load_events,
    load_orders,
    parse_column_mapping,
    parse_timestamps,
)

MAPPING = "customer_id=cust,ordered_at=date,amount=spend"


def write(tmp_path, text, name="orders.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_mapping_renames_and_ids_stay_as_written(tmp_path):
    path = write(tmp_path, "cust,date,spend\n00042,2024-01-05,10.5\n7,20240106,3\n")
    result = load_orders(path, columns=MAPPING)
    assert list(result.frame["customer_id"]) == ["00042", "7"]
    assert list(result.frame["ordered_at"]) == [
        pd.Timestamp("2024-01-05"),
        pd.Timestamp("2024-01-06"),
    ]
    assert result.frame["amount"].tolist() == [10.5, 3.0]
    assert result.rows_quarantined == 0
    # Optional columns exist with missing values so feature code can rely on them.
    assert result.frame["status"].isna().all() and result.frame["delivered_at"].isna().all()
    assert result.frame["order_id"].is_unique


def test_cdnow_style_three_column_parquet(tmp_path):
    frame = pd.DataFrame({"cust": [1, 2], "date": [19970101, 19970102], "spend": [29.33, 11.77]})
    frame.to_parquet(tmp_path / "cdnow.parquet")
    result = load_orders(tmp_path / "cdnow.parquet", columns=MAPPING)
    assert list(result.frame["customer_id"]) == ["1", "2"]
    assert result.frame["ordered_at"].iloc[1] == pd.Timestamp("1997-01-02")


def test_timestamps_iso_tz_aware_and_yyyymmdd_become_naive_utc():
    parsed = parse_timestamps(
        pd.Series(["2024-03-31", "2024-03-31T12:00:00+02:00", "20240401", "31/03/2024", None])
    )
    assert parsed.dtype == "datetime64[ns]"
    assert list(parsed[:3]) == [
        pd.Timestamp("2024-03-31"),
        pd.Timestamp("2024-03-31T10:00"),
        pd.Timestamp("2024-04-01"),
    ]
    assert parsed[3:].isna().all()


def test_numeric_timestamps_that_are_not_yyyymmdd_become_missing():
    # A non-whole number or one past int64 must not break the parse of the other rows.
    # Fewer than 8 digits is not a yyyymmdd either (2024111: 2024-11-01 or 2024-01-11?).
    for values in ([20240401, 2.5, -1, 1e30, 2024111, 202411], [20240401, 2**63]):
        parsed = parse_timestamps(pd.Series(values))
        assert parsed[0] == pd.Timestamp("2024-04-01")
        assert parsed[1:].isna().all()


def test_missing_required_column_lists_what_the_file_has(tmp_path):
    path = write(tmp_path, "cust,date\n1,2024-01-01\n")
    with pytest.raises(
        DataValidationError,
        match=r"missing required column\(s\) 'amount'; the file has columns: customer_id, "
        r"ordered_at\. Rename them with a mapping, e\.g\. --columns amount=<your column>",
    ):
        load_orders(path, columns="customer_id=cust,ordered_at=date")


@pytest.mark.parametrize(
    ("row", "reason", "message"),
    [
        (",2024-01-01,1,x", "missing customer_id", "column 'customer_id' has 1 empty values"),
        ("c,yesterday,1,x", "unparseable ordered_at", "column 'ordered_at' has 1 missing or unp"),
        ("c,2024-01-01,abc,x", "non-numeric amount", "column 'amount' has 1 missing or non-numer"),
        (
            "c,2024-01-01,-3,x",
            "negative amount",
            r"column 'amount' has 1 negative values; "
            r"expected amount >= 0",
        ),
        ("c,2024-01-01,1,o1", "duplicate order_id", "column 'order_id' has 1 repeated values"),
        ("c,2024-01-01,inf,x", "non-numeric amount", "column 'amount' has 1 missing or non-numer"),
        (
            "c,2024-01-01,1e39,x",
            "implausible amount",
            "column 'amount' has 1 values beyond 1,000,000,000,000 in size",
        ),
    ],
)
def test_each_unusable_row_is_quarantined_with_its_reason(tmp_path, row, reason, message):
    path = write(tmp_path, f"customer_id,ordered_at,amount,order_id\nc,2024-01-01,1,o1\n{row}\n")
    result = load_orders(path)
    assert result.rows_read == 2 and result.rows_loaded == 1 and result.rows_quarantined == 1
    assert result.quarantine["reason"].tolist() == [reason]
    assert result.quarantine["source_row"].tolist() == [1]
    assert any(message in p for p in result.problems), result.problems
    with pytest.raises(DataValidationError, match=f"1 of 2 rows are unusable:\n.*{message}"):
        load_orders(path, strict=True)


def test_unknown_status_is_quarantined_and_named(tmp_path):
    path = write(
        tmp_path,
        "customer_id,ordered_at,amount,status\nc,2024-01-01,1,Completed\n"
        "c,2024-01-02,1,lost\nc,2024-01-03,1,\n",
    )
    result = load_orders(path)
    assert result.frame["status"].tolist()[0] == "completed"
    assert result.frame["status"].isna().tolist() == [False, True]
    assert result.problems == [
        f"orders file {str(path)!r}: column 'status' has 1 unknown values ('lost'); expected one "
        "of completed, cancelled, returned or empty"
    ]


def test_quarantine_counts_add_up_and_file_is_written(tmp_path):
    lines = ["customer_id,ordered_at,amount,order_id"]
    lines += [f"c{i},2024-01-{1 + i % 28:02d},{i},o{i}" for i in range(20)]
    lines += [",2024-01-01,1,x1", "c,never,1,x2", "c,2024-01-01,-1,x3", "c,2024-01-01,1,o3"]
    path = write(tmp_path, "\n".join(lines) + "\n")
    result = load_orders(path)
    assert result.rows_loaded + result.rows_quarantined == result.rows_read == 24
    assert result.rows_quarantined == 4
    written = result.write_quarantine(tmp_path / "out", "orders")
    back = pd.read_csv(written, dtype=str)
    assert len(back) == 4 and set(back["reason"]) == {
        "missing customer_id",
        "unparseable ordered_at",
        "negative amount",
        "duplicate order_id",
    }
    # A later clean load removes the file: it always describes the last run.
    clean = load_orders(write(tmp_path, "\n".join(lines[:21]) + "\n"))
    assert clean.write_quarantine(tmp_path / "out", "orders") is None
    assert not written.exists()


def test_unparseable_optional_dates_become_missing_and_are_reported(tmp_path):
    path = write(tmp_path, "customer_id,ordered_at,amount,delivered_at\nc,2024-01-01,1,soon\n")
    result = load_orders(path)
    assert result.rows_loaded == 1 and result.frame["delivered_at"].isna().all()
    assert (
        "column 'delivered_at' has 1 unparseable values; treated as missing" in result.problems[0]
    )


def test_events_validation(tmp_path):
    path = write(
        tmp_path,
        "customer_id,occurred_at,kind,score,resolution_hours\n"
        "c,2024-01-01,Ticket,4,12\nc,2024-01-02,review,7,\nc,2024-01-03,,3,\n"
        "c,2024-01-04,ticket,,-2\nc,2024-01-05,ticket,,inf\n",
        name="events.csv",
    )
    result = load_events(path)
    assert result.frame["kind"].tolist() == ["ticket"]
    assert result.quarantine["reason"].tolist() == [
        "score above 5",
        "missing kind",
        "negative resolution_hours",
        "non-numeric resolution_hours",
    ]
    assert any(
        "column 'score' has 1 values above 5; expected score between 1 and 5" in p
        for p in result.problems
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("customer_id", "is not 'canonical=your_column'"),
        ("buyer=cust", "unknown column 'buyer'"),
        ("customer_id=x,order_id=x", "uses your column 'x' twice"),
    ],
)
def test_bad_mapping_is_explained(text, message):
    with pytest.raises(DataValidationError, match=message):
        parse_column_mapping(text)


def test_unknown_format_and_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_orders(tmp_path / "nope.csv")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(DataValidationError, match="expected .csv, .tsv or .parquet"):
        load_orders(tmp_path / "x.json")
