"""Value and risk segments and the retention action each combination calls for."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Value tiers by share of the base's total predicted CLV, most valuable customers first: the
#: customers who together hold the first 50% of predicted value are "top", the next 30% "high",
#: the next 15% "medium", the last 5% "low".
VALUE_TIERS: tuple[tuple[str, float], ...] = (
    ("top", 0.50),
    ("high", 0.80),
    ("medium", 0.95),
    ("low", 1.00),
)
#: Risk tiers by calibrated churn probability (no order in the horizon).
RISK_TIERS: tuple[tuple[str, float], ...] = (("low", 0.40), ("medium", 0.70), ("high", 1.01))
#: The action for each (value, risk) pair: what a retention team does next.
ACTIONS: dict[tuple[str, str], str] = {
    ("top", "high"): "win back",
    ("high", "high"): "win back",
    ("medium", "high"): "reactivate (low cost)",
    ("low", "high"): "let go",
    ("top", "medium"): "retain",
    ("high", "medium"): "retain",
    ("medium", "medium"): "nurture",
    ("low", "medium"): "nurture",
    ("top", "low"): "maintain (VIP care)",
    ("high", "low"): "maintain",
    ("medium", "low"): "grow",
    ("low", "low"): "grow",
}
#: Actions that speak to a customer who has drifted away: never for a customer still in their
#: first horizon, who has not had the time to become a regular (see :data:`NEW_ACTIONS`).
NEW_CUSTOMER_ACTIONS_REFUSED: tuple[str, ...] = ("win back", "reactivate (low cost)", "let go")
#: The action for a customer whose first order lies within one horizon of the cutoff, where
#: it differs from :data:`ACTIONS`: an at-risk newcomer is brought to a second order
#: (onboarded) when valuable and nurtured otherwise; nobody new is "won back" or "let go".
NEW_ACTIONS: dict[tuple[str, str], str] = {
    ("top", "high"): "onboard",
    ("high", "high"): "onboard",
    ("medium", "high"): "nurture",
    ("low", "high"): "nurture",
    ("top", "medium"): "onboard",
    ("high", "medium"): "onboard",
}


def value_thresholds(clv: np.ndarray) -> dict[str, float]:
    """CLV lower bounds of each value tier, computed on the whole base.

    The thresholds are fit once on every customer's prediction and then applied chunk by chunk,
    so a customer's tier does not depend on which chunk it was scored in.
    """
    values = np.sort(np.asarray(clv, dtype="float64"))[::-1]
    total = values.sum()
    bounds: dict[str, float] = {}
    if total <= 0:
        # No predicted value anywhere (or an empty base): nobody is a valuable customer, so
        # everyone is "low" (a zero bound would make everyone "top").
        return {name: np.inf for name, _ in VALUE_TIERS[:-1]} | {VALUE_TIERS[-1][0]: -np.inf}
    share = np.cumsum(values) / total
    for name, upto in VALUE_TIERS:
        # The smallest CLV still inside the tier's share of value.
        position = min(int(np.searchsorted(share, upto, side="left")), len(values) - 1)
        bounds[name] = float(values[position])
    bounds[VALUE_TIERS[-1][0]] = -np.inf
    return bounds


def risk_direction(p_churn: np.ndarray) -> np.ndarray:
    """+1 for a high-risk customer, -1 for a low-risk one, 0 in between (:data:`RISK_TIERS`).

    The direction a customer's churn reasons should lead with: what makes a high-risk
    customer high risk, what keeps a low-risk one low.
    """
    p_churn = np.asarray(p_churn, dtype="float64")
    low, medium = RISK_TIERS[0][1], RISK_TIERS[1][1]
    return np.where(p_churn >= medium, 1.0, np.where(p_churn < low, -1.0, 0.0))


_VALUE_NAMES = np.array([name for name, _ in VALUE_TIERS], dtype=object)
_RISK_NAMES = np.array([name for name, _ in RISK_TIERS], dtype=object)
_ACTION_TABLE = np.array(
    [[ACTIONS[(value, risk)] for risk in _RISK_NAMES] for value in _VALUE_NAMES], dtype=object
)
_NEW_ACTION_TABLE = np.array(
    [
        [NEW_ACTIONS.get((value, risk), ACTIONS[(value, risk)]) for risk in _RISK_NAMES]
        for value in _VALUE_NAMES
    ],
    dtype=object,
)


def segment_labels(
    clv: np.ndarray,
    p_churn: np.ndarray,
    thresholds: dict[str, float],
    new: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Value segment, risk segment and action of each customer (object arrays, in order).

    ``new`` marks the customers in their first horizon (:data:`NEW_ACTIONS`); None: nobody.
    """
    clv = np.asarray(clv, dtype="float64")
    p_churn = np.asarray(p_churn, dtype="float64")
    # The most valuable tier whose lower bound the CLV reaches; the last tier takes the rest.
    value = np.full(len(clv), len(VALUE_TIERS) - 1)
    for position in range(len(VALUE_TIERS) - 2, -1, -1):
        value[clv >= thresholds[VALUE_TIERS[position][0]]] = position
    # The first risk tier whose upper bound the probability stays under.
    risk = np.full(len(p_churn), len(RISK_TIERS) - 1)
    for position in range(len(RISK_TIERS) - 1, -1, -1):
        risk[p_churn < RISK_TIERS[position][1]] = position
    action = _ACTION_TABLE[value, risk]
    if new is not None:
        newcomer = np.asarray(new, dtype=bool)
        action = np.where(newcomer, _NEW_ACTION_TABLE[value, risk], action)
    return _VALUE_NAMES[value], _RISK_NAMES[risk], action


@dataclass(frozen=True)
class Base:
    """Where a customer stands in the scored base: value-tier bounds and the sorted CLVs.

    Both need the whole base's predictions, so batch scoring computes them once from every
    customer's CLV and applies them chunk by chunk, and the service computes them once per
    batch run from the same CLVs (:func:`serving.online.answers.load_base`): a customer gets the
    same tier and percentile from either.

    A base can also be a sketch of one (:meth:`sketch`): ``sorted_clv`` then holds evenly
    spaced order statistics, ``ranks`` their positions in the whole sorted base and ``size``
    the number of customers, so a lookup store carries ~10,000 numbers instead of every CLV.

    Attributes
    ----------
    thresholds : dict
        Lower CLV bound of each value tier (:func:`value_thresholds`).
    sorted_clv : numpy.ndarray
        Every CLV of the base, sorted; or the sketch's order statistics.
    ranks : numpy.ndarray or None
        For a sketch: the position of each of ``sorted_clv`` in the whole sorted base.
    size : int or None
        For a sketch: the number of customers of the base.
    """

    thresholds: dict[str, float]
    sorted_clv: np.ndarray
    ranks: np.ndarray | None = None
    size: int | None = None

    @classmethod
    def of(cls, clv: np.ndarray) -> Base:
        """The base of these CLVs (every scored customer's)."""
        values = np.asarray(clv, dtype="float64")
        return cls(value_thresholds(values), np.sort(values))

    def sketch(self, points: int) -> Base:
        """The same base with at most ``points`` CLVs kept (itself when it has no more).

        Keeps the order statistics at evenly spaced positions, the smallest and the largest
        included. :meth:`percentile` of the sketch is then never below the exact one and at
        most ``100 / (points - 1)`` points above it (0.01 for 10,001 points); the tiers
        (thresholds) are the exact ones.
        """
        if points < 2:
            raise ValueError(f"a sketch needs at least 2 points; got {points}")
        n = len(self.sorted_clv)
        if self.ranks is not None or n <= points:
            return self
        positions = np.unique(np.round(np.linspace(0, n - 1, points)).astype("int64"))
        return Base(self.thresholds, self.sorted_clv[positions], positions, n)

    def percentile(self, clv: np.ndarray) -> np.ndarray:
        """``clv_percentile``: the share of the base (0-100) predicted to spend at most ``clv``.

        The base's most valuable customer is at 100; NaN for an empty base. On a sketch
        (:meth:`sketch`), the upper bound of the share, within ``100 / (points - 1)`` of it.
        """
        clv = np.asarray(clv, dtype="float64")
        if len(self.sorted_clv) == 0:
            return np.full(len(clv), np.nan)
        at_most = np.searchsorted(self.sorted_clv, clv, side="right")
        size = len(self.sorted_clv)
        if self.ranks is not None and self.size is not None:
            # kept[j - 1] <= clv < kept[j]: the customers at or below clv are at most those
            # before kept[j] in the whole base (and more than those up to kept[j - 1]).
            size = self.size
            inside = at_most < len(self.ranks)
            at_most = np.where(inside, self.ranks[np.minimum(at_most, len(self.ranks) - 1)], size)
        return 100.0 * at_most / size

    def labels(
        self, clv: np.ndarray, p_churn: np.ndarray, new: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Value segments, risk segments and actions (:func:`segment_labels`)."""
        return segment_labels(clv, p_churn, self.thresholds, new)
