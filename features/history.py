"""Point-in-time slicing shared by the feature and label builders."""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.io import DATE_RANGE, EARLIEST_DATE, LATEST_DATE
from features.spec import is_returned

DAY = np.timedelta64(1, "D")


#: Words pandas turns into the wall clock at parse time.
RELATIVE_WORDS = frozenset({"now", "today"})


def as_cutoff(cutoff: object) -> pd.Timestamp:
    """Return ``cutoff`` as a naive UTC timestamp, refusing a missing one.

    There is deliberately no default cutoff (and never ``now()``): every feature is computed
    as of an explicit point in time.

    Raises
    ------
    ValueError
        When ``cutoff`` is missing, is not a date, or lies outside
        :data:`features.io.EARLIEST_DATE` to :data:`features.io.LATEST_DATE`. A cutoff may be
        ``LATEST_DATE`` itself: it is an exclusive bound, and the cutoff that sees an order of
        the last day of the range (``latest``: the day after the last order) is that date.
    """
    if cutoff is None:
        raise ValueError("cutoff is required (a date or timestamp); there is no default cutoff")
    ts = _parse_point(cutoff, "cutoff")
    if not EARLIEST_DATE <= ts <= LATEST_DATE:
        raise ValueError(
            f"cutoff {cutoff!r} is outside the supported dates {EARLIEST_DATE:%Y-%m-%d} to "
            f"{LATEST_DATE:%Y-%m-%d} (both included); expected e.g. '2025-06-30'"
        )
    return ts.as_unit("ns")


def format_cutoff(cutoff: pd.Timestamp) -> str:
    """``2025-07-02`` for a midnight cutoff, the full ISO timestamp otherwise."""
    # Fields, not ``cutoff.normalize()``: every online answer formats its cutoff, and
    # normalize() builds a new Timestamp (tens of microseconds).
    if not (
        cutoff.hour or cutoff.minute or cutoff.second or cutoff.microsecond or cutoff.nanosecond
    ):
        return cutoff.date().isoformat()
    return cutoff.isoformat()


def as_timestamp(value: object, name: str) -> pd.Timestamp:
    """Parse a date-like ``value`` into a naive UTC ``Timestamp``; the error names ``name``.

    Raises
    ------
    ValueError
        When ``value`` is not a date or lies outside the input's dates
        (:data:`features.io.DATE_RANGE`).
    """
    ts = _parse_point(value, name)
    if not EARLIEST_DATE <= ts < LATEST_DATE:
        raise ValueError(
            f"{name} {value!r} is outside the supported dates {DATE_RANGE}; "
            "expected e.g. '2025-06-30'"
        )
    return ts.as_unit("ns")


def _parse_point(value: object, name: str) -> pd.Timestamp:
    """``value`` as a naive UTC Timestamp in whatever unit holds it; ValueError if not a date."""
    # pandas reads "now"/"today" as the wall clock and a bare integer as nanoseconds since
    # 1970; neither is a point in time a run can be repeated at.
    relative = isinstance(value, str) and value.strip().lower() in RELATIVE_WORDS
    if relative or isinstance(value, numbers.Real):
        raise ValueError(f"{name} {value!r} is not a date; expected e.g. '2025-06-30'")
    try:
        ts = pd.Timestamp(value)
        if ts is not pd.NaT and ts.tzinfo is not None:
            ts = ts.tz_convert("UTC").tz_localize(None)
    except Exception as err:
        # Text pandas cannot read raises one of several types depending on where its parser
        # gives up; callers (the request schema, --cutoff) rely on ValueError only.
        raise ValueError(f"{name} {value!r} is not a date; expected e.g. '2025-06-30'") from err
    if ts is pd.NaT:
        raise ValueError(f"{name} {value!r} is not a date; expected e.g. '2025-06-30'")
    return ts


def rows_before(frame: pd.DataFrame, column: str, cutoff: pd.Timestamp) -> pd.DataFrame:
    """Rows whose ``column`` is strictly before ``cutoff`` (the point-in-time rule)."""
    return frame.loc[frame[column].to_numpy() < cutoff.to_datetime64()]


def status_at(past: pd.DataFrame, events: pd.DataFrame | None, cutoff: pd.Timestamp) -> pd.Series:
    """Each order's status as it was known at ``cutoff`` (orders placed before it).

    An order's status is the export's: "returned" says the order came back at some time, not
    when, so an order returned after the cutoff must still look kept at the cutoff, or the
    features of a past cutoff (the training rows) would know its future. How a return is
    dated is decided customer by customer, from that customer's own rows only, so a customer's
    status (and every feature built on it) is the same whichever customers are built with it
    (alone, in a batch chunk, in an online request, in a Spark group):

    - a customer with a return event (kind "return", with an order_id) before the cutoff has
      returns dated by their events: a returned order counts as returned once an event of that
      customer with that order_id happened before the cutoff (events match orders on
      ``(customer_id, order_id)``, so another customer's order id never dates this one's);
    - a customer without one has a return counted once the order was delivered before the
      cutoff (a parcel comes back after it arrived), or, with no delivery date, as the status
      says (all the data allows).

    Only rows before the cutoff decide, so appending later rows changes nothing. A
    cancellation is taken as known when the order was placed: orders are cancelled before
    they ship.

    Parameters
    ----------
    past : pandas.DataFrame
        Validated orders placed before ``cutoff`` (``customer_id``, ``order_id``, ``status``,
        ``delivered_at``).
    events : pandas.DataFrame or None
        Validated service events (any dates: only those before ``cutoff`` are read), or None.
    cutoff : pandas.Timestamp
        The point in time.

    Returns
    -------
    pandas.Series
        The status per row of ``past`` ("completed" where the return is not known yet).
    """
    status = past["status"]
    returned = is_returned(status)
    if not returned.any():
        return status
    # By default a return is known once the parcel arrived (or as the status says, undated).
    known_return = ~(past["delivered_at"] >= cutoff).to_numpy(dtype=bool, na_value=False)
    if events is not None and not events.empty:
        dated = events.loc[
            (events["kind"] == "return")
            & events["order_id"].notna()
            & (events["occurred_at"] < cutoff),
            ["customer_id", "order_id"],
        ]
        if not dated.empty:
            # Customers whose returns are dated by their own events: for them, a returned
            # order is known only through an event with its (customer_id, order_id).
            by_events = _among(past["customer_id"], dated["customer_id"])
            known_return &= ~by_events
            check = returned & by_events & past["order_id"].notna().to_numpy()
            if check.any():
                known_return[check] = _pairs_among(past.loc[check], dated)
    later = returned & ~known_return
    if not later.any():
        return status
    return status.mask(pd.Series(later, index=status.index), "completed")


def _among(values: pd.Series, members: pd.Series) -> np.ndarray:
    """Which ``values`` (text ids) are among ``members``, as a boolean array.

    One hash pass in Arrow: pandas' own ``isin`` on Arrow-backed text walks the members in
    Python, a third of a 1M-customer batch's feature time (docs/lab-notes.md).
    """
    found = pc.is_in(
        pa.array(values.astype("str"), type=pa.large_string()),
        value_set=pa.array(members.astype("str"), type=pa.large_string()),
    )
    return found.to_numpy(zero_copy_only=False)


def _pairs_among(rows: pd.DataFrame, pairs: pd.DataFrame) -> np.ndarray:
    """Which ``(customer_id, order_id)`` of ``rows`` are among ``pairs`` (no missing ids).

    Each column is numbered over both frames, and a pair is the one integer its two numbers
    make, so the pairs are compared exactly, with no separator to choose.
    """
    customers, _ = pd.factorize(
        pd.concat([rows["customer_id"], pairs["customer_id"]], ignore_index=True).astype("str")
    )
    orders, order_ids = pd.factorize(
        pd.concat([rows["order_id"], pairs["order_id"]], ignore_index=True).astype("str")
    )
    key = customers.astype("int64") * max(len(order_ids), 1) + orders
    return pd.Series(key[: len(rows)]).isin(key[len(rows) :]).to_numpy()


@dataclass(frozen=True)
class PastOrders:
    """The orders placed before a cutoff, numbered by customer, with their status then.

    What both feature families start from (:func:`features.rfm.rfm_features`,
    :func:`features.quality.quality_features`): built once per cutoff and shared, it is the
    same whichever family builds it.

    Attributes
    ----------
    rows : pandas.DataFrame
        Orders with ``ordered_at < cutoff`` (:func:`rows_before`).
    codes : numpy.ndarray
        Each row's customer code, into ``index`` (:func:`customer_codes`).
    index : pandas.Index
        The customers, sorted.
    status : pandas.Series
        Each row's status as known at the cutoff (:func:`status_at`).
    """

    rows: pd.DataFrame
    codes: np.ndarray
    index: pd.Index
    status: pd.Series

    @classmethod
    def at(
        cls, orders: pd.DataFrame, events: pd.DataFrame | None, cutoff: pd.Timestamp
    ) -> PastOrders:
        """The past of validated ``orders`` (and their ``events``) at ``cutoff``."""
        rows = rows_before(orders, "ordered_at", cutoff)
        codes, index = customer_codes(rows["customer_id"])
        return cls(rows, codes, index, status_at(rows, events, cutoff))


def days_before(times: pd.Series, cutoff: pd.Timestamp) -> np.ndarray:
    """Fractional days from each time to ``cutoff`` (positive for the past)."""
    return (cutoff.to_datetime64() - times.to_numpy(dtype="datetime64[ns]")) / DAY


def customer_codes(ids: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """Integer code per row and the customer ids they stand for (sorted, for stable output)."""
    codes, uniques = pd.factorize(ids, sort=True)
    return codes, pd.Index(uniques, name="customer_id", dtype="str")


def per_customer_sum(codes: np.ndarray, values: np.ndarray | None, size: int) -> np.ndarray:
    """Sum (or count, with ``values=None``) per customer code; bincount is the fast path."""
    return np.bincount(codes, weights=values, minlength=size).astype("float64")


def safe_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``numerator / denominator`` with NaN where the denominator is zero (no data, not zero)."""
    out = np.full(numerator.shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out
