"""Service-quality features at a cutoff: deliveries, cancellations, returns, tickets, reviews."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.history import (
    DAY,
    PastOrders,
    as_cutoff,
    days_before,
    per_customer_sum,
    rows_before,
    safe_ratio,
)
from features.spec import FeatureSpec, is_placed, is_returned

#: A ticket counts as badly resolved when it took longer than this or got a CSAT of 2 or less.
BAD_RESOLUTION_HOURS = 72.0
BAD_CSAT = 2.0


# --- The failure rules: the features count them, the impact what-if undoes them -----------------


def judged_deliveries(
    delivered_at: np.ndarray, promised_at: np.ndarray, cutoff: pd.Timestamp
) -> np.ndarray:
    """Deliveries that can be judged at ``cutoff``: both dates known, delivered before it.

    Point in time: a delivery still pending at the cutoff is not known to be late then.
    """
    return (
        ~np.isnat(delivered_at) & ~np.isnat(promised_at) & (delivered_at < cutoff.to_datetime64())
    )


def late_deliveries(
    delivered_at: np.ndarray, promised_at: np.ndarray, cutoff: pd.Timestamp
) -> np.ndarray:
    """Deliveries judged at ``cutoff`` (:func:`judged_deliveries`) that came after the promise."""
    return judged_deliveries(delivered_at, promised_at, cutoff) & (delivered_at > promised_at)


def resolved_tickets(ticket: np.ndarray, hours: np.ndarray, age_days: np.ndarray) -> np.ndarray:
    """Tickets resolved before the cutoff: resolution known at ``occurred_at + hours``.

    ``age_days`` is each event's age at the cutoff (:func:`features.history.days_before`);
    until its resolution time has passed, a ticket is open.
    """
    return ticket & ~np.isnan(hours) & (age_days * 24.0 - np.nan_to_num(hours) > 0)


def badly_resolved(hours: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Bad resolutions: over :data:`BAD_RESOLUTION_HOURS`, or a CSAT of :data:`BAD_CSAT` or less.

    Applies to :func:`resolved_tickets` (an open ticket is not judged yet).
    """
    return (hours > BAD_RESOLUTION_HOURS) | (score <= BAD_CSAT)


def quality_feature_names(spec: FeatureSpec) -> list[str]:
    """Column names :func:`quality_features` returns, in order."""
    return _order_quality_names(spec) + _event_quality_names(spec)


def _order_quality_names(spec: FeatureSpec) -> list[str]:
    q = spec.quality_days
    return [
        f"late_deliveries_{q}d",
        f"late_delivery_rate_{q}d",
        f"mean_days_late_{q}d",
        f"cancellation_rate_{q}d",
        f"returns_{q}d",
        f"returned_value_share_{q}d",
    ]


def _event_quality_names(spec: FeatureSpec) -> list[str]:
    q = spec.quality_days
    return [
        f"tickets_{spec.trend_days}d",
        f"tickets_{q}d",
        f"bad_tickets_{q}d",
        f"mean_resolution_hours_{q}d",
        f"mean_ticket_csat_{q}d",
        "open_tickets",
        "days_since_last_ticket",
        "mean_review_score",
        "last_review_score",
    ]


def quality_features(
    orders: pd.DataFrame,
    events: pd.DataFrame | None,
    *,
    cutoff: object,
    spec: FeatureSpec,
    history: PastOrders | None = None,
) -> pd.DataFrame:
    """Service-quality features for every customer with an order strictly before ``cutoff``.

    Only what was known before the cutoff counts: a delivery is judged once it has been
    delivered, a ticket's resolution once it was resolved. Where the data has no such
    information (no delivery dates, no status, no events file) the features are NaN, not 0.

    Parameters
    ----------
    orders : pandas.DataFrame
        Validated orders.
    events : pandas.DataFrame or None
        Validated service events; None when the business has none (features become NaN).
    cutoff : date-like
        The point in time.
    spec : FeatureSpec
        ``quality_days`` sets the look-back window.
    history : PastOrders, optional
        The orders before ``cutoff`` with their status, when the caller has built them
        (:func:`features.build.build_features` shares them between the families).

    Returns
    -------
    pandas.DataFrame
        Indexed by ``customer_id``, columns :func:`quality_feature_names`.
    """
    cutoff = as_cutoff(cutoff)
    history = history if history is not None else PastOrders.at(orders, events, cutoff)
    past, codes, index = history.rows, history.codes, history.index
    out = _order_quality(past, history.status, codes, len(index), cutoff, spec)
    out.update(_event_quality(events, index, cutoff, spec))
    return pd.DataFrame(out, index=index)[quality_feature_names(spec)]


def _order_quality(
    past: pd.DataFrame,
    status: pd.Series,
    codes: np.ndarray,
    n: int,
    cutoff: pd.Timestamp,
    spec: FeatureSpec,
) -> dict[str, np.ndarray]:
    q = spec.quality_days
    recent = days_before(past["ordered_at"], cutoff) <= q
    known_status = status.notna().to_numpy() & recent
    cancelled = ~is_placed(status) & recent
    returned = is_returned(status) & recent
    amount = past["amount"].to_numpy(dtype="float64")

    delivered_at = past["delivered_at"].to_numpy(dtype="datetime64[ns]")
    promised_at = past["promised_at"].to_numpy(dtype="datetime64[ns]")
    judged = recent & judged_deliveries(delivered_at, promised_at, cutoff)
    days_late = np.where(judged, (delivered_at - promised_at) / DAY, 0.0)
    late = recent & late_deliveries(delivered_at, promised_at, cutoff)

    judged_count = per_customer_sum(codes[judged], None, n)
    status_count = per_customer_sum(codes[known_status], None, n)
    placed_value = per_customer_sum(
        codes[known_status & ~cancelled], amount[known_status & ~cancelled], n
    )
    has_delivery_data = judged_count > 0
    has_status = status_count > 0
    late_count = per_customer_sum(codes[late], None, n)
    return {
        f"late_deliveries_{q}d": np.where(has_delivery_data, late_count, np.nan),
        f"late_delivery_rate_{q}d": safe_ratio(late_count, judged_count),
        f"mean_days_late_{q}d": safe_ratio(
            per_customer_sum(codes[late], days_late[late], n), judged_count
        ),
        f"cancellation_rate_{q}d": safe_ratio(
            per_customer_sum(codes[cancelled], None, n), status_count
        ),
        f"returns_{q}d": np.where(has_status, per_customer_sum(codes[returned], None, n), np.nan),
        f"returned_value_share_{q}d": safe_ratio(
            per_customer_sum(codes[returned], amount[returned], n), placed_value
        ),
    }


def _event_quality(
    events: pd.DataFrame | None, index: pd.Index, cutoff: pd.Timestamp, spec: FeatureSpec
) -> dict[str, np.ndarray]:
    q = spec.quality_days
    recent = spec.trend_days
    n = len(index)
    if events is None:
        return {name: np.full(n, np.nan) for name in _event_quality_names(spec)}
    past = rows_before(events, "occurred_at", cutoff)
    # Events of customers outside the population (no order before the cutoff) are ignored.
    codes = index.get_indexer(past["customer_id"])
    known = codes >= 0
    past, codes = past.loc[known], codes[known]
    age = days_before(past["occurred_at"], cutoff)
    kind = past["kind"].to_numpy(dtype=object)
    score = past["score"].to_numpy(dtype="float64")
    hours = past["resolution_hours"].to_numpy(dtype="float64")

    ticket = kind == "ticket"
    resolved = resolved_tickets(ticket, hours, age)
    open_ = ticket & ~resolved
    window = age <= q
    resolved_recent = resolved & window
    bad = resolved_recent & badly_resolved(hours, score)
    rated = resolved_recent & ~np.isnan(score)
    review = (kind == "review") & ~np.isnan(score)

    last_ticket_age = np.full(n, np.nan)
    if ticket.any():
        ticket_age = pd.Series(age[ticket]).groupby(codes[ticket]).min()
        last_ticket_age[ticket_age.index.to_numpy()] = ticket_age.to_numpy()
    last_review = np.full(n, np.nan)
    if review.any():
        # The last review is the one with the smallest age; ties resolve to the file order.
        frame = pd.DataFrame({"code": codes[review], "age": age[review], "score": score[review]})
        latest = frame.sort_values(["code", "age"], kind="stable").drop_duplicates("code")
        last_review[latest["code"].to_numpy()] = latest["score"].to_numpy()

    return {
        f"tickets_{recent}d": per_customer_sum(codes[ticket & (age <= recent)], None, n),
        f"tickets_{q}d": per_customer_sum(codes[ticket & window], None, n),
        f"bad_tickets_{q}d": per_customer_sum(codes[bad], None, n),
        f"mean_resolution_hours_{q}d": safe_ratio(
            per_customer_sum(codes[resolved_recent], hours[resolved_recent], n),
            per_customer_sum(codes[resolved_recent], None, n),
        ),
        f"mean_ticket_csat_{q}d": safe_ratio(
            per_customer_sum(codes[rated], score[rated], n), per_customer_sum(codes[rated], None, n)
        ),
        "open_tickets": per_customer_sum(codes[open_], None, n),
        "days_since_last_ticket": last_ticket_age,
        "mean_review_score": safe_ratio(
            per_customer_sum(codes[review], score[review], n),
            per_customer_sum(codes[review], None, n),
        ),
        "last_review_score": last_review,
    }
