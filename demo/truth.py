"""The demo store's planted truth: what its service failures really cost, by replay.

:func:`service_effect_truth` replays the generator's own simulation (:mod:`demo.generator`) for
the same customers with the planted effects of their failures on and off, same random draws
otherwise; :func:`service_effect_summary` totals it per failure kind. It is the estimand of the
service-impact what-if (:mod:`serving.insight.impact_truth` compares the two).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

from demo.generator import (
    DEFAULT_END,
    DEFAULT_START,
    STR,
    SynthParams,
    # The replay must draw exactly as the generator drew, so it runs the generator's own
    # simulation steps rather than a copy of them.
    _experience,
    _ids,
    _Season,
    _seconds,
    _simulate,
)
from features.history import as_timestamp

#: The counterfactual columns of :func:`service_effect_truth`, by the failure kinds they switch off.
TRUTH_SCENARIOS: dict[str, tuple[str, ...]] = {
    "no_late": ("late",),
    "no_returns": ("returns",),
    "no_bad_tickets": ("bad_tickets",),
    "no_failures": ("late", "returns", "bad_tickets"),
}
#: Values of ``service_effect_truth(mode=...)``: when switched-off effects stop counting.
TRUTH_MODES: tuple[str, ...] = ("history", "from_cutoff")
#: Per-customer flag column of :func:`service_effect_truth` for each failure kind.
TRUTH_FLAGS: dict[str, str] = {
    "late": "had_late",
    "returns": "had_return",
    "bad_tickets": "had_bad_ticket",
}


@dataclass
class _Paths:
    """Orders of some customers in time order per customer, with what each order went through.

    Times are in days since start; ``*_s`` are the floored seconds the exported tables show.
    ``customer`` is a local index (0..k-1) into the replayed customers.
    """

    customer: np.ndarray
    time: np.ndarray
    cancelled: np.ndarray
    late: np.ndarray
    returned: np.ndarray
    bad: np.ndarray
    delivered: np.ndarray
    returned_at: np.ndarray
    resolved_at: np.ndarray  # ticket resolution (only meaningful where ``bad``)
    resolved_s: np.ndarray
    dropout_draw: np.ndarray
    value_draw: np.ndarray  # standard Gamma(order_value_shape) draw of the order's value

    def take(self, index: np.ndarray) -> _Paths:
        return _Paths(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    @staticmethod
    def empty() -> _Paths:
        flags, whole = {"cancelled", "late", "returned", "bad"}, {"customer", "resolved_s"}
        return _Paths(
            **{
                f.name: np.empty(
                    0, bool if f.name in flags else np.int64 if f.name in whole else float
                )
                for f in fields(_Paths)
            }
        )

    @staticmethod
    def concat(parts: list[_Paths]) -> _Paths:
        return _Paths(
            **{f.name: np.concatenate([getattr(x, f.name) for x in parts]) for f in fields(_Paths)}
        )


def _bad_tickets(
    m: int, ticket: np.ndarray, at: np.ndarray, hours: np.ndarray, csat: np.ndarray, p: SynthParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per order: badly resolved ticket, its resolution (days) and resolution (floored seconds).

    The same arithmetic as ``_experience`` (days) and ``_assemble`` (seconds), so the replay
    takes effects at exactly the simulated moment and judges "before the cutoff" exactly as the
    exported ``occurred_at + resolution_hours`` does.
    """
    bad = np.zeros(m, dtype=bool)
    bad[ticket] = (hours > p.bad_resolution_hours) | (csat <= p.bad_csat)
    resolved_at = np.zeros(m)
    resolved_at[ticket] = at + hours / 24.0
    resolved_s = np.zeros(m, dtype=np.int64)
    resolved_s[ticket] = _seconds(at) + np.floor(hours * 3600).astype(np.int64)
    return bad, resolved_at, resolved_s


def _continue_paths(
    rng: np.random.Generator,
    who: np.ndarray,
    t: np.ndarray,
    rate: np.ndarray,
    season: _Season,
    p: SynthParams,
    stop: float,
) -> _Paths:
    """Purchases the customers ``who`` would make from candidate times ``t`` on if they stayed.

    The simulation stopped drawing for a customer once they left; a counterfactual in which
    they stay needs the rest of their life. It is drawn here like ``_simulate`` draws it
    (candidate, thinning, experience, dropout draw, next candidate) until ``stop``, without
    leaving: whether they leave is decided by the replay, from the dropout draws.
    ``customer`` holds the values of ``who``.
    """
    parts: list[_Paths] = []
    while who.size:
        buys = season.accept(rng, t)
        c, tc = who[buys], t[buys]
        x = _experience(rng, tc, p)
        bad, resolved_at, resolved_s = _bad_tickets(
            tc.size, x["ticket"], x["ticket_at"], x["ticket_hours"], x["ticket_csat"], p
        )
        u = rng.random(c.size)
        parts.append(
            _Paths(
                customer=c,
                time=tc,
                cancelled=x["cancelled"],
                late=x["late"],
                returned=x["returned"],
                bad=bad,
                delivered=x["delivered"],
                returned_at=x["returned_at"],
                resolved_at=resolved_at,
                resolved_s=resolved_s,
                dropout_draw=u,
                value_draw=np.empty(c.size),
            )
        )
        t = t + rng.exponential(1.0, who.size) / (rate[who] * season.top)
        stay = t < stop
        who, t = who[stay], t[stay]
    if not parts:
        return _Paths.empty()
    out = _Paths.concat(parts)
    out.value_draw = rng.standard_gamma(p.order_value_shape, out.time.size)
    return out


def _replay(
    paths: _Paths,
    base_dropout: np.ndarray,
    p: SynthParams,
    late: np.ndarray,
    returned: np.ndarray,
    bad: np.ndarray,
    kept: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    after: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Re-run the buy-till-you-die state of ``_simulate`` on fixed purchase paths.

    ``late``, ``returned`` and ``bad`` say, per order, which problems have an effect (a
    counterfactual clears some). ``paths`` must be sorted by customer, then time. Every random
    draw comes from ``paths``, so only the effects differ between runs; the arithmetic is that
    of ``_simulate`` step for step, so with every effect on the replay reproduces it exactly.

    ``kept`` (late, returned, bad per order) and ``after`` (per order: placed at or after the
    cutoff) switch effects off from the cutoff on only: the state is run with the effects of
    ``late``/``returned``/``bad``, and alongside it the same state with only the ``kept``
    effects. Orders before the cutoff use the first, orders from the cutoff on the second (their
    spend and their dropout draw), so the life up to the cutoff is unchanged.

    Returns
    -------
    placed : numpy.ndarray
        Per order: placed (the customer had not left by then).
    spend : numpy.ndarray
        Per order: the customer's spend multiplier when placing it (1 where not placed).
    """
    k = int(base_dropout.size)
    m = paths.time.size
    placed, spend = np.zeros(m, dtype=bool), np.ones(m)
    if m == 0:
        return placed, spend
    dropout = p.late_dropout * late + p.return_dropout * returned + p.bad_ticket_dropout * bad
    spend_effect = np.where(late, p.late_spend, 1.0) * np.where(returned, p.return_spend, 1.0)
    spend_effect *= np.where(bad, p.bad_ticket_spend, 1.0)
    known_at = np.where(late, paths.delivered, paths.time)
    known_at = np.where(returned, np.maximum(known_at, paths.returned_at), known_at)
    known_at = np.where(bad, np.maximum(known_at, paths.resolved_at), known_at)
    split = kept is not None
    if split:
        assert kept is not None and after is not None  # for the type checker
        k_late, k_returned, k_bad = kept
        k_dropout = (
            p.late_dropout * k_late + p.return_dropout * k_returned + p.bad_ticket_dropout * k_bad
        )
        k_spend_effect = np.where(k_late, p.late_spend, 1.0) * np.where(
            k_returned, p.return_spend, 1.0
        )
        k_spend_effect *= np.where(k_bad, p.bad_ticket_spend, 1.0)
        k_known_dropout, k_known_spend = np.zeros(k), np.ones(k)
        k_due_dropout, k_due_spend = np.zeros(k), np.ones(k)

    known_dropout, known_spend = np.zeros(k), np.ones(k)
    due_dropout, due_spend = np.zeros(k), np.ones(k)
    due_at = np.full(k, np.inf)
    leaves_at = np.full(k, np.inf)

    # Position of each order within its customer's path; step j handles every j-th order.
    starts = np.flatnonzero(np.r_[True, paths.customer[1:] != paths.customer[:-1]])
    position = np.arange(m) - np.repeat(starts, np.diff(np.r_[starts, m]))
    by_step = np.argsort(position, kind="stable")
    bounds = np.searchsorted(position[by_step], np.arange(int(position.max()) + 2))
    for j in range(bounds.size - 1):
        rows = by_step[bounds[j] : bounds[j + 1]]
        c = paths.customer[rows]
        alive = paths.time[rows] < leaves_at[c]  # times rise, so the first miss ends the path
        rows, c = rows[alive], c[alive]
        tc = paths.time[rows]
        ready = c[due_at[c] <= tc]
        known_dropout[ready] += due_dropout[ready]
        known_spend[ready] *= due_spend[ready]
        due_dropout[ready], due_spend[ready], due_at[ready] = 0.0, 1.0, np.inf
        placed[rows] = True
        spend[rows] = known_spend[c]
        if split:
            # The same transitions for the state with only the kept effects.
            k_known_dropout[ready] += k_due_dropout[ready]
            k_known_spend[ready] *= k_due_spend[ready]
            k_due_dropout[ready], k_due_spend[ready] = 0.0, 1.0
            assert after is not None  # given whenever kept is (checked above)
            from_cut = after[rows]
            spend[rows] = np.where(from_cut, k_known_spend[c], known_spend[c])

        hit = dropout[rows] > 0
        due_dropout[c] += dropout[rows]
        due_spend[c] *= spend_effect[rows]
        pending = np.isfinite(due_at[c])
        due_at[c] = np.where(
            hit, np.where(pending, np.maximum(due_at[c], known_at[rows]), known_at[rows]), due_at[c]
        )
        now = np.minimum(base_dropout[c] + known_dropout[c], p.max_dropout)
        chance = np.minimum(now + due_dropout[c], p.max_dropout)
        if split:
            # Orders from the cutoff on cannot have a failure before it, so what they add is
            # kept; ``due_at`` is shared: after the cutoff a pending switched-off failure was
            # lived through before any kept one that is still due.
            k_due_dropout[c] += k_dropout[rows]
            k_due_spend[c] *= k_spend_effect[rows]
            k_now = np.minimum(base_dropout[c] + k_known_dropout[c], p.max_dropout)
            k_chance = np.minimum(k_now + k_due_dropout[c], p.max_dropout)
            now = np.where(from_cut, k_now, now)
            chance = np.where(from_cut, k_chance, chance)
        u = paths.dropout_draw[rows]
        leave = np.where(u < now, tc, np.where(u < chance, due_at[c], np.inf))
        leaves_at[c] = np.minimum(leaves_at[c], leave)
    return placed, spend


def _cents(
    value_draw: np.ndarray, spend_mean: np.ndarray, spend: np.ndarray, p: SynthParams
) -> np.ndarray:
    """Order values in whole cents, as ``_assemble`` computes them (``scale * standard_gamma``)."""
    shape = p.order_value_shape
    amount = np.round((spend_mean * spend / shape) * value_draw, 2)
    return np.rint(amount * 100).astype(np.int64)


def service_effect_truth(
    customers: int,
    seed: int,
    cutoff: str | pd.Timestamp,
    horizon_days: int,
    params: SynthParams | None = None,
    *,
    lookback_days: int | None = None,
    mode: str = "history",
    start: str | pd.Timestamp = DEFAULT_START,
    end: str | pd.Timestamp = DEFAULT_END,
) -> pd.DataFrame:
    """The true revenue lost to service failures: the store replayed with effects switched off.

    Simulates the storefront that ``generate(customers, seed, start, end, params)`` exports and
    replays every customer with a service failure before ``cutoff`` with the planted effects of
    those failures switched off, one failure kind at a time and all kinds together. All random
    draws (purchase times, order values, fulfilment, tickets, dropout draws) are the same in
    every column; only the effects differ. A customer without a failure before the cutoff
    therefore has the same value in every column.

    "Switched off" means: the failure still happens (the late delivery, return or badly
    resolved ticket is in the data as before), but it has no effect on the customer's dropout
    probability or spend, from the moment it happened on. A failure happened before the cutoff
    when it was lived through before it, by the timestamps of the exported tables: a late
    order's ``delivered_at``, a return event's ``occurred_at``, a badly resolved ticket's
    ``occurred_at`` + resolution time (badly resolved: over ``bad_resolution_hours`` or CSAT <=
    ``bad_csat``). The customer's history before the cutoff is re-simulated: one who left
    because of a switched-off failure stays and keeps buying (the rest of their purchase path is
    drawn from a separate stream seeded from ``seed``, the same for every column), and their
    later failures before the cutoff are switched off too. Failures lived through at or after
    the cutoff keep their effects in every column.

    That is ``mode="history"``. With ``mode="from_cutoff"`` the customer's life up to the
    cutoff is exactly as simulated (whoever left before it stays gone, the state at the cutoff
    is the real one), and only from the cutoff on are the accumulated dropout and spend effects
    of the switched-off failures removed: for every order, spend and dropout draw at or after
    the cutoff. It is the value the failures already suffered still cost from now on, the
    estimand of a model that rescores customers with those failures removed from their
    features but with their real recency. A departure decided by a draw before the cutoff but
    pending until a failure is lived through (at or after the cutoff) stands.

    Parameters
    ----------
    customers, seed, params, start, end
        As for :func:`demo.generator.generate`; the ``as_simulated`` column is the store
        ``generate`` returns.
    cutoff : str or pandas.Timestamp
        Start of the revenue window; must lie after ``start``.
    horizon_days : int
        Window length: revenue in ``[cutoff, cutoff + horizon_days)``, which must end by ``end``.
    lookback_days : int, optional
        Only failures lived through in ``[cutoff - lookback_days, cutoff)`` count as "before
        the cutoff" (switched off, and flagged in ``had_*``); older ones keep their effects.
        Use it to match a model whose service features look back that far (the 365-day
        quality features). None: every failure before the cutoff.
    mode : {"history", "from_cutoff"}
        From when the effects are switched off: from the moment each failure happened
        (re-simulating the history before the cutoff) or only from the cutoff on.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``customer_id`` (sorted): every customer with an order strictly before the
        cutoff, the population of :func:`features.labels.build_labels`. Columns:

        - ``as_simulated``: revenue in the window with every effect on; equals ``build_labels``'
          ``future_value`` on ``generate``'s orders (paid orders: not cancelled, not returned by
          ``end``; amounts as exported, summed in whole cents);
        - ``no_late``, ``no_returns``, ``no_bad_tickets``, ``no_failures``: the same revenue with
          the effects of that kind's failures before the cutoff switched off (all three kinds for
          ``no_failures``), see :data:`TRUTH_SCENARIOS`;
        - ``had_late``, ``had_return``, ``had_bad_ticket``: the customer had at least one such
          failure before the cutoff (as simulated).

        ``counterfactual - as_simulated`` is the value the customer's failures before the cutoff
        cost over the window. It is >= 0 for almost every customer but not for all: without a
        failure's effect the remaining effects can take hold at another moment.
    """
    if int(customers) < 1:
        raise ValueError(f"customers must be >= 1; got {customers}")
    if int(horizon_days) < 1:
        raise ValueError(f"horizon_days must be >= 1; got {horizon_days}")
    params = SynthParams() if params is None else params
    start_ts, end_ts = as_timestamp(start, "start"), as_timestamp(end, "end")
    cutoff_ts = as_timestamp(cutoff, "cutoff")
    window_end = cutoff_ts + pd.Timedelta(days=int(horizon_days))
    if not start_ts < cutoff_ts:
        raise ValueError(f"cutoff ({cutoff_ts}) must be after start ({start_ts})")
    if lookback_days is not None and int(lookback_days) < 1:
        raise ValueError(f"lookback_days must be >= 1 or None; got {lookback_days}")
    if mode not in TRUTH_MODES:
        raise ValueError(f"mode must be one of {TRUTH_MODES}; got {mode!r}")
    if window_end > end_ts:
        raise ValueError(
            f"cutoff + horizon_days ({window_end}) must not be after end ({end_ts}): the store "
            "is not simulated past its export date"
        )
    n, p = int(customers), params

    # The simulation exactly as `generate` runs it; the first draws after the purchase loop are
    # the order values' (`_assemble`), so drawing them here gives the same amounts.
    rng = np.random.default_rng(seed)
    season = _Season(start_ts, end_ts, p)
    sim = _simulate(rng, n, season, p, False, record=True)
    assert sim.dropout_draw is not None and sim.stopped_at is not None  # for the type checker
    assert sim.rate is not None and sim.base_dropout is not None
    value_draw = rng.standard_gamma(p.order_value_shape, sim.order_time.size)

    # Everything in integer nanoseconds/seconds, as the exported timestamps are.
    def ns(seconds: np.ndarray) -> np.ndarray:
        return start_ts.value + seconds * np.int64(1_000_000_000)

    horizon_s = _seconds(np.asarray([season.days]))[0]
    cut_ns, wend_ns = cutoff_ts.value, window_end.value
    # Failures lived through in [since, cutoff) are the ones switched off.
    since_ns = (
        np.iinfo(np.int64).min
        if lookback_days is None
        else (cutoff_ts - pd.Timedelta(days=int(lookback_days))).value
    )

    def switched(at_ns: np.ndarray) -> np.ndarray:
        return (at_ns >= since_ns) & (at_ns < cut_ns)

    m = sim.order_time.size
    bad, resolved_at, resolved_s = _bad_tickets(
        m, sim.ticket_order, sim.ticket_at, sim.ticket_hours, sim.ticket_csat, p
    )
    cust = sim.order_customer

    def revenue(paths: _Paths, cents: np.ndarray, placed: np.ndarray, size: int) -> np.ndarray:
        """Paid revenue (cents) in the window per customer, as `_assemble` sets the status."""
        ordered = ns(_seconds(paths.time))
        delivered_s, returned_s = _seconds(paths.delivered), _seconds(paths.returned_at)
        is_returned = paths.returned & (delivered_s < horizon_s) & (returned_s < horizon_s)
        paid = placed & ~paths.cancelled & ~is_returned & (ordered >= cut_ns) & (ordered < wend_ns)
        return np.bincount(paths.customer[paid], weights=cents[paid], minlength=size)

    everyone = _Paths(
        customer=cust,
        time=sim.order_time,
        cancelled=sim.cancelled,
        late=sim.late,
        returned=sim.returned,
        bad=bad,
        delivered=sim.delivered,
        returned_at=sim.returned_at,
        resolved_at=resolved_at,
        resolved_s=resolved_s,
        dropout_draw=sim.dropout_draw,
        value_draw=value_draw,
    )
    cents = _cents(value_draw, sim.spend_mean[cust], sim.order_spend, p)
    as_simulated = revenue(everyone, cents, np.ones(m, dtype=bool), n).astype(np.int64)

    # Failures before the cutoff, per order and per customer.
    before = {
        "late": sim.late & switched(ns(_seconds(sim.delivered))),
        "returns": sim.returned & switched(ns(_seconds(sim.returned_at))),
        "bad_tickets": bad & switched(ns(resolved_s)),
    }
    had = {kind: np.bincount(cust[hit], minlength=n) > 0 for kind, hit in before.items()}
    known = np.zeros(n, dtype=bool)
    known[cust[ns(_seconds(sim.order_time)) < cut_ns]] = True
    replayed = np.flatnonzero(had["late"] | had["returns"] | had["bad_tickets"])
    local = np.full(n, -1)
    local[replayed] = np.arange(replayed.size)

    # Paths of the replayed customers: their simulated orders, then the purchases they would
    # have made after leaving (a separate stream, so `generate`'s draws are untouched).
    mine = np.flatnonzero(local[cust] >= 0)
    simulated = everyone.take(mine)
    simulated.customer = local[simulated.customer]
    stop = min(float((window_end - start_ts) / pd.Timedelta(days=1)), season.days)
    gone = replayed[sim.stopped_at[replayed] < stop]
    extra = _continue_paths(
        np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0]),
        gone,
        sim.stopped_at[gone],
        sim.rate,
        season,
        p,
        stop,
    )
    extra.customer = local[extra.customer]
    paths = _Paths.concat([simulated, extra])
    n_simulated = simulated.time.size
    source = np.r_[np.zeros(n_simulated, np.int8), np.ones(extra.time.size, np.int8)]
    order = np.lexsort((source, paths.time, paths.customer))
    paths, source = paths.take(order), source[order]
    base = sim.base_dropout[replayed]
    spend_mean = sim.spend_mean[replayed][paths.customer]

    # Replayed with every effect on, the paths must give back the simulation exactly: same
    # orders placed, same spend. Anything else is a bug in the replay, not a finding.
    # In from_cutoff mode, the split state (every effect kept) must do the same.
    simulated_spend = sim.order_spend[mine][order[source == 0]] if n_simulated else np.ones(0)
    after = ns(_seconds(paths.time)) >= cut_ns
    full = (paths.late, paths.returned, paths.bad)
    replays = [_replay(paths, base, p, *full)]
    if mode == "from_cutoff":
        replays.append(_replay(paths, base, p, *full, kept=full, after=after))
    for placed, spend in replays:
        if not (
            np.array_equal(placed, source == 0)
            and np.array_equal(spend[source == 0], simulated_spend)
        ):
            raise RuntimeError("service_effect_truth: the replay does not reproduce the simulation")

    # The same "before the cutoff" as for `had` above, on the replayed paths.
    flags = {"late": paths.late, "returns": paths.returned, "bad_tickets": paths.bad}
    pre = {
        "late": paths.late & switched(ns(_seconds(paths.delivered))),
        "returns": paths.returned & switched(ns(_seconds(paths.returned_at))),
        "bad_tickets": paths.bad & switched(ns(paths.resolved_s)),
    }

    columns: dict[str, np.ndarray] = {"as_simulated": as_simulated}
    for name, kinds in TRUTH_SCENARIOS.items():
        on = {kind: flags[kind] & ~pre[kind] if kind in kinds else flags[kind] for kind in flags}
        if mode == "history":
            placed, spend = _replay(paths, base, p, on["late"], on["returns"], on["bad_tickets"])
        else:
            kept = (on["late"], on["returns"], on["bad_tickets"])
            placed, spend = _replay(paths, base, p, *full, kept=kept, after=after)
        value = revenue(paths, _cents(paths.value_draw, spend_mean, spend, p), placed, base.size)
        column = as_simulated.copy()
        column[replayed] = value.astype(np.int64)
        columns[name] = column

    ids = _ids("C", np.arange(1, n + 1), max(7, len(str(n))))
    index = pd.Index(pd.Series(ids, dtype=STR), name="customer_id", dtype="str")
    out = pd.DataFrame({name: values / 100.0 for name, values in columns.items()}, index=index)
    for kind, flag in TRUTH_FLAGS.items():
        out[flag] = had[kind]
    return out.loc[known]


def service_effect_summary(truth: pd.DataFrame) -> pd.DataFrame:
    """Total value lost to service failures, per failure kind, from :func:`service_effect_truth`.

    Parameters
    ----------
    truth : pandas.DataFrame
        The frame :func:`service_effect_truth` returns (or a subset of its customers).

    Returns
    -------
    pandas.DataFrame
        One row per kind (``late``, ``returns``, ``bad_tickets``, and ``all`` for the three
        together): ``customers`` with such a failure before the cutoff (any of them for
        ``all``), ``value_lost`` = sum(counterfactual - as_simulated) over all customers,
        ``share_of_revenue`` = value_lost / sum(as_simulated) and ``value_lost_per_customer``
        = value_lost / customers (NaN when no customer had one).
    """
    flags = truth[list(TRUTH_FLAGS.values())]
    rows = []
    for name, kinds in TRUTH_SCENARIOS.items():
        kind = kinds[0] if len(kinds) == 1 else "all"
        affected = int(flags[[TRUTH_FLAGS[k] for k in kinds]].any(axis=1).sum())
        # Sums in cents: the columns are whole cents, and integer sums are exact.
        lost = int(np.rint((truth[name] - truth["as_simulated"]).to_numpy() * 100).sum()) / 100
        rows.append({"kind": kind, "customers": affected, "value_lost": lost})
    out = pd.DataFrame(rows).set_index("kind")
    total = float(truth["as_simulated"].sum())
    out["share_of_revenue"] = out["value_lost"] / total if total else np.nan
    out["value_lost_per_customer"] = out["value_lost"] / out["customers"].replace(0, np.nan)
    return out
