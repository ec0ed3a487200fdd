"""The promotion gate: a candidate may not lose to a baseline or the champion beyond noise.

The one home of which way each holdout metric is better (:data:`DIRECTIONS`) and of which
metrics the gate judges (:data:`GATE_METRICS`); the metrics themselves are computed by
:mod:`training.evaluate` (:data:`~training.evaluate.HOLDOUT_METRICS`), whose paired bootstrap
gives each gate metric its standard error. Model selection (:mod:`training.pipeline`) and the
backtest's verdicts (:mod:`training.backtest`) judge with the same rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

#: Which way a metric is better (:data:`DIRECTIONS`).
HIGHER, LOWER, NEAR_ZERO = "higher", "lower", "near zero"
#: Which way each holdout metric is better, by its logged name (``<target>_<metric>``); every
#: metric :func:`training.evaluate.holdout_metrics` returns has one.
DIRECTIONS: dict[str, str] = {
    "clv_gini": HIGHER,
    "clv_spearman": HIGHER,
    "clv_mae": LOWER,
    "clv_rmse": LOWER,
    "clv_total_error_pct": NEAR_ZERO,
    "clv_top_decile_capture": HIGHER,
    "churn_roc_auc": HIGHER,
    "churn_pr_auc": HIGHER,
    "churn_brier": LOWER,
    "churn_ece": LOWER,
}
#: Metrics the gate compares, as logged; each gets a paired bootstrap standard error
#: (:func:`training.evaluate.paired_standard_errors`), in this order.
GATE_METRICS: tuple[str, ...] = ("clv_spearman", "clv_gini", "clv_rmse", "churn_roc_auc")
#: Metrics where lower is better (from :data:`DIRECTIONS`).
LOWER_IS_BETTER: frozenset[str] = frozenset(m for m, way in DIRECTIONS.items() if way == LOWER)
#: Metrics shown next to them in the comparison table.
REPORT_METRICS: tuple[str, ...] = (
    *GATE_METRICS,
    "clv_mae",
    "clv_total_error_pct",
    "clv_top_decile_capture",
    "churn_pr_auc",
    "churn_brier",
    "churn_ece",
)

#: The classical models whose base total a candidate's is judged against, by their names in
#: the run's baselines (BG/NBD and Pareto/NBD, each with Gamma-Gamma).
CLASSICAL: tuple[str, ...] = ("bgnbd", "pareto_nbd")
#: A candidate's total may miss by at most this many percentage points more than the better
#: classical model's: budgets are built on the base's total, where BG/NBD is often close.
TOTAL_MARGIN_POINTS = 5.0
#: The holdout's total error in percent (signed), as logged.
TOTAL_METRIC = "clv_total_error_pct"

#: Outcomes of :func:`decide`.
PROMOTE, KEEP, NOT_COMPARABLE = "promoted", "not promoted", "not comparable"


def better(metric: str, a: float, b: float) -> bool:
    """True when ``a`` is strictly better than ``b`` on ``metric`` (NaN is never better)."""
    if pd.isna(a):
        return False
    if pd.isna(b):
        return True
    return gain(metric, a, b) > 0


def gain(metric: str, mine: float, theirs: float) -> float:
    """How much better ``mine`` is than ``theirs`` (negative: worse), in the metric's units.

    The metric's :data:`DIRECTIONS` entry says which way is better; a name without one is
    higher-is-better.
    """
    way = DIRECTIONS.get(metric, HIGHER)
    if way == LOWER:
        return theirs - mine
    if way == NEAR_ZERO:
        return abs(theirs) - abs(mine)
    return mine - theirs


@dataclass
class GateDecision:
    """Whether to promote, and why, with the table that shows it.

    ``outcome`` is :data:`PROMOTE`, :data:`KEEP`, or :data:`NOT_COMPARABLE` (the champion
    predicts another horizon, so the two cannot be judged on one holdout; it stays).
    """

    outcome: str
    reasons: list[str] = field(default_factory=list)
    table: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def promote(self) -> bool:
        """True when the candidate becomes champion."""
        return self.outcome == PROMOTE


def decide(
    candidate: dict[str, float],
    baselines: dict[str, dict[str, float]],
    champion: dict[str, float] | None,
    *,
    noise: dict[str, float] | None = None,
    comparable: bool = True,
    champion_outdated: bool = False,
) -> GateDecision:
    """Compare a candidate with the baselines and the champion on the same holdout rows.

    Parameters
    ----------
    candidate : dict
        The candidate's holdout metrics (:data:`GATE_METRICS` among them).
    baselines : dict
        Name -> holdout metrics of each baseline.
    champion : dict or None
        The champion's metrics on the same rows, or None when there is no champion yet.
    noise : dict, optional
        Metric -> bootstrap standard error of the candidate's metric on these rows
        (:func:`training.evaluate.paired_standard_errors`). A loss smaller than that is noise:
        another draw of customers could reverse it. Without it any loss counts.
    comparable : bool
        False when the champion cannot be judged on this holdout (another horizon).
    champion_outdated : bool
        True when the champion was saved without parts this code gives every answer (the
        customer profile, its range calibrated by risk group, the usual customer its reasons
        are read against): a candidate that ties it then replaces it.

    Returns
    -------
    GateDecision
        Promoted when, on every gate metric, the candidate loses to no baseline and to no
        champion by more than one standard error of its metric, its total error misses by at
        most :data:`TOTAL_MARGIN_POINTS` more than the better classical model's, and it is
        better than the champion on at least one metric. A full tie does not promote: a
        retrain on the same data keeps the champion it reproduces, unless that champion is
        outdated.
    """
    noise = noise or {}
    reasons: list[str] = []
    promote = True
    opponents = {**baselines, **({"champion": champion} if champion is not None else {})}
    for metric in GATE_METRICS:
        mine = candidate.get(metric)
        if mine is None or pd.isna(mine):
            promote = False
            reasons.append(f"candidate has no {metric}")
            continue
        for name, theirs in opponents.items():
            value = theirs.get(metric)
            if value is None or pd.isna(value):
                continue
            se = noise.get(metric, 0.0)
            margin = gain(metric, mine, value)
            if margin < -se:
                promote = False
                reasons.append(
                    f"{metric}: candidate {mine:.4f} loses to {name} {value:.4f} by more than "
                    f"the noise ({-margin:.4f} > {se:.4f})"
                )
    total_reason = _total_check(candidate, baselines)
    if total_reason is not None:
        promote = False
        reasons.append(total_reason)
    if champion is not None and promote:
        if not any(
            better(m, candidate.get(m, np.nan), champion.get(m, np.nan)) for m in GATE_METRICS
        ):
            if champion_outdated:
                reasons.append(
                    "candidate ties the champion on every gate metric; the champion was saved "
                    "by an older version of this code (without the customer profile, with "
                    "its range calibrated over the whole base only, or without the usual "
                    "customer its reasons are read against), so the candidate replaces it"
                )
            else:
                promote = False
                reasons.append("candidate ties the champion on every gate metric; champion stays")
    if promote:
        beaten = ", ".join(opponents) or "nothing"
        reasons.append(f"loses to none of {beaten} beyond noise on {', '.join(GATE_METRICS)}")
    outcome = PROMOTE if promote else KEEP
    if not comparable:
        outcome = NOT_COMPARABLE
        promote = False
        reasons.append(
            "the champion predicts another horizon and cannot be judged on this holdout; "
            "it stays (promote by hand with `make promote FORCE=1`)"
        )
    table = report_table({"candidate": candidate, **opponents})
    return GateDecision(outcome, reasons, table)


def _total_check(candidate: dict[str, float], baselines: dict[str, dict[str, float]]) -> str | None:
    """Why the candidate's base total is not good enough, or None when it is (or untested)."""
    mine = candidate.get(TOTAL_METRIC)
    classical = {
        name: baselines[name][TOTAL_METRIC]
        for name in CLASSICAL
        if name in baselines and pd.notna(baselines[name].get(TOTAL_METRIC, np.nan))
    }
    if mine is None or pd.isna(mine) or not classical:
        return None
    name, theirs = min(classical.items(), key=lambda item: abs(item[1]))
    if abs(mine) > abs(theirs) + TOTAL_MARGIN_POINTS:
        return (
            f"{TOTAL_METRIC}: the candidate's base total misses by {mine:+.1f}%, more than "
            f"{TOTAL_MARGIN_POINTS:g} points worse than {name}'s {theirs:+.1f}% (budgets are "
            "built on the total)"
        )
    return None


def report_table(columns: dict[str, dict[str, float]]) -> pd.DataFrame:
    """The :data:`REPORT_METRICS` of each named set of metrics, one column each (NaN if absent)."""
    return pd.DataFrame(
        {
            name: [metrics.get(m, float("nan")) for m in REPORT_METRICS]
            for name, metrics in columns.items()
        },
        index=pd.Index(REPORT_METRICS, name="metric"),
    )
