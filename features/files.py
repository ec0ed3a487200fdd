"""Reading input files as they are written: CSV/TSV with every line accounted for, Parquet.

What :mod:`features.io` validates comes from here. A CSV/TSV file is read by pyarrow, told that
values never span lines, and the rows it returns are checked against the file's own line count
(blank lines aside); only when they differ, or the fast parser refuses the file, is it read line
by line to find and mark the lines that cannot be split into the header's fields. So no line can
silently merge into another or vanish: ``lines = 1 header + blank lines + rows`` always holds,
and a malformed line becomes a row marked with its reason and line number, for the caller to
quarantine.

Which format an input is (CSV, TSV or Parquet; one file or a folder of part files; compressed
or not) is decided in one place, :func:`input_format`, for this reader and for the Spark one
(:mod:`features.spark_input`).
"""

from __future__ import annotations

import bz2
import csv
import functools
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

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

#: Quarantine reasons of CSV/TSV lines that could not be split into the header's fields.
TOO_MANY_FIELDS = "too many fields"
TOO_FEW_FIELDS = "too few fields"
UNTERMINATED_QUOTE = "unterminated quote"
NOT_UTF8 = "not UTF-8"
#: Bytes read at a time when counting the lines of a CSV file.
_SCAN_BYTES = 1 << 24
#: Line numbers quoted in one message.
_EXAMPLE_LINES = 5

#: The input formats (:attr:`InputFormat.kind`).
CSV, TSV, PARQUET = "CSV", "TSV", "Parquet"
#: Suffixes of delimited text, and the format each is read as.
DELIMITED_SUFFIXES: dict[str, str] = {".csv": CSV, ".txt": CSV, ".tsv": TSV}
#: Compressions of delimited text (``orders.csv.gz``), by suffix.
COMPRESSED_SUFFIXES: dict[str, str] = {".gz": "gzip", ".bz2": "bz2", ".zip": "zip"}
#: Suffixes of Parquet files (and of the part files of a Parquet folder).
PARQUET_SUFFIXES: tuple[str, ...] = (".parquet", ".pq")
#: What an input may be, as the unknown-format message says.
EXPECTED_FORMATS = (
    "expected .csv, .tsv or .parquet (.txt is read as CSV; a CSV/TSV file may be compressed: "
    ".gz, .bz2, .zip), or a folder of Parquet or CSV part files"
)


class DataValidationError(ValueError):
    """Raised when an input cannot be used as it is; the message says what and how to fix it."""


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


@dataclass(frozen=True)
class InputFormat:
    """How an input is written, as :func:`input_format` decides it for every reader.

    Attributes
    ----------
    kind : str
        :data:`CSV`, :data:`TSV` or :data:`PARQUET`.
    compression : str or None
        ``gzip``, ``bz2`` or ``zip`` for a compressed CSV/TSV file; None otherwise (the part
        files of a folder say their own).
    parts : bool
        A folder of part files (a remote location: one named without a file suffix).
    """

    kind: str
    compression: str | None = None
    parts: bool = False

    @property
    def separator(self) -> str:
        """The field separator of a CSV/TSV input."""
        return "\t" if self.kind == TSV else ","


def input_format(location: str | Path) -> InputFormat:
    """Which format an input is: the one rule of the pandas and the Spark readers.

    - a file ending in ``.parquet`` or ``.pq`` is Parquet;
    - a file ending in ``.csv`` or ``.txt`` is CSV, in ``.tsv`` TSV, each optionally followed
      by ``.gz``, ``.bz2`` or ``.zip`` (``orders.csv.gz``);
    - a local folder is a folder of part files: Parquet when a part ends in ``.parquet`` or
      ``.pq``, else the format of the folder's own name (``orders.tsv/`` as Spark writes it)
      or of its parts (``part-0.csv.gz``), else Parquet. Hidden parts (``_SUCCESS``,
      ``.part-0.crc``) are ignored, as the readers ignore them;
    - a remote location (``s3a://...``, only Spark reads those) is CSV/TSV when its last
      name says so, else Parquet (a file or a folder: it cannot be listed from here).

    A local path that does not exist is judged by its name (the reader says it is missing).

    Raises
    ------
    DataValidationError
        Naming the file and the formats expected, when a local file has another suffix
        (``orders.json``, ``orders``).
    """
    text = str(location)
    if "://" in text:
        named = _named_format(text.rstrip("/").rsplit("/", 1)[-1])
        if named is not None:
            return named
        return InputFormat(PARQUET, parts=not text.lower().endswith(PARQUET_SUFFIXES))
    path = Path(location)
    if path.is_dir():
        return _folder_format(path)
    named = _named_format(path.name)
    if named is None:
        raise DataValidationError(f"input file {text!r} has an unknown format; {EXPECTED_FORMATS}")
    return named


def _named_format(name: str) -> InputFormat | None:
    """The format a file name says (``orders.csv.gz``: gzipped CSV), or None."""
    suffixes = [suffix.lower() for suffix in Path(name).suffixes]
    if suffixes and suffixes[-1] in PARQUET_SUFFIXES:
        return InputFormat(PARQUET)
    compression = COMPRESSED_SUFFIXES.get(suffixes[-1]) if suffixes else None
    if compression is not None:
        suffixes = suffixes[:-1]
    if suffixes and suffixes[-1] in DELIMITED_SUFFIXES:
        return InputFormat(DELIMITED_SUFFIXES[suffixes[-1]], compression)
    return None


def _folder_format(folder: Path) -> InputFormat:
    """The format of a local folder of part files (see :func:`input_format`)."""
    parts = [
        path
        for path in folder.rglob("*")
        if not path.name.startswith((".", "_")) and not path.is_dir()
    ]
    if any(path.name.lower().endswith(PARQUET_SUFFIXES) for path in parts):
        return InputFormat(PARQUET, parts=True)
    for named in (_named_format(folder.name), *map(_named_format, (p.name for p in parts))):
        if named is not None and named.kind != PARQUET:
            return InputFormat(named.kind, parts=True)
    return InputFormat(PARQUET, parts=True)


def input_location(text: str) -> Path | str:
    """A command line's input file: a local path, or a URI (``s3a://...``) kept as written.

    ``Path`` would fold a URI's ``//`` into ``/``; only the Spark commands read URIs (the
    others name a URI as a file that does not exist).
    """
    return text if "://" in text else Path(text)


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

    The format is :func:`input_format`'s: a CSV/TSV file may be compressed (``.gz``,
    ``.bz2``, or a ``.zip`` archive of one file); a folder is read as Parquet part files.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    DataValidationError
        Naming the file, when its format is unknown (or a folder of CSV part files, which only
        Spark reads) or it cannot be read as a whole: no header line, a header that is not
        UTF-8 or opens a quote it does not close, a broken Parquet or compressed file, a zip
        archive without exactly one file.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input file {str(path)!r} does not exist")
    fmt = input_format(path)
    if fmt.kind == PARQUET and fmt.parts:
        # Every part's columns, not the first part's only (see parquet_parts_schema).
        schema = parquet_parts_schema(path)
        read = functools.partial(pd.read_parquet, schema=schema)
        return RawTable.of(_read_whole(path, PARQUET, read))
    if fmt.kind == PARQUET:
        return RawTable.of(_read_whole(path, PARQUET, pd.read_parquet))
    if fmt.parts:
        raise DataValidationError(
            f"input folder {str(path)!r} holds {fmt.kind} part files, which only the Spark "
            f"commands read; expected one {fmt.kind} file or a Parquet file or folder here "
            "(or score it with make score-spark)"
        )
    return _read_whole(path, fmt.kind, _read_delimited, fmt)


def _comparable(kind: pa.DataType) -> pa.DataType:
    """A column type as the readers see it: large and small strings (or binaries) alike."""
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if pa.types.is_large_string(kind):
        return pa.string()
    if pa.types.is_large_binary(kind):
        return pa.binary()
    return kind


def parquet_parts_schema(folder: str | Path) -> pa.Schema:
    """The schema of a folder of Parquet part files: every column of every part.

    Readers take a folder's schema from its first part file, so a column the first part lacks
    (an export that added ``status`` later) vanished from every part without a word. Here each
    part's footer is read: a column missing from some parts is in the schema (those parts'
    rows read it as null), and a column whose type differs between parts is refused, naming
    both part files, since one of them would be misread. Large and small strings count as one
    type, and a column that is all null in a part takes the other parts' type. Part files are
    the ones the readers see (Hive-style ``key=value`` folders give their partition columns).

    Parameters
    ----------
    folder : str or Path
        A folder of ``.parquet`` part files (local).

    Returns
    -------
    pyarrow.Schema
        The columns in order of first appearance (partition columns last), each with the type
        of the first part that has it not all null; the first part's metadata.

    Raises
    ------
    DataValidationError
        Naming the part file and the column, when a column's type differs between parts or a
        part's footer cannot be read.
    """
    import pyarrow.dataset as pads

    folder = Path(folder)
    try:
        dataset = pads.dataset(str(folder), format="parquet", partitioning="hive")
    except (pa.ArrowInvalid, OSError) as err:
        raise DataValidationError(
            f"input folder {str(folder)!r} could not be read as Parquet: {err}"
        ) from err
    seen: dict[str, tuple[pa.Field, str]] = {}
    metadata = None
    for fragment in dataset.get_fragments():
        try:
            schema = fragment.physical_schema
        except (pa.ArrowInvalid, OSError) as err:
            raise DataValidationError(
                f"input folder {str(folder)!r}: part file {fragment.path!r} could not be read "
                f"as Parquet: {err}"
            ) from err
        if metadata is None:
            metadata = schema.metadata
        for column in schema:
            if column.name not in seen or pa.types.is_null(seen[column.name][0].type):
                seen[column.name] = (column, fragment.path)
                continue
            first, first_path = seen[column.name]
            if pa.types.is_null(column.type):
                continue
            if _comparable(column.type) != _comparable(first.type):
                raise DataValidationError(
                    f"input folder {str(folder)!r}: part file {fragment.path!r} has column "
                    f"{column.name!r} as {column.type}, but part file {first_path!r} has it as "
                    f"{first.type}; expected each column to have one type in every part file "
                    "(write the parts with the same schema)"
                )
    fields = [column for column, _ in seen.values()]
    fields += [f for f in dataset.schema if f.name not in seen]  # partition columns
    return pa.schema(fields, metadata=metadata)


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


def _read_delimited(path: Path, fmt: InputFormat) -> RawTable:
    table = _read_fast(path, fmt)
    if table is None:
        logger.info("%s: some line is not a plain row; reading the file line by line", path)
        table = _read_line_by_line(path, fmt)
    if table.frame.empty:
        table.problems.append("has no data rows, only a header line")
    return table


@contextmanager
def _open_binary(path: Path, compression: str | None) -> Iterator[IO[bytes]]:
    """The file's bytes, decompressed (``gzip``, ``bz2``, or the one file of a ``zip``)."""
    if compression == "gzip":
        with gzip.open(path, "rb") as compressed:
            yield compressed  # type: ignore[misc]  # a GzipFile reads bytes like IO[bytes]
    elif compression == "bz2":
        with bz2.open(path, "rb") as packed:
            yield packed
    elif compression == "zip":
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


def _read_fast(path: Path, fmt: InputFormat) -> RawTable | None:
    """Read with pyarrow; None when the file needs the line-by-line reader.

    pyarrow is told values never span lines (so it can split the file between threads), but a
    stray quote still makes it join lines inside a block. So the file's lines are counted
    (:func:`_count_lines`) and the table is used only when every line that is neither the
    header nor empty is a row.
    """
    sep, compression = fmt.separator, fmt.compression
    with _open_binary(path, compression) as stream:
        first = stream.readline()
    names = _simple_header(first, sep)
    if names is None:
        return None
    try:
        with _open_binary(path, compression) as stream:
            # A path lets pyarrow read and decompress .gz and .bz2 natively (it goes by the
            # same suffixes as input_format); a zip member is a stream.
            source = stream if compression == "zip" else str(path)
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
    with _open_binary(path, compression) as stream:
        lines, bare_cr = _count_lines(stream)
    if bare_cr:
        return None
    empty = np.empty(0, dtype="int64")
    if table.num_rows != lines - 1:
        # Fewer rows than lines: empty lines (pyarrow skips them, as pandas does) or lines a
        # quote joined. Only when empty lines explain the whole difference is the table right.
        with _open_binary(path, compression) as stream:
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


def _read_line_by_line(path: Path, fmt: InputFormat) -> RawTable:
    """Sort the lines one at a time, then parse the well-formed ones with pyarrow in one go."""
    lines = _SortedLines(path, fmt.separator)
    with _open_binary(path, fmt.compression) as binary:
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
