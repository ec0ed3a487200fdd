"""The base total the serving model is scaled to, chosen by its track record at earlier origins.

The model ranks customers with its trees and sets their level with a stack learnt one
horizon before the data end. That level can swing between two fits a horizon apart
(docs/experiments.md, entry 18): on an ageing cohort, before a seasonal peak or in a growing
business the total missed by 25-45% where BG/NBD was close. So the level is judged, not
assumed.

At each earlier **origin** ``o`` (the twin's holdout, then one horizon before it, ...) the
whole procedure is replayed as if the data ended at ``o``: the parts are fit on the history
before ``o``, with a stack learnt on the horizon that ended at ``o`` (the same parameters and
tree counts as the twin, so no search). Its base total over ``[o, o + horizon)`` is compared
with what the customers then spent, and so are the totals of BG/NBD and Pareto/NBD fit at
``o``, of the two together (the **classical mean**), of their blend with the model and, where
two years of history measure the season at the data end, of the classical mean in the
horizon's season (``classical_season``, :func:`classical_figures`). The
candidate with the best track record (mean absolute log ratio of predicted to actual total,
over the origins the model could be replayed at) sets the served level; every customer's
``clv`` is scaled by one factor, so the ranking is unchanged. The model keeps its own level
unless another candidate is better by :data:`SWITCH_MARGIN`, and either classical model
replaces the classical mean only when better than it by as much. Where the history is too short
to replay the model even once, the classical models are still measured at the origins:
a classical level (either model, or their mean) whose record is within :data:`TRUSTED_MISS`
is served (a validated level over an unvalidated one); one within :data:`USABLE_MISS` is
averaged with the model's (the blend); a worse one still tells on which side the spending
fell, and bounds the model's level on that side by the less extreme classical level
(:func:`_bounded_by_classical`).
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import brentq

from features import FeatureSpec, build_labels, feature_names
from features.season import repeat_growth, seasonal_index
from training.baselines import BgNbdGammaGammaBaseline, ParetoNbdGammaGammaBaseline
from training.config import FitSettings
from training.purchase import PurchaseHistory, PurchaseModel
from training.snapshots import SnapshotSource
from training.split import window_cutoffs

logger = logging.getLogger(__name__)

#: The candidates for the served level, by name. ``classical_season`` is measured only where
#: two years of history tell the season from growth at the data end (:func:`season_index`).
#: On a tie the earlier name wins: where no origin had two years its record is the classical
#: mean's, and the plain mean is served rather than a season nothing has validated.
CANDIDATES: tuple[str, ...] = (
    "model",
    "bgnbd",
    "pareto_nbd",
    "classical_mean",
    "blend",
    "classical_season",
)
#: The two classical models, whose totals :func:`with_blend` combines into ``classical_mean``.
CLASSICAL: tuple[str, ...] = ("bgnbd", "pareto_nbd")
#: The figures the blend combines, of the value's totals and of the churn's counts alike.
BLEND_PARTS: tuple[str, ...] = ("model", *CLASSICAL)
#: Another candidate replaces the model's level only when its mean absolute log error over
#: the origins is lower by at least this much (about 5 points of total): with one or two
#: origins a smaller difference is noise, and the model's own level needs no rescaling.
SWITCH_MARGIN = 0.05
#: Where the model cannot be replayed at any origin, a classical level whose record misses by
#: at most this (as a log ratio, about 10%) is served instead of the unvalidated one.
TRUSTED_MISS = math.log(1.10)
#: ... and where the better classical record misses by more than that but at most this (about
#: 25%), neither level is validated and neither known to be bad: the blend (the geometric
#: mean of the model's and the two classical totals) hedges between them, as an equal-weight
#: forecast combination does. A classical model that missed by more carries no information on
#: the level (a left-censored file, where BG/NBD doubles the total), and the model's is kept.
USABLE_MISS = math.log(1.25)


@dataclass(frozen=True)
class OriginTotals:
    """The base totals at one earlier origin, against what happened.

    Attributes
    ----------
    origin : pandas.Timestamp
        The replayed cutoff.
    customers : int
        Customers with an order before it.
    actual : float
        Their revenue over the horizon from the origin.
    totals : dict
        Candidate name -> predicted total (a candidate that could not be replayed is absent).
    """

    origin: pd.Timestamp
    customers: int
    actual: float
    totals: dict[str, float]

    def error_pct(self, name: str) -> float:
        """Signed total error of ``name`` in percent of the actual (NaN when absent)."""
        total = self.totals.get(name)
        if total is None or self.actual <= 0:
            return float("nan")
        return 100.0 * (total / self.actual - 1.0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "origin": str(self.origin.date()),
            "customers": self.customers,
            "actual": self.actual,
            "totals": dict(self.totals),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OriginTotals:
        """Rebuild from :meth:`to_dict`."""
        return cls(
            pd.Timestamp(data["origin"]),
            int(data["customers"]),
            float(data["actual"]),
            {str(k): float(v) for k, v in data["totals"].items()},
        )


@dataclass(frozen=True)
class Level:
    """The served level: which candidate set it, by what factor, and the record behind it.

    Attributes
    ----------
    factor : float
        Every served ``clv`` is the stack's times this (1.0: the model's own level).
    source : str
        The candidate chosen (one of :data:`CANDIDATES`).
    reason : str
        One sentence: why.
    served : dict
        Candidate name -> its base total at the data end (before scaling).
    origins : tuple of OriginTotals
        The track record, latest origin first.
    """

    factor: float = 1.0
    source: str = "model"
    reason: str = "no track record was measured"
    served: dict[str, float] = field(default_factory=dict)
    origins: tuple[OriginTotals, ...] = ()

    def table(self) -> pd.DataFrame:
        """One row per origin: customers, actual total, and each candidate's error in percent."""
        rows = []
        for record in self.origins:
            row: dict[str, Any] = {
                "origin": str(record.origin.date()),
                "customers": record.customers,
                "actual_total": round(record.actual, 2),
            }
            for name in CANDIDATES:
                row[f"{name}_error_pct"] = round(record.error_pct(name), 1)
            rows.append(row)
        return pd.DataFrame(rows)

    def band_pct(self) -> tuple[float, float] | None:
        """The chosen level's lowest and highest total error over the origins (None: none)."""
        errors = [r.error_pct(self.source) for r in self.origins]
        errors = [e for e in errors if np.isfinite(e)]
        if not errors:
            return None
        return min(errors), max(errors)

    def summary(self) -> str:
        """One line for the training report."""
        band = self.band_pct()
        measured_at = sum(np.isfinite(r.error_pct(self.source)) for r in self.origins)
        measured = (
            f"its total missed by {band[0]:+.1f}% to {band[1]:+.1f}% at "
            f"{measured_at} earlier origin(s)"
            if band
            else "its total has no measured track record"
        )
        return f"level: {self.source} (x{self.factor:.3f}); {measured}; {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "factor": self.factor,
            "source": self.source,
            "reason": self.reason,
            "served": dict(self.served),
            "origins": [r.to_dict() for r in self.origins],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Level:
        """Rebuild from :meth:`to_dict`."""
        return cls(
            float(data["factor"]),
            str(data["source"]),
            str(data["reason"]),
            {str(k): float(v) for k, v in data.get("served", {}).items()},
            tuple(OriginTotals.from_dict(r) for r in data.get("origins", [])),
        )


def _log_miss(total: float, actual: float) -> float:
    if total <= 0 or actual <= 0:
        return float("inf")
    return abs(math.log(total / actual))


def track_scores(origins: tuple[OriginTotals, ...]) -> dict[str, float]:
    """Candidate -> mean absolute log ratio of predicted to actual total over the origins.

    Only candidates measured at every origin get a score.
    """
    scores: dict[str, float] = {}
    for name in CANDIDATES:
        misses = [_log_miss(r.totals[name], r.actual) for r in origins if name in r.totals]
        if origins and len(misses) == len(origins):
            scores[name] = float(np.mean(misses))
    return scores


def choose_level(origins: tuple[OriginTotals, ...], served: dict[str, float]) -> Level:
    """The level with the best track record (see the module's docstring for the rule).

    Parameters
    ----------
    origins : tuple of OriginTotals
        The track record.
    served : dict
        Candidate -> base total at the data end; must hold ``model``.

    Returns
    -------
    Level
    """
    # The candidates are compared where the model has a record: the origins it could be
    # replayed at (a short file may allow the latest origin and not the one before it).
    replayed = tuple(record for record in origins if "model" in record.totals)
    judged = replayed or origins
    scores = {name: s for name, s in track_scores(judged).items() if name in served}
    partly = (
        f" (at the {len(replayed)} of {len(origins)} earlier origins the model could be "
        "replayed at)"
        if replayed and len(replayed) < len(origins)
        else ""
    )
    own = served["model"]
    chosen, reason = "model", ""
    if not scores:
        reason = "no earlier origin could be replayed, the model's own level is unvalidated"
    elif "model" in scores:
        best = min(scores, key=lambda name: (scores[name], name != "model"))
        if best != "model" and scores[best] <= scores["model"] - SWITCH_MARGIN:
            chosen = best
            reason = (
                f"{best}'s total missed by {_pct(scores[best])} on average against the "
                f"model's {_pct(scores['model'])}{partly}"
            )
            chosen, reason = _classical_hedged(chosen, reason, scores, served, float("inf"))
        else:
            reason = (
                f"the model's own total missed by {_pct(scores['model'])} on average{partly}; "
                f"no other level was better by {_pct(SWITCH_MARGIN)}"
            )
    else:
        best = min(scores, key=lambda name: scores[name])
        if scores[best] <= TRUSTED_MISS:
            chosen = best
            reason = (
                f"the model could not be replayed at any earlier origin; {best}'s total "
                f"missed by {_pct(scores[best])} on average, within {_pct(TRUSTED_MISS)}"
            )
            chosen, reason = _classical_hedged(chosen, reason, scores, served, TRUSTED_MISS)
        elif scores[best] <= USABLE_MISS and "blend" in served:
            chosen = "blend"
            reason = (
                "the model could not be replayed at any earlier origin, so no level is "
                f"validated; {best}'s total missed by {_pct(scores[best])}, within "
                f"{_pct(USABLE_MISS)}, so the model's and the classical totals are averaged "
                "rather than one of them trusted"
            )
        else:
            chosen, reason = _bounded_by_classical(judged, served)
    factor = served[chosen] / own if own > 0 and served.get(chosen, 0) > 0 else 1.0
    return Level(float(factor), chosen, reason, dict(served), origins)


def _classical_hedged(
    chosen: str,
    reason: str,
    scores: dict[str, float],
    served: dict[str, float],
    trusted: float,
) -> tuple[str, str]:
    """The classical mean in place of one classical model that won the record by noise.

    BG/NBD and Pareto/NBD are two versions of one idea; over one or two origins their
    records differ mostly by noise (docs/experiments.md, entries 37 and 47). One of them
    replaces their mean only when its record is better by :data:`SWITCH_MARGIN`, the margin
    by which any level replaces the model's, and the mean is served only where its own record
    passes the same test as the winner's (``trusted``).
    """
    mean = "classical_mean"
    if chosen not in CLASSICAL or mean not in scores or mean not in served:
        return chosen, reason
    if scores[mean] > trusted or scores[mean] >= scores[chosen] + SWITCH_MARGIN:
        return chosen, reason
    return mean, (
        f"{reason}; {chosen} was not better than the classical mean ({_pct(scores[mean])}) "
        f"by {_pct(SWITCH_MARGIN)}, so the two classical models' mean is served"
    )


def _bounded_by_classical(
    origins: tuple[OriginTotals, ...], served: dict[str, float]
) -> tuple[str, str]:
    """The level where no candidate is validated and both classical models missed by far.

    The classical record still says on which side the shop's spending fell: where BG/NBD and
    Pareto/NBD both fell short at the earlier origins (a growing shop, or a file that keeps
    only its best customers), the record says each of their totals is too low, so a level
    below either of them has no support; where both overshot (a file that starts in the
    middle of its customers' lives), a level above either of them. The model's own level is
    kept unless it lies on that side of the less extreme classical total (the higher after
    both fell short, the lower after both overshot); then that classical level is served.
    It is still one classical model's own total, never a level beyond both
    (docs/experiments.md, entries 28 and 29).

    Returns
    -------
    (chosen, reason)
    """
    unvalidated = (
        "the model could not be replayed at any earlier origin and no classical level was "
        f"within {_pct(USABLE_MISS)}"
    )
    classical = [name for name in CLASSICAL if served.get(name, 0.0) > 0]
    bias = {
        name: float(np.mean([math.log(r.totals[name] / r.actual) for r in origins]))
        for name in classical
        if origins and all(r.totals.get(name, 0.0) > 0 and r.actual > 0 for r in origins)
    }
    own = served["model"]
    if len(bias) == 2 and own > 0:
        short = all(b < 0 for b in bias.values())
        over = all(b > 0 for b in bias.values())
        # The less extreme classical total on the side both missed on: the record calls
        # the other one further off.
        bound = (
            max(classical, key=served.__getitem__)
            if short
            else min(classical, key=served.__getitem__)
        )
        if (short and own < served[bound]) or (over and own > served[bound]):
            missed, direction, which = (
                ("fell short", "below", "higher") if short else ("overshot", "above", "lower")
            )
            misses = " and ".join(f"{100.0 * math.expm1(b):+.1f}%" for b in bias.values())
            return bound, (
                f"{unvalidated}; both classical totals {missed} there ({misses}), and "
                f"the model's total is {direction} the {which} of theirs now, on the side the "
                f"record does not support, so the {which} classical level ({bound}'s) is served"
            )
    return "model", f"{unvalidated}; the model's own level is unvalidated"


def _pct(log_ratio: float) -> str:
    return f"{100.0 * (math.exp(log_ratio) - 1.0):.1f}%"


def classical_figures(
    features: pd.DataFrame,
    horizon_days: int,
    seed: int,
    bgnbd: BgNbdGammaGammaBaseline | None = None,
    pareto: ParetoNbdGammaGammaBaseline | None = None,
    season: float | None = None,
) -> tuple[dict[str, float], dict[str, float]]:
    """Base totals and expected buyers (:func:`buyers`) of BG/NBD and Pareto/NBD on ``features``.

    ``bgnbd`` and ``pareto``: already fit on ``features`` (else they are fit here). With a
    ``season`` (the horizon's seasonal index, :func:`season_index`), the totals also hold
    ``classical_season``: the geometric mean of the two models' totals over ``horizon x
    season`` days at their average rate, the classical level in the horizon's season. A
    season multiplies every active customer's buying rate, which for these models is the same
    as a longer horizon (:meth:`HorizonSeason.factors` does the same for the counts). Under
    Pareto/NBD the dropout clock is stretched too, a small approximation over one horizon.
    """
    bgnbd = bgnbd or BgNbdGammaGammaBaseline(random_seed=seed).fit(features)
    pareto = pareto or ParetoNbdGammaGammaBaseline(random_seed=seed).fit(features)
    totals: dict[str, float] = {}
    counts: dict[str, float] = {}
    in_season: list[float] = []
    for name, fitted in (("bgnbd", bgnbd), ("pareto_nbd", pareto)):
        predicted = fitted.predict(features, horizon_days)
        totals[name] = float(predicted["clv"].sum())
        counts[name] = buyers(predicted["p_churn"])
        if season is not None:
            # An index of 1.0 (an origin without two years) is the horizon itself: no second
            # prediction.
            stretched = (
                predicted if season == 1.0 else fitted.predict(features, horizon_days * season)
            )
            in_season.append(float(stretched["clv"].sum()))
    if in_season and min(in_season) > 0:
        totals["classical_season"] = float(np.exp(np.mean(np.log(in_season))))
    return totals, counts


def season_index(orders: pd.DataFrame, *, cutoff: pd.Timestamp, horizon_days: int) -> float:
    """The horizon's seasonal index where two years of history measure it, else 1.0.

    With less than two years before ``cutoff`` the index holds the shop's growth as well as
    its season (docs/experiments.md, entries 11, 12 and 21), so the classical level is taken
    as it is there: ``classical_season`` is then the classical mean, and it is judged as the
    procedure it is ("in season where the season is known").
    """
    if not _season_measured(orders, cutoff, horizon_days):
        return 1.0
    return float(seasonal_index(orders, cutoff=cutoff, horizon_days=horizon_days))


def _season_measured(orders: pd.DataFrame, cutoff: pd.Timestamp, horizon_days: int) -> bool:
    """A horizon shorter than a year, and two years of history to take the trend out."""
    return horizon_days < 365 and repeat_growth(orders, cutoff=cutoff) is not None


def with_blend(totals: dict[str, float]) -> dict[str, float]:
    """``totals`` plus the combined candidates: ``classical_mean`` and ``blend``.

    ``classical_mean`` is the geometric mean of the two classical totals, ``blend`` that of
    the model's and the two classical totals; each is added when all its parts are there and
    positive. Geometric, because every level is judged by its log miss (:func:`track_scores`):
    each is the equal-weight combination in that same scale, so a total that doubles (BG/NBD
    on a left-censored file) weighs as much as one that halves, not twice as much
    (docs/experiments.md, entry 25).

    The classical mean is a candidate of its own because BG/NBD and Pareto/NBD are two
    versions of one idea (a buying rate and a dropout per customer, no season, no trend): on
    one or two origins their records mostly differ by noise, and taking the one that happened
    to miss less serves that noise (entry 37). Their mean is the hedge the record then
    supports; where one of them is clearly better, its own record wins.
    """
    combined = dict(totals)
    for name, names in (("classical_mean", CLASSICAL), ("blend", BLEND_PARTS)):
        parts = [totals[part] for part in names if part in totals]
        if len(parts) == len(names) and min(parts) > 0:
            combined[name] = float(np.exp(np.mean(np.log(parts))))
    return combined


@dataclass(frozen=True)
class HorizonSeason:
    """The served horizon's season against the one the churn stack was learnt on.

    The stack learns the chance of an order on the twin's horizon, ``[data_end - H,
    data_end)``, and serves it for ``[data_end, data_end + H)``. A horizon that covers a peak
    holds more buyers than an off-peak one, so the model's count of buyers is for the wrong
    season (retail 2007-10-01: the model's own count -54%, docs/experiments.md, entry 41).
    BG/NBD and Pareto/NBD have no season at all. Both indices are
    :func:`features.season.seasonal_index` (repeat revenue per day against the year's, the
    trend taken out), the first as forecast from a year before, the second measured once the
    horizon has happened, as the value's stack is fit with it (``training.pipeline.served_stack``).

    Attributes
    ----------
    served : float
        Seasonal index of the served horizon.
    learnt : float
        Seasonal index of the horizon the stack learnt churn on.
    """

    served: float
    learnt: float

    @classmethod
    def measure(
        cls, orders: pd.DataFrame, *, data_end: pd.Timestamp, horizon_days: int
    ) -> HorizonSeason | None:
        """Both indices, or None where the season is not measured apart from the trend.

        None with a horizon of a year or longer (every season is in it) and with less than
        two years of history: the index then holds the shop's growth as well as its season
        (entries 11, 12 and 21), and the count of buyers, which has no track record to catch a
        wrong index (entry 23), keeps the models' own counts.
        """
        if not _season_measured(orders, data_end, horizon_days):
            return None
        learnt = seasonal_index(
            orders,
            cutoff=data_end,
            horizon_days=horizon_days,
            window_start=data_end - pd.Timedelta(days=horizon_days),
        )
        # Measured (checked above): the index itself, without season_index's second check.
        served = seasonal_index(orders, cutoff=data_end, horizon_days=horizon_days)
        return cls(float(served), float(learnt))

    def factors(
        self, purchase: PurchaseModel, history: PurchaseHistory, horizon_days: float
    ) -> dict[str, float]:
        """By how much each count of buyers moves to the served horizon's season.

        A season multiplies every active customer's buying rate, which for the chance of an
        order is the same as stretching the horizon: ``horizon x index`` days of an average
        rate. The purchase model turns that into buyers, customers who have dropped out
        buying in no season: ``model`` is its count over ``horizon x served`` against over
        ``horizon x learnt`` (the stack's count was learnt in the latter), ``classical`` its
        count over ``horizon x served`` against over ``horizon`` (BG/NBD's and Pareto/NBD's
        rates are their history's average). The factors are ratios of one model's counts, so
        its own level cancels.
        """

        def count(days: float) -> float:
            return buyers(purchase.p_no_order(history, days))

        plain = count(horizon_days)
        served = count(horizon_days * self.served)
        learnt = count(horizon_days * self.learnt)
        if min(plain, served, learnt) <= 0:
            return {"model": 1.0, "classical": 1.0}
        return {"model": served / learnt, "classical": served / plain}


@dataclass(frozen=True)
class BuyersLevel:
    """The served count of customers who order in the horizon, and the churn shift that serves it.

    The count is ``sum(1 - p_churn)`` over the base at the data end. The model's own count,
    BG/NBD's and Pareto/NBD's, each moved to the served horizon's season where two years of
    history measure it (:class:`HorizonSeason`), are combined as the value's blend is, by
    their geometric mean (:func:`buyers_blend`), and every churn logit is moved by one
    :attr:`shift` so that the served count is that mean: one shift for all customers never
    reorders them.

    Attributes
    ----------
    shift : float
        Added to every churn logit (0.0: the model's own churn rate).
    counts : dict
        ``model``, ``bgnbd``, ``pareto_nbd`` -> each model's own expected buyers at the data
        end, and ``blend`` -> the served count.
    season : dict
        Empty, or ``served`` and ``learnt`` (the two seasonal indices) and the factors the
        counts were multiplied by before the blend (``model``, ``classical``).
    reason : str
        One sentence: why.
    """

    shift: float = 0.0
    counts: dict[str, float] = field(default_factory=dict)
    reason: str = "no classical count was measured; the model's own churn rate is served"
    season: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        """One line for the training report."""
        if "blend" not in self.counts:
            return f"churn level: model (logit shift +0.0000); {self.reason}"
        own = self.counts["model"]
        parts = ", ".join(
            f"{name} {self.counts[name]:,.0f} ({100.0 * (self.counts[name] / own - 1.0):+.1f}%)"
            for name in (*CLASSICAL, "blend")
        )
        season = (
            f"; in the horizon's season (index {self.season['served']:.3f}, learnt in "
            f"{self.season['learnt']:.3f}) the model's count x{self.season['model']:.3f}, "
            f"the classical counts x{self.season['classical']:.3f}"
            if self.season
            else ""
        )
        return (
            f"churn level: blend (logit shift {self.shift:+.4f}); expected buyers: model "
            f"{own:,.0f}, {parts}{season}; {self.reason}"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "shift": self.shift,
            "counts": dict(self.counts),
            "season": dict(self.season),
            "reason": self.reason,
        }


def buyers(p_churn: np.ndarray | pd.Series) -> float:
    """Expected count of customers who order in the horizon: ``sum(1 - p_churn)``."""
    return float(np.sum(1.0 - np.asarray(p_churn, dtype="float64")))


def churn_shift(p_churn: np.ndarray, target: float) -> float:
    """The one shift of every churn logit that makes :func:`buyers` equal ``target``.

    The count falls monotonically as the shift grows, so the root is unique; it is solved to
    1e-10 in the logit (a bracket of +-30 covers any count strictly between 0 and the base).
    """
    p = np.clip(np.asarray(p_churn, dtype="float64"), 1e-12, 1.0 - 1e-12)
    z = np.log(p) - np.log1p(-p)
    if not 0.0 < target < len(z):
        raise ValueError(f"target buyers must be between 0 and {len(z)} customers; got {target}")

    def excess(shift: float) -> float:
        return float(np.sum(1.0 / (1.0 + np.exp(z + shift)))) - target

    return float(brentq(excess, -30.0, 30.0, xtol=1e-10))


def buyers_blend(
    counts: dict[str, float], p_churn: np.ndarray, season: dict[str, float] | None = None
) -> BuyersLevel:
    """The served churn rate: the geometric mean of the model's and the classical counts.

    Parameters
    ----------
    counts : dict
        ``model``, ``bgnbd`` and ``pareto_nbd`` -> each model's expected buyers at the data end.
    p_churn : numpy.ndarray
        The model's own churn probabilities at the data end (the shift is solved on them).
    season : dict, optional
        :class:`HorizonSeason`'s indices (``served``, ``learnt``) and factors (``model``,
        ``classical``): each count is moved to the served horizon's season before the mean.

    Returns
    -------
    BuyersLevel
        With the model's own rate (shift 0) when a count is missing or not positive.

    Notes
    -----
    Unlike the value's level, no candidate is chosen by its track record: the counts of buyers
    replayed at earlier origins did not predict the next horizon's (each candidate missed by
    20-80% at one origin and the other way at the next; docs/experiments.md, entry 23), so
    the record would pick between noises. With no validated count, the equal-weight
    combination of the three is the least risky: its log miss is never above the three's
    average log miss, and is below it whenever they miss in opposite directions (entry 26).
    Entry 23 also found where the misses come from, the season of the horizon, which is why
    the counts are put in the served season first (entry 41).
    """
    parts = {name: counts.get(name, float("nan")) for name in BLEND_PARTS}
    season = dict(season or {})
    in_season = {
        name: count * season.get("model" if name == "model" else "classical", 1.0)
        for name, count in parts.items()
    }
    # The value's blend, applied to the counts (with_blend leaves it out unless all three
    # are positive).
    target = with_blend({name: c for name, c in in_season.items() if np.isfinite(c)}).get("blend")
    if target is None:
        return BuyersLevel(
            counts=dict(parts),
            reason="a classical count is missing or not positive; the model's own churn rate "
            "is served",
        )
    in_what = (
        "each in the served horizon's season, "
        if season
        else "with no season (under two years of history, or a horizon of a year), "
    )
    return BuyersLevel(
        shift=churn_shift(p_churn, target),
        counts={**parts, "blend": target},
        reason=f"the geometric mean of the model's, BG/NBD's and Pareto/NBD's counts, "
        f"{in_what}one shift of every churn logit (no count has a track record that predicts "
        "the next horizon's; docs/experiments.md, entries 23, 26 and 41)",
        season=season,
    )


def replay_origins(
    orders: pd.DataFrame,
    events: pd.DataFrame | None,
    *,
    latest: Any,
    family: str,
    spec: FeatureSpec,
    settings: FitSettings,
    data_start: pd.Timestamp,
    snapshots: SnapshotSource | None = None,
    pareto: ParetoNbdGammaGammaBaseline | None = None,
    seasonal: bool = False,
) -> tuple[OriginTotals, ...]:
    """The track record at up to ``settings.level_origins`` origins, latest first.

    Parameters
    ----------
    orders, events : pandas.DataFrame
        The history (only rows before the data end are in it).
    latest : training.pipeline.FittedCutoff
        The fit one horizon before the data end (the twin): the first origin's refit.
    family : str
        The served family; each origin's stack is of that family.
    spec, settings
        As for the training; the extra fits use the twin's parameters and tree counts.
    data_start : pandas.Timestamp
        The first order's day (window cutoffs keep ``settings.min_history_days`` after it).
    snapshots : callable, optional
        Builds the window rows elsewhere, as for the training's own fits.
    pareto : ParetoNbdGammaGammaBaseline, optional
        Pareto/NBD already fit on ``latest``'s features (its fit is the slow one).
    seasonal : bool
        Also measure ``classical_season`` at each origin, in the season measured there
        (:func:`season_index`); training asks for it where the data end has two years.

    Returns
    -------
    tuple of OriginTotals
    """
    # Imported here: the pipeline imports this module.
    from training.pipeline import fit_cutoff, in_own_terms, served_stack

    names = feature_names(spec)
    horizon = pd.Timedelta(days=spec.horizon_days)
    earliest = data_start + pd.Timedelta(days=settings.min_history_days)
    window = min(settings.window_days, spec.horizon_days)
    refit = latest
    records: list[OriginTotals] = []
    for _ in range(settings.level_origins):
        origin = refit.cutoff
        actual = build_labels(orders, cutoff=origin, spec=spec).loc[refit.features.index]
        season = (
            season_index(orders, cutoff=origin, horizon_days=spec.horizon_days)
            if seasonal
            else None
        )
        totals, _ = classical_figures(
            refit.features, spec.horizon_days, settings.seed, refit.bgnbd, pareto, season
        )
        pareto = None
        before = origin - horizon
        cutoffs = window_cutoffs(
            before, earliest, window, pd.Timedelta(days=settings.step_days), settings.max_cutoffs
        )
        earlier = None
        if cutoffs:
            earlier = fit_cutoff(
                orders,
                events,
                cutoff=before,
                window_cutoffs=cutoffs,
                spec=spec,
                settings=settings,
                params=refit.model.params,
                n_estimators=refit.model.best_iterations_,
                snapshots=snapshots,
            )
            rows = earlier.features.join(build_labels(orders, cutoff=before, spec=spec))
            stack = served_stack(earlier.model, rows, family, orders, data_end=origin, spec=spec)
            replayed = _with_stack(
                refit.model, in_own_terms(stack, refit.model, refit.features, spec)
            )
            totals["model"] = float(replayed.predict(refit.features[names])["clv"].sum())
        records.append(
            OriginTotals(
                origin, len(actual), float(actual["future_value"].sum()), with_blend(totals)
            )
        )
        logger.info(
            "level at origin %s: actual %.0f, %s",
            origin.date(),
            records[-1].actual,
            ", ".join(f"{k} {records[-1].error_pct(k):+.1f}%" for k in records[-1].totals),
        )
        if earlier is None:
            break
        refit = earlier
    return tuple(records)


def _with_stack(model: Any, stack: Any) -> Any:
    """A shallow copy of ``model`` with ``stack``: the fitted parts are shared, not changed."""
    return copy.copy(model).with_stack(stack)
