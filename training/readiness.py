"""Is the data enough to train? The readiness report a person reads before training.

``make check-data`` (``python -m training.readiness --orders PATH ...``) prints it; ``make train``
runs the same check first (:func:`check_before_training`) and refuses to train below the hard
thresholds unless ``--force``. Below a hard threshold (``MIN_HISTORY_DAYS``,
``MIN_REPEAT_CUSTOMERS``, a strict holdout as training.split plans it) the pipeline cannot learn
or be judged; the soft ones give caveats: training runs, but its numbers mean less.
docs/readiness.md explains each threshold.
"""

from __future__ import annotations

import argparse
import logging
import sys
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from features.io import DataValidationError
from features.run_inputs import add_input_arguments, data_end, given_events, load_run_inputs
from features.season import season_basis, seasonal_index
from features.spec import is_paid, is_placed

# The check judges the data against training's own plan, so the two cannot disagree.
from training.config import FitSettings
from training.split import longest_horizon, plan_cutoffs

logger = logging.getLogger(__name__)

READY = "ready"
READY_WITH_CAVEATS = "ready with caveats"
NOT_ENOUGH_DATA = "not enough data"

# --- Hard thresholds: below them training refuses to start (unless --force). ---------------
#: Commercial CLV tools ask for about six months of orders: less does not show how often
#: customers come back, nor a single seasonal swing.
MIN_HISTORY_DAYS = 180
#: Customers who bought on two or more different days. The purchase model (BG/NBD, Gamma-Gamma)
#: learns purchase rates and spend from repeat purchases only; commercial tools ask for 500+.
MIN_REPEAT_CUSTOMERS = 500
# The third hard threshold is training.split.plan_cutoffs itself: a strict holdout one horizon
# long plus at least one training cutoff (a label window, with history before it).

# --- Soft thresholds: training runs, the report says what its numbers are worth. -------------
#: A shop's customers are not almost all repeat buyers; above this share the file may have been
#: filtered to them (then BG/NBD's p_alive and the churn model are biased).
MAX_REPEAT_SHARE = 0.90
#: "Newest customers": first purchase in the last this-many days of the file.
NEWEST_DAYS = 90
#: Filter confirmed when the newest customers' single-purchase share is below this fraction of
#: the share of the customers first seen in the same days a year earlier, at the same point.
#: A loyal, high-frequency shop can have 90%+ repeat buyers; but its newest customers have
#: not had time to come back, so many of them have a single purchase. In a filtered file they
#: all came back.
FILTERED_SINGLE_RATIO = 0.5
#: Cohorts smaller than this are not compared (the shares would be noise).
MIN_COHORT_CUSTOMERS = 50
#: "First days of the file" for the mid-life check.
START_DAYS = 30
#: A file that starts mid-life shows its earlier customers as new on its first days: more
#: first purchases in the first START_DAYS than this multiple of an even spread is a sign.
MID_LIFE_ARRIVAL_RATIO = 2.0
#: Follow-up of the "came back" comparison of the mid-life check.
FOLLOW_UP_DAYS = 180
#: The other sign: customers "first seen" in the first days come back this many times as
#: often as the customers first seen in the same days a year later (they are established
#: customers, not new ones); MID_LIFE_RETURN_GAP keeps small shares from tripping it.
MID_LIFE_RETURN_RATIO = 1.5
MID_LIFE_RETURN_GAP = 0.10
#: Two years: every cutoff in the last year then has a full previous year to measure the
#: season from (features.season), and the holdout of a year-long horizon has a year before it.
TWO_YEARS_DAYS = 730
#: Customers known at the median training cutoff: fewer makes each window's labels noisy.
MIN_CUTOFF_CUSTOMERS = 1_000
#: Quarantined share of a file's rows: above it the loaded data may not be the shop any more.
MAX_QUARANTINE_SHARE = 0.01


_MONTHS = ("", "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class NotReady(ValueError):
    """Raised by :func:`check_before_training` when a hard threshold fails and not forced."""

    def __init__(self, readiness: Readiness) -> None:
        self.readiness = readiness
        failed = "\n  - ".join(readiness.failures)
        super().__init__(
            f"not enough data to train ({len(readiness.failures)} hard threshold(s) failed):"
            f"\n  - {failed}\npass --force to train anyway"
        )


@dataclass
class Readiness:
    """The readiness of a store's data for training, and the report that says so.

    Attributes
    ----------
    verdict : str
        ``"ready"``, ``"ready with caveats"`` or ``"not enough data"``.
    failures : list of str
        Hard thresholds that failed, each naming the threshold, the value and what is required.
    caveats : list of str
        Soft thresholds that failed: what was seen, what it does to training, what to do.
    facts : dict
        The numbers behind the report (dates as ISO strings), for logging and tests.
    horizon_days : int
        The horizon the data was judged for.
    lines : list of (str, str)
        The body of the report: topic, sentence.
    source : str
        What was read, for the report's header ("" when frames were given in memory).
    """

    verdict: str
    failures: list[str]
    caveats: list[str]
    facts: dict[str, Any]
    horizon_days: int
    lines: list[tuple[str, str]] = field(default_factory=list)
    source: str = ""

    @property
    def ready(self) -> bool:
        """True unless a hard threshold failed."""
        return not self.failures

    def _verdict_line(self) -> str:
        if self.verdict == NOT_ENOUGH_DATA:
            return (
                f"not enough data: {len(self.failures)} hard threshold(s) failed; training "
                "refuses to start (--force overrides)"
            )
        if self.verdict == READY_WITH_CAVEATS:
            return (
                f"ready with caveats: training can run; read these {len(self.caveats)} "
                "caveat(s) before trusting its numbers"
            )
        return "ready: every threshold is met"

    def to_text(self, width: int = 100) -> str:
        """The report as plain text, wrapped at ``width`` columns."""
        out = [f"Data readiness for training with a {self.horizon_days}-day horizon"]
        if self.source:
            out += _wrap(self.source, width, "", "  ")
        out.append("")
        pad = max(len(topic) for topic, _ in self.lines) + 2
        for topic, text in self.lines:
            out += _wrap(text, width, f"{topic:<{pad}}", " " * pad)
        out += ["", f"Verdict: {self._verdict_line()}"]
        for title, items in (("failed", self.failures), ("caveats", self.caveats)):
            if items:
                out.append(f"  {title}:")
                for item in items:
                    out += _wrap(item, width, "  - ", "    ")
        return "\n".join(out)

    def to_markdown(self) -> str:
        """The report as Markdown (a section with a heading, a list of facts, the verdict)."""
        out = [f"## Data readiness for a {self.horizon_days}-day horizon", ""]
        if self.source:
            out += [self.source, ""]
        out += [f"- **{topic}**: {text}" for topic, text in self.lines]
        out += ["", f"**Verdict: {self._verdict_line()}**"]
        for title, items in (("Failed", self.failures), ("Caveats", self.caveats)):
            if items:
                out += ["", f"{title}:", ""] + [f"- {item}" for item in items]
        return "\n".join(out)


def _wrap(text: str, width: int, first: str, rest: str) -> list[str]:
    # Hyphenated words ("late-delivery") and long dates stay whole on one line.
    return textwrap.wrap(
        text, width, initial_indent=first, subsequent_indent=rest, break_on_hyphens=False
    )


def assess(
    orders: pd.DataFrame,
    events: pd.DataFrame | None,
    *,
    horizon_days: int,
    quarantined: Mapping[str, int] | None = None,
    problems: Sequence[str] = (),
    source: str = "",
    window_days: int = FitSettings.window_days,
    step_days: int = FitSettings.step_days,
    max_cutoffs: int = FitSettings.max_cutoffs,
    min_history_days: int = FitSettings.min_history_days,
) -> Readiness:
    """Judge validated orders (and service events) for training with a ``horizon_days`` horizon.

    Parameters
    ----------
    orders : pandas.DataFrame
        Validated orders (:func:`features.io.validate_orders` or ``load_orders(...).frame``).
    events : pandas.DataFrame or None
        Validated service events, or None when there are none.
    horizon_days : int
        The horizon training will use.
    quarantined : mapping, optional
        Rows set aside on load, by table: ``{"orders": n, "service_events": m}``. None when
        not known (the report says so).
    problems : sequence of str
        The loader's messages about those rows (``LoadResult.problems``), quoted in a caveat.
    source : str
        What was read, printed in the report's header.
    window_days, step_days, max_cutoffs, min_history_days : int
        Training's cutoff settings (``training.config.FitSettings``), passed on to
        :func:`training.split.plan_cutoffs`.

    Returns
    -------
    Readiness
        The verdict, failures, caveats, facts and the report.

    Raises
    ------
    DataValidationError
        When no order is left (all rows quarantined, or an empty file).
    """
    if orders.empty:
        set_aside = (quarantined or {}).get("orders", 0)
        why = f" ({'; '.join(problems)})" if problems else ""
        raise DataValidationError(
            f"no usable orders: none left after validation, {set_aside:,} quarantined{why}; "
            "expected rows with a customer_id, an ordered_at date and an amount >= 0"
        )
    draft = _Draft(horizon_days)
    base = _Base.of(orders)
    _history(base, draft)
    _customers(orders, base, draft)
    _holdout_and_cutoffs(
        orders,
        base,
        draft,
        window_days=window_days,
        step_days=step_days,
        max_cutoffs=max_cutoffs,
        min_history_days=min_history_days,
    )
    _seasonality(orders, base, draft)
    _service_data(orders, events, base, draft)
    _newest_customers(base, draft)
    _file_start(base, draft)
    _quarantine(orders, events, quarantined, problems, draft)
    if draft.failures:
        verdict = NOT_ENOUGH_DATA
    elif draft.caveats:
        verdict = READY_WITH_CAVEATS
    else:
        verdict = READY
    draft.facts["verdict"] = verdict
    return Readiness(
        verdict=verdict,
        failures=draft.failures,
        caveats=draft.caveats,
        facts=draft.facts,
        horizon_days=horizon_days,
        lines=draft.lines,
        source=source,
    )


def check_before_training(
    orders: pd.DataFrame,
    events: pd.DataFrame | None,
    *,
    horizon_days: int,
    quarantined: Mapping[str, int] | None = None,
    problems: Sequence[str] = (),
    force: bool = False,
    window_days: int = FitSettings.window_days,
    step_days: int = FitSettings.step_days,
    max_cutoffs: int = FitSettings.max_cutoffs,
    min_history_days: int = FitSettings.min_history_days,
) -> Readiness:
    """Assess the data, log the report, and stop training below the hard thresholds.

    Parameters
    ----------
    orders, events, horizon_days, quarantined, problems
        As for :func:`assess`.
    force : bool
        Train anyway when a hard threshold fails (the failures are logged as a warning).
    window_days, step_days, max_cutoffs, min_history_days : int
        Training's cutoff settings, as for :func:`assess`.

    Returns
    -------
    Readiness
        The assessment, when training may go on.

    Raises
    ------
    NotReady
        When a hard threshold fails and ``force`` is False; the message lists the failures.
    """
    readiness = assess(
        orders,
        events,
        horizon_days=horizon_days,
        quarantined=quarantined,
        problems=problems,
        window_days=window_days,
        step_days=step_days,
        max_cutoffs=max_cutoffs,
        min_history_days=min_history_days,
    )
    logger.info("data readiness:\n%s", readiness.to_text())
    if readiness.failures:
        if not force:
            raise NotReady(readiness)
        logger.warning(
            "training anyway (--force) with %d hard threshold(s) failed: %s",
            len(readiness.failures),
            "; ".join(readiness.failures),
        )
    return readiness


# --- the report, section by section ---------------------------------------------------------


@dataclass
class _Draft:
    horizon_days: int
    lines: list[tuple[str, str]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    caveats: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    def line(self, topic: str, text: str) -> None:
        self.lines.append((topic, text))


@dataclass
class _Base:
    """Per-customer dates every section uses, computed once."""

    start: pd.Timestamp  # first order day
    end: pd.Timestamp  # the day after the last order (as training.split)
    span_days: int
    first_seen: np.ndarray  # sorted first order time of every customer (any status)
    first_day: pd.Series  # first purchase day (not cancelled) per purchasing customer
    second_day: pd.Series  # second distinct purchase day, NaT when none
    purchase_days: pd.Series  # distinct purchase days per purchasing customer

    @classmethod
    def of(cls, orders: pd.DataFrame) -> _Base:
        start = orders["ordered_at"].min().normalize()
        end = data_end(orders)
        first_seen = np.sort(orders.groupby("customer_id")["ordered_at"].min().to_numpy())
        # As features.rfm (BG/NBD's frequency): purchases are orders not cancelled, counted
        # once per day, so two orders on one day are not a repeat purchase.
        placed = is_placed(orders["status"])
        days = (
            pd.DataFrame(
                {
                    "customer_id": orders["customer_id"].to_numpy()[placed],
                    "day": orders["ordered_at"].to_numpy()[placed].astype("datetime64[D]"),
                }
            )
            .drop_duplicates()
            .sort_values(["customer_id", "day"])
        )
        rank = days.groupby("customer_id", sort=False).cumcount().to_numpy()
        first = days[rank == 0].set_index("customer_id")["day"].astype("datetime64[ns]")
        second = days[rank == 1].set_index("customer_id")["day"].astype("datetime64[ns]")
        return cls(
            start=start,
            end=end,
            span_days=(end - start).days,
            first_seen=first_seen,
            first_day=first,
            second_day=second.reindex(first.index),
            purchase_days=days.groupby("customer_id").size(),
        )

    def customers_before(self, cutoff: pd.Timestamp) -> int:
        """Customers with an order before ``cutoff``: the population at that cutoff."""
        return int(np.searchsorted(self.first_seen, cutoff.to_datetime64(), side="left"))


def _day(ts: pd.Timestamp) -> str:
    return ts.date().isoformat()


def _history(base: _Base, draft: _Draft) -> None:
    span = base.span_days
    last = base.end - pd.Timedelta(days=1)
    draft.facts.update(data_start=_day(base.start), data_end=_day(last), history_days=span)
    draft.line(
        "history",
        f"{_day(base.start)} to {_day(last)}: {span:,} days of orders ({span / 365.25:.1f} years)",
    )
    if span < MIN_HISTORY_DAYS:
        draft.failures.append(
            f"history: {span} days of orders; required at least {MIN_HISTORY_DAYS} days "
            "(MIN_HISTORY_DAYS): shorter does not show how often customers come back"
        )
    elif span < TWO_YEARS_DAYS:
        holdout = base.end - pd.Timedelta(days=draft.horizon_days)
        before = (holdout - base.start).days
        at_holdout = (
            f" (the holdout cutoff {_day(holdout)} has {before} days before it)"
            if 0 < before < 365
            else ""
        )
        draft.caveats.append(
            f"short history: {span} days of orders, less than {TWO_YEARS_DAYS} (two years, "
            "TWO_YEARS_DAYS): cutoffs with less than a year before them cannot measure the "
            f"season of their horizon from a previous year{at_holdout}, and the holdout judges "
            "the models on one stretch of time only; the accuracy measured may not hold in "
            "other seasons or years"
        )


def _customers(orders: pd.DataFrame, base: _Base, draft: _Draft) -> None:
    customers = len(base.first_seen)
    repeat = int((base.purchase_days >= 2).sum())
    share = repeat / customers
    per_customer = orders.groupby("customer_id").size()
    cancelled = int((~is_placed(orders["status"])).sum())
    draft.facts.update(
        customers=customers,
        repeat_customers=repeat,
        repeat_share=round(share, 4),
        orders=len(orders),
        orders_per_customer=round(float(per_customer.mean()), 2),
        orders_per_customer_median=float(per_customer.median()),
    )
    draft.line(
        "customers",
        f"{customers:,}; {repeat:,} of them ({share:.1%}) bought on two or more different days "
        "(repeat customers, as the purchase model counts them: cancelled orders and a second "
        "order on the same day do not count)",
    )
    draft.line(
        "orders",
        f"{len(orders):,} ({cancelled:,} cancelled); {per_customer.mean():.2f} per customer "
        f"on average, median {per_customer.median():g}, most {per_customer.max():,}",
    )
    if repeat < MIN_REPEAT_CUSTOMERS:
        draft.failures.append(
            f"repeat customers: {repeat:,} bought on two or more days; required at least "
            f"{MIN_REPEAT_CUSTOMERS} (MIN_REPEAT_CUSTOMERS): the purchase model learns how often "
            "customers buy and spend from repeat purchases"
        )


def _holdout_and_cutoffs(
    orders: pd.DataFrame,
    base: _Base,
    draft: _Draft,
    *,
    window_days: int,
    step_days: int,
    max_cutoffs: int,
    min_history_days: int,
) -> None:
    horizon = draft.horizon_days
    window = min(window_days, horizon)
    needed = horizon + window + min_history_days
    try:
        plan = plan_cutoffs(
            orders,
            horizon_days=horizon,
            window_days=window_days,
            step_days=step_days,
            max_cutoffs=max_cutoffs,
            min_history_days=min_history_days,
        )
    except ValueError:
        # training.split's own message suggests a horizon; it is computed here instead, since
        # with a window capped at the horizon a history shorter than two windows still fits a
        # short one (and a history with no room at all fits none).
        longest = longest_horizon(base.span_days, window_days, min_history_days)
        draft.facts.update(strict_holdout=False, training_cutoffs=0, longest_horizon_days=longest)
        advice = (
            f"the longest horizon this history supports is {longest} days: use --horizon-days "
            f"{longest} or less, or bring a longer history"
            if longest
            else "no horizon fits this history"
        )
        draft.line(
            "holdout",
            f"none: a {horizon}-day horizon needs {needed} days of orders, the file has "
            f"{base.span_days}; {advice}",
        )
        draft.failures.append(
            f"strict holdout: {base.span_days} days of orders; required at least {needed} days "
            f"for a {horizon}-day horizon (the horizon, one {window}-day label window and "
            f"{min_history_days} days of history before the first training cutoff, as "
            f"training.split plans them); {advice}"
        )
        return
    holdout_customers = base.customers_before(plan.holdout)
    counts = {_day(c): base.customers_before(c) for c in plan.twin_cutoffs}
    median = int(np.median(list(counts.values())))
    draft.facts.update(
        strict_holdout=True,
        holdout_cutoff=_day(plan.holdout),
        holdout_customers=holdout_customers,
        training_cutoffs=len(counts),
        customers_at_cutoffs=counts,
        median_cutoff_customers=median,
        serving_cutoffs=len(plan.serving_cutoffs),
    )
    draft.line(
        "holdout",
        f"strict: the models are judged on what the {holdout_customers:,} customers known "
        f"before {_day(plan.holdout)} did in the {horizon} days after it (to the end of the data)",
    )
    listed = ", ".join(f"{day} {n:,}" for day, n in counts.items())
    draft.line(
        "training cutoffs",
        f"{len(counts)} before the holdout, {window}-day label windows every {step_days} days; "
        f"customers known at each: {listed} (median {median:,})",
    )
    if median < MIN_CUTOFF_CUSTOMERS:
        draft.caveats.append(
            f"few customers per training cutoff: {median:,} at the median cutoff, fewer than "
            f"{MIN_CUTOFF_CUSTOMERS:,} (MIN_CUTOFF_CUSTOMERS): the {window}-day labels of so few "
            "customers are noisy, so the trees' corrections to the purchase model are uncertain"
        )


def _seasonality(orders: pd.DataFrame, base: _Base, draft: _Draft) -> None:
    if base.span_days < 365:
        draft.line("seasonality", f"not measured: {base.span_days} days is less than a year")
        return
    paid = orders[is_paid(orders["status"])]
    daily = (
        paid.groupby(paid["ordered_at"].dt.normalize())["amount"]
        .sum()
        .reindex(pd.date_range(base.start, base.end, freq="D", inclusive="left"), fill_value=0.0)
    )
    index, adjusted = _month_index(daily)
    if index is None:
        draft.line("seasonality", "not measured: no paid revenue")
        return
    peak, low = int(index.idxmax()), int(index.idxmin())
    draft.facts.update(
        season_peak_month=_MONTHS[peak],
        season_peak_index=round(float(index[peak]), 2),
        season_low_month=_MONTHS[low],
        season_low_index=round(float(index[low]), 2),
    )
    text = (
        f"revenue per day is highest in {_MONTHS[peak]} ({index[peak]:.2f}x the average month) "
        f"and lowest in {_MONTHS[low]} ({index[low]:.2f}x), "
        + (
            "against the 12 months around each month (growth taken out)"
            if adjusted
            else "averaged over the file (growth not taken out: fewer than 24 whole months)"
        )
    )
    horizon = draft.horizon_days
    if horizon < 365:
        # What the model's seasonal feature sees at the data end (1.0 when it cannot tell).
        coming = seasonal_index(orders, cutoff=base.end, horizon_days=horizon)
        draft.facts["season_next_horizon_index"] = round(coming, 2)
        text += (
            f"; last year the {horizon} days after {base.end - pd.Timedelta(days=365):%Y-%m-%d} "
            f"brought {coming:.2f}x the year's repeat revenue per day (features.season; "
            f"{season_basis(orders, cutoff=base.end, horizon_days=horizon)})"
        )
    draft.line("seasonality", text)


def _month_index(daily: pd.Series) -> tuple[pd.Series | None, bool]:
    """Revenue per day by calendar month over the average month, and whether growth is out.

    With 24 whole months or more, each month is divided by the centred 2x12 moving average
    around it (the classical ratio-to-moving-average seasonal index), so a growing shop's last
    months do not look like its high season; with fewer, the months are averaged as they are.
    """
    monthly = daily.resample("MS").mean()
    days = daily.resample("MS").size()
    first, last = daily.index[0], daily.index[-1]
    whole = (days == monthly.index.days_in_month) & (monthly.index >= first)
    whole &= monthly.index + pd.offsets.MonthEnd(0) <= last
    monthly = monthly[whole]
    if len(monthly) >= 24:
        weights = np.r_[0.5, np.ones(11), 0.5] / 12.0
        trend = np.convolve(monthly.to_numpy(), weights, mode="valid")
        middle = monthly.iloc[6 : 6 + len(trend)]
        ratio = pd.Series(middle.to_numpy() / np.where(trend > 0, trend, np.nan), middle.index)
        by_month = ratio.groupby(ratio.index.month).mean()
        adjusted = True
    else:
        by_month = daily.groupby(daily.index.month).mean()
        adjusted = False
    if not np.isfinite(by_month).all() or by_month.mean() <= 0:
        return None, adjusted
    return by_month / by_month.mean(), adjusted


def _service_data(
    orders: pd.DataFrame, events: pd.DataFrame | None, base: _Base, draft: _Draft
) -> None:
    status_share = float(orders["status"].notna().mean())
    delivery_share = float(orders["delivered_at"].notna().mean())
    draft.facts.update(status_share=round(status_share, 4), delivery_share=round(delivery_share, 4))
    draft.line(
        "order details",
        f"status on {status_share:.0%} of orders, delivery dates on {delivery_share:.0%} "
        "(cancellation, return and late-delivery features come from these"
        + ("; without them those features are empty)" if not status_share else ")"),
    )
    if events is None or events.empty:
        draft.facts.update(events=0, events_by_kind={})
        draft.line("service data", "none: no service events (tickets, reviews, returns) given")
        without = (
            "and no order statuses or delivery dates: every service-quality feature is empty "
            "(NaN), the model learns from purchases alone"
            if status_share == 0 and delivery_share == 0
            else "the ticket, review and return features are empty (NaN)"
        )
        draft.caveats.append(
            f"no service data: no service events file, {without}; the service causes of churn "
            "cannot be seen or explained. Pass --events with your tickets, reviews and returns "
            "if you have them"
        )
        return
    kinds = events["kind"].value_counts()
    known = events["customer_id"].isin(pd.Index(orders["customer_id"].unique()))
    with_events = events.loc[known, "customer_id"].nunique() / len(base.first_seen)
    draft.facts.update(
        events=len(events),
        events_by_kind={str(k): int(v) for k, v in kinds.items()},
        event_customer_share=round(with_events, 4),
        events_of_unknown_customers=int((~known).sum()),
    )
    listed = ", ".join(f"{kind} {n:,}" for kind, n in kinds.items())
    text = (
        f"{len(events):,} service events from {_day(events['occurred_at'].min())} to "
        f"{_day(events['occurred_at'].max())} ({listed}); {with_events:.0%} of customers have one"
    )
    if not known.all():
        text += f"; {int((~known).sum()):,} belong to customers with no order (not used)"
    draft.line("service data", text)


def _newest_customers(base: _Base, draft: _Draft) -> None:
    """Judge whether the file is filtered to repeat buyers: newest customers against last year's."""
    share = draft.facts["repeat_share"]
    now = _single_share(base, base.end)
    then = _single_share(base, base.end - pd.Timedelta(days=365))
    compared = min(now[0], then[0]) >= MIN_COHORT_CUSTOMERS
    draft.facts.update(
        newest_customers=now[0],
        newest_single_share=round(now[1], 4),
        year_earlier_customers=then[0],
        year_earlier_single_share=round(then[1], 4),
    )
    if now[0]:
        text = (
            f"{now[0]:,} customers first bought in the last {NEWEST_DAYS} days; {now[1]:.0%} of "
            "them have a single purchase day so far"
        )
        if then[0]:
            text += (
                f" (customers first seen in the same {NEWEST_DAYS} days a year earlier: "
                f"{then[1]:.0%} of {then[0]:,} at that time)"
            )
    else:
        text = f"no customer first bought in the last {NEWEST_DAYS} days"
    draft.line("newest customers", text)
    if share <= MAX_REPEAT_SHARE:
        return
    effect = (
        "if one-time buyers were removed, BG/NBD's p_alive and the churn model are biased "
        "(churn under-, CLV over-estimated, most for new customers). Export every customer, "
        "one-time buyers included"
    )
    if compared and now[1] < FILTERED_SINGLE_RATIO * then[1]:
        draft.caveats.append(
            f"filtered to repeat buyers? {share:.1%} of customers bought on two or more days "
            f"(above MAX_REPEAT_SHARE {MAX_REPEAT_SHARE:.0%}), and only {now[1]:.0%} of the "
            f"{now[0]:,} customers first seen in the last {NEWEST_DAYS} days have a single "
            f"purchase day, against {then[1]:.0%} of those first seen a year earlier at that time "
            f"(below FILTERED_SINGLE_RATIO {FILTERED_SINGLE_RATIO:g} of it); a shop's newest "
            f"customers have not had time to come back, so the file looks filtered: {effect}"
        )
    elif not compared:
        draft.caveats.append(
            f"filtered to repeat buyers? {share:.1%} of customers bought on two or more days "
            f"(above MAX_REPEAT_SHARE {MAX_REPEAT_SHARE:.0%}); the file is too short or too "
            f"small to compare its newest customers with last year's (fewer than "
            f"{MIN_COHORT_CUSTOMERS} in a cohort), so this cannot be told from a loyal shop: "
            f"{effect}"
        )
    # Otherwise the newest customers look like last year's: a loyal shop, not a filtered file.


def _single_share(base: _Base, end: pd.Timestamp) -> tuple[int, float]:
    """Customers first buying in the NEWEST_DAYS before ``end``, and who had one day by then."""
    first, second = base.first_day, base.second_day
    cohort = (first >= end - pd.Timedelta(days=NEWEST_DAYS)) & (first < end)
    n = int(cohort.sum())
    if n == 0:
        return 0, float("nan")
    single = second[cohort].isna() | (second[cohort] >= end)
    return n, float(single.mean())


def _file_start(base: _Base, draft: _Draft) -> None:
    """Judge whether the file starts mid-life (earlier customers seen as new on its first days)."""
    if base.span_days < MIN_HISTORY_DAYS:
        draft.line("start of file", f"not judged: fewer than {MIN_HISTORY_DAYS} days")
        return
    first = base.first_day
    early = first < base.start + pd.Timedelta(days=START_DAYS)
    share = float(early.mean())
    even = START_DAYS / base.span_days
    ratio = share / even
    draft.facts.update(first_days_share=round(share, 4), first_days_ratio=round(ratio, 2))
    text = (
        f"{share:.1%} of customers first bought in the first {START_DAYS} days, {ratio:.1f}x "
        f"an even spread over {base.span_days:,} days ({even:.1%})"
    )
    later = base.start + pd.Timedelta(days=365)
    signs = []
    if ratio >= MID_LIFE_ARRIVAL_RATIO:
        signs.append(
            f"{share:.1%} of customers first bought in its first {START_DAYS} days, {ratio:.1f}x "
            f"an even spread (MID_LIFE_ARRIVAL_RATIO {MID_LIFE_ARRIVAL_RATIO:g})"
        )
    a_year_later = (first >= later) & (first < later + pd.Timedelta(days=START_DAYS))
    followed = later + pd.Timedelta(days=START_DAYS + FOLLOW_UP_DAYS) <= base.end
    if followed and min(int(early.sum()), int(a_year_later.sum())) >= MIN_COHORT_CUSTOMERS:
        came_back = (base.second_day - first) <= pd.Timedelta(days=FOLLOW_UP_DAYS)
        back_early = float(came_back[early].mean())
        back_later = float(came_back[a_year_later].mean())
        draft.facts.update(
            first_days_came_back=round(back_early, 4), year_later_came_back=round(back_later, 4)
        )
        text += (
            f"; {back_early:.0%} of them bought again within {FOLLOW_UP_DAYS} days, against "
            f"{back_later:.0%} of those first seen in the same days a year later"
        )
        if (
            back_early >= MID_LIFE_RETURN_RATIO * back_later
            and back_early - back_later >= MID_LIFE_RETURN_GAP
        ):
            signs.append(
                f"those first seen in its first {START_DAYS} days ({_day(base.start)} on) bought "
                f"again within {FOLLOW_UP_DAYS} days {back_early / back_later:.1f}x as often as "
                f"those first seen in the same days a year later ({back_early:.0%} against "
                f"{back_later:.0%}; MID_LIFE_RETURN_RATIO {MID_LIFE_RETURN_RATIO:g}), as "
                "established customers do"
            )
    draft.line("start of file", text)
    draft.facts["mid_life_start"] = bool(signs)
    if signs:
        draft.caveats.append(
            "the file probably starts mid-life: "
            + "; ".join(signs)
            + ". Many of them are earlier customers whose earlier orders are not in the file: "
            "their tenure, order counts and BG/NBD ages start at the file's first day, so early "
            "cutoffs understate them. Include older orders if you have them"
        )


def _quarantine(
    orders: pd.DataFrame,
    events: pd.DataFrame | None,
    quarantined: Mapping[str, int] | None,
    problems: Sequence[str],
    draft: _Draft,
) -> None:
    if quarantined is None:
        draft.line("quarantined rows", "not known (the frames were validated elsewhere)")
        return
    kept = {"orders": len(orders), "service_events": 0 if events is None else len(events)}
    parts, heavy = [], []
    for table in sorted(set(kept) | set(quarantined)):
        set_aside = int(quarantined.get(table, 0))
        total = set_aside + kept.get(table, 0)
        if table == "service_events" and events is None and not set_aside:
            continue
        share = set_aside / total if total else 0.0
        draft.facts[f"quarantined_{table}"] = set_aside
        draft.facts[f"quarantined_{table}_share"] = round(share, 4)
        name = table.replace("_", " ")
        parts.append(f"{name} {set_aside:,} of {total:,} rows ({share:.1%})")
        if share > MAX_QUARANTINE_SHARE:
            heavy.append(f"{set_aside:,} of {total:,} {name} rows ({share:.1%})")
    draft.line("quarantined rows", "; ".join(parts))
    if heavy:
        reasons = f" ({'; '.join(problems)})" if problems else ""
        draft.caveats.append(
            f"heavy quarantine: {', '.join(heavy)} were set aside as unusable, more than "
            f"{MAX_QUARANTINE_SHARE:.0%} (MAX_QUARANTINE_SHARE){reasons}; what is left may not "
            "be the whole shop. Fix the export and check again"
        )


# --- command line ----------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Read the command-line flags of ``python -m training.readiness``."""
    parser = argparse.ArgumentParser(
        prog="python -m training.readiness",
        description="Is the data enough to train? Prints a readiness report and a verdict; "
        "exit status 0 ready (with or without caveats), 1 not enough data, 2 unusable input.",
    )
    add_input_arguments(parser, orders_required=True, strict=False)
    parser.add_argument("--horizon-days", type=int, default=365, help="the training horizon")
    parser.add_argument("--format", choices=("text", "markdown"), default="text")
    args = parser.parse_args(argv)
    args.events = given_events(args.events)
    if args.horizon_days <= 0:
        parser.error(f"--horizon-days must be a whole number > 0; got {args.horizon_days}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: load with :mod:`features.io`, print the report.

    Returns
    -------
    int
        0 ready or ready with caveats, 1 not enough data, 2 unusable input (message printed).
    """
    args = parse_args(argv)
    # The loader's warnings name the quarantined rows' problems; info would be chatter here.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        inputs = load_run_inputs(args.orders, args.events, columns=args.columns)
        loaded, events = inputs.orders, inputs.events
        sources = [f"orders {args.orders}: {loaded.rows_read:,} rows read"]
        if events is not None:
            sources.append(f"service events {args.events}: {events.rows_read:,} rows read")
        readiness = assess(
            loaded.frame,
            events.frame if events is not None else None,
            horizon_days=args.horizon_days,
            quarantined=inputs.quarantined,
            problems=loaded.problems + (events.problems if events is not None else []),
            source="; ".join(sources) + (f" (columns {args.columns})" if args.columns else ""),
        )
    except (DataValidationError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(readiness.to_markdown() if args.format == "markdown" else readiness.to_text())
    return 1 if readiness.failures else 0


if __name__ == "__main__":
    sys.exit(main())
