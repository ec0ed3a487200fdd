"""Load and validate orders and service events: the only module that reads input files."""

from __future__ import annotations

import csv
import gzip
import io
import logging
import zipfile
from array import array
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv

from features.spec import ORDER_STATUSES

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

ORDER_REQUIRED: tuple[str, ...] = ("customer_id", "ordered_at", "amount")
ORDER_OPTIONAL: tuple[str, ...] = ("order_id", "status", "promised_at", "delivered_at")
EVENT_REQUIRED: tuple[str, ...] = ("customer_id", "occurred_at", "kind")
EVENT_OPTIONAL: tuple[str, ...] = ("order_id", "score", "resolution_hours", "amount")
#: Largest magnitude any numeric value may have. Features are float32 for XGBoost and sum many
#: orders; no real order amount, review score or resolution time comes near this, so a larger
#: value is a unit or parsing error (the row is quarantined rather than overflowing a feature).
LARGEST_NUMBER = 1e12
#: The plausible dates: every date of the input (and a cutoff) must lie in
#: ``[EARLIEST_DATE, LATEST_DATE)``. Dates outside are placeholders (``0001-01-01``,
#: ``9999-12-31``) or typos; they do not fit the nanosecond timestamps the features are computed
#: in (1677-2262), and the ones that do fit give day counts no customer has ("last order 94,254
#: days ago"). They are treated like unparseable values.
EARLIEST_DATE = pd.Timestamp("1900-01-01")
LATEST_DATE = pd.Timestamp("2200-01-01")
#: The range as the messages print it.
DATE_RANGE = f"{EARLIEST_DATE:%Y-%m-%d} to {LATEST_DATE:%Y-%m-%d} (exclusive)"
CANONICAL_COLUMNS: frozenset[str] = frozenset(
    ORDER_REQUIRED + ORDER_OPTIONAL + EVENT_REQUIRED + EVENT_OPTIONAL
)
#: Quarantine reasons of CSV/TSV lines that could not be split into the header's fields.
TOO_MANY_FIELDS = "too many fields"
TOO_FEW_FIELDS = "too few fields"
UNTERMINATED_QUOTE = "unterminated quote"
NOT_UTF8 = "not UTF-8"
#: An id with a quote, a line break or another control character, or U+FFFD (what an
#: undecodable byte became), is a fragment of a malformed line, not an id.
_MALFORMED_ID = '["\x00-\x1f\x7f\ufffd]'
#: Bytes read at a time when counting the lines of a CSV file.
_SCAN_BYTES = 1 << 24
#: Line numbers quoted in one message.
_EXAMPLE_LINES = 5


class DataValidationError(ValueError):
    """Raised when an input cannot be used as it is; the message says what and how to fix it."""


@dataclass
class LoadResult:
    """A validated table plus everything that was set aside on the way.

    Attributes
    ----------
    frame : pandas.DataFrame
        The usable rows, canonical column names and dtypes.
    quarantine : pandas.DataFrame
        The unusable rows as read, plus ``reason`` and ``source_row`` (0-based data row). Rows
        of a CSV/TSV file also carry ``source_line`` (1-based physical line, the header's line
        counting) and, when some line could not be split into the header's fields,
        ``raw_line`` (that line's text; its fields are placed in the columns by position).
    problems : list of str
        One message per problem found (quarantined rows and values treated as missing).
    rows_read : int
        Rows in the input; always ``len(frame) + len(quarantine)``. In a CSV/TSV file, one per
        line that is neither the header nor blank.
    quarantined_customers : pandas.Index
        The customer ids of the quarantined rows as the loader reads ids (trimmed, ``7.0`` read
        as ``"7"``), so they compare with ``frame``'s ids; rows without a usable id are not in
        it.
    lines : int or None
        Physical lines of a CSV/TSV file, header and blank lines included, so that
        ``lines == 1 + blank_lines + rows_loaded + rows_quarantined``; None for Parquet and for
        frames validated in memory.
    blank_lines : int
        Lines of a CSV/TSV file that are empty or hold only spaces and tabs; like pandas, they
        are skipped and are not rows.
    """

    frame: pd.DataFrame
    quarantine: pd.DataFrame
    problems: list[str] = field(default_factory=list)
    rows_read: int = 0
    quarantined_customers: pd.Index = field(default_factory=lambda: pd.Index([], dtype="str"))
    lines: int | None = None
    blank_lines: int = 0

    @property
    def rows_loaded(self) -> int:
        """Rows kept."""
        return len(self.frame)

    @property
    def rows_quarantined(self) -> int:
        """Rows set aside."""
        return len(self.quarantine)

    def write_quarantine(self, directory: str | Path, name: str) -> Path | None:
        """Write the quarantined rows to ``directory/<name>.quarantine.csv`` if there are any.

        With none, an earlier run's file of that name is removed, so the file always belongs
        to the last run.

        Returns
        -------
        pathlib.Path or None
            The file written, or None when nothing was quarantined.
        """
        directory = Path(directory)
        path = directory / f"{name}.quarantine.csv"
        if self.quarantine.empty:
            path.unlink(missing_ok=True)
            return None
        directory.mkdir(parents=True, exist_ok=True)
        self.quarantine.to_csv(path, index=False)
        logger.warning("%d %s row(s) quarantined to %s", len(self.quarantine), name, path)
        return path


@dataclass
class RawTable:
    """A file's rows as written (CSV/TSV: every field as text) and what reading found wrong.

    Attributes
    ----------
    frame : pandas.DataFrame
        One row per record: per data line of a CSV/TSV file (a line that could not be split
        into the header's fields included, its fields placed by position), per row of Parquet.
    malformed : pandas.Series
        Per row, why its line could not be read (:data:`TOO_MANY_FIELDS`,
        :data:`TOO_FEW_FIELDS`, :data:`UNTERMINATED_QUOTE`, :data:`NOT_UTF8`), NA otherwise.
    source_line : numpy.ndarray or None
        The 1-based physical line of each row (CSV/TSV); None for Parquet.
    raw_line : pandas.Series or None
        The text of the malformed lines (NA for the others); None when there are none.
    problems : list of str
        One message per kind of malformed line, with the count and line numbers.
    lines : int or None
        Physical lines of a CSV/TSV file (header and blank lines included); None for Parquet.
    blank_lines : int
        Empty or whitespace-only lines, skipped.
    """

    frame: pd.DataFrame
    malformed: pd.Series
    source_line: np.ndarray | None = None
    raw_line: pd.Series | None = None
    problems: list[str] = field(default_factory=list)
    lines: int | None = None
    blank_lines: int = 0

    @classmethod
    def of(cls, frame: pd.DataFrame) -> RawTable:
        """A table whose rows were all read cleanly (Parquet, or a frame already in memory)."""
        frame = frame.reset_index(drop=True)
        return cls(frame=frame, malformed=pd.Series(pd.NA, index=frame.index, dtype="object"))


def parse_column_mapping(text: str | None) -> dict[str, str]:
    """Parse ``"customer_id=cust,ordered_at=date"`` into ``{"cust": "customer_id", ...}``.

    Parameters
    ----------
    text : str or None
        Comma-separated ``canonical=yours`` pairs; empty or None means no renaming.

    Returns
    -------
    dict
        Maps the file's column name to the canonical name (ready for ``DataFrame.rename``).
    """
    if not text or not text.strip():
        return {}
    mapping: dict[str, str] = {}
    for pair in text.split(","):
        if not pair.strip():
            continue
        canonical, sep, source = (part.strip() for part in pair.partition("="))
        if not sep or not canonical or not source:
            raise DataValidationError(
                f"column mapping entry {pair.strip()!r} is not 'canonical=your_column'; "
                "example: customer_id=cust,ordered_at=date,amount=spend"
            )
        if canonical not in CANONICAL_COLUMNS:
            raise DataValidationError(
                f"column mapping names unknown column {canonical!r}; "
                f"known columns: {', '.join(sorted(CANONICAL_COLUMNS))}"
            )
        if source in mapping:
            raise DataValidationError(
                f"column mapping uses your column {source!r} twice "
                f"({mapping[source]!r} and {canonical!r})"
            )
        mapping[source] = canonical
    return mapping


def read_table(path: str | Path) -> RawTable:
    """Read a CSV, TSV or Parquet file as it is written (CSV/TSV: every field as text).

    Reading CSV as text keeps ids exactly as written (``00042`` stays ``00042``); types are
    decided by validation, which can then say which rows did not parse.

    A CSV/TSV file is one record per line (lines end in LF, CRLF or CR), with a header line
    first; a value may be quoted (to hold the separator or a doubled ``""``) but cannot span
    lines. Rows never merge or vanish: every line that is neither the header nor blank (empty
    or only spaces and tabs, skipped as pandas skips them) is one row, and a line that cannot
    be split into the header's fields is kept as a row marked :data:`TOO_MANY_FIELDS`,
    :data:`TOO_FEW_FIELDS` or :data:`UNTERMINATED_QUOTE` (a quote not closed on its line,
    which would otherwise swallow the lines after it), so that validation quarantines it with
    its line number.

    The encoding is UTF-8 (a byte order mark is allowed). A line with bytes that are not
    UTF-8 is marked :data:`NOT_UTF8` and quarantined the same way (its text, with U+FFFD for
    each undecodable byte, goes to the quarantine file; the message gives the byte offset of
    the first one): one mis-encoded line does not stop a file. Only a header that is not
    UTF-8 makes the whole file unreadable, since its columns cannot be known.

    Files are read by pyarrow's multi-threaded parser, then the rows read are checked against
    the file's line count; only a file where they differ, or where the parser met a malformed
    line, is read again line by line (slower) to find and mark the malformed lines.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    DataValidationError
        Naming the file, when its format is unknown or it cannot be read as a whole: no header
        line, a header that is not UTF-8 or opens a quote it does not close, a broken Parquet
        or compressed file, a zip archive without exactly one file.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input file {str(path)!r} does not exist")
    suffix = "".join(path.suffixes[-2:]).lower()
    if path.suffix.lower() in {".parquet", ".pq"} or path.is_dir():
        return RawTable.of(_read_whole(path, "Parquet", pd.read_parquet))
    if path.suffix.lower() in {".csv", ".txt", ".tsv"} or suffix.endswith((".csv.gz", ".csv.zip")):
        sep = "\t" if path.suffix.lower() == ".tsv" else ","
        return _read_whole(path, "CSV" if sep == "," else "TSV", _read_delimited, sep)
    raise DataValidationError(
        f"input file {str(path)!r} has an unknown format; expected .csv, .tsv or .parquet"
    )


def _read_whole(path: Path, kind: str, read: Callable[..., _T], *args: object) -> _T:
    """``read(path, *args)``, with any failure of a parser or decompressor naming the file."""
    try:
        return read(path, *args)
    except (DataValidationError, MemoryError):
        raise
    except Exception as err:
        # Parsers and decompressors raise their own types with messages that do not say which
        # file; a caller (a batch run over several files) must learn which one is unreadable.
        raise DataValidationError(
            f"input file {str(path)!r} could not be read as {kind}: {type(err).__name__}: {err}"
        ) from err


def _read_delimited(path: Path, sep: str) -> RawTable:
    table = _read_fast(path, sep)
    if table is None:
        logger.info("%s: some line is not a plain row; reading the file line by line", path)
        table = _read_line_by_line(path, sep)
    if table.frame.empty:
        table.problems.append("has no data rows, only a header line")
    return table


@contextmanager
def _open_binary(path: Path) -> Iterator[IO[bytes]]:
    """The file's bytes, decompressed (``.gz``, or the one file of a ``.zip``)."""
    name = path.name.lower()
    if name.endswith(".gz"):
        with gzip.open(path, "rb") as compressed:
            yield compressed  # type: ignore[misc]  # a GzipFile reads bytes like IO[bytes]
    elif name.endswith(".zip"):
        with zipfile.ZipFile(path) as archive:
            members = [info for info in archive.infolist() if not info.is_dir()]
            if len(members) != 1:
                raise DataValidationError(
                    f"input file {str(path)!r} holds {len(members)} files; expected a zip "
                    "archive with exactly one CSV file"
                )
            with archive.open(members[0]) as stream:
                yield stream
    else:
        with path.open("rb") as stream:
            yield stream


def _read_fast(path: Path, sep: str) -> RawTable | None:
    """Read with pyarrow; None when the file needs the line-by-line reader.

    pyarrow is told values never span lines (so it can split the file between threads), but a
    stray quote still makes it join lines inside a block. So the file's lines are counted
    (:func:`_count_lines`) and the table is used only when every line that is neither the
    header nor empty is a row.
    """
    with _open_binary(path) as stream:
        first = stream.readline()
    names = _simple_header(first, sep)
    if names is None:
        return None
    try:
        with _open_binary(path) as stream:
            # A path lets pyarrow read and decompress .gz natively; a zip member is a stream.
            source = stream if path.name.lower().endswith(".zip") else str(path)
            table = pa_csv.read_csv(
                source,
                parse_options=pa_csv.ParseOptions(delimiter=sep, newlines_in_values=False),
                convert_options=pa_csv.ConvertOptions(
                    column_types=dict.fromkeys(names, pa.string()),
                    null_values=[""],
                    strings_can_be_null=True,
                ),
            )
    except pa.ArrowInvalid:
        # A line with the wrong number of fields (blank lines of spaces too), bytes that are
        # not UTF-8, or a quote that made the parser lose track of the lines.
        return None
    if table.column_names != names:
        return None
    with _open_binary(path) as stream:
        lines, bare_cr = _count_lines(stream)
    if bare_cr:
        return None
    empty = np.empty(0, dtype="int64")
    if table.num_rows != lines - 1:
        # Fewer rows than lines: empty lines (pyarrow skips them, as pandas does) or lines a
        # quote joined. Only when empty lines explain the whole difference is the table right.
        with _open_binary(path) as stream:
            empty = _empty_lines(stream)
        if table.num_rows != lines - 1 - len(empty):
            return None
    frame = table.to_pandas()
    return RawTable(
        frame=frame,
        malformed=pd.Series(pd.NA, index=frame.index, dtype="object"),
        source_line=_data_line_numbers(len(frame), empty),
        lines=lines,
        blank_lines=len(empty),
    )


def _simple_header(first: bytes, sep: str) -> list[str] | None:
    """The column names of a header the fast reader handles (UTF-8, named, unique), else None."""
    try:
        text = first.decode("utf-8").removeprefix("\ufeff").rstrip("\r\n")
    except UnicodeDecodeError:
        return None
    if "\r" in text or not text.strip(" \t"):
        return None
    reader = csv.reader([text, ""], delimiter=sep)
    names = next(reader)
    if reader.line_num > 1 or "" in names or len(set(names)) != len(names):
        return None
    return names


def _count_lines(stream: IO[bytes]) -> tuple[int, bool]:
    """The lines of a file, and whether one ends in a CR not followed by LF.

    Lines end in LF or CRLF (the last may have no terminator). pandas and pyarrow also end a
    line at a lone CR (old Mac files); the caller leaves such files to the line-by-line reader,
    which does the same, rather than count them here.
    """
    lines = carriage_returns = crlf = 0
    last = b""
    while chunk := stream.read(_SCAN_BYTES):
        lines += chunk.count(b"\n")
        if last == b"\r" or b"\r" in chunk:
            carriage_returns += chunk.count(b"\r")
            crlf += (last + chunk).count(b"\r\n")  # with a CRLF split between chunks
        last = chunk[-1:]
    if last not in (b"", b"\n"):
        lines += 1  # the last line has no terminator
    return lines, carriage_returns != crlf


def _empty_lines(stream: IO[bytes]) -> np.ndarray:
    """The 1-based numbers of the lines with nothing on them but LF or CRLF."""
    found = [np.empty(0, dtype="int64")]
    lines = offset = 0
    last_end = -1  # where the last LF was; the file starts as if one came just before it
    last_byte = 0
    while chunk := stream.read(_SCAN_BYTES):
        data = np.frombuffer(chunk, dtype=np.uint8)
        ends = np.flatnonzero(data == ord("\n"))
        if len(ends):
            starts = np.concatenate(([last_end - offset], ends[:-1])) + 1
            before_end = np.where(ends > 0, data[ends - 1], last_byte)
            length = ends - starts
            empty = (length == 0) | ((length == 1) & (before_end == ord("\r")))
            found.append(lines + 1 + np.flatnonzero(empty))
            last_end = offset + int(ends[-1])
        lines += len(ends)
        offset += len(chunk)
        last_byte = data[-1]
    return np.concatenate(found).astype("int64")


def _data_line_numbers(rows: int, empty: np.ndarray) -> np.ndarray:
    """The 1-based line of each data row, the header being line 1 and ``empty`` skipped."""
    positions = np.arange(rows, dtype="int64") + 2
    if not len(empty):
        return positions
    # Data rows before each empty line; a row goes one line further per empty line before it.
    rows_before_empty = empty - 2 - np.arange(len(empty))
    return positions + np.searchsorted(rows_before_empty, positions - 2, side="right")


def _read_line_by_line(path: Path, sep: str) -> RawTable:
    """Sort the lines one at a time, then parse the well-formed ones with pyarrow in one go."""
    lines = _SortedLines(path, sep)
    with _open_binary(path) as binary:
        # surrogateescape keeps undecodable bytes (as lone surrogates) so each line can be
        # checked on its own and its bad byte located; newline="" splits on LF, CRLF and CR, as
        # pandas and pyarrow do, and leaves the terminator on the line so byte offsets add up.
        lines.read(io.TextIOWrapper(binary, encoding="utf-8", errors="surrogateescape", newline=""))
    return lines.table()


@dataclass
class _Malformed:
    """A line that is not a record: where, why, its fields by position and its text."""

    line: int
    reason: str
    fields: list[str | None]
    text: str


class _SortedLines:
    """A file's lines sorted into the header, blank, well-formed and malformed lines.

    Python looks at each line only as much as it takes to tell a well-formed line (UTF-8,
    and the header's number of fields, or a quote that closes on the line); the well-formed
    lines are then parsed together by pyarrow, the few malformed ones split here.
    """

    def __init__(self, path: Path, sep: str) -> None:
        self.path = path
        self.sep = sep
        self.names: list[str] = []
        self.lines = 0
        self.blank_lines = 0
        self.good: list[str] = []
        self.good_lines = array("q")
        self.malformed: list[_Malformed] = []
        self.first_bad_byte: int | None = None

    def read(self, text: Iterable[str]) -> None:
        """Sort every line of ``text`` (lines with their terminators)."""
        sep, good, good_lines = self.sep, self.good, self.good_lines
        width = 0
        offset = 0
        number = 0
        for number, line in enumerate(text, start=1):
            start = offset
            ascii_only = line.isascii()
            offset += len(line) if ascii_only else len(line.encode("utf-8", "surrogateescape"))
            body = line.rstrip("\r\n")
            if not body.strip(" \t"):
                self.blank_lines += 1
                continue
            if not width:
                width = self._header(body.removeprefix("\ufeff"), number, start)
                continue
            if (ascii_only or _undecodable_at(body) is None) and '"' not in body:
                if body.count(sep) == width - 1:
                    good.append(body)
                    good_lines.append(number)
                else:
                    reason = TOO_MANY_FIELDS if body.count(sep) >= width else TOO_FEW_FIELDS
                    self._set_aside(number, reason, body.split(sep), body)
                continue
            self._look_closer(body, number, start, width)
        self.lines = number

    def _header(self, body: str, number: int, start: int) -> int:
        bad = _undecodable_at(body)
        if bad is not None:
            at = start + len(body[:bad].encode("utf-8", "surrogateescape"))
            raise DataValidationError(
                f"input file {str(self.path)!r}: the header (line {number}) is not UTF-8 (byte "
                f"offset {at}); expected a UTF-8 file (re-export it as UTF-8)"
            )
        fields, unterminated = _split_line(body, self.sep)
        if unterminated:
            raise DataValidationError(
                f"input file {str(self.path)!r}: the header (line {number}) opens a quote it "
                "does not close; expected a header line of column names"
            )
        self.names = _unique_names(fields)
        return len(self.names)

    def _look_closer(self, body: str, number: int, start: int, width: int) -> None:
        """A line with a quote or a byte that is not UTF-8."""
        bad = _undecodable_at(body)
        if bad is not None:
            if self.first_bad_byte is None:
                self.first_bad_byte = start + len(body[:bad].encode("utf-8", "surrogateescape"))
            text = body.encode("utf-8", "surrogateescape").decode("utf-8", errors="replace")
            self._set_aside(number, NOT_UTF8, _split_line(text, self.sep)[0], text)
            return
        fields, unterminated = _split_line(body, self.sep)
        if unterminated:
            self._set_aside(number, UNTERMINATED_QUOTE, fields, body)
        elif len(fields) != width:
            reason = TOO_MANY_FIELDS if len(fields) > width else TOO_FEW_FIELDS
            self._set_aside(number, reason, fields, body)
        else:
            self.good.append(body)
            self.good_lines.append(number)

    def _set_aside(self, number: int, reason: str, fields: list[str], text: str) -> None:
        width = len(self.names)
        placed = [value or None for value in fields[:width]] + [None] * (width - len(fields))
        self.malformed.append(_Malformed(number, reason, placed, text))

    def table(self) -> RawTable:
        """The rows in file order, the malformed ones marked."""
        if not self.names:
            raise DataValidationError(
                f"input file {str(self.path)!r} is empty; expected a header line naming the "
                "columns, then one line per row"
            )
        good = self._parse_good()
        set_aside = pd.DataFrame(
            [bad.fields for bad in self.malformed], columns=self.names, dtype="str"
        )
        frame = pd.concat([good, set_aside], ignore_index=True)
        source_line = np.concatenate(
            [np.asarray(self.good_lines, dtype="int64"), [bad.line for bad in self.malformed]]
        ).astype("int64")
        reasons = [None] * len(good) + [bad.reason for bad in self.malformed]
        texts = [None] * len(good) + [bad.text for bad in self.malformed]
        order = np.argsort(source_line, kind="stable")
        frame = frame.take(order).reset_index(drop=True)
        malformed = pd.Series(reasons, dtype="object").take(order).reset_index(drop=True)
        raw_line = None
        if self.malformed:
            raw_line = pd.Series(texts, dtype="str").take(order).reset_index(drop=True)
        return RawTable(
            frame=frame,
            malformed=malformed,
            source_line=source_line[order],
            raw_line=raw_line,
            problems=self._problems(),
            lines=self.lines,
            blank_lines=self.blank_lines,
        )

    def _parse_good(self) -> pd.DataFrame:
        """The well-formed lines' fields, parsed by pyarrow (as the fast reader would)."""
        if not self.good:
            return pd.DataFrame({name: pd.Series([], dtype="str") for name in self.names})
        data = "\n".join(self.good).encode("utf-8")
        try:
            table = pa_csv.read_csv(
                io.BytesIO(data),
                read_options=pa_csv.ReadOptions(column_names=self.names),
                parse_options=pa_csv.ParseOptions(delimiter=self.sep, newlines_in_values=False),
                convert_options=pa_csv.ConvertOptions(
                    column_types=dict.fromkeys(self.names, pa.string()),
                    null_values=[""],
                    strings_can_be_null=True,
                ),
            )
        except pa.ArrowInvalid:
            table = None
        if table is not None and table.num_rows == len(self.good):
            return table.to_pandas()
        # pyarrow read some quoted line differently from the csv module: split them all here
        # (slower, but every line stays one row).
        fields = [_split_line(body, self.sep)[0] for body in self.good]
        return pd.DataFrame(
            [[value or None for value in row] for row in fields], columns=self.names, dtype="str"
        )

    def _problems(self) -> list[str]:
        width = len(self.names)
        sep = "tab" if self.sep == "\t" else repr(self.sep)
        expected = {
            TOO_MANY_FIELDS: f"have more than the header's {width} fields; expected {width} "
            f"fields separated by {sep} (quote a value that contains {sep})",
            TOO_FEW_FIELDS: f"have fewer than the header's {width} fields; expected {width} "
            f"fields separated by {sep} (an empty field for a missing value)",
            UNTERMINATED_QUOTE: 'open a quote (") they do not close; expected each row on one '
            "line (close the quote, or double a quote inside a quoted value)",
            NOT_UTF8: "are not valid UTF-8 (first undecodable byte at byte offset "
            f"{self.first_bad_byte}); expected UTF-8 text (re-export the file as UTF-8)",
        }
        messages = []
        for reason, explanation in expected.items():
            numbers = [bad.line for bad in self.malformed if bad.reason == reason]
            if numbers:
                shown = ", ".join(map(str, numbers[:_EXAMPLE_LINES]))
                more = ", ..." if len(numbers) > _EXAMPLE_LINES else ""
                label = "line" if len(numbers) == 1 else "lines"
                messages.append(
                    f"{len(numbers)} line(s) ({label} {shown}{more}) {explanation}; quarantined "
                    f"as {reason!r}"
                )
        return messages


def _undecodable_at(body: str) -> int | None:
    """Where the first undecodable byte (a lone surrogate, see surrogateescape) is, if any."""
    if body.isascii():
        return None
    try:
        body.encode("utf-8")
    except UnicodeEncodeError as err:
        return err.start
    return None


def _split_line(body: str, sep: str) -> tuple[list[str], bool]:
    """The fields of one line, and whether it opens a quote it does not close.

    With an unclosed quote the fields are split at every separator (the best guess at which
    value is which, for the quarantine file).
    """
    if '"' not in body:
        return body.split(sep), False
    # Given a second (empty) line, the csv module reads on into it exactly when a quote is
    # still open at the end of the first: line_num tells.
    reader = csv.reader([body, ""], delimiter=sep)
    fields = next(reader)
    if reader.line_num > 1:
        return body.split(sep), True
    return fields, False


def _unique_names(names: list[str]) -> list[str]:
    """Header names as pandas makes them: ``Unnamed: 3`` for an empty one, ``x.1`` for a repeat."""
    out: list[str] = []
    for position, name in enumerate(names):
        name = name or f"Unnamed: {position}"
        candidate, repeat = name, 0
        while candidate in out:
            repeat += 1
            candidate = f"{name}.{repeat}"
        out.append(candidate)
    return out


def load_orders(
    path: str | Path, *, columns: str | dict[str, str] | None = None, strict: bool = False
) -> LoadResult:
    """Read and validate an orders file.

    Parameters
    ----------
    path : str or Path
        CSV, TSV or Parquet file; see :func:`read_table` for how malformed lines are handled.
    columns : str or dict, optional
        Column mapping, as text (``"customer_id=cust,amount=spend"``) or parsed.
    strict : bool
        Raise :class:`DataValidationError` instead of quarantining unusable rows.

    Returns
    -------
    LoadResult
        For a CSV/TSV file, ``lines == 1 + blank_lines + rows_loaded + rows_quarantined``.
    """
    source = f"orders file {str(path)!r}"
    table = read_table(path)
    raw = _rename(table.frame, columns, source)
    return _validate_orders(raw, source, strict, table)


def load_events(
    path: str | Path, *, columns: str | dict[str, str] | None = None, strict: bool = False
) -> LoadResult:
    """Read and validate a service-events file; see :func:`load_orders`."""
    source = f"service events file {str(path)!r}"
    table = read_table(path)
    raw = _rename(table.frame, columns, source)
    return _validate_events(raw, source, strict, table)


def validate_orders(
    raw: pd.DataFrame, *, source: str = "orders", strict: bool = False
) -> LoadResult:
    """Validate orders already in memory with canonical column names.

    Unusable rows (missing or malformed customer_id, unparseable ordered_at or one outside
    :data:`EARLIEST_DATE` to :data:`LATEST_DATE`, missing, non-numeric, infinite, negative or
    implausibly large amount, unknown status, repeated order_id) are quarantined with a reason;
    unparseable or out-of-range optional dates become missing and are reported.
    """
    return _validate_orders(raw, source, strict, None)


def _validate_orders(
    raw: pd.DataFrame, source: str, strict: bool, table: RawTable | None
) -> LoadResult:
    _require(raw, ORDER_REQUIRED, ORDER_OPTIONAL, source)
    checker = _Checker(raw, source, table)
    checker.ids("customer_id")
    checker.timestamps("ordered_at", required=True)
    checker.numbers("amount", required=True, minimum=0.0)
    if "order_id" in raw.columns:
        checker.ids("order_id", required=False)
    if "status" in raw.columns:
        checker.categories("status", ORDER_STATUSES)
    for name in ("promised_at", "delivered_at"):
        if name in raw.columns:
            checker.timestamps(name, required=False)
    if "order_id" in raw.columns:
        checker.unique("order_id")
    result = checker.finish(strict)
    frame = result.frame
    if "order_id" not in frame.columns:
        # Synthesised from the row position in the file so it is stable across reloads.
        frame["order_id"] = "row-" + frame.index.astype(str)
    if "status" not in frame.columns:
        # Unknown status: counted as a paid order, and the status-based quality features are NaN.
        frame["status"] = pd.Series(None, index=frame.index, dtype="str")
    for name in ("promised_at", "delivered_at"):
        if name not in frame.columns:
            frame[name] = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns]")
    result.frame = frame.reset_index(drop=True)[list(ORDER_REQUIRED + ORDER_OPTIONAL)]
    return result


def validate_events(
    raw: pd.DataFrame, *, source: str = "service events", strict: bool = False
) -> LoadResult:
    """Validate service events already in memory with canonical column names.

    Unusable rows (missing or malformed customer_id or kind, unparseable or out-of-range
    occurred_at, score outside 1-5, negative resolution_hours or amount) are quarantined with a
    reason.
    """
    return _validate_events(raw, source, strict, None)


def _validate_events(
    raw: pd.DataFrame, source: str, strict: bool, table: RawTable | None
) -> LoadResult:
    _require(raw, EVENT_REQUIRED, EVENT_OPTIONAL, source)
    checker = _Checker(raw, source, table)
    checker.ids("customer_id")
    checker.timestamps("occurred_at", required=True)
    checker.ids("kind")
    if "order_id" in raw.columns:
        checker.ids("order_id", required=False)
    if "score" in raw.columns:
        checker.numbers("score", required=False, minimum=1.0, maximum=5.0)
    for name in ("resolution_hours", "amount"):
        if name in raw.columns:
            checker.numbers(name, required=False, minimum=0.0)
    result = checker.finish(strict)
    frame = result.frame
    frame["kind"] = frame["kind"].str.strip().str.lower()
    for name in EVENT_OPTIONAL:
        if name not in frame.columns:
            frame[name] = pd.Series(
                None if name == "order_id" else np.nan,
                index=frame.index,
                dtype="str" if name == "order_id" else "float64",
            )
    result.frame = frame.reset_index(drop=True)[list(EVENT_REQUIRED + EVENT_OPTIONAL)]
    return result


def _rename(raw: pd.DataFrame, columns: str | dict[str, str] | None, source: str) -> pd.DataFrame:
    mapping = (
        parse_column_mapping(columns) if isinstance(columns, str) or columns is None else columns
    )
    # A mapping is shared by the orders and events files, so a pair whose column is absent from
    # this file is simply not for it.
    present = {src: dst for src, dst in mapping.items() if src in raw.columns}
    clashes = [dst for dst in present.values() if dst in raw.columns and dst not in present]
    if clashes:
        raise DataValidationError(
            f"{source}: mapping renames a column to {clashes[0]!r} but the file already has a "
            f"column {clashes[0]!r}; drop one of them from the mapping or the file"
        )
    return raw.rename(columns=present)


def _require(
    raw: pd.DataFrame, required: tuple[str, ...], optional: tuple[str, ...], source: str
) -> None:
    missing = [c for c in required if c not in raw.columns]
    if missing:
        have = ", ".join(map(str, raw.columns)) or "(none)"
        example = ",".join(f"{c}=<your column>" for c in missing)
        raise DataValidationError(
            f"{source} is missing required column(s) {', '.join(map(repr, missing))}; "
            f"the file has columns: {have}. Rename them with a mapping, e.g. --columns {example}"
        )
    unknown = [c for c in raw.columns if c not in required + optional]
    if unknown:
        logger.info("%s: ignoring column(s) not in the contract: %s", source, unknown)


class _Checker:
    """Collects per-row problems column by column; the first reason found for a row wins."""

    def __init__(self, raw: pd.DataFrame, source: str, table: RawTable | None = None) -> None:
        self.raw = raw.reset_index(drop=True)
        self.source = source
        self.table = table if table is not None else RawTable.of(self.raw)
        self.out: dict[str, pd.Series] = {}
        # Lines the reader could not split into fields are quarantined for that; their values
        # (placed by position) are not counted again in the column messages.
        self.reason = self.table.malformed.set_axis(self.raw.index).astype("object")
        self.malformed = self.reason.notna()
        self.problems: list[str] = [f"{source}: {p}" for p in self.table.problems]

    def _flag(self, mask: pd.Series, reason: str, message: str) -> None:
        mask = mask & ~self.malformed
        count = int(mask.sum())
        if count:
            self.reason = self.reason.mask(mask & self.reason.isna(), reason)
            self.problems.append(f"{self.source}: {message.format(n=count)}")

    def ids(self, name: str, required: bool = True) -> None:
        values = self.raw[name]
        text = values.astype("str").str.strip() if values.dtype != "str" else values.str.strip()
        text = text.where(values.notna())
        if pd.api.types.is_float_dtype(values):
            # Parquet/pandas float ids (1.0) would otherwise become "1.0".
            whole = values.notna() & (values == np.floor(values))
            text = text.mask(whole, values[whole].astype("int64").astype("str"))
        empty = text.isna() | (text == "")
        if required:
            self._flag(
                empty,
                f"missing {name}",
                f"column '{name}' has {{n}} empty values; expected a non-empty {name} on every row",
            )
        malformed = text.str.contains(_MALFORMED_ID, regex=True, na=False)
        examples = ", ".join(repr(v) for v in pd.unique(text[malformed & ~self.malformed])[:3])
        self._flag(
            malformed,
            f"malformed {name}",
            f"column '{name}' has {{n}} values with a quote, a line break or another control "
            f"character, or an undecodable byte ({examples}); expected a plain-text {name}",
        )
        # Not an id anyone has: kept out of the output (and of the quarantined customers).
        self.out[name] = text.mask(empty | malformed, None).astype("str")

    def timestamps(self, name: str, required: bool) -> None:
        values = self.raw[name]
        parsed, out_of_range = _parse_dates(values)
        unparseable = parsed.isna() & ~out_of_range
        if required:
            self._flag(
                out_of_range,
                f"{name} out of range",
                f"column '{name}' has {{n}} dates outside {DATE_RANGE}; expected plausible dates",
            )
            self._flag(
                unparseable,
                f"unparseable {name}",
                f"column '{name}' has {{n}} missing or unparseable values; expected ISO 8601 "
                "dates/timestamps (2024-03-31, 2024-03-31T12:00:00Z) or yyyymmdd integers",
            )
        else:
            self._report(
                out_of_range,
                f"column '{name}' has {{n}} dates outside {DATE_RANGE}; treated as missing "
                "(expected plausible dates)",
            )
            self._report(
                unparseable & values.notna(),
                f"column '{name}' has {{n}} unparseable values; treated as missing (expected "
                "ISO 8601 or yyyymmdd)",
            )
        self.out[name] = parsed

    def _report(self, mask: pd.Series, message: str) -> None:
        """Report values treated as missing (the rows stay usable)."""
        count = int((mask & ~self.malformed).sum())
        if count:
            self.problems.append(f"{self.source}: {message.format(n=count)}")

    def numbers(
        self, name: str, required: bool, minimum: float | None = None, maximum: float | None = None
    ) -> None:
        values = self.raw[name]
        numeric = pd.to_numeric(values, errors="coerce").astype("float64")
        # Infinity parses as a number but breaks every sum and XGBoost's input check.
        numeric = numeric.mask(np.isinf(numeric))
        non_numeric = numeric.isna() & values.notna()
        if required:
            self._flag(
                numeric.isna(),
                f"non-numeric {name}",
                f"column '{name}' has {{n}} missing or non-numeric values; expected a number",
            )
        else:
            self._flag(
                non_numeric,
                f"non-numeric {name}",
                f"column '{name}' has {{n}} non-numeric values; expected a number or empty",
            )
        if minimum is not None:
            self._flag(
                numeric < minimum,
                f"negative {name}" if minimum == 0 else f"{name} below {minimum:g}",
                f"column '{name}' has {{n}} values below {minimum:g}; expected {name} >= "
                f"{minimum:g}"
                if minimum != 0
                else f"column '{name}' has {{n}} negative values; expected {name} >= 0",
            )
        self._flag(
            numeric.abs() > LARGEST_NUMBER,
            f"implausible {name}",
            f"column '{name}' has {{n}} values beyond {LARGEST_NUMBER:,.0f} in size; expected "
            f"a plausible {name}",
        )
        if maximum is not None:
            self._flag(
                numeric > maximum,
                f"{name} above {maximum:g}",
                f"column '{name}' has {{n}} values above {maximum:g}; expected {name} between "
                f"{minimum:g} and {maximum:g}",
            )
        self.out[name] = numeric

    def categories(self, name: str, allowed: tuple[str, ...]) -> None:
        values = self.raw[name].astype("str").str.strip().str.lower().where(self.raw[name].notna())
        bad = values.notna() & ~values.isin(allowed)
        examples = ", ".join(repr(v) for v in pd.unique(values[bad])[:3])
        self._flag(
            bad,
            f"unknown {name}",
            f"column '{name}' has {{n}} unknown values ({examples}); expected one of "
            f"{', '.join(allowed)} or empty",
        )
        self.out[name] = values.mask(bad).astype("str")

    def unique(self, name: str) -> None:
        values = self.out[name]
        # Only rows still usable compete for an id, so a bad row cannot shadow a good one.
        usable = self.reason.isna() & values.notna()
        repeated = values.where(usable).duplicated(keep="first") & usable
        self._flag(
            repeated,
            f"duplicate {name}",
            f"column '{name}' has {{n}} repeated values; expected each {name} once "
            "(the first occurrence is kept)",
        )

    def finish(self, strict: bool) -> LoadResult:
        bad = self.reason.notna()
        if strict and bad.any():
            raise DataValidationError(
                f"{int(bad.sum())} of {len(self.raw)} rows are unusable:\n  "
                + "\n  ".join(self.problems)
            )
        frame = pd.DataFrame(self.out, index=self.raw.index)[~bad].copy()
        quarantine = self.raw[bad].copy()
        # The file's own columns are kept as read even when one has the name of ours.
        if self.table.source_line is not None:
            lines = self.table.source_line[bad.to_numpy()]
            quarantine.insert(0, "source_line", lines, allow_duplicates=True)
        quarantine.insert(0, "source_row", quarantine.index, allow_duplicates=True)
        quarantine.insert(0, "reason", self.reason[bad].astype("str"), allow_duplicates=True)
        if self.table.raw_line is not None:
            raw_line = self.table.raw_line.set_axis(self.raw.index)[bad]
            quarantine.insert(len(quarantine.columns), "raw_line", raw_line, allow_duplicates=True)
        for message in self.problems:
            logger.warning(message)
        ids = self.out.get("customer_id")
        quarantined_ids = ids[bad].dropna().unique() if ids is not None else []
        return LoadResult(
            frame=frame,
            quarantine=quarantine.reset_index(drop=True),
            problems=list(self.problems),
            rows_read=len(self.raw),
            quarantined_customers=pd.Index(quarantined_ids, dtype="str", name="customer_id"),
            lines=self.table.lines,
            blank_lines=self.table.blank_lines,
        )


def parse_timestamps(values: pd.Series) -> pd.Series:
    """Parse ISO 8601 strings, datetimes or yyyymmdd integers into naive UTC ``datetime64[ns]``.

    Tz-aware values are converted to UTC, naive ones are taken as UTC. What does not parse, or
    lies outside :data:`EARLIEST_DATE` to :data:`LATEST_DATE` (exclusive), becomes ``NaT``
    (the caller counts and reports it). Never raises for any value.
    """
    return _parse_dates(values)[0]


def _parse_dates(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """The dates as :func:`parse_timestamps` gives them, and which values were out of range."""
    wide = _parse_robustly(values)
    in_range = (wide >= EARLIEST_DATE) & (wide < LATEST_DATE)
    out_of_range = wide.notna() & ~in_range
    parsed = wide.where(in_range).astype("datetime64[ns]")
    missed = wide.isna() & values.notna()
    if missed.any():
        # pandas picks one unit for the whole column: beside a value with nanoseconds, a year-1
        # placeholder becomes NaT, not a date out of range. Alone, the missed values say which
        # they are (and keep the message about them right).
        again = _parse_robustly(values[missed])
        again_in_range = (again >= EARLIEST_DATE) & (again < LATEST_DATE)
        parsed[missed] = again.where(again_in_range).astype("datetime64[ns]")
        out_of_range[missed] = again.notna() & ~again_in_range
    return parsed, out_of_range


def _parse_robustly(values: pd.Series) -> pd.Series:
    """:func:`_parse_wide`, or each value on its own should that ever raise."""
    try:
        return _parse_wide(values)
    except Exception:
        # The vectorised parse is pandas' to_datetime over text of any shape; should an input
        # ever make it raise, each value is parsed on its own so one value cannot stop a load.
        return pd.Series(
            [_parse_one(value) for value in values], index=values.index, dtype="datetime64[us]"
        )


def _parse_one(value: object) -> pd.Timestamp:
    """One value parsed like :func:`_parse_wide` does a column, NaT when that fails."""
    try:
        parsed = _parse_wide(pd.Series([value], dtype="object")).iloc[0]
    except Exception:
        return pd.NaT
    # Microseconds hold every year pandas can parse (nanoseconds stop at 1677 and 2262).
    return parsed.as_unit("us") if parsed is not pd.NaT else pd.NaT


def _parse_wide(values: pd.Series) -> pd.Series:
    """Naive UTC datetimes in the unit pandas chose (so year 1 or 9999 fit), NaT if not a date.

    The range check and the cast to nanoseconds are the caller's.
    """
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = values
    elif pd.api.types.is_numeric_dtype(values):
        # Only whole numbers that can be a yyyymmdd; a float like 2.5 or an integer past int64
        # would make the Int64 cast raise instead of becoming NaT.
        numeric = values.astype("float64")
        yyyymmdd = (numeric == np.floor(numeric)) & numeric.between(10_000_101, 99_991_231)
        parsed = pd.to_datetime(
            numeric.where(yyyymmdd).astype("Int64").astype("str"),
            format="%Y%m%d",
            errors="coerce",
            utc=True,
        )
    else:
        text = values.astype("str").str.strip().where(values.notna())
        compact = text.str.fullmatch(r"\d{8}", na=False)
        parsed = pd.to_datetime(text.mask(compact), format="ISO8601", errors="coerce", utc=True)
        if compact.any():
            parsed = parsed.mask(
                compact, pd.to_datetime(text[compact], format="%Y%m%d", errors="coerce", utc=True)
            )
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    return parsed
