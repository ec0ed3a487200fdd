"""The purchase model inside every registered model: BG/NBD + Gamma-Gamma in closed form.

The parameters are fit by pymc-marketing (:class:`training.baselines.BgNbdGammaGammaBaseline`);
this module only evaluates the published formulas with numpy and scipy, so that scoring one
customer online costs microseconds and needs no probabilistic-programming stack at serving
time. ``tests/training/test_purchase.py`` pins every quantity to pymc-marketing's own.

Formulas (Fader, Hardie & Lee 2005, "Counting your customers the easy way"; Fader, Hardie &
Lee 2005, "RFM and CLV: using iso-value curves"), with ``x`` repeat purchase days, ``t_x``
the age of the last purchase and ``T`` the age of the customer, all in days:

* ``P(alive) = 1 / (1 + [x > 0] a / (b + x - 1) ((alpha + T) / (alpha + t_x)) ** (r + x))``
* ``E[orders in t | alive] = (a + b + x - 1) / (a - 1) (1 - g 2F1(r + x, b + x; a + b + x - 1;
  t / (alpha + T + t)))`` with ``g = ((alpha + T) / (alpha + T + t)) ** (r + x)``
* ``P(no order in t) = 1 - P(alive) + P(alive) g``: under BG/NBD a customer can only drop out
  right after a purchase, so an alive customer who buys nothing stays alive.
* Gamma-Gamma: ``E[spend | x, m] = p (v + x m) / (p x + q - 1)``; ``p v / (q - 1)`` without
  repeat spend.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.special import hyp2f1

#: Feature columns the purchase model reads, in this order.
PURCHASE_COLUMNS: tuple[str, ...] = (
    "frequency",
    "recency",
    "T",
    "days_since_first_order",
    "repeat_order_value_mean",
)


@dataclass(frozen=True)
class PurchaseHistory:
    """BG/NBD inputs per customer: ``x`` repeat days, ``t_x`` last-purchase age, ``T`` age."""

    x: np.ndarray
    t_x: np.ndarray
    T: np.ndarray
    spend: np.ndarray

    @classmethod
    def from_columns(cls, columns: dict[str, np.ndarray]) -> PurchaseHistory:
        """Build from the :data:`PURCHASE_COLUMNS` as float arrays (NaN where missing).

        A customer with only cancelled orders (``frequency`` NaN) counts as a one-time buyer
        whose age is the days since the first order, as in the BG/NBD baseline.
        """
        frequency = np.asarray(columns["frequency"], dtype="float64")
        no_purchase = np.isnan(frequency)
        age = np.asarray(columns["T"], dtype="float64")
        age = np.where(no_purchase | np.isnan(age), columns["days_since_first_order"], age)
        age = np.clip(np.nan_to_num(age, nan=0.0), 0.0, None)
        x = np.round(np.nan_to_num(frequency, nan=0.0)).clip(0.0, None)
        recency = np.nan_to_num(np.asarray(columns["recency"], dtype="float64"), nan=0.0)
        t_x = np.where(x > 0, np.clip(recency, 0.0, age), 0.0)
        spend = np.asarray(columns["repeat_order_value_mean"], dtype="float64")
        return cls(x, t_x, age, spend)


@dataclass(frozen=True)
class Activity:
    """Whether a customer is still active, and how an active one buys, agreeing with p_churn.

    Built by :meth:`PurchaseModel.activity`. An active customer's wait for the next order is
    exponential with a ``Gamma(shape, scale)`` rate, so ``P(no order in t | active) =
    (scale / (scale + t)) ** shape``.

    Attributes
    ----------
    p_active : numpy.ndarray
        Probability of still being a customer at the cutoff.
    shape, scale : numpy.ndarray
        The active customer's rate distribution (scale in days).
    """

    p_active: np.ndarray
    shape: np.ndarray
    scale: np.ndarray

    def p_order_by(self, days: float | np.ndarray) -> np.ndarray:
        """Probability of at least one order within ``days`` of the cutoff."""
        quiet = (self.scale / (self.scale + days)) ** self.shape
        return self.p_active * (1.0 - quiet)

    def days_to_even_odds(self) -> np.ndarray:
        """Days until the chance of having ordered reaches one half; NaN if it never does.

        Solves ``p_active (1 - g(t)) = 1/2``: defined where ``p_active > 1/2``.
        """
        with np.errstate(divide="ignore", invalid="ignore"):
            quiet = 1.0 - 0.5 / self.p_active
            days = self.scale * np.expm1(-np.log(quiet) / self.shape)
        return np.where(self.p_active > 0.5, days, np.nan)


#: Above this ``a + b`` the purchase series is its limit (:meth:`PurchaseModel._series`).
_LIMIT_FROM = 1e9


def gamma_gamma_spend(
    p: float, q: float, v: float, x: np.ndarray, m: np.ndarray, known: np.ndarray
) -> np.ndarray:
    """Gamma-Gamma expected spend per purchase: ``p (v + x m) / (p x + q - 1)`` where ``known``.

    Parameters
    ----------
    p, q, v : float
        Fitted Gamma-Gamma parameters (``q > 1``).
    x : numpy.ndarray
        Repeat purchases per customer.
    m : numpy.ndarray
        Mean spend of those purchases.
    known : numpy.ndarray of bool
        Customers with repeat spend to condition on; the others get the population mean
        ``p v / (q - 1)``.

    Returns
    -------
    numpy.ndarray
        Expected spend per purchase, float64.
    """
    x = np.where(known, x, 0.0)
    m = np.where(known, m, 0.0)
    conditional = p * (v + x * m) / (p * x + q - 1.0)
    return np.where(known, conditional, p * v / (q - 1.0))


@dataclass(frozen=True)
class PurchaseModel:
    """Fitted BG/NBD (``r, alpha, a, b``) and Gamma-Gamma (``p, q, v``) parameters, in days."""

    r: float
    alpha: float
    a: float
    b: float
    p: float
    q: float
    v: float

    def __post_init__(self) -> None:
        bad = {k: v for k, v in asdict(self).items() if not (np.isfinite(v) and v > 0)}
        if bad:
            raise ValueError(f"purchase model parameters must be finite and > 0; got {bad}")
        if self.q <= 1.0:
            raise ValueError(f"Gamma-Gamma q must be > 1 (a finite mean spend); got {self.q}")

    def to_dict(self) -> dict[str, float]:
        """The seven parameters, JSON-ready."""
        return {k: float(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PurchaseModel:
        """Rebuild from :meth:`to_dict` output."""
        return cls(**{k: float(data[k]) for k in cls.__dataclass_fields__})

    def p_alive(self, h: PurchaseHistory) -> np.ndarray:
        """Probability that each customer has not dropped out by the cutoff."""
        odds = np.where(
            h.x > 0,
            self.a / (self.b + np.maximum(h.x, 1.0) - 1.0) * self._age_ratio(h),
            0.0,
        )
        return 1.0 / (1.0 + odds)

    def _age_ratio(self, h: PurchaseHistory) -> np.ndarray:
        # ((alpha + T) / (alpha + t_x)) ** (r + x) in log space: the power overflows for
        # frequent buyers who have been quiet for a long time.
        log_ratio = (self.r + h.x) * (np.log(self.alpha + h.T) - np.log(self.alpha + h.t_x))
        return np.exp(np.minimum(log_ratio, 700.0))

    def quiet(self, h: PurchaseHistory, days: float) -> np.ndarray:
        """``g``: P(no purchase in the next ``days`` | alive)."""
        return ((self.alpha + h.T) / (self.alpha + h.T + days)) ** (self.r + h.x)

    def expected_orders_if_alive(self, h: PurchaseHistory, days: float) -> np.ndarray:
        """Expected purchase days in ``[cutoff, cutoff + days)`` of a customer still alive."""
        z = days / (self.alpha + h.T + days)
        series = self._series(h, z)
        alive = (
            (self.a + self.b + h.x - 1.0) / (self.a - 1.0) * (1.0 - self.quiet(h, days) * series)
        )
        return np.clip(alive, 0.0, None)

    def _series(self, h: PurchaseHistory, z: np.ndarray) -> np.ndarray:
        """``2F1(r + x, b + x; a + b + x - 1; z)`` of the expected purchases.

        A fit with no spread in the dropout chance drives ``a`` and ``b`` to 1e19 and beyond
        (a demo store of 20,000 customers did), and scipy's ``hyp2f1`` then returns NaN for
        ``z`` near 0.9. As ``b`` and ``c`` grow with ``b / c`` fixed the series tends to
        ``(1 - z b / c) ** -(r + x)`` (relative error 1e-8 at ``a + b`` = 1e9, 1e-15 at 1e20),
        which is used there and wherever scipy gives no finite value.
        """
        shape = self.r + h.x
        c = self.a + self.b + h.x - 1.0
        limit = (1.0 - z * (self.b + h.x) / c) ** -shape
        if self.a + self.b > _LIMIT_FROM:
            return limit
        series = hyp2f1(shape, self.b + h.x, c, z)
        return np.where(np.isfinite(series), series, limit)

    def expected_orders(self, h: PurchaseHistory, days: float) -> np.ndarray:
        """Expected purchase days in ``[cutoff, cutoff + days)``."""
        return self.p_alive(h) * self.expected_orders_if_alive(h, days)

    def median_wait(self, h: PurchaseHistory) -> np.ndarray:
        """Median days to the next purchase of a customer still alive.

        Alive, the wait is exponential with rate ``lambda ~ Gamma(r + x, alpha + T)`` (the
        posterior), so ``P(wait > t) = ((alpha + T) / (alpha + T + t)) ** (r + x)``; it is
        one half at ``(alpha + T) (2 ** (1 / (r + x)) - 1)``.
        """
        return (self.alpha + h.T) * np.expm1(np.log(2.0) / (self.r + h.x))

    def activity(self, h: PurchaseHistory, p_no_order: np.ndarray, days: float) -> Activity:
        """Split a served chance of no order in ``days`` into "gone" and "active but quiet".

        ``P(no order) = 1 - P(active) + P(active) g`` with ``g`` the chance that an active
        customer buys nothing in ``days``. BG/NBD's own ``g`` comes from the rate posterior
        ``Gamma(r + x, alpha + T)``: the silence since the last purchase lowers the rate, and
        a one-time buyer (who cannot drop out under BG/NBD) silent for years gets a rate so
        low that any churn probability reads as "surely active". Here an active customer
        buys at the rate of their active period, ``Gamma(r + x, alpha + t_x)``, so the silence
        since the last purchase counts as evidence of being gone (as under Pareto/NBD, where a
        customer can drop out before a repeat purchase).

        ``P(active) = (1 - p_no_order) / (1 - g)``. Where that exceeds one (the served model
        expects more buying than the active-period rate does) the customer is taken as surely
        active and their rate is raised until ``g`` equals ``p_no_order``. Either way
        ``P(active) (1 - g(days)) = 1 - p_no_order``: the split agrees with the served
        probability for every customer.

        Parameters
        ----------
        h : PurchaseHistory
        p_no_order : numpy.ndarray
            The served probability of no order in ``days`` (the churn probability).
        days : float
            The horizon it is for.
        """
        p = np.clip(np.asarray(p_no_order, dtype="float64"), 1e-12, 1.0 - 1e-12)
        shape = self.r + h.x
        scale = self.alpha + h.t_x
        quiet = (scale / (scale + days)) ** shape
        active = (1.0 - p) / (1.0 - quiet)
        surely = active >= 1.0
        # g(days) = p: (s / (s + days)) ** k = p  <=>  s = days / (p ** (-1 / k) - 1).
        raised = days / np.expm1(-np.log(p) / shape)
        return Activity(
            p_active=np.where(surely, 1.0, active),
            shape=shape,
            scale=np.where(surely, raised, scale),
        )

    def p_no_order(self, h: PurchaseHistory, days: float) -> np.ndarray:
        """Probability of no purchase in ``[cutoff, cutoff + days)``."""
        alive = self.p_alive(h)
        return np.clip(1.0 - alive + alive * self.quiet(h, days), 0.0, 1.0)

    def expected_spend(self, h: PurchaseHistory) -> np.ndarray:
        """Gamma-Gamma expected spend per purchase; the population mean without repeat spend."""
        known = (h.x > 0) & np.isfinite(h.spend) & (h.spend > 0)
        return gamma_gamma_spend(self.p, self.q, self.v, h.x, h.spend, known)

    def expected_value(self, h: PurchaseHistory, days: float) -> np.ndarray:
        """Expected revenue in ``[cutoff, cutoff + days)``: expected orders x expected spend."""
        return self.expected_orders(h, days) * self.expected_spend(h)
