"""The customer profile beside CLV and churn: expected orders, activity, next order, a range.

Commercial predictive-CLV products show, per customer, more than one number: how many orders
to expect, whether the customer is still active, when the next order should come, and how sure
the prediction is. Here every one of them is tied to the model's own calibrated figures, so
the profile cannot contradict the CLV and churn probability it sits beside:

* ``p_active`` splits the served ``p_churn`` into "gone" and "active but quiet" with BG/NBD's
  identity ``P(no order in H) = 1 - P(active) + P(active) g(H)``, where ``g`` is the chance
  that an active customer buys nothing in the horizon at the rate of their active period
  (:meth:`training.purchase.PurchaseModel.activity`). BG/NBD's own ``P(alive)`` is 1 for
  every one-time buyer by construction, and its ``g`` reads years of silence as a slow rate
  rather than as a departure; here the silence counts against being active.
* ``expected_orders`` is the served chance of any order, ``1 - p_churn``, times the purchase
  model's expected orders of a customer who orders at all (``E[orders | alive] / (1 - g)``
  with BG/NBD's own ``g``), times the season of the horizon and one scale fit on the
  holdout's real order counts (:class:`Profile`), so the total matches what customers really
  ordered; never fewer than the chance of ordering at all (before the scale).
* ``next_order_days``: the days until the customer's chance of having ordered reaches one
  half. It lies inside the horizon exactly when ``p_churn < 1/2``, and is left empty
  otherwise: a date is given only where an order within the horizon is the likelier outcome.
* ``avg_days_between_orders``: days between purchase days (orders of one day are one
  purchase, as BG/NBD counts them).
* ``clv_low``, ``clv_high``: a range of the horizon's revenue that holds the chosen share
  of customers (80% by default) and always contains ``clv``. Revenue is zero with
  probability ``p_churn``; otherwise its spread around the buyers' mean
  ``clv / (1 - p_churn)`` is the empirical distribution of ``log(actual / mean)`` measured on
  the holdout's buyers, in bins of the predicted mean (:class:`Profile`). A customer's own
  range is a central one at a per-customer level, widened to reach ``clv`` where the mean
  lies outside it (a likely non-buyer's range is then ``[0, clv]``); when the zero outcome
  alone holds more than the lower tail it starts at zero. The per-customer level is
  calibrated on the holdout within **risk groups** (quantile bins of ``p_churn``, as
  group-conditional or "Mondrian" conformal prediction does): in each group it is the one
  whose ranges held the chosen share of that group's customers. A calibration over the whole
  base alone lets the many likely non-buyers, whose ``[0, clv]`` holds them anyway, pay for
  ranges too narrow for the customers likely to buy: on CDNOW's holdout (1997-12-31) the
  whole base was 84% inside its 80% ranges, but customers with ``p_churn`` under .5 only 72%,
  and their ranges' top sat at the estimate itself. Where a group's zero outcome alone
  holds more than the share (a group of likely non-buyers), its customers are inside more
  often than asked; so the whole base is at or above the chosen share.
* ``clv_discounted``: the CLV with each part of the horizon discounted at a yearly rate, the
  value spread over the horizon as the purchase model expects the orders to come.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

#: Where the residual distribution is stored: its quantiles at these probabilities.
QUANTILE_GRID = np.linspace(0.0, 1.0, 101)
#: Bins of the predicted buyers' mean; each holds the residuals of its own customers, since
#: big spenders' revenue varies less (relatively) than occasional buyers'.
VALUE_BINS = 5
#: Fewest holdout buyers per bin (fewer buyers -> fewer bins).
MIN_BUYERS_PER_BIN = 200
#: Per-customer levels at which the holdout's share of customers inside is measured.
LEVEL_GRID = np.linspace(0.01, 0.99, 99)
#: Risk groups (quantile bins of ``p_churn``) whose customers' share inside is calibrated on
#: its own, and the fewest holdout customers in each: at 500 a group's share is measured
#: within about 2 points (one standard error at 80%).
RISK_GROUPS = 5
MIN_CUSTOMERS_PER_GROUP = 500
#: Interval level when none is asked for.
DEFAULT_LEVEL = 0.8
#: A customer with ``p_churn`` under this is likelier to order than not: the customers whose
#: range a marketer acts on, whose share inside is reported and checked on its own.
LIKELY_BUYER_CHURN = 0.5
#: Steps of the horizon for discounting (monthly for a year).
DISCOUNT_STEPS = 12
_EPS = 1e-9


def orders_scale(expected: np.ndarray, p_order: np.ndarray, actual: np.ndarray) -> float:
    """The scale ``s`` with ``sum(max(s * expected, p_order)) == sum(actual)``.

    Served expected orders are never under the chance of any order (``p_order``), so the scale
    is solved with that floor in place, and the holdout's order total still matches by
    construction. Where the floor alone reaches the actual total (a base that orders less than
    its chance of ordering implies) no scale can match; the plain ratio is kept.
    """
    expected = np.asarray(expected, dtype="float64")
    p_order = np.asarray(p_order, dtype="float64")
    actual_total = float(np.sum(actual))
    expected_total = float(np.sum(expected))
    if expected_total <= 0:
        return 1.0
    plain = actual_total / expected_total
    if float(np.sum(p_order)) >= actual_total:
        return plain
    # The floored total grows with s and reaches the actual total by s = plain at the latest.
    low, high = 0.0, plain
    for _ in range(100):
        middle = 0.5 * (low + high)
        if float(np.sum(np.maximum(middle * expected, p_order))) < actual_total:
            low = middle
        else:
            high = middle
    return high


@dataclass(frozen=True)
class Profile:
    """The holdout-calibrated parts of the profile.

    Attributes
    ----------
    orders_scale : float
        Real orders over the purchase model's expected orders (season included) on the
        holdout the stack was fit on.
    edges : tuple of float
        Inner edges of the bins of ``log`` predicted buyers' mean.
    residuals : tuple of tuple of float
        Per bin, quantiles of ``log(actual / predicted buyers' mean)`` among buyers at
        :data:`QUANTILE_GRID`.
    coverage : tuple of tuple of float
        Per risk group, the share of the holdout's customers of that group inside their ranges
        at each per-customer level of :data:`LEVEL_GRID` (non-decreasing); maps a wanted share
        back to that group's level. Empty: no calibration (the level itself).
    risk_edges : tuple of float or None
        Inner edges of the risk groups, in ``p_churn`` (empty: one group, the whole base).
        None for a profile saved before the risk groups, calibrated over the whole base
        only: such a model is outdated (:func:`training.gate.decide`).
    """

    orders_scale: float
    edges: tuple[float, ...]
    residuals: tuple[tuple[float, ...], ...]
    coverage: tuple[tuple[float, ...], ...] = ()
    risk_edges: tuple[float, ...] | None = None

    @classmethod
    def fit(
        cls,
        clv: np.ndarray,
        p_churn: np.ndarray,
        expected_orders: np.ndarray,
        actual_value: np.ndarray,
        actual_orders: np.ndarray,
    ) -> Profile:
        """Fit the order scale and the residual distribution on holdout outcomes.

        Parameters
        ----------
        clv, p_churn : numpy.ndarray
            The stacked predictions for the holdout customers.
        expected_orders : numpy.ndarray
            Expected orders before the scale (``p_active`` x the purchase model's orders of an
            active customer x the season).
        actual_value, actual_orders : numpy.ndarray
            What the customers really spent and ordered in the horizon.
        """
        scale = orders_scale(expected_orders, 1.0 - np.clip(p_churn, 0.0, 1.0), actual_orders)
        buyers = np.asarray(actual_value) > 0
        if buyers.sum() < 2:
            raise ValueError(
                f"the holdout has {int(buyers.sum())} customers who spent anything; the "
                "profile's value interval needs buyers (use a longer history or a later cutoff)"
            )
        log_mean = np.log(_buyers_mean(clv[buyers], p_churn[buyers]))
        residual = np.log(actual_value[buyers]) - log_mean
        bins = int(np.clip(buyers.sum() // MIN_BUYERS_PER_BIN, 1, VALUE_BINS))
        edges = np.quantile(log_mean, np.linspace(0.0, 1.0, bins + 1)[1:-1])
        which = np.searchsorted(edges, log_mean, side="right")
        residuals = tuple(
            tuple(float(q) for q in np.quantile(residual[which == b], QUANTILE_GRID))
            for b in range(bins)
        )
        uncalibrated = cls(float(scale), tuple(float(e) for e in edges), residuals)
        risk = np.clip(np.asarray(p_churn, dtype="float64"), 0.0, 1.0)
        groups = int(np.clip(len(risk) // MIN_CUSTOMERS_PER_GROUP, 1, RISK_GROUPS))
        # Ties (a base of many equal p_churn) can merge two edges: then one group fewer.
        risk_edges = np.unique(np.quantile(risk, np.linspace(0.0, 1.0, groups + 1)[1:-1]))
        group = np.searchsorted(risk_edges, risk, side="right")
        members = [group == g for g in range(len(risk_edges) + 1)]
        coverage = np.empty((len(members), len(LEVEL_GRID)))
        for j, level in enumerate(LEVEL_GRID):
            low, high = uncalibrated.ranges(clv, p_churn, float(level))
            # A cent of slack: the bounds are floats, the actuals sums of cents.
            inside = (actual_value >= low - 0.01) & (actual_value <= high + 0.01)
            coverage[:, j] = [float(inside[rows].mean()) if rows.any() else 1.0 for rows in members]
        monotone = np.maximum.accumulate(coverage, axis=1)
        return cls(
            uncalibrated.orders_scale,
            uncalibrated.edges,
            residuals,
            tuple(tuple(float(c) for c in row) for row in monotone),
            tuple(float(e) for e in risk_edges),
        )

    def customer_levels(self, p_churn: np.ndarray, level: float) -> np.ndarray:
        """Each customer's level: the one whose ranges held ``level`` of their risk group.

        Without a calibration (:attr:`coverage` empty) the level itself. A share below what
        the lowest per-customer level reached (a group of likely churners: their ``[0, 0]``
        or ``[0, clv]`` alone holds more) gives the lowest level, and the group's share
        inside is higher than asked.
        """
        p = np.clip(np.asarray(p_churn, dtype="float64"), 0.0, 1.0)
        if not self.coverage:
            return np.full(p.shape, float(level))
        # The highest grid level still at or under the wanted share, then linear between.
        by_group = np.array([np.interp(level, row, LEVEL_GRID) for row in self.coverage])
        edges = np.asarray(self.risk_edges or (), dtype="float64")
        return by_group[np.searchsorted(edges, p, side="right")]

    def interval(
        self, clv: np.ndarray, p_churn: np.ndarray, level: float = DEFAULT_LEVEL
    ) -> tuple[np.ndarray, np.ndarray]:
        """Each customer's range such that ``level`` of each risk group fall inside theirs.

        Returns
        -------
        (numpy.ndarray, numpy.ndarray)
            ``clv_low``, ``clv_high`` (>= 0).
        """
        check_level(level)
        return self.ranges(clv, p_churn, self.customer_levels(p_churn, level))

    def ranges(
        self, clv: np.ndarray, p_churn: np.ndarray, level: float | np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Central ranges at a per-customer ``level`` (before the calibration of the share).

        ``level`` is one level for every customer or one per customer.
        """
        p = np.clip(np.asarray(p_churn, dtype="float64"), 0.0, 1.0)
        mean = _buyers_mean(np.asarray(clv, dtype="float64"), p)
        tail = (1.0 - level) / 2.0
        buying = np.maximum(1.0 - p, _EPS)
        # With the zero outcome heavier than the lower tail, the interval starts at zero and
        # its top holds the whole level: P(0 <= Y <= high) = level.
        starts_at_zero = p >= tail
        low_share = np.where(starts_at_zero, 0.0, (tail - p) / buying)
        high_share = np.where(starts_at_zero, (level - p) / buying, (1.0 - tail - p) / buying)
        which = np.searchsorted(np.asarray(self.edges), np.log(mean), side="right")
        low = np.zeros_like(mean)
        high = np.zeros_like(mean)
        for b, quantiles in enumerate(self.residuals):
            rows = which == b
            grid = np.asarray(quantiles)
            low[rows] = mean[rows] * np.exp(np.interp(low_share[rows], QUANTILE_GRID, grid))
            high[rows] = mean[rows] * np.exp(np.interp(high_share[rows], QUANTILE_GRID, grid))
        low = np.where(starts_at_zero, 0.0, low)
        high = np.where(high_share > 0.0, high, 0.0)
        # The range always holds the expected value it stands beside: a zero-heavy or skewed
        # spend can put the mean outside the central range, and a row reading "clv 478,
        # range 0-0" looks broken. Widening to the mean only adds customers inside, and the
        # per-customer level is calibrated on these widened ranges (Profile.fit).
        expected = np.asarray(clv, dtype="float64")
        return np.minimum(low, expected), np.maximum(np.maximum(high, low), expected)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "orders_scale": self.orders_scale,
            "edges": list(self.edges),
            "residuals": [list(r) for r in self.residuals],
            "coverage": [list(row) for row in self.coverage],
            "risk_edges": None if self.risk_edges is None else list(self.risk_edges),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Profile:
        """Rebuild from :meth:`to_dict` output."""
        return cls(
            float(data["orders_scale"]),
            tuple(float(e) for e in data["edges"]),
            tuple(tuple(float(q) for q in r) for r in data["residuals"]),
            _coverage_rows(data.get("coverage", ())),
            _risk_edges(data.get("risk_edges")),
        )


def _risk_edges(stored: list[float] | None) -> tuple[float, ...] | None:
    """Stored risk edges; None (a model saved before the groups) stays None."""
    return None if stored is None else tuple(float(e) for e in stored)


def _coverage_rows(stored: list[Any]) -> tuple[tuple[float, ...], ...]:
    """Stored coverage as rows per risk group; a model saved before the groups has one flat row."""
    if not stored:
        return ()
    rows = stored if isinstance(stored[0], list | tuple) else [stored]
    return tuple(tuple(float(c) for c in row) for row in rows)


def _buyers_mean(clv: np.ndarray, p_churn: np.ndarray) -> np.ndarray:
    """Expected revenue of a customer who does order: ``clv / (1 - p_churn)``, floored."""
    return np.maximum(clv / np.maximum(1.0 - p_churn, 1e-6), 1e-2)


def check_level(level: float) -> float:
    """``level`` if it is a probability strictly between 0 and 1, else ValueError."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"interval level must be between 0 and 1 (e.g. 0.8); got {level}")
    return level


def check_discount_rate(rate: float) -> float:
    """``rate`` if it is a yearly rate in [0, 1), else ValueError."""
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"discount rate must be a yearly rate in [0, 1) (e.g. 0.1); got {rate}")
    return rate


def discount_factor(
    cumulative_orders: np.ndarray, step_days: np.ndarray, yearly_rate: float
) -> np.ndarray:
    """Present value of one unit of horizon revenue, spread as the orders are expected.

    Parameters
    ----------
    cumulative_orders : numpy.ndarray
        rows x steps: expected orders from the cutoff to the end of each step (the last
        column is the whole horizon).
    step_days : numpy.ndarray
        The end of each step, in days after the cutoff.
    yearly_rate : float
        Discount rate per year.

    Returns
    -------
    numpy.ndarray
        Per row, in (0, 1]: the discounted share of the horizon's revenue.
    """
    check_discount_rate(yearly_rate)
    if yearly_rate == 0.0:
        return np.ones(len(cumulative_orders))
    increments = np.diff(cumulative_orders, axis=1, prepend=0.0).clip(0.0, None)
    total = increments.sum(axis=1, keepdims=True)
    steps = increments.shape[1]
    weights = np.where(total > 0, increments / np.where(total > 0, total, 1.0), 1.0 / steps)
    middle = np.concatenate([[0.0], step_days[:-1]]) / 2.0 + step_days / 2.0
    return weights @ ((1.0 + yearly_rate) ** (-middle / 365.0))
