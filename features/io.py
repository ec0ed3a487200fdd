"""Load and validate orders and service events: the one way input files enter the product.

Reading (CSV/TSV line accounting, Parquet) is :mod:`features.files`; this module validates what
it read, row by row, and quarantines what cannot be used.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from features.files import (
    DataValidationError,
    RawTable,
    read_table,
)
from features.spec import ORDER_STATUSES

logger = logging.getLogger(__name__)


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
#: Longest customer_id, in characters (after trimming). The online request refuses longer ids
#: (serving.online.service), so batch and Spark quarantine a row with a longer one rather than score
#: a customer no request could ever look up; a user expects every id a batch run scored to be
#: one the service answers for. The bound stays (rather than the service taking any length):
#: it keeps each request's ids and the lookup store's keys small, and no id scheme in use
#: comes near it (a UUID is 36), so a longer value is a malformed field (a line glued into
#: the id column), which the quarantine file then shows with its reason.
MAX_ID_LENGTH = 128
#: An id with a quote, a line break or another control character, or U+FFFD (what an
#: undecodable byte became), is a fragment of a malformed line, not an id.
_MALFORMED_ID = '["\x00-\x1f\x7f\ufffd]'


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
    raw: pd.DataFrame,
    *,
    source: str = "orders",
    strict: bool = False,
    row_numbers: np.ndarray | None = None,
    unique_order_ids: bool = True,
) -> LoadResult:
    """Validate orders already in memory with canonical column names.

    Unusable rows (missing or malformed customer_id, unparseable ordered_at or one outside
    :data:`EARLIEST_DATE` to :data:`LATEST_DATE`, missing, non-numeric, infinite, negative or
    implausibly large amount, unknown status, repeated order_id) are quarantined with a reason;
    unparseable or out-of-range optional dates become missing and are reported.

    ``row_numbers`` (one per row of ``raw``) are the rows' places in the whole input when
    ``raw`` is one slice of it (:mod:`serving.batch.spark` validates slice by slice): they become
    the quarantine's ``source_row`` and the ``row-N`` ids of orders without an order_id, so both
    are the same as for the whole input at once. The one rule that needs every row, a repeated
    order_id, is then the caller's (``unique_order_ids=False``).
    """
    return _validate_orders(raw, source, strict, None, row_numbers, unique_order_ids)


def _validate_orders(
    raw: pd.DataFrame,
    source: str,
    strict: bool,
    table: RawTable | None,
    row_numbers: np.ndarray | None = None,
    unique_order_ids: bool = True,
) -> LoadResult:
    _require(raw, ORDER_REQUIRED, ORDER_OPTIONAL, source)
    checker = _Checker(raw, source, table, row_numbers)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="order-ids") as pool:
        distinct = None
        if "order_id" in raw.columns and unique_order_ids:
            # Hashing every order id is the load's longest step; Arrow does it without the
            # GIL, so it runs beside the checks of every other column (bench/RESULTS.md). It
            # hashes the ids as read (trimmed), before the checks blank the unusable ones:
            # distinct then means distinct after (a blanked id is not counted), and when it
            # is not, unique() marks the repeats among the usable ids exactly.
            distinct = pool.submit(_all_distinct, checker.text_of("order_id"))
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
        if distinct is not None:
            checker.unique("order_id", distinct)
    result = checker.finish(strict)
    frame = result.frame
    if "order_id" not in frame.columns:
        # Synthesised from the row position in the file so it is stable across reloads.
        frame["order_id"] = "row-" + checker.row_numbers[frame.index.to_numpy()].astype(str)
    if "status" not in frame.columns:
        # Unknown status: counted as a paid order, and the status-based quality features are NaN.
        frame["status"] = pd.Series(None, index=frame.index, dtype="str")
    for name in ("promised_at", "delivered_at"):
        if name not in frame.columns:
            frame[name] = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns]")
    result.frame = frame.reset_index(drop=True)[list(ORDER_REQUIRED + ORDER_OPTIONAL)]
    return result


def validate_events(
    raw: pd.DataFrame,
    *,
    source: str = "service events",
    strict: bool = False,
    row_numbers: np.ndarray | None = None,
) -> LoadResult:
    """Validate service events already in memory with canonical column names.

    Unusable rows (missing or malformed customer_id or kind, unparseable or out-of-range
    occurred_at, score outside 1-5, negative resolution_hours or amount) are quarantined with a
    reason. ``row_numbers``: as for :func:`validate_orders`.
    """
    return _validate_events(raw, source, strict, None, row_numbers)


def _validate_events(
    raw: pd.DataFrame,
    source: str,
    strict: bool,
    table: RawTable | None,
    row_numbers: np.ndarray | None = None,
) -> LoadResult:
    _require(raw, EVENT_REQUIRED, EVENT_OPTIONAL, source)
    checker = _Checker(raw, source, table, row_numbers)
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
    return raw.rename(columns=renames_for(list(raw.columns), mapping, source))


def renames_for(columns: list[str], mapping: dict[str, str], source: str) -> dict[str, str]:
    """The renames of a column ``mapping`` that apply to a file with these ``columns``.

    A mapping is shared by the orders and events files, so a pair whose column is absent from
    this file is simply not for it. Renaming onto a column the file already has is refused.
    """
    present = {src: dst for src, dst in mapping.items() if src in columns}
    clashes = [dst for dst in present.values() if dst in columns and dst not in present]
    if clashes:
        raise DataValidationError(
            f"{source}: mapping renames a column to {clashes[0]!r} but the file already has a "
            f"column {clashes[0]!r}; drop one of them from the mapping or the file"
        )
    return present


def _require(
    raw: pd.DataFrame, required: tuple[str, ...], optional: tuple[str, ...], source: str
) -> None:
    require_columns([str(c) for c in raw.columns], required, optional, source)


def require_columns(
    columns: list[str], required: tuple[str, ...], optional: tuple[str, ...], source: str
) -> None:
    """Refuse a file without a ``required`` column, naming what it has; log unknown ones."""
    missing = [c for c in required if c not in columns]
    if missing:
        have = ", ".join(columns) or "(none)"
        example = ",".join(f"{c}=<your column>" for c in missing)
        raise DataValidationError(
            f"{source} is missing required column(s) {', '.join(map(repr, missing))}; "
            f"its columns are: {have}. Rename them with a mapping, e.g. --columns {example}"
        )
    unknown = [c for c in columns if c not in required + optional]
    if unknown:
        logger.info("%s: ignoring column(s) not in the contract: %s", source, unknown)


class _Checker:
    """Collects per-row problems column by column; the first reason found for a row wins."""

    def __init__(
        self,
        raw: pd.DataFrame,
        source: str,
        table: RawTable | None = None,
        row_numbers: np.ndarray | None = None,
    ) -> None:
        self.raw = raw.reset_index(drop=True)
        self.row_numbers = (
            np.arange(len(self.raw), dtype="int64")
            if row_numbers is None
            else np.asarray(row_numbers, dtype="int64")
        )
        if len(self.row_numbers) != len(self.raw):
            raise ValueError(
                f"{source}: {len(self.row_numbers)} row numbers for {len(self.raw)} rows"
            )
        self.source = source
        self.table = table if table is not None else RawTable.of(self.raw)
        self.out: dict[str, pd.Series] = {}
        self._text: dict[str, pd.Series] = {}
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

    def text_of(self, name: str) -> pd.Series:
        """A column's values as trimmed text (missing ones missing), computed once."""
        if name not in self._text:
            values = self.raw[name]
            text = values.astype("str") if values.dtype != "str" else values
            self._text[name] = text.str.strip().where(values.notna())
        return self._text[name]

    def ids(self, name: str, required: bool = True) -> None:
        values = self.raw[name]
        text = self.text_of(name)
        non_finite = pd.Series(False, index=values.index)
        if pd.api.types.is_float_dtype(values):
            text, non_finite = self._float_ids(name, values, text)
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
        if name == "customer_id":
            too_long = text.str.len().gt(MAX_ID_LENGTH).fillna(False).astype(bool)
            self._flag(
                too_long & ~malformed,
                f"{name} too long",
                f"column '{name}' has {{n}} values longer than {MAX_ID_LENGTH} characters; "
                f"expected a {name} of at most {MAX_ID_LENGTH} characters (the longest the "
                "online service accepts)",
            )
            malformed = malformed | too_long
        self._flag(
            non_finite,
            f"non-finite {name}",
            f"column '{name}' has {{n}} infinite values; expected a finite {name} (write ids "
            "as text or integers)",
        )
        # Not an id anyone has: kept out of the output (and of the quarantined customers).
        self.out[name] = text.mask(empty | malformed | non_finite, None).astype("str")

    def _float_ids(
        self, name: str, values: pd.Series, text: pd.Series
    ) -> tuple[pd.Series, pd.Series]:
        """Ids of a float column (Parquet, pandas) as text, and which are not finite.

        A whole number is its integer text (``1.0`` -> ``"1"``, as the same id written as an
        integer or as CSV text reads), computed exactly: ``1e19`` is
        ``"10000000000000000000"``, not an int64 that wraps (three ids 1e19, 2e19 and 3e19
        became one customer ``-9223372036854775808``). Other finite values keep their text
        (``"1.5"``). Infinity is no id: the caller quarantines its rows.
        """
        finite = np.isfinite(values.to_numpy(dtype="float64", na_value=np.nan))
        whole = values.notna() & finite & (values == np.floor(values))
        # int64 holds every whole float below 2**63 exactly; beyond it, Python's int does.
        small = whole & (values.abs() < 2.0**63)
        text = text.mask(small, values[small].astype("int64").astype("str"))
        large = whole & ~small
        if large.any():
            text = text.mask(
                large, pd.Series([str(int(v)) for v in values[large]], values.index[large])
            )
        beyond = whole & (values.abs() > 2.0**53)
        self._report(
            beyond,
            f"column '{name}' has {{n}} whole-number ids beyond 2**53 stored as floats, which "
            "cannot hold every such id exactly (ids that differ in their last digits may have "
            "been merged when the file was written); read as their exact float value. Expected "
            f"{name} written as text or int64",
        )
        non_finite = values.notna() & ~finite
        return text, pd.Series(non_finite, index=values.index)

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

    def unique(self, name: str, all_distinct: Future[bool]) -> None:
        """Quarantine the repeats of an id among the usable rows (the first one is kept).

        ``all_distinct``: whether every id of the column is distinct, computed meanwhile
        (:func:`_all_distinct`); then no usable row repeats one either.
        """
        if all_distinct.result():
            return  # every id once: counting them is a third of the cost of marking repeats
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
        # Not consolidated: stacking the date columns into one block copied them (0.7 s at 9M rows).
        frame = pd.DataFrame(self.out, index=self.raw.index, copy=False)
        if bad.any():  # (a copy of every column only when rows go)
            frame = frame[~bad].copy()
        quarantine = self.raw[bad].copy()
        # The file's own columns are kept as read even when one has the name of ours.
        if self.table.source_line is not None:
            lines = self.table.source_line[bad.to_numpy()]
            quarantine.insert(0, "source_line", lines, allow_duplicates=True)
        quarantine.insert(0, "source_row", self.row_numbers[bad.to_numpy()], allow_duplicates=True)
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


def _all_distinct(ids: pd.Series) -> bool:
    """Whether no id is given twice (missing ones aside)."""
    return bool(ids.nunique() == ids.count())


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
