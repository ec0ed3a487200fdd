"""A corpus of malformed CSV files, generated here: every line is accounted for, none merges.

Each file is a header and 199 lines, about 10% of them garbage: one line of every kind seen in
real exports, and blank lines. For each file: rows loaded + rows quarantined == the data lines
of the file (lines that are neither the header nor blank; a blank line is empty or holds only
spaces and tabs, and is skipped as pandas skips it), every quarantined row carries its reason
and physical line number, no loaded customer_id holds a line break or a quote, and nothing but
DataValidationError is ever raised (and that only for a file unreadable as a whole).
"""

import gzip
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pytest

import features.files as files_module
from features.io import DataValidationError, load_orders

HEADER = b"customer_id,ordered_at,amount,status,delivered_at"

#: Garbage lines that break the CSV itself (the line cannot be split into the header's fields),
#: as (maker, expected quarantine reason); ``n`` makes each line unique.
STRUCTURAL = {
    "stray quote opening the line": (
        lambda n: b'"x%d,2024-01-05,10,completed,2024-01-08' % n,
        "unterminated quote",
    ),
    "stray quote opening a field": (
        lambda n: b'x%d,"2024-01-05,10,completed,2024-01-08' % n,
        "unterminated quote",
    ),
    "extra fields": (
        lambda n: b"x%d,2024-01-05,10,completed,2024-01-08,oops,1" % n,
        "too many fields",
    ),
    "missing fields": (lambda n: b"x%d,2024-01-05" % n, "too few fields"),
    "non-UTF-8 byte in the id": (lambda n: b"x%d\xff,2024-01-05,10,completed," % n, "not UTF-8"),
    "Latin-1 text": (lambda n: b"x%d,2024-01-05,10,completed,d\xe9j\xe0" % n, "not UTF-8"),
    "binary junk": (lambda n: b"\x00\x01\xfe\xfa\x7f%d\x1b[0m\xc3" % n, "not UTF-8"),
    "control characters": (lambda n: b"\x00\x01\x02\x03%d" % n, "too few fields"),
}
#: Garbage in the values of well-formed lines.
VALUES = {
    "quote inside the id": (
        lambda n: b'x"%d,2024-01-05,10,completed,' % n,
        "malformed customer_id",
    ),
    "empty id": (lambda n: b",2024-01-05,%d,completed," % n, "missing customer_id"),
    "blank id": (lambda n: b"   ,2024-01-05,%d,completed," % n, "missing customer_id"),
    "year 1": (lambda n: b"x%d,0001-01-01,10,completed," % n, "ordered_at out of range"),
    "year 9999": (lambda n: b"x%d,9999-12-31,10,completed," % n, "ordered_at out of range"),
    "year 1700": (lambda n: b"x%d,1700-05-05,10,completed," % n, "ordered_at out of range"),
    "yyyymmdd year 1": (lambda n: b"x%d,00010101,10,completed," % n, "ordered_at out of range"),
    "not a date": (lambda n: b"x%d,yesterday,10,completed," % n, "unparseable ordered_at"),
    "negative amount": (lambda n: b"x%d,2024-01-05,-%d,completed," % (n, n), "negative amount"),
    "unknown status": (lambda n: b"x%d,2024-01-05,10,lost," % n, "unknown status"),
}
#: Lines that are not rows at all.
BLANK = (b"", b"   ", b"\t", b" \t ")


@dataclass
class Corpus:
    """A generated file and what the loader must make of it."""

    content: bytes
    quarantined: dict[int, str] = field(default_factory=dict)  # line -> reason
    loaded_ids: list[str] = field(default_factory=list)
    blank_lines: int = 0
    far_deliveries: int = 0  # loaded rows whose optional delivered_at is out of range


def good_line(n: int, rng: np.random.Generator) -> tuple[bytes, str, bool]:
    """A usable order (id c<n>); one in ten has a delivery date of year 1 (treated as missing)."""
    day = pd.Timestamp("2023-01-01") + pd.Timedelta(days=int(rng.integers(0, 700)))
    far = rng.random() < 0.1
    delivered = "0001-01-01" if far else (day + pd.Timedelta(days=3)).strftime("%Y-%m-%d")
    amount = round(float(rng.gamma(2.0, 30.0)), 2)
    line = f"c{n},{day:%Y-%m-%d},{amount},completed,{delivered}".encode()
    return line, f"c{n}", far


def make_corpus(
    seed: int, kinds: dict, ending: bytes = b"\n", blanks: tuple[bytes, ...] = BLANK
) -> Corpus:
    """Header + 199 lines, about 10% of them garbage: each kind of ``kinds``, and blanks."""
    rng = np.random.default_rng(seed)
    makers = list(kinds.values())
    # Every garbage kind once, and six blank lines, at random places among the 199 lines.
    slots = [*makers, *(None for _ in range(6))]
    garbage_at = rng.choice(np.arange(2, 201), size=len(slots), replace=False).tolist()
    garbage = dict(zip(garbage_at, slots, strict=True))
    corpus = Corpus(content=b"")
    lines = [HEADER]
    for number in range(2, 201):
        if number not in garbage:
            line, customer, far = good_line(number, rng)
            lines.append(line)
            corpus.loaded_ids.append(customer)
            corpus.far_deliveries += far
        elif garbage[number] is None:
            lines.append(blanks[number % len(blanks)])
            corpus.blank_lines += 1
        else:
            make, reason = garbage[number]
            lines.append(make(number))
            corpus.quarantined[number] = reason
    corpus.content = ending.join(lines) + ending
    return corpus


def physical_lines(content: bytes) -> list[bytes]:
    """The file's lines as any CSV reader sees them (LF, CRLF or CR ends a line)."""
    lines = re.split(rb"\r\n|\r|\n", content)
    return lines[:-1] if lines and lines[-1] == b"" else lines


def check_accounted(result, content: bytes) -> None:
    """The invariants every file must satisfy, counted independently of the loader."""
    lines = physical_lines(content)
    blank = [n for n, line in enumerate(lines, start=1) if not line.strip(b" \t")]
    data_lines = len(lines) - 1 - len(blank)
    assert result.rows_loaded + result.rows_quarantined == result.rows_read == data_lines
    assert (result.lines, result.blank_lines) == (len(lines), len(blank))
    quarantine = result.quarantine
    assert quarantine["reason"].notna().all() and (quarantine["reason"].str.len() > 0).all()
    numbers = quarantine["source_line"].tolist()
    assert all(isinstance(n, int) and 2 <= n <= len(lines) for n in numbers), numbers
    assert len(set(numbers)) == len(numbers) and not set(numbers) & set(blank)
    assert not result.frame["customer_id"].str.contains('[\r\n"]').any()


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("ending", [b"\n", b"\r\n"], ids=["LF", "CRLF"])
def test_every_line_of_a_malformed_file_is_loaded_or_quarantined_by_number(tmp_path, seed, ending):
    corpus = make_corpus(seed, STRUCTURAL | VALUES, ending)
    path = tmp_path / "orders.csv"
    path.write_bytes(corpus.content)
    result = load_orders(path)
    check_accounted(result, corpus.content)
    got = dict(zip(result.quarantine["source_line"], result.quarantine["reason"], strict=True))
    assert got == corpus.quarantined
    assert sorted(result.frame["customer_id"]) == sorted(corpus.loaded_ids)
    # Malformed lines keep their text; their fields are placed by position.
    structural = result.quarantine["reason"].isin([r for _, r in STRUCTURAL.values()])
    assert result.quarantine.loc[structural, "raw_line"].notna().all()
    if corpus.far_deliveries:
        assert any(
            f"column 'delivered_at' has {corpus.far_deliveries} dates outside" in p
            for p in result.problems
        ), result.problems


@pytest.mark.parametrize("seed", [3, 4])
def test_a_file_with_bad_values_only_takes_the_fast_path_and_still_accounts(tmp_path, seed):
    # Lines of spaces are blank too, but pyarrow sees a row of one field: only empty ones here.
    corpus = make_corpus(seed, VALUES, blanks=(b"",))
    path = tmp_path / "orders.csv"
    path.write_bytes(corpus.content)
    assert files_module._read_fast(path, files_module.input_format(path)) is not None
    result = load_orders(path)
    check_accounted(result, corpus.content)
    got = dict(zip(result.quarantine["source_line"], result.quarantine["reason"], strict=True))
    assert got == corpus.quarantined
    assert sorted(result.frame["customer_id"]) == sorted(corpus.loaded_ids)


def test_a_compressed_malformed_file_accounts_the_same(tmp_path):
    corpus = make_corpus(5, STRUCTURAL | VALUES)
    path = tmp_path / "orders.csv.gz"
    path.write_bytes(gzip.compress(corpus.content))
    result = load_orders(path)
    check_accounted(result, corpus.content)
    got = dict(zip(result.quarantine["source_line"], result.quarantine["reason"], strict=True))
    assert got == corpus.quarantined


@pytest.mark.parametrize("seed", [6, 7, 8])
def test_binary_junk_after_a_good_header_is_quarantined_line_by_line(tmp_path, seed):
    rng = np.random.default_rng(seed)
    body = rng.integers(0, 256, 6000, dtype=np.uint8).tobytes()
    content = HEADER + b"\n" + body
    path = tmp_path / "orders.csv"
    path.write_bytes(content)
    result = load_orders(path)
    check_accounted(result, content)
    assert result.rows_quarantined > 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", r"header \(line 1\) is not UTF-8"),
        (b"", "is empty"),
        (b"\n\n \n", "is empty"),
    ],
    ids=["binary file", "empty", "blank lines only"],
)
def test_a_file_unreadable_as_a_whole_is_a_data_validation_error_naming_it(
    tmp_path, content, message
):
    path = tmp_path / "orders.csv"
    path.write_bytes(content)
    with pytest.raises(DataValidationError, match=f"input file '{path}'.*{message}"):
        load_orders(path)
