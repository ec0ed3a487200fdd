"""Service-quality impact: predicted CLV and churn with and without the customer's service failures.

For the scored base at a cutoff, each customer's history before the cutoff is rewritten without
one kind of service failure (late deliveries, returns, badly resolved tickets), then without all
three; features are rebuilt with :func:`features.build_features` and scored with the same code
as batch scoring (:func:`serving.scoring.score_matrix`). What the model says those failures
cost comes from the two predictions, in the two readings below.

Two readings of "had the failures not happened" are given. ``gain_<kind>`` is what they still
cost from now on: the customer's probability of still being a customer is the one their real
history gives (a customer the failures already drove away stays gone; the model's P(active) =
(1 - p_churn) / (1 - P(no order | active)), whose last factor depends on order dates alone),
and only the value while still a customer is rescored. It is the quantity the synthetic
store's truth measures (:mod:`serving.insight.impact_truth`), and the one a business can still act
on. ``gain_if_never_<kind>`` is the rescored prediction as it is, which also revives the
customers already lost (docs/experiments.md, ideas 13-15).

This is a model-based what-if, not a measured effect: customers with failures can differ from
the others in ways the model does not see (confounding), so the figures say how much the
predictions lean on the service features, not what fixing service would earn.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from features import build_features
from features.history import days_before, format_cutoff
from features.quality import (
    BAD_CSAT,
    BAD_RESOLUTION_HOURS,
    badly_resolved,
    late_deliveries,
    resolved_tickets,
)
from features.run_inputs import load_run_inputs
from features.spec import is_returned
from serving.base_inputs import (
    DEFAULT_MODEL_URI,
    DEMO_EVENTS,
    DEMO_ORDERS,
    add_input_arguments,
    chosen_events,
    chosen_model_uri,
    resolve_cutoff,
)
from serving.customer_chunks import CustomerChunks
from serving.insight import impact_truth
from serving.scoring import ScoreSettings, score_matrix
from serving.segments import VALUE_TIERS, Base
from training import tracking
from training.config import check_run_paths, run_entrypoint
from training.model import CustomerValueModel

logger = logging.getLogger(__name__)

#: The kinds of service failure, each removed alone, and "all" (the three together).
FAILURE_KINDS: tuple[str, ...] = ("late", "returns", "bad_tickets")
KINDS: tuple[str, ...] = (*FAILURE_KINDS, "all")
KIND_LABELS: dict[str, str] = {
    "late": "late deliveries",
    "returns": "returns",
    "bad_tickets": "badly resolved tickets",
    "all": "all three together",
}
#: Event kinds as :func:`features.io.validate_events` leaves them (trimmed, lower case); the
#: synthetic store and the feature code (``features.quality._event_quality``) use these words.
TICKET_KIND = "ticket"
RETURN_EVENT_KIND = "return"
#: What a returned order becomes when it is not returned: the one paid status of the contract.
KEPT_STATUS = "completed"
#: A badly resolved ticket made good changes as little as possible: resolved within the limit
#: (exactly at it is not bad: the rule is ``> BAD_RESOLUTION_HOURS``) and the lowest CSAT above
#: the bad ones on the 1-5 scale.
GOOD_CSAT = float(np.floor(BAD_CSAT) + 1.0)
DEFAULT_IMPACT_OUT = Path("models/scores/impact.parquet")

STATEMENT = (
    "What this is: a model-based what-if, not a measured effect. Each customer's history before "
    "the cutoff was rewritten without the failure (late deliveries arrive on the promised date; "
    "returned orders are kept as completed orders and their return events removed; badly "
    f"resolved tickets (> {BAD_RESOLUTION_HOURS:g} h or CSAT <= {BAD_CSAT:g}) are resolved "
    f"within {BAD_RESOLUTION_HOURS:g} h with CSAT >= {GOOD_CSAT:g}), the features were rebuilt and "
    "the same model rescored them. clv_gain is what the failures still cost from now on: the "
    "chance that the customer is still a customer stays the one their real history gives "
    "(whoever has already left stays gone) and only their value while still a customer is "
    "rescored. clv_gain_if_never also brings back customers the failures may already have "
    "driven away (as if the failures had never happened); the churn change reads the same way. "
    "Customers who suffered failures may differ in ways the model does not see (confounding: "
    "e.g. frequent buyers get more late deliveries and return more), so it is not a causal "
    "estimate of what fixing service would earn. Customers without a failure of a kind have "
    "exactly 0 difference for it. A return kept also counts its amount as paid revenue in the "
    "history, so part of the returns figure is about spend, not service."
)


# --- Which rows are failures (the rules of features/quality.py) --------------------------------


def late_delivery_rows(orders: pd.DataFrame, cutoff: pd.Timestamp) -> np.ndarray:
    """Orders placed before ``cutoff`` that were delivered, before it, later than promised.

    The features' rule (:func:`features.quality.late_deliveries`): a delivery is judged once
    it happened before the cutoff, and it is late when ``delivered_at > promised_at``. A
    delivery still pending at the cutoff is not known to be late then, and is left alone.
    """
    before = orders["ordered_at"].to_numpy(dtype="datetime64[ns]") < cutoff.to_datetime64()
    delivered = orders["delivered_at"].to_numpy(dtype="datetime64[ns]")
    promised = orders["promised_at"].to_numpy(dtype="datetime64[ns]")
    return before & late_deliveries(delivered, promised, cutoff)


def returned_order_rows(orders: pd.DataFrame, cutoff: pd.Timestamp) -> np.ndarray:
    """Orders placed before ``cutoff`` with status ``returned`` (as the features read status)."""
    before = orders["ordered_at"].to_numpy(dtype="datetime64[ns]") < cutoff.to_datetime64()
    return before & is_returned(orders["status"])


def return_event_rows(events: pd.DataFrame, cutoff: pd.Timestamp) -> np.ndarray:
    """Return events before ``cutoff``.

    No feature reads them today (returns are counted from the order status), but a history
    without returns has none, so a later feature that does cannot see a half-undone return.
    """
    before = events["occurred_at"].to_numpy(dtype="datetime64[ns]") < cutoff.to_datetime64()
    return before & (events["kind"] == RETURN_EVENT_KIND).to_numpy(dtype=bool, na_value=False)


def bad_ticket_rows(events: pd.DataFrame, cutoff: pd.Timestamp) -> np.ndarray:
    """Tickets resolved before ``cutoff`` that were resolved badly.

    The features' rules (:func:`features.quality.resolved_tickets`,
    :func:`features.quality.badly_resolved`): a ticket is resolved at ``occurred_at +
    resolution_hours`` and, once resolved, bad when it took more than
    :data:`features.quality.BAD_RESOLUTION_HOURS` or got a CSAT of
    :data:`features.quality.BAD_CSAT` or less. The feature counts only the last
    ``quality_days``; here every bad ticket before the cutoff is made good (an older one moves
    no feature, so it moves no prediction either).
    """
    before = events["occurred_at"].to_numpy(dtype="datetime64[ns]") < cutoff.to_datetime64()
    age = days_before(events["occurred_at"], cutoff)
    ticket = before & (events["kind"] == TICKET_KIND).to_numpy(dtype=bool, na_value=False)
    hours = events["resolution_hours"].to_numpy(dtype="float64")
    score = events["score"].to_numpy(dtype="float64")
    return resolved_tickets(ticket, hours, age) & badly_resolved(hours, score)


# --- Counterfactual histories --------------------------------------------------------------------

History = tuple[pd.DataFrame, pd.DataFrame | None]


def without_late_deliveries(
    orders: pd.DataFrame, events: pd.DataFrame | None, cutoff: pd.Timestamp
) -> History:
    """The history had every delivery judged before ``cutoff`` arrived by its promised date."""
    late = late_delivery_rows(orders, cutoff)
    out = orders.copy()
    out.loc[late, "delivered_at"] = out.loc[late, "promised_at"]
    return out, events


def without_returns(
    orders: pd.DataFrame, events: pd.DataFrame | None, cutoff: pd.Timestamp
) -> History:
    """The history had no return before ``cutoff``: returned orders kept, return events gone."""
    returned = returned_order_rows(orders, cutoff)
    out = orders.copy()
    out.loc[returned, "status"] = KEPT_STATUS
    if events is not None:
        events = events.loc[~return_event_rows(events, cutoff)]
    return out, events


def without_bad_tickets(
    orders: pd.DataFrame, events: pd.DataFrame | None, cutoff: pd.Timestamp
) -> History:
    """The history had every badly resolved ticket before ``cutoff`` resolved well.

    The tickets are made good rather than removed: a ticket is a contact (a question, a damaged
    parcel) and its resolution is the service; removing it would also erase the contact and
    move the ticket counts and ``days_since_last_ticket``, which measure something else.
    """
    if events is None:
        return orders, None
    bad = bad_ticket_rows(events, cutoff)
    out = events.copy()
    hours = out.loc[bad, "resolution_hours"]
    out.loc[bad, "resolution_hours"] = np.minimum(hours, BAD_RESOLUTION_HOURS)
    score = out.loc[bad, "score"]
    out.loc[bad, "score"] = score.where(~(score <= BAD_CSAT), GOOD_CSAT)
    return orders, out


def without_failures(
    orders: pd.DataFrame, events: pd.DataFrame | None, cutoff: pd.Timestamp
) -> History:
    """The history without late deliveries, returns and badly resolved tickets before ``cutoff``."""
    history: History = (orders, events)
    for rewrite in (without_late_deliveries, without_returns, without_bad_tickets):
        history = rewrite(*history, cutoff)
    return history


COUNTERFACTUALS: dict[str, Callable[[pd.DataFrame, pd.DataFrame | None, pd.Timestamp], History]] = {
    "late": without_late_deliveries,
    "returns": without_returns,
    "bad_tickets": without_bad_tickets,
    "all": without_failures,
}


def affected_customers(
    orders: pd.DataFrame, events: pd.DataFrame | None, cutoff: pd.Timestamp
) -> dict[str, pd.Index]:
    """Ids of the customers with at least one failure of each kind before ``cutoff``."""
    ids = {
        "late": orders.loc[late_delivery_rows(orders, cutoff), "customer_id"],
        "returns": orders.loc[returned_order_rows(orders, cutoff), "customer_id"],
        "bad_tickets": pd.Series([], dtype="str"),
    }
    if events is not None:
        returns = events.loc[return_event_rows(events, cutoff), "customer_id"]
        ids["returns"] = pd.concat([ids["returns"], returns])
        ids["bad_tickets"] = events.loc[bad_ticket_rows(events, cutoff), "customer_id"]
    out = {kind: pd.Index(found.unique(), dtype="str") for kind, found in ids.items()}
    out["all"] = out["late"].union(out["returns"]).union(out["bad_tickets"])
    return out


# --- The estimate --------------------------------------------------------------------------------


@dataclass
class Impact:
    """What the service failures are worth in predicted CLV and churn.

    Attributes
    ----------
    customers : pandas.DataFrame
        One row per scored customer: ``customer_id``, ``value_segment`` (of the actual scores),
        ``clv``, ``p_churn`` and for each kind ``clv_<kind>`` (the CLV without those failures
        from now on: value while still a customer rescored, the chance of still being one
        kept), ``clv_if_never_<kind>`` (the model's prediction for the rewritten history as it
        is), ``p_churn_<kind>``, ``affected_<kind>``, ``gain_<kind>`` (``clv_<kind> - clv``),
        ``gain_if_never_<kind>`` (``clv_if_never_<kind> - clv``) and ``churn_change_<kind>``
        (``p_churn_<kind> - p_churn``).
    by_kind : pandas.DataFrame
        Per kind: customers affected, how many of them the model sees differently (an old
        failure outside every feature window changes no feature), their actual CLV, the
        total CLV difference, it as a share of the base's CLV, and the mean churn difference
        among the affected.
    by_segment : pandas.DataFrame
        The same per value segment and kind.
    cutoff : pandas.Timestamp
    notes : list of str
        What the data could not measure (no delivery dates, no statuses, no tickets).
    seconds : dict
        Time spent per step.
    """

    customers: pd.DataFrame
    by_kind: pd.DataFrame
    by_segment: pd.DataFrame
    cutoff: pd.Timestamp
    notes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def _rows_differ(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Rows of two feature matrices that differ (NaN equals NaN: a missing feature stays so)."""
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    return ~same.all(axis=1)


def _score_chunk(
    model: CustomerValueModel,
    orders: pd.DataFrame,
    events: pd.DataFrame | None,
    cutoff: pd.Timestamp,
    kinds: tuple[str, ...],
    seconds: dict[str, float],
) -> pd.DataFrame | None:
    """Actual and counterfactual predictions for one chunk of whole customers."""
    settings = ScoreSettings(reasons="none")
    names = model.feature_names_in_
    tick = time.perf_counter()
    actual = build_features(orders, events, cutoff=cutoff, spec=model.spec)
    seconds["features"] += time.perf_counter() - tick
    if actual.empty:
        return None
    X = actual[names].to_numpy(dtype="float64")
    tick = time.perf_counter()
    scores = score_matrix(model, X, settings)
    seconds["predict"] += time.perf_counter() - tick
    out = pd.DataFrame({"clv": scores.clv, "p_churn": scores.p_churn}, index=actual.index)
    affected = affected_customers(orders, events, cutoff)
    for kind in kinds:
        tick = time.perf_counter()
        cf_orders, cf_events = COUNTERFACTUALS[kind](orders, events, cutoff)
        features = build_features(cf_orders, cf_events, cutoff=cutoff, spec=model.spec)
        seconds["features"] += time.perf_counter() - tick
        if not features.index.equals(actual.index):
            raise RuntimeError(
                f"counterfactual '{kind}' changed who is scored: {len(features):,} customers "
                f"vs {len(actual):,} (a rewrite must not move order dates)"
            )
        Xc = features[names].to_numpy(dtype="float64")
        hit = actual.index.isin(affected[kind])
        moved = _rows_differ(X, Xc)
        if (moved & ~hit).any():
            # The rewrite touched only affected customers' rows; anything else is a bug.
            raise RuntimeError(
                f"counterfactual '{kind}' changed the features of {int((moved & ~hit).sum()):,} "
                "customers without such a failure"
            )
        clv, p_churn = scores.clv.copy(), scores.p_churn.copy()
        from_now = clv.copy()
        tick = time.perf_counter()
        # Only rows whose features moved are rescored; the others keep the actual prediction,
        # so a customer without the failure has exactly 0 difference.
        if moved.any():
            rescored = score_matrix(model, Xc[moved], settings)
            clv[moved], p_churn[moved] = rescored.clv, rescored.p_churn
            # Whoever has already gone stays gone: the chance of still being a customer is the
            # one the real history gives, and only the value while still a customer is the
            # what-if's. P(active) (the model's, in [0, 1]) = (1 - p_churn) / (1 - P(no order
            # | active)); the last factor is the purchase model's, from order dates alone,
            # which no rewrite moves.
            active = model.p_active_matrix(X[moved], scores.p_churn[moved])
            active_cf = model.p_active_matrix(Xc[moved], rescored.p_churn)
            from_now[moved] = rescored.clv * active / np.maximum(active_cf, 1e-12)
        seconds["predict"] += time.perf_counter() - tick
        out[f"clv_{kind}"] = from_now
        out[f"clv_if_never_{kind}"] = clv
        out[f"p_churn_{kind}"] = p_churn
        out[f"affected_{kind}"] = hit
        out[f"gain_{kind}"] = from_now - scores.clv
        out[f"gain_if_never_{kind}"] = clv - scores.clv
        out[f"churn_change_{kind}"] = p_churn - scores.p_churn
        out[f"moved_{kind}"] = moved
    return out


def estimate_impact(
    model: CustomerValueModel,
    orders: pd.DataFrame,
    events: pd.DataFrame | None,
    cutoff: pd.Timestamp,
    *,
    kinds: tuple[str, ...] = KINDS,
    chunk_customers: int = 200_000,
) -> Impact:
    """Predicted CLV and churn as scored and without each kind of service failure.

    Parameters
    ----------
    model : CustomerValueModel
        The loaded model (its ``spec`` builds the features).
    orders, events : pandas.DataFrame
        Validated orders and service events (:mod:`features.io`); ``events`` may be None (then
        badly resolved tickets cannot be measured and are noted).
    cutoff : pandas.Timestamp
        The scoring point in time; only history before it is rewritten.
    kinds : tuple of str
        Which of :data:`KINDS` to estimate.
    chunk_customers : int
        Customers per chunk (memory bound, as in batch scoring).

    Returns
    -------
    Impact

    Raises
    ------
    ValueError
        On an unknown kind, or when no customer has an order before the cutoff.
    """
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown kind(s) {unknown}; expected some of {', '.join(KINDS)}")
    seconds = {"features": 0.0, "predict": 0.0}
    parts = [
        part
        for chunk_orders, chunk_events in CustomerChunks(orders, events, chunk_customers)
        if (part := _score_chunk(model, chunk_orders, chunk_events, cutoff, kinds, seconds))
        is not None
    ]
    if not parts:
        raise ValueError(
            f"no customer has an order before the cutoff {format_cutoff(cutoff)} "
            f"({len(orders):,} orders, first {orders['ordered_at'].min()})"
        )
    tick = time.perf_counter()
    frame = pd.concat(parts)
    base = Base.of(frame["clv"].to_numpy())
    value, _, _ = base.labels(frame["clv"].to_numpy(), frame["p_churn"].to_numpy())
    frame.insert(0, "value_segment", pd.array(value, dtype="str"))
    for kind in kinds:
        # The promise of the method, checked on the result and not only assumed.
        stray = frame.loc[~frame[f"affected_{kind}"], f"gain_{kind}"].abs().sum()
        if stray != 0:
            raise RuntimeError(f"customers without '{kind}' failures got a difference: {stray}")
    by_kind = _summary(frame, kinds, total=float(frame["clv"].sum()))
    by_segment = pd.concat(
        {
            segment: _summary(group, kinds, total=float(frame["clv"].sum()))
            for segment, group in frame.groupby("value_segment", sort=False)
        },
        names=["value_segment"],
    )
    order = [name for name, _ in VALUE_TIERS]
    by_segment = by_segment.reindex(
        pd.MultiIndex.from_product([order, list(kinds)], names=["value_segment", "kind"])
    ).dropna(how="all")
    moved = [f"moved_{kind}" for kind in kinds]
    customers = frame.drop(columns=moved).reset_index()
    seconds["summarise"] = time.perf_counter() - tick
    return Impact(customers, by_kind, by_segment, cutoff, _notes(orders, events, cutoff), seconds)


def _summary(frame: pd.DataFrame, kinds: tuple[str, ...], total: float) -> pd.DataFrame:
    """Per kind: affected, features changed, CLV of the affected, CLV and churn difference."""
    rows = {}
    for kind in kinds:
        hit = frame[f"affected_{kind}"].to_numpy()
        gain = float(frame[f"gain_{kind}"].sum())
        rows[kind] = {
            "customers": len(frame),
            "affected": int(hit.sum()),
            "features_changed": int(frame[f"moved_{kind}"].sum()),
            "clv_affected": float(frame.loc[hit, "clv"].sum()),
            "clv_gain": gain,
            "gain_pct_of_base": 100.0 * gain / total if total > 0 else np.nan,
            "clv_gain_if_never": float(frame[f"gain_if_never_{kind}"].sum()),
            "churn_change_affected": (
                float(frame.loc[hit, f"churn_change_{kind}"].mean()) if hit.any() else np.nan
            ),
        }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("kind")


def _notes(orders: pd.DataFrame, events: pd.DataFrame | None, cutoff: pd.Timestamp) -> list[str]:
    """What the input cannot show: a kind without its data has no failures, not no problems."""
    before = orders.loc[orders["ordered_at"].to_numpy() < cutoff.to_datetime64()]
    notes = []
    if before["delivered_at"].isna().all() or before["promised_at"].isna().all():
        notes.append(
            "orders have no delivered_at/promised_at before the cutoff: late "
            "deliveries cannot be measured (0 affected)"
        )
    if before["status"].isna().all():
        notes.append(
            "orders have no status before the cutoff: returns cannot be measured (0 affected)"
        )
    if events is None:
        notes.append("no service events: badly resolved tickets cannot be measured")
    elif not ((events["kind"] == TICKET_KIND).to_numpy(dtype=bool, na_value=False)).any():
        notes.append(
            f"service events have no kind '{TICKET_KIND}' rows: badly resolved tickets "
            "cannot be measured (0 affected)"
        )
    return notes


# --- Command line --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImpactConfig:
    """What to estimate, with which model, and where to write the per-customer table."""

    orders: Path = DEMO_ORDERS
    events: Path | None = DEMO_EVENTS
    columns: str = ""
    cutoff: str = "latest"
    out: Path = DEFAULT_IMPACT_OUT
    model_uri: str = DEFAULT_MODEL_URI
    chunk_customers: int = 200_000
    #: On a synthetic store (``python -m demo``), also check against the planted truth.
    truth: bool = True


def parse_args(argv: list[str] | None = None) -> ImpactConfig:
    """Build an :class:`ImpactConfig` from flags (defaults: the demo data and the champion)."""
    d = ImpactConfig()
    parser = argparse.ArgumentParser(
        prog="python -m serving.impact",
        description="Value at stake from late deliveries, returns and badly resolved tickets: "
        "predicted CLV and churn as scored and without each (a model-based what-if).",
    )
    add_input_arguments(
        parser, "; required: service impact cannot be measured without service data"
    )
    parser.add_argument("--out", type=Path, default=d.out, help=".parquet (default) or .csv")
    parser.add_argument("--chunk-customers", type=int, default=d.chunk_customers)
    parser.add_argument(
        "--no-truth",
        action="store_true",
        help="on a synthetic store, skip the check against its planted truth",
    )
    args = parser.parse_args(argv)
    return ImpactConfig(
        orders=args.orders,
        events=chosen_events(args),
        columns=args.columns,
        cutoff=args.cutoff,
        out=args.out,
        model_uri=chosen_model_uri(args),
        chunk_customers=args.chunk_customers,
        truth=not args.no_truth,
    )


def run(
    config: ImpactConfig,
) -> tuple[Impact, dict[str, str], impact_truth.TruthCheck | None]:
    """Load the model and data, estimate, write ``config.out``; return it and the model info.

    On a synthetic store (its manifest beside the orders, the files unchanged) the estimate is
    also checked against the planted truth (:func:`check_against_truth`), written beside
    ``config.out`` (:func:`serving.insight.impact_truth.truth_path`) and returned; otherwise None,
    and an earlier check at that path is removed so that no report pairs it with these figures.

    Raises
    ------
    ValueError
        No service events (or none usable), no usable orders, a bad cutoff or output suffix.
    """
    if config.out.suffix.lower() not in (".parquet", ".csv"):
        raise ValueError(f"--out {config.out}: expected a .parquet or .csv file")
    check_run_paths(
        {
            "--orders": config.orders,
            "--events": config.events,
            "the MLflow tracking store": tracking.store_path(tracking.active_uri()),
        },
        {
            "--out": config.out,
            "the truth check (from --out)": impact_truth.truth_path(config.out),
        },
    )
    if config.events is None:
        raise ValueError(
            f"no service events given for {config.orders}: service impact cannot be measured "
            "without service data; pass --events PATH (tickets, returns, reviews)"
        )
    timings: dict[str, float] = {}
    tick = time.perf_counter()
    inputs = load_run_inputs(config.orders, config.events, columns=config.columns)
    orders_result, events_result = inputs.orders, inputs.events
    assert events_result is not None  # events were given: refused above otherwise
    orders, events = orders_result.frame, events_result.frame
    if events.empty:
        raise ValueError(
            f"no usable service events in {config.events}: {events_result.rows_read} rows read "
            f"({'; '.join(events_result.problems) or 'no data rows'}); service impact cannot "
            "be measured without service data"
        )
    cutoff = resolve_cutoff(config.cutoff, orders)
    timings["load_data"] = time.perf_counter() - tick
    tick = time.perf_counter()
    model, info = tracking.open_model(config.model_uri)
    timings["load_model"] = time.perf_counter() - tick
    impact = estimate_impact(model, orders, events, cutoff, chunk_customers=config.chunk_customers)
    for name, result in (("orders", orders_result), ("service events", events_result)):
        if result.rows_quarantined:
            impact.notes.append(
                f"{result.rows_quarantined:,} {name} rows were unusable and left out "
                f"({'; '.join(result.problems)})"
            )
    timings |= impact.seconds
    tick = time.perf_counter()
    config.out.parent.mkdir(parents=True, exist_ok=True)
    if config.out.suffix.lower() == ".csv":
        impact.customers.to_csv(config.out, index=False)
    else:
        impact.customers.to_parquet(config.out, index=False)
    timings["write"] = time.perf_counter() - tick
    check_file = impact_truth.truth_path(config.out)
    store = impact_truth.synthetic_store(config.orders, config.events) if config.truth else None
    check = None
    if store is None:
        check_file.unlink(missing_ok=True)
    else:
        tick = time.perf_counter()
        try:
            # The version that scored, not the alias again: it may have moved since.
            check = check_against_truth(
                tracking.pinned_uri(config.model_uri, info),
                orders,
                events,
                store,
                chunk_customers=config.chunk_customers,
            )
        except (ValueError, TypeError, KeyError, OSError) as err:
            # The estimate stands without its check (a model not trained by make train, a
            # manifest of another generator version, a version without its twin): say why.
            check_file.unlink(missing_ok=True)
            impact.notes.append(f"not checked against the synthetic store's truth: {err}")
        else:
            check.write(check_file)
        timings["truth_check"] = time.perf_counter() - tick
    impact.seconds = timings
    return impact, info, check


def check_against_truth(
    model_uri: str,
    orders: pd.DataFrame,
    events: pd.DataFrame,
    store: impact_truth.SyntheticStore,
    *,
    chunk_customers: int = 200_000,
) -> impact_truth.TruthCheck:
    """The what-if of the model's evaluation twin at its holdout cutoff, beside the truth.

    Parameters
    ----------
    model_uri : str
        A registered version; its run's ``plan.holdout_cutoff`` is the cutoff.
    orders, events : pandas.DataFrame
        The synthetic store's validated tables (only rows before the cutoff are used).
    store : SyntheticStore
        How the store was generated (:func:`serving.insight.impact_truth.synthetic_store`).
    chunk_customers : int
        As for :func:`estimate_impact`.

    Returns
    -------
    serving.insight.impact_truth.TruthCheck

    Raises
    ------
    ValueError
        When the version's run has no holdout cutoff (a model not trained by ``make train``).
    """
    version = tracking.resolve_version(model_uri)
    holdout = tracking.version_params(version).get("plan.holdout_cutoff")
    if not holdout:
        raise ValueError(
            f"{model_uri}: its MLflow run has no parameter plan.holdout_cutoff, so its "
            "evaluation twin cannot be checked against the truth (train it with make train, "
            "or pass --no-truth)"
        )
    cutoff = pd.Timestamp(holdout)
    twin = tracking.load_model(version.model_uri, which="evaluation")
    horizon = int(twin.spec.horizon_days)
    estimate = estimate_impact(
        twin,
        orders.loc[orders["ordered_at"].to_numpy() < cutoff.to_datetime64()],
        events.loc[events["occurred_at"].to_numpy() < cutoff.to_datetime64()],
        cutoff,
        chunk_customers=chunk_customers,
    )
    truth = impact_truth.planted_truth(store, cutoff, horizon)
    return impact_truth.TruthCheck(
        cutoff=format_cutoff(cutoff),
        horizon_days=horizon,
        model_uri=version.model_uri,
        store=impact_truth.store_summary(store),
        table=impact_truth.compare(estimate.by_kind, truth),
    )


def format_report(
    impact: Impact,
    info: dict[str, str] | None = None,
    check: impact_truth.TruthCheck | None = None,
) -> str:
    """The readable report: the statement, the per-kind and per-segment tables, the notes."""
    model = f" with {info['model_name']} v{info['model_version']}" if info else ""
    base_clv = float(impact.customers["clv"].sum())
    lines = [
        f"service-quality impact at cutoff {format_cutoff(impact.cutoff)}{model}: "
        f"{len(impact.customers):,} customers, predicted CLV {base_clv:,.0f}",
        "",
        STATEMENT,
        "",
        "If the failure had not happened (clv_gain: what the failures still cost from now on, "
        "customers already lost staying lost; clv_gain_if_never: also bringing those back; "
        "churn_change_affected: mean churn probability difference among the affected):",
        _table(impact.by_kind.rename(index=KIND_LABELS)),
        "",
        "Per value segment (of the actual scores):",
        _table(impact.by_segment),
    ]
    if check is not None:
        agree = "the same order as" if check.ranks_agree else "NOT in the order of"
        lines += [
            "",
            impact_truth.STATEMENT,
            f"At {check.cutoff} with {check.model_uri} (evaluation twin), horizon "
            f"{check.horizon_days} days; the estimate ranks the kinds in {agree} the truth:",
            _table(check.table.rename(index=KIND_LABELS)),
        ]
    lines += [f"note: {note}" for note in impact.notes]
    lines.append("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in impact.seconds.items()))
    return "\n".join(lines)


def _table(frame: pd.DataFrame) -> str:
    formats = {
        "clv_affected": "{:,.0f}".format,
        "clv_gain": "{:+,.0f}".format,
        "gain_pct_of_base": "{:+.2f}%".format,
        "clv_gain_if_never": "{:+,.0f}".format,
        "churn_change_affected": "{:+.4f}".format,
        "customers": "{:,.0f}".format,
        "affected": "{:,.0f}".format,
        "features_changed": "{:,.0f}".format,
        "affected_truth": "{:,.0f}".format,
        "estimate": "{:+,.0f}".format,
        "truth": "{:+,.0f}".format,
        "error_pct": "{:+.1f}%".format,
    }
    return frame.to_string(formatters=formats)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (``python -m serving.impact``)."""
    config = parse_args(argv)

    def work() -> None:
        tracking.configure(read_only=True)
        impact, info, check = run(config)
        print(format_report(impact, info, check))
        print(f"wrote {config.out} (one row per customer)")
        if check is not None:
            print(f"wrote {impact_truth.truth_path(config.out)} (the check against the truth)")

    return run_entrypoint(work)


if __name__ == "__main__":
    sys.exit(main())
