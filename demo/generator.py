"""Synthetic storefront: orders and service events with planted causes of churn and spend."""

from __future__ import annotations

import argparse
import logging
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from tqdm import tqdm

from demo.manifest import write_manifest
from features.history import as_timestamp

logger = logging.getLogger(__name__)

SECONDS_PER_DAY = 86_400
#: The demo store's trading period (``end`` is the export date, exclusive).
DEFAULT_START = "2022-07-01"
DEFAULT_END = "2026-07-01"
STR = pd.StringDtype("pyarrow", na_value=np.nan)  # pandas' default "str" dtype


@dataclass(frozen=True)
class SynthParams:
    """Every rate, distribution and planted effect of the synthetic storefront.

    Times are in days unless the name says otherwise. The defaults give about 9 orders per
    customer over a four-year export. The ``*_dropout`` and ``*_spend`` fields are the causal
    effects the models are meant to find: each late delivery, return or badly resolved ticket
    adds its ``*_dropout`` to the customer's dropout probability and multiplies the value of
    their later orders by its ``*_spend``. Effects accumulate and take hold once the customer
    has lived through the problem (delivery, return, ticket resolution), never before.
    """

    # Acquisition: first orders follow a linearly rising density over [start, end) (thinned by
    # the same seasonality as purchases). The density at `end` is this many times that at `start`.
    acquisition_growth: float = 3.0

    # Buy-till-you-die (BG/NBD-like). Purchase rate lambda_i ~ Gamma(rate_shape, mean
    # purchase_rate_mean orders per year, off-season); after every order, the first included, the
    # customer drops out for good with probability min(p_i + accumulated effects, max_dropout),
    # p_i ~ Beta(dropout_a, dropout_b). The draw after an order already counts that order's
    # problems; a customer who leaves because of them leaves once they have lived through them.
    # The rate is high because the accumulating effects cut long lives short: ~9 orders each.
    rate_shape: float = 2.0
    purchase_rate_mean: float = 20.0
    dropout_a: float = 0.5
    dropout_b: float = 15.0
    max_dropout: float = 0.98

    # Seasonality: purchase (and acquisition) rate multiplier in the peak months, 1 elsewhere.
    peak_months: tuple[int, ...] = (11, 12)
    peak_multiplier: float = 1.6

    # Order value: customer mean spend ~ LogNormal(log(spend_median), spend_sigma); each order
    # ~ Gamma(order_value_shape) around the customer's mean times their spend multiplier.
    spend_median: float = 55.0
    spend_sigma: float = 0.6
    order_value_shape: float = 3.0

    # Fulfilment. Promise: ordered + U{promise_days_min..promise_days_max} days. On time:
    # delivered up to on_time_early_max days before the promise. Late: delivered
    # U{late_days_min..late_days_max} days (+ up to half a day) after it.
    cancel_probability: float = 0.03
    promise_days_min: int = 2
    promise_days_max: int = 5
    on_time_early_max: float = 1.5
    late_probability: float = 0.12
    late_days_min: int = 1
    late_days_max: int = 7

    # Returns: share of delivered orders sent back U(return_days_min, return_days_max) days after
    # delivery; the whole order value is refunded.
    return_probability: float = 0.08
    return_days_min: float = 3.0
    return_days_max: float = 25.0

    # Support tickets, one at most per order, 0.5-5 days after the order (after the promise for a
    # late order, after delivery for a returned one). Resolution ~ LogNormal(median, sigma) hours;
    # CSAT = round(csat_intercept - csat_hours_slope * log(1 + hours / 12) - csat_issue_penalty
    # [late or returned] + Normal(0, csat_noise)), clipped to 1-5. A ticket is "badly resolved"
    # when resolution > bad_resolution_hours or CSAT <= bad_csat (as in features.quality).
    ticket_probability: float = 0.04
    ticket_probability_after_issue: float = 0.45
    resolution_median_hours: float = 18.0
    resolution_sigma: float = 1.1
    csat_intercept: float = 4.9
    csat_hours_slope: float = 0.8
    csat_issue_penalty: float = 0.3
    csat_noise: float = 0.8
    bad_resolution_hours: float = 72.0
    bad_csat: float = 2.0

    # Reviews: share of delivered orders reviewed U(review_days_min, review_days_max) days after
    # delivery; stars = round(review_mean - penalties + Normal(0, review_noise)), clipped to 1-5.
    review_probability: float = 0.25
    review_days_min: float = 1.0
    review_days_max: float = 14.0
    review_mean: float = 4.4
    review_late_penalty: float = 1.2
    review_return_penalty: float = 1.5
    review_noise: float = 0.9

    # Planted causal effects (per event, accumulating over the customer's history).
    late_dropout: float = 0.06
    late_spend: float = 0.93
    return_dropout: float = 0.04
    return_spend: float = 0.96
    bad_ticket_dropout: float = 0.10
    bad_ticket_spend: float = 0.90

    def __post_init__(self) -> None:
        probabilities = [
            "max_dropout",
            "cancel_probability",
            "late_probability",
            "return_probability",
            "ticket_probability",
            "ticket_probability_after_issue",
            "review_probability",
            "late_dropout",
            "return_dropout",
            "bad_ticket_dropout",
        ]
        for name in probabilities:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"SynthParams.{name} must be a probability in [0, 1]; got {value}")
        scales = {"rate_shape", "purchase_rate_mean", "dropout_a", "dropout_b", "spend_median"}
        scales |= {"spend_sigma", "order_value_shape", "peak_multiplier", "resolution_median_hours"}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in probabilities:
                continue
            if f.name == "peak_months":
                if any(not 1 <= int(month) <= 12 for month in value):
                    raise ValueError(f"SynthParams.peak_months must be months 1-12; got {value}")
            elif f.name in scales and value <= 0:
                raise ValueError(f"SynthParams.{f.name} must be > 0; got {value}")
            elif value < 0:
                raise ValueError(f"SynthParams.{f.name} must be >= 0; got {value}")
        for low, high in [
            ("promise_days_min", "promise_days_max"),
            ("late_days_min", "late_days_max"),
            ("return_days_min", "return_days_max"),
            ("review_days_min", "review_days_max"),
        ]:
            if getattr(self, low) > getattr(self, high):
                raise ValueError(
                    f"SynthParams.{low} ({getattr(self, low)}) must be <= "
                    f"{high} ({getattr(self, high)})"
                )
        if self.on_time_early_max >= self.promise_days_min:
            raise ValueError(
                "SynthParams.on_time_early_max must be below promise_days_min so that a delivery "
                f"never precedes its order; got {self.on_time_early_max} >= {self.promise_days_min}"
            )


def generate(
    customers: int,
    seed: int,
    start: str | pd.Timestamp = DEFAULT_START,
    end: str | pd.Timestamp = DEFAULT_END,
    params: SynthParams | None = None,
    *,
    progress: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Generate a synthetic storefront's orders and service events.

    Parameters
    ----------
    customers : int
        Number of customers; each places at least one order in ``[start, end)``.
    seed : int
        Seed for :func:`numpy.random.default_rng`; the same seed gives identical frames.
    start, end : str or pandas.Timestamp
        The trading period; ``end`` is the export date, nothing in the output is at or after it.
        Time-zone-aware values are converted to naive UTC.
    params : SynthParams, optional
        Rates and effect sizes; ``SynthParams()`` when omitted.
    progress : bool
        Show a progress bar (customers whose history is complete).

    Returns
    -------
    orders : pandas.DataFrame
        ``customer_id``, ``order_id``, ``ordered_at``, ``amount``, ``status``, ``promised_at``,
        ``delivered_at``. ``delivered_at`` is NaT for cancelled orders and for orders still in
        transit at ``end``; ``promised_at`` is NaT when the promise falls at or after ``end``.
        Sorted by ``ordered_at``; order ids number the orders in that order.
    service_events : pandas.DataFrame
        ``customer_id``, ``occurred_at``, ``kind`` (ticket / review / return), ``order_id``,
        ``score`` (CSAT or stars, 1-5), ``resolution_hours`` (tickets; NaN while open) and
        ``amount`` (refund of a return). Sorted by ``occurred_at``.
    """
    if int(customers) < 1:
        raise ValueError(f"customers must be >= 1; got {customers}")
    params = SynthParams() if params is None else params
    start_ts, end_ts = as_timestamp(start, "start"), as_timestamp(end, "end")
    if end_ts <= start_ts:
        raise ValueError(f"end ({end_ts}) must be after start ({start_ts})")
    rng = np.random.default_rng(seed)
    season = _Season(start_ts, end_ts, params)
    sim = _simulate(rng, int(customers), season, params, progress)
    return _assemble(rng, sim, start_ts, end_ts, params)


class _Season:
    """Rate multiplier by day, looked up from fractional days since ``start``."""

    def __init__(self, start: pd.Timestamp, end: pd.Timestamp, params: SynthParams) -> None:
        self.days = (end - start) / pd.Timedelta(days=1)
        self.offset = (start - start.normalize()) / pd.Timedelta(days=1)
        dates = pd.date_range(start.normalize(), periods=int(np.ceil(self.days)) + 2, freq="D")
        peak = np.isin(dates.month, params.peak_months)
        self.table = np.where(peak, params.peak_multiplier, 1.0)
        self.top = float(self.table.max())

    def accept(self, rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
        """Thinning: keep a candidate at time ``t`` with probability multiplier / top."""
        day = np.minimum((t + self.offset).astype(np.int64), self.table.size - 1)
        return rng.random(t.size) * self.top < self.table[day]


@dataclass
class _Simulated:
    """Per-order and per-ticket arrays from the purchase loop (times in days since start)."""

    customers: int
    spend_mean: np.ndarray  # per customer
    order_customer: np.ndarray
    order_time: np.ndarray
    order_spend: np.ndarray  # the customer's spend multiplier when the order was placed
    cancelled: np.ndarray
    late: np.ndarray
    returned: np.ndarray
    promised: np.ndarray
    delivered: np.ndarray  # also for cancelled orders (ignored there)
    returned_at: np.ndarray  # also for orders not returned (ignored there)
    ticket_order: np.ndarray  # index into the order arrays
    ticket_at: np.ndarray
    ticket_hours: np.ndarray
    ticket_csat: np.ndarray
    # Only with ``record=True`` (for :func:`demo.truth.service_effect_truth`): the per-order
    # dropout draw,
    # and per customer the purchase rate, base dropout probability and the first purchase
    # candidate that was not placed (the time the customer left the loop).
    dropout_draw: np.ndarray | None = None
    rate: np.ndarray | None = None
    base_dropout: np.ndarray | None = None
    stopped_at: np.ndarray | None = None


def _acquisition_times(rng: np.random.Generator, n: int, season: _Season, g: float) -> np.ndarray:
    """First-order times: linear density rising ``g``-fold over the period, thinned by season."""
    out = np.empty(n)
    todo = np.arange(n)
    while todo.size:
        u = rng.random(todo.size)
        # Inverse CDF of the density proportional to 1 + (g - 1) x on [0, 1).
        x = u if g == 1 else (np.sqrt(1 + (g * g - 1) * u) - 1) / (g - 1)
        t = x * season.days
        ok = season.accept(rng, t)
        out[todo[ok]] = t[ok]
        todo = todo[~ok]
    return np.sort(out)  # customer numbers follow the order of acquisition


def _experience(rng: np.random.Generator, t: np.ndarray, p: SynthParams) -> dict[str, np.ndarray]:
    """What happens to orders placed at times ``t``: fulfilment, return, ticket."""
    m = t.size
    cancelled = rng.random(m) < p.cancel_probability
    late = ~cancelled & (rng.random(m) < p.late_probability)
    returned = ~cancelled & (rng.random(m) < p.return_probability)
    promised = t + rng.integers(p.promise_days_min, p.promise_days_max + 1, m)
    days_late = rng.integers(p.late_days_min, p.late_days_max + 1, m) + rng.uniform(0.0, 0.5, m)
    early = rng.uniform(0.0, p.on_time_early_max, m)
    delivered = np.where(late, promised + days_late, promised - early)
    returned_at = delivered + rng.uniform(p.return_days_min, p.return_days_max, m)

    issue = late | returned
    ticket_chance = np.where(issue, p.ticket_probability_after_issue, p.ticket_probability)
    ticket = np.flatnonzero(rng.random(m) < ticket_chance)
    # Opened after the promise (late), after delivery (returned) or after the order (the rest).
    anchor = np.where(late, promised, np.where(returned, delivered, t))[ticket]
    ticket_at = anchor + rng.uniform(0.5, 5.0, ticket.size)
    hours = rng.lognormal(np.log(p.resolution_median_hours), p.resolution_sigma, ticket.size)
    csat = np.clip(
        np.rint(
            p.csat_intercept
            - p.csat_hours_slope * np.log1p(hours / 12.0)
            - p.csat_issue_penalty * issue[ticket]
            + rng.normal(0.0, p.csat_noise, ticket.size)
        ),
        1.0,
        5.0,
    )
    bad = np.zeros(m, dtype=bool)
    bad[ticket] = (hours > p.bad_resolution_hours) | (csat <= p.bad_csat)
    resolved_at = np.zeros(m)
    resolved_at[ticket] = ticket_at + hours / 24.0

    # When the customer has lived through the whole of it.
    known_at = np.where(late, delivered, t)
    known_at = np.where(returned, np.maximum(known_at, returned_at), known_at)
    known_at = np.where(bad, np.maximum(known_at, resolved_at), known_at)
    dropout = p.late_dropout * late + p.return_dropout * returned + p.bad_ticket_dropout * bad
    spend = np.where(late, p.late_spend, 1.0) * np.where(returned, p.return_spend, 1.0)
    spend *= np.where(bad, p.bad_ticket_spend, 1.0)
    return {
        "cancelled": cancelled,
        "late": late,
        "returned": returned,
        "promised": promised,
        "delivered": delivered,
        "returned_at": returned_at,
        "ticket": ticket,
        "ticket_at": ticket_at,
        "ticket_hours": hours,
        "ticket_csat": csat,
        "known_at": known_at,
        "dropout": dropout,
        "spend": spend,
    }


def _simulate(
    rng: np.random.Generator,
    n: int,
    season: _Season,
    p: SynthParams,
    progress: bool,
    *,
    record: bool = False,
) -> _Simulated:
    """Run the buy-till-you-die loop, one purchase candidate per active customer per step.

    An order's problems take effect once the customer has lived through them (``known_at``:
    the late delivery, the return, the ticket's resolution). Until then they are "due": later
    orders placed before that time keep the old spend, and when the dropout draw after the order
    says the customer leaves because of them, the customer leaves at ``known_at``.

    ``record`` keeps what a replay of the same customers needs (see ``_Simulated``); it never
    changes the random draws, so the result is the same either way.
    """
    first = _acquisition_times(rng, n, season, p.acquisition_growth)
    rate = rng.gamma(p.rate_shape, p.purchase_rate_mean / p.rate_shape, n) / 365.25  # per day
    rate = np.maximum(rate, 1e-9)
    base_dropout = rng.beta(p.dropout_a, p.dropout_b, n)
    spend_mean = rng.lognormal(np.log(p.spend_median), p.spend_sigma, n)

    # Per-customer state (indexed by customer) and the active set with its current time.
    known_dropout, known_spend = np.zeros(n), np.ones(n)  # effects lived through
    due_dropout, due_spend = np.zeros(n), np.ones(n)  # effects not lived through yet ...
    due_at = np.full(n, np.inf)  # ... until this time
    leaves_at = np.full(n, np.inf)
    who, t = np.arange(n), first
    buys = np.ones(n, dtype=bool)  # the first order is always placed

    chunks: dict[str, list[np.ndarray]] = {k: [] for k in _Simulated.__dataclass_fields__}
    placed = 0
    stopped_at = np.full(n, np.inf) if record else None
    bar = tqdm(total=n, desc="synth", unit="customer", disable=not progress, mininterval=1.0)
    while who.size:
        c, tc = who[buys], t[buys]
        ready = c[due_at[c] <= tc]
        known_dropout[ready] += due_dropout[ready]
        known_spend[ready] *= due_spend[ready]
        due_dropout[ready], due_spend[ready], due_at[ready] = 0.0, 1.0, np.inf

        x = _experience(rng, tc, p)
        for name in ("cancelled", "late", "returned", "promised", "delivered", "returned_at"):
            chunks[name].append(x[name])
        for name in ("ticket_at", "ticket_hours", "ticket_csat"):
            chunks[name].append(x[name])
        chunks["ticket_order"].append(placed + x["ticket"])
        chunks["order_customer"].append(c)
        chunks["order_time"].append(tc)
        chunks["order_spend"].append(known_spend[c])
        placed += c.size

        hit = x["dropout"] > 0
        due_dropout[c] += x["dropout"]
        due_spend[c] *= x["spend"]
        pending = np.isfinite(due_at[c])
        due_at[c] = np.where(
            hit, np.where(pending, np.maximum(due_at[c], x["known_at"]), x["known_at"]), due_at[c]
        )
        # One draw: below the base part the customer leaves now (plain BG/NBD); in the part
        # added by problems not yet lived through, they leave once they have.
        now = np.minimum(base_dropout[c] + known_dropout[c], p.max_dropout)
        chance = np.minimum(now + due_dropout[c], p.max_dropout)
        u = rng.random(c.size)
        if record:
            chunks["dropout_draw"].append(u)
        leave = np.where(u < now, tc, np.where(u < chance, due_at[c], np.inf))
        leaves_at[c] = np.minimum(leaves_at[c], leave)

        # Next purchase candidate at the peak rate; thinning keeps the seasonal share of them.
        t = t + rng.exponential(1.0, who.size) / (rate[who] * season.top)
        stay = t < np.minimum(leaves_at[who], season.days)
        bar.update(int(who.size - stay.sum()))
        if stopped_at is not None:
            stopped_at[who[~stay]] = t[~stay]
        who, t = who[stay], t[stay]
        buys = season.accept(rng, t)
    bar.close()

    out = {k: np.concatenate(v) for k, v in chunks.items() if v}
    if stopped_at is not None:
        out.update(rate=rate, base_dropout=base_dropout, stopped_at=stopped_at)
    return _Simulated(customers=n, spend_mean=spend_mean, **out)


def _seconds(days: np.ndarray) -> np.ndarray:
    """Whole seconds since start (floored, so a time before ``end`` never rounds onto it)."""
    return np.floor(days * SECONDS_PER_DAY).astype(np.int64)


def _to_datetime(seconds: np.ndarray, valid: np.ndarray, start: pd.Timestamp) -> np.ndarray:
    ns = start.value + seconds * np.int64(1_000_000_000)
    return np.where(valid, ns, np.iinfo(np.int64).min).view("datetime64[ns]")


def _ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    """``prefix`` + zero-padded ``numbers`` as an Arrow string array (vectorised)."""
    text = pc.utf8_lpad(pc.cast(pa.array(numbers), pa.string()), width, "0")
    return pc.binary_join_element_wise(prefix, text, "")


def _labels(names: tuple[str, ...], codes: np.ndarray) -> pd.Series:
    """Strings ``names[codes]`` as a pandas ``str`` column, built in Arrow (fast for 10M rows)."""
    return pd.Series(pa.array(names).take(pa.array(codes)), dtype=STR)


def _assemble(
    rng: np.random.Generator,
    sim: _Simulated,
    start: pd.Timestamp,
    end: pd.Timestamp,
    p: SynthParams,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Add the details that do not feed back into behaviour and build the two frames."""
    horizon = _seconds(np.asarray([(end - start) / pd.Timedelta(days=1)]))[0]
    n_orders = sim.order_time.size
    cust, t = sim.order_customer, sim.order_time
    cancelled, late, returned = sim.cancelled, sim.late, sim.returned

    promised, delivered, returned_at = sim.promised, sim.delivered, sim.returned_at
    shape = p.order_value_shape
    amount = rng.gamma(shape, sim.spend_mean[cust] * sim.order_spend / shape)
    amount = np.round(amount, 2)

    ordered_s, promised_s = _seconds(t), _seconds(promised)
    delivered_s, returned_s = _seconds(delivered), _seconds(returned_at)
    is_delivered = ~cancelled & (delivered_s < horizon)  # else cancelled or still in transit
    is_returned = returned & is_delivered & (returned_s < horizon)
    status = np.where(cancelled, 1, np.where(is_returned, 2, 0)).astype(np.int8)

    # Order ids number the orders by time (ties: customer, then simulation order).
    order_rank = np.empty(n_orders, dtype=np.int64)
    order_rank[np.lexsort((cust, ordered_s))] = np.arange(n_orders)
    by_time = np.argsort(order_rank)
    cust_width = max(7, len(str(sim.customers)))
    order_width = max(9, len(str(n_orders)))
    customer_ids = _ids("C", np.arange(1, sim.customers + 1), cust_width)
    order_ids = _ids("O", np.arange(1, n_orders + 1), order_width)  # by rank

    orders = pd.DataFrame(
        {
            "customer_id": pd.Series(customer_ids.take(pa.array(cust[by_time])), dtype=STR),
            "order_id": pd.Series(order_ids, dtype=STR),
            "ordered_at": _to_datetime(ordered_s, np.ones(n_orders, bool), start)[by_time],
            "amount": amount[by_time],
            "status": _labels(("completed", "cancelled", "returned"), status[by_time]),
            "promised_at": _to_datetime(promised_s, promised_s < horizon, start)[by_time],
            "delivered_at": _to_datetime(delivered_s, is_delivered, start)[by_time],
        }
    )

    # Tickets: open while the resolution falls at or after the export date.
    tk = sim.ticket_order
    ticket_s = _seconds(sim.ticket_at)
    resolved_s = ticket_s + np.floor(sim.ticket_hours * 3600).astype(np.int64)
    is_open = resolved_s >= horizon
    # Returns: the refund of the whole order.
    rt = np.flatnonzero(is_returned)
    # Reviews: a share of delivered orders, lower stars when late or returned.
    reviewed = is_delivered & (rng.random(n_orders) < p.review_probability)
    rv = np.flatnonzero(reviewed)
    review_s = _seconds(delivered[rv] + rng.uniform(p.review_days_min, p.review_days_max, rv.size))
    stars = np.clip(
        np.rint(
            p.review_mean
            - p.review_late_penalty * late[rv]
            - p.review_return_penalty * is_returned[rv]
            + rng.normal(0.0, p.review_noise, rv.size)
        ),
        1.0,
        5.0,
    )

    kind = np.concatenate(
        [np.zeros(tk.size, np.int8), np.ones(rv.size, np.int8), np.full(rt.size, 2, np.int8)]
    )
    event_order = np.concatenate([tk, rv, rt])
    event_s = np.concatenate([ticket_s, review_s, returned_s[rt]])
    score = np.concatenate(
        [np.where(is_open, np.nan, sim.ticket_csat), stars, np.full(rt.size, np.nan)]
    )
    hours = np.concatenate(
        [np.where(is_open, np.nan, sim.ticket_hours), np.full(rv.size + rt.size, np.nan)]
    )
    refund = np.concatenate([np.full(tk.size + rv.size, np.nan), amount[rt]])
    keep = np.flatnonzero(event_s < horizon)
    keep = keep[np.lexsort((kind[keep], order_rank[event_order[keep]], event_s[keep]))]
    event_order = event_order[keep]
    events = pd.DataFrame(
        {
            "customer_id": pd.Series(customer_ids.take(pa.array(cust[event_order])), dtype=STR),
            "occurred_at": _to_datetime(event_s[keep], np.ones(keep.size, bool), start),
            "kind": _labels(("ticket", "review", "return"), kind[keep]),
            "order_id": pd.Series(order_ids.take(pa.array(order_rank[event_order])), dtype=STR),
            "score": score[keep],
            "resolution_hours": np.round(hours[keep], 2),
            "amount": refund[keep],
        }
    )
    return orders, events


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """Write ``frame`` to ``path`` atomically (temporary file in the same folder, then rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_tables(orders: pd.DataFrame, events: pd.DataFrame, out: str | Path) -> Path:
    """Write ``out/orders.parquet`` and ``out/service_events.parquet`` atomically.

    Events are written first: the orders file appearing means both are complete (make's target).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _write_parquet(events, out / "service_events.parquet")
    _write_parquet(orders, out / "orders.parquet")
    return out


def write_demo(customers: int, seed: int, out: str | Path) -> Path:
    """Generate the demo storefront (default dates) and write it to ``out`` with its manifest."""
    orders, events = generate(customers, seed, progress=True)
    folder = write_tables(orders, events, out)
    write_manifest(
        folder,
        customers=customers,
        seed=seed,
        start=DEFAULT_START,
        end=DEFAULT_END,
        params=asdict(SynthParams()),
    )
    return folder


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m demo --customers N --seed S --out DIR``."""
    parser = argparse.ArgumentParser(
        prog="python -m demo",
        description="Generate a synthetic storefront: DIR/orders.parquet and "
        "DIR/service_events.parquet.",
    )
    parser.add_argument("--customers", type=int, default=50_000, help="number of customers")
    parser.add_argument("--seed", type=int, default=7, help="random seed")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--start", default=DEFAULT_START, help="first day of trading")
    parser.add_argument("--end", default=DEFAULT_END, help="export date (exclusive)")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    began = time.perf_counter()
    try:
        orders, events = generate(args.customers, args.seed, args.start, args.end, progress=True)
    except ValueError as err:  # a bad --customers/--start/--end: say so and exit with status 2
        parser.error(str(err))
    write_tables(orders, events, args.out)
    # So that `make impact` knows these files are a store whose planted effects it can replay.
    write_manifest(
        args.out,
        customers=args.customers,
        seed=args.seed,
        start=args.start,
        end=args.end,
        params=asdict(SynthParams()),
    )
    kinds = events["kind"].value_counts()
    logger.info(
        "Generated %d customers with %d orders (%.2f per customer; %d cancelled, %d returned, "
        "%d delivered late) and %d service events (%d tickets, %d still open; %d reviews; "
        "%d returns), ordered from %s to %s, seed %d, in %.1f s; wrote %s.",
        args.customers,
        len(orders),
        len(orders) / args.customers,
        int((orders["status"] == "cancelled").sum()),
        int((orders["status"] == "returned").sum()),
        int((orders["delivered_at"] > orders["promised_at"]).sum()),
        len(events),
        int(kinds.get("ticket", 0)),
        int(((events["kind"] == "ticket") & events["resolution_hours"].isna()).sum()),
        int(kinds.get("review", 0)),
        int(kinds.get("return", 0)),
        orders["ordered_at"].min().date(),
        orders["ordered_at"].max().date(),
        args.seed,
        time.perf_counter() - began,
        args.out,
    )


if __name__ == "__main__":
    main()
