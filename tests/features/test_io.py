"""Loading: column mapping, date and id parsing, every validation message, quarantine counts."""

import numpy as np
import pandas as pd
import pytest

import features.files as files_module
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
        match=r"missing required column\(s\) 'amount'; its columns are: customer_id, "
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
    assert result.quarantine["source_line"].tolist() == [3]
    assert any(message in p for p in result.problems), result.problems
    with pytest.raises(DataValidationError, match=f"1 of 2 rows are unusable:\n.*{message}"):
        load_orders(path, strict=True)


def test_order_ids_that_repeat_once_trimmed_are_repeats_and_blanked_ones_are_not(tmp_path):
    # " o1" is "o1" once trimmed. Blank ids become missing and repeat nothing; malformed ones
    # are quarantined for that, and a row is quarantined for its first reason only.
    path = write(
        tmp_path,
        'customer_id,ordered_at,amount,order_id\nc,2024-01-01,1,o1\nc,2024-01-02,1," o1"\n'
        'c,2024-01-03,1,"  "\nc,2024-01-04,1,"  "\n'
        'c,2024-01-05,1,"b\x01"\nc,2024-01-06,1,"b\x01"\n',
    )
    result = load_orders(path)
    assert result.quarantine["reason"].tolist() == [
        "duplicate order_id",
        "malformed order_id",
        "malformed order_id",
    ]
    assert result.quarantine["source_row"].tolist() == [1, 4, 5]
    assert result.rows_loaded == 3 and result.frame["order_id"].isna().sum() == 2


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


# -- reading CSV: rows never merge or vanish, malformed lines are quarantined by line ----------


def accounted(result) -> bool:
    """Every line of the file is the header, a blank line, a loaded or a quarantined row."""
    return result.lines == 1 + result.blank_lines + result.rows_loaded + result.rows_quarantined


def order_lines(count: int, start: int = 0) -> list[str]:
    return [f"c{i},2024-01-{1 + i % 28:02d},{i}" for i in range(start, start + count)]


def test_a_stray_quote_does_not_swallow_the_lines_after_it(tmp_path):
    # One unterminated quote used to make pandas read the next 110 lines as one field: 3 fake
    # customers with multi-line ids and 110 real rows gone without a word.
    lines = ["customer_id,ordered_at,amount", *order_lines(120)]
    lines[6] = '"c5,2024-01-06,5'
    path = write(tmp_path, "\n".join(lines) + "\n")
    result = load_orders(path)
    assert accounted(result) and result.rows_read == 120
    assert result.rows_loaded == 119
    assert result.quarantine[["reason", "source_line"]].values.tolist() == [
        ["unterminated quote", 7]
    ]
    assert result.quarantine["raw_line"].tolist() == ['"c5,2024-01-06,5']
    assert not result.frame["customer_id"].str.contains('[\n"]').any()
    assert any(
        "1 line(s) (line 7) open a quote" in p and str(path) in p for p in result.problems
    ), result.problems


def test_a_quote_inside_an_id_is_a_malformed_id(tmp_path):
    path = write(tmp_path, 'customer_id,ordered_at,amount\nc1,2024-01-01,1\nc"2,2024-01-02,2\n')
    result = load_orders(path)
    assert result.frame["customer_id"].tolist() == ["c1"]
    assert result.quarantine[["reason", "source_line"]].values.tolist() == [
        ["malformed customer_id", 3]
    ]
    assert result.quarantined_customers.empty  # a fragment, not a customer
    assert "column 'customer_id' has 1 values with a quote" in result.problems[0]


def test_quoted_values_and_doubled_quotes_are_read_as_csv(tmp_path):
    path = write(
        tmp_path,
        '"customer_id","ordered_at","amount","status"\n'
        '"c1","2024-01-01","1,5",completed\n'
        'c2,2024-01-02,2,"completed"\n',
    )
    result = load_orders(path)
    assert result.frame["customer_id"].tolist() == ["c2"]
    assert result.frame["status"].tolist() == ["completed"]
    # "1,5" is one field (the comma is quoted), not a number: quarantined, not split.
    assert result.quarantine[["reason", "source_line", "amount"]].values.tolist() == [
        ["non-numeric amount", 2, "1,5"]
    ]


@pytest.mark.parametrize(
    ("line", "reason"),
    [("c9,2024-01-09,9,extra", "too many fields"), ("c9,2024-01-09", "too few fields")],
)
def test_a_line_with_the_wrong_number_of_fields_is_quarantined_with_its_number(
    tmp_path, line, reason
):
    lines = ["customer_id,ordered_at,amount", *order_lines(5), line, *order_lines(3, 10)]
    path = write(tmp_path, "\n".join(lines) + "\n")
    result = load_orders(path)
    assert accounted(result) and result.rows_loaded == 8
    assert result.quarantine[["reason", "source_line", "customer_id"]].values.tolist() == [
        [reason, 7, "c9"]
    ]
    assert result.quarantine["raw_line"].tolist() == [line]
    assert result.quarantined_customers.tolist() == ["c9"]
    assert any(
        f"1 line(s) (line 7) have {'more' if 'many' in reason else 'fewer'}" in p
        for p in result.problems
    ), result.problems
    with pytest.raises(DataValidationError, match="1 of 9 rows are unusable:\n.*line 7"):
        load_orders(path, strict=True)


def test_bytes_that_are_not_utf8_quarantine_their_line_and_are_located(tmp_path):
    path = tmp_path / "orders.csv"
    path.write_bytes(b"customer_id,ordered_at,amount\nc1,2024-01-01,1\nc\xe92,2024-01-02,2\n")
    result = load_orders(path)
    assert result.frame["customer_id"].tolist() == ["c1"]
    assert result.quarantine[["reason", "source_line"]].values.tolist() == [["not UTF-8", 3]]
    assert result.quarantine["raw_line"].tolist() == ["c\ufffd2,2024-01-02,2"]
    # The byte offset of \xe9: the header (30 bytes with its LF), line 2 (16), then "c".
    assert any("byte offset 47" in p and "expected UTF-8" in p for p in result.problems)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty; expected a header line"),
        (b"\n  \n", "is empty; expected a header line"),
        (b"customer_id,ordered\xff_at,amount\nc1,2024-01-01,1\n", r"header \(line 1\) is not"),
        (b'customer_id,"ordered_at,amount\nc1,2024-01-01,1\n', "opens a quote it does not"),
    ],
)
def test_a_file_without_a_readable_header_is_refused_by_name(tmp_path, content, message):
    path = tmp_path / "orders.csv"
    path.write_bytes(content)
    with pytest.raises(DataValidationError, match=f"input file '{path}'.*{message}"):
        load_orders(path)


def test_a_broken_compressed_or_parquet_file_is_named(tmp_path):
    (tmp_path / "orders.csv.gz").write_bytes(b"not gzip at all")
    (tmp_path / "orders.parquet").write_bytes(b"PAR1 not really")
    for name in ("orders.csv.gz", "orders.parquet"):
        with pytest.raises(DataValidationError, match=f"input file '{tmp_path / name}' could"):
            load_orders(tmp_path / name)


def test_a_header_only_file_loads_nothing_and_says_so(tmp_path):
    path = write(tmp_path, "customer_id,ordered_at,amount\n")
    result = load_orders(path)
    assert result.rows_read == 0 and result.lines == 1 and accounted(result)
    assert result.problems == [f"orders file {str(path)!r}: has no data rows, only a header line"]
    # Nothing was quarantined, so there is no quarantine file to point at.
    assert result.write_quarantine(tmp_path / "out", "orders") is None
    assert not (tmp_path / "out" / "orders.quarantine.csv").exists()


def test_blank_lines_are_skipped_and_counted_and_line_numbers_stay_physical(tmp_path):
    text = (
        "customer_id,ordered_at,amount\r\n\r\nc1,2024-01-01,1\r\n   \r\n\t\r\n"
        "c2,2024-01-02,-2\r\n\r\n,2024-01-03,3\r\n\r\n"
    )
    path = write(tmp_path, text)
    path.write_bytes(text.encode())  # write_text would not keep the CRLFs as they are
    result = load_orders(path)
    assert result.lines == 9 and result.blank_lines == 5 and accounted(result)
    assert result.quarantine[["reason", "source_line"]].values.tolist() == [
        ["negative amount", 6],
        ["missing customer_id", 8],
    ]


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 1 << 24])
def test_the_fast_and_the_line_by_line_reader_agree(tmp_path, monkeypatch, chunk):
    # Lines are counted in chunks; tiny ones put every LF, CRLF and empty line on a border.
    monkeypatch.setattr(files_module, "_SCAN_BYTES", chunk)
    rng = np.random.default_rng(chunk)
    lines = ["customer_id,ordered_at,amount"]
    for i in range(40):
        lines += [""] * int(rng.integers(3)) + [f"c{i},2024-02-01,{i - 5}"]
    # Negative amounts (c0..c4) are quarantined: their physical line numbers.
    expected = [n for n, line in enumerate(lines[1:], start=2) if ",-" in line]
    for ending in ("\n", "\r\n"):
        path = tmp_path / f"orders{len(ending)}.csv"
        path.write_bytes((ending.join(lines) + ending * int(rng.integers(3))).encode())
        assert (
            files_module._read_fast(path, files_module.input_format(path)) is not None
        )  # no malformed line: the fast path
        fast = load_orders(path)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(files_module, "_read_fast", lambda *_: None)
            careful = load_orders(path)
        pd.testing.assert_frame_equal(fast.frame, careful.frame)
        pd.testing.assert_frame_equal(fast.quarantine, careful.quarantine)
        assert (fast.lines, fast.blank_lines) == (careful.lines, careful.blank_lines)
        assert accounted(fast)
        assert fast.quarantine["source_line"].tolist() == expected


def test_compressed_tsv_and_old_mac_line_ends_are_read_line_for_line(tmp_path):
    import gzip

    with gzip.open(tmp_path / "orders.csv.gz", "wt") as stream:
        stream.write("customer_id,ordered_at,amount\nc1,2024-01-01,1\nc2,2024-01-02,1,x\n")
    result = load_orders(tmp_path / "orders.csv.gz")
    assert result.quarantine[["reason", "source_line"]].values.tolist() == [["too many fields", 3]]
    tsv = write(tmp_path, "customer_id\tordered_at\tamount\nc,1\t2024-01-01\t1\n", "o.tsv")
    assert load_orders(tsv).frame["customer_id"].tolist() == ["c,1"]
    mac = tmp_path / "mac.csv"
    mac.write_bytes(b"customer_id,ordered_at,amount\rc1,2024-01-01,1\rc2,2024-01-02,-1\r")
    result = load_orders(mac)
    assert result.lines == 3 and result.rows_loaded == 1
    assert result.quarantine["source_line"].tolist() == [3]
