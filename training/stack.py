"""The stack: how the purchase model and the boosted parts combine into horizon figures.

A logistic regression of horizon churn on the two churn logits, and a Poisson regression of
horizon revenue on the two log values (then, in a second stage, on the service-failure
counts, whose cost compounds beyond the window: :func:`service_stack_names`), fitted on a
later, horizon-long label window that neither part was fit on. It learns how far to trust each
part, turns the window figures into horizon figures, and puts the level right. A coefficient
that comes out negative is dropped (a part may be ignored, never inverted); with no positive
weight on the boosted part this *is* the purchase model, calibrated.

:class:`training.model.CustomerValueModel` computes the parts' figures and the failure counts;
:meth:`Stack.fit` learns the stack from them and :meth:`Stack.combine` applies it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression, PoissonRegressor

from features.spec import FeatureSpec
from training.profile import Profile
from training.purchase import PurchaseHistory, PurchaseModel

#: Model families and the stack terms each uses (0: purchase model, 1: boosted parts).
STACK_TERMS: dict[str, list[int]] = {"hybrid": [0, 1], "classical": [0], "boosted": [1]}

_EPS = 1e-6


def logit(p: np.ndarray) -> np.ndarray:
    """Log-odds of a probability, clipped away from 0 and 1 so that it stays finite."""
    p = np.clip(p, _EPS, 1.0 - _EPS)
    return np.log(p / (1.0 - p))


def log_value(v: np.ndarray) -> np.ndarray:
    """Log revenue, floored at a cent so that a customer the model gives nothing stays finite."""
    return np.log(np.maximum(v, 1e-2))


def service_stack_names(spec: FeatureSpec) -> tuple[str, ...]:
    """Service-failure counts the value stack weighs directly (late, returns, bad tickets).

    The boosted parts learn what a failure does to the next ``window_days``; a failure that
    makes a customer likelier to leave after each later order costs more over a year than
    four such windows, because the losses compound (see docs/lab-notes.md, "Service terms in
    the horizon stack").
    """
    q = spec.quality_days
    return (f"late_deliveries_{q}d", f"returns_{q}d", f"bad_tickets_{q}d")


@dataclass(frozen=True)
class Stack:
    """How the purchase model and the boosted models combine into horizon figures.

    ``churn`` = (intercept, weight of the purchase model's logit, weight of the boosted logit);
    ``value`` = (intercept, weight of log purchase-model value, weight of log boosted value).
    ``reference`` holds the training means of the purchase-model terms, the zero point of their
    contribution in the reasons.

    ``purchase`` is the purchase model whose figures feed the stack's purchase terms. A
    stack is learnt on, and calibrates, its fit's own purchase model (docs/experiments.md,
    entry 17). The serving model takes its twin's stack :meth:`restated` in its own refit
    purchase model: the refit's figures, mapped onto the twin's level and spread, so that
    the stack calibrates what it learnt and the customers are ordered by the model that saw
    the whole history (entry 34).

    ``profile`` is fit on the same holdout rows (:class:`training.profile.Profile`); None when
    the stack was fit without the horizon's order counts.

    ``service`` maps service-failure counts (:func:`service_stack_names`) to their weight in log
    value, each <= 0: what the failures cost over the horizon beyond what the short-window
    trees see (docs/experiments.md, idea 15). Empty without service data and for the classical
    family.

    ``level`` multiplies every ``clv``: the served level chosen by its track record at earlier
    origins (:mod:`training.level`); 1.0 for the twin. One factor for all customers, so it
    never reorders them.

    ``churn_shift`` is added to every churn logit: it serves the count of customers who order
    that :func:`training.level.buyers_blend` sets (the geometric mean of the model's and the
    classical counts); 0.0 for the twin. One shift for all customers, so it never reorders
    them either.
    """

    churn: tuple[float, float, float]
    value: tuple[float, float, float]
    reference: tuple[float, float]
    purchase: PurchaseModel
    profile: Profile | None = None
    service: dict[str, float] = field(default_factory=dict)
    level: float = 1.0
    churn_shift: float = 0.0

    @classmethod
    def fit(
        cls,
        parts: dict[str, np.ndarray],
        churned: np.ndarray,
        future_value: np.ndarray,
        *,
        family: str,
        season: float,
        failures: np.ndarray,
        failure_names: list[str],
        purchase: PurchaseModel,
    ) -> Stack:
        """Learn the stack from the parts' horizon figures and the horizon labels.

        Parameters
        ----------
        parts : dict of numpy.ndarray
            ``purchase_churn``, ``purchase_value``, ``churn``, ``value``: each part's horizon
            figures for the rows (:meth:`training.model.CustomerValueModel.parts_matrix`).
        churned, future_value : numpy.ndarray
            Horizon labels of the rows (int and float).
        family : {"hybrid", "classical", "boosted"}
            Which parts the stack combines (:data:`STACK_TERMS`).
        season : float
            Seasonal index of the labels' horizon; it divides the revenue.
        failures : numpy.ndarray
            rows x ``len(failure_names)`` service-failure counts (unknown as 0), the candidate
            service terms; a count that never varies is left out.
        failure_names : list of str
            The features ``failures`` holds, in its column order.
        purchase : PurchaseModel
            The purchase model ``parts`` came from, kept with the stack.

        Returns
        -------
        Stack
            Without a profile (the caller fits it on the combined figures).
        """
        y_churn = np.asarray(churned, dtype="int32")
        y_value = np.asarray(future_value, dtype="float64")
        if len(np.unique(y_churn)) < 2:
            raise ValueError(
                "the stack's rows have only one churn class; they need churners and "
                "non-churners (use a longer history or a later cutoff)"
            )
        churn_terms = np.column_stack([logit(parts["purchase_churn"]), logit(parts["churn"])])
        if family not in STACK_TERMS:
            raise ValueError(f"family must be one of {sorted(STACK_TERMS)}; got {family!r}")
        columns = STACK_TERMS[family]
        # A count that never varies (no service data) has nothing to teach.
        varies = np.ptp(failures, axis=0) > 0
        service_names = [n for n, keep in zip(failure_names, varies, strict=True) if keep]
        failures = failures[:, varies]
        value_terms = np.column_stack(
            [log_value(parts["purchase_value"]), log_value(parts["value"])]
        )
        positive = dict.fromkeys(columns, 1)
        churn_fit = _signed_glm(
            LogisticRegression(C=1e4, max_iter=1000), churn_terms, y_churn, positive
        )
        scale = max(float(y_value.mean()), 1e-9)
        target = y_value / scale / season
        value_fit = _signed_glm(
            PoissonRegressor(alpha=1e-8, max_iter=1000),
            value_terms,
            target,
            positive,
            sample_weight=np.full(len(y_value), season),
        )
        service: dict[str, float] = {}
        if service_names:
            # Second stage, the parts' weights kept: the failures' weights on top of the parts'
            # prediction (a Poisson offset, as y / m weighted by m). Fitting all at once moved
            # weight between the parts and cost rank order (docs/experiments.md, idea 15).
            offset = np.exp(value_fit[0] + value_terms @ np.array(value_fit[1]))
            failures_fit = _signed_glm(
                PoissonRegressor(alpha=1e-8, max_iter=1000),
                failures,
                target / offset,
                dict.fromkeys(range(len(service_names)), -1),
                sample_weight=season * offset,
            )
            service = {
                name: weight
                for name, weight in zip(service_names, failures_fit[1], strict=True)
                if weight != 0.0
            }
            if service:
                value_fit = (value_fit[0] + failures_fit[0], value_fit[1])
        churn = (churn_fit[0], churn_fit[1][0], churn_fit[1][1])
        value = (value_fit[0] + float(np.log(scale)), value_fit[1][0], value_fit[1][1])
        reference = (float(churn_terms[:, 0].mean()), float(value_terms[:, 0].mean()))
        return cls(churn, value, reference, purchase, service=service)

    def restated(
        self, purchase: PurchaseModel, history: PurchaseHistory, horizon_days: float
    ) -> Stack:
        """The same stack, fed by ``purchase``'s figures restated in the scale it was learnt on.

        The stack calibrates the figures of the purchase model it was learnt on (the twin's,
        fit a horizon before the data end; docs/experiments.md, entry 17). A purchase model
        refit on the whole history ranks the customers better (on a young file by far), but
        its figures have another level and spread. Here the refit's logit of P(no order) and
        log value are mapped onto the twin's by matching their mean and standard deviation
        over ``history`` (the customers at the data end; no labels are used), and the map
        is folded into the stack's intercepts and purchase weights: the level and spread the
        stack calibrates are kept, the order is the refit's (entry 34).

        Returns
        -------
        Stack
            With ``purchase`` as its purchase model; ``self`` when either figure does not
            vary over ``history`` (nothing to match).
        """
        churn_map = _matched(
            logit(purchase.p_no_order(history, horizon_days)),
            logit(self.purchase.p_no_order(history, horizon_days)),
        )
        value_map = _matched(
            log_value(purchase.expected_value(history, horizon_days)),
            log_value(self.purchase.expected_value(history, horizon_days)),
        )
        if churn_map is None or value_map is None:
            return self
        (c, d), (a, b) = churn_map, value_map
        b0, b_purchase, b_boosted = self.churn
        g0, g_purchase, g_boosted = self.value
        return replace(
            self,
            churn=(b0 + b_purchase * c, b_purchase * d, b_boosted),
            value=(g0 + g_purchase * a, g_purchase * b, g_boosted),
            reference=((self.reference[0] - c) / d, (self.reference[1] - a) / b),
            purchase=purchase,
        )

    def service_terms(self, failures: np.ndarray) -> np.ndarray:
        """Weight x count of each service term in log value (rows x ``len(service)``).

        ``failures`` holds the counts of :attr:`service`'s features in its order (unknown as 0).
        """
        weights = np.array(list(self.service.values()), dtype="float64")
        return failures * weights

    def combine(
        self, parts: dict[str, np.ndarray], failures: np.ndarray | None, season: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """The parts' figures and the failure counts into ``clv`` and ``p_churn``.

        Parameters
        ----------
        parts : dict of numpy.ndarray
            As for :meth:`fit`.
        failures : numpy.ndarray or None
            The counts :meth:`service_terms` takes; None when :attr:`service` is empty.
        season : float
            Seasonal index of the horizon the revenue is for; it multiplies ``clv``.

        Returns
        -------
        (numpy.ndarray, numpy.ndarray)
            ``clv`` (times :attr:`level`) and ``p_churn`` (its logit moved by
            :attr:`churn_shift`), float64.
        """
        b0, b_purchase, b_boosted = self.churn
        churn_logit = (
            b0
            + self.churn_shift
            + b_purchase * logit(parts["purchase_churn"])
            + b_boosted * logit(parts["churn"])
        )
        g0, g_purchase, g_boosted = self.value
        log_clv = (
            g0
            + g_purchase * log_value(parts["purchase_value"])
            + g_boosted * log_value(parts["value"])
        )
        if self.service:
            if failures is None:
                raise ValueError(
                    f"the stack weighs service failures {list(self.service)}; pass their counts"
                )
            log_clv = log_clv + self.service_terms(failures).sum(axis=1)
        p_churn = 1.0 / (1.0 + np.exp(-churn_logit))
        clv = self.level * season * np.exp(log_clv)
        return clv.astype("float64"), p_churn.astype("float64")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; every field is written (``profile`` as None when there is none)."""
        return {
            "churn": list(self.churn),
            "value": list(self.value),
            "reference": list(self.reference),
            "purchase": self.purchase.to_dict(),
            "profile": None if self.profile is None else self.profile.to_dict(),
            "service": dict(self.service),
            "level": self.level,
            "churn_shift": self.churn_shift,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Stack:
        """Rebuild from :meth:`to_dict` output."""
        profile = data["profile"]
        return cls(
            tuple(data["churn"]),
            tuple(data["value"]),
            tuple(data["reference"]),
            PurchaseModel.from_dict(data["purchase"]),
            None if profile is None else Profile.from_dict(profile),
            {str(k): float(v) for k, v in data["service"].items()},
            float(data["level"]),
            float(data["churn_shift"]),
        )


def _matched(x: np.ndarray, y: np.ndarray) -> tuple[float, float] | None:
    """``(a, b)`` with ``a + b x`` of the mean and standard deviation of ``y`` (b > 0).

    None when either does not vary. Matching the moments, not regressing ``y`` on ``x``: a
    regression would shrink the spread by the two's correlation.
    """
    sd_x, sd_y = float(np.std(x)), float(np.std(y))
    if not (sd_x > 1e-12 and sd_y > 1e-12):
        return None
    b = sd_y / sd_x
    return float(np.mean(y)) - b * float(np.mean(x)), b


def _signed_glm(
    glm: Any,
    terms: np.ndarray,
    target: np.ndarray,
    signs: dict[int, int],
    sample_weight: np.ndarray | None = None,
) -> tuple[float, list[float]]:
    """Fit ``glm`` on the columns ``signs`` names, dropping any whose weight has the wrong sign.

    ``signs`` maps a column of ``terms`` to the sign its weight must have (+1 or -1). Returns
    the intercept and one weight per column of ``terms`` (0 for a column dropped or not
    named). A part with a negative weight would turn its own ranking upside down, and a
    service failure with a positive one would say failures pay; with no column left the
    intercept alone remains (every customer the same).
    """
    columns = sorted(signs)
    while columns:
        glm.fit(terms[:, columns], target, sample_weight=sample_weight)
        coef = np.ravel(glm.coef_)
        right = np.array([signs[c] * w > 0 for c, w in zip(columns, coef, strict=True)])
        if right.all():
            weights = [0.0] * terms.shape[1]
            for column, weight in zip(columns, coef, strict=True):
                weights[column] = float(weight)
            return float(np.ravel(glm.intercept_)[0]), weights
        columns = [c for c, ok in zip(columns, right, strict=True) if ok]
    glm.fit(np.zeros((len(target), 1)), target, sample_weight=sample_weight)
    return float(np.ravel(glm.intercept_)[0]), [0.0] * terms.shape[1]
