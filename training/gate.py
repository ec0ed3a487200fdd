"""The promotion gate: a candidate must beat the champion and both baselines on the holdout."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

#: Metrics the gate compares (all higher-is-better), as logged: ``<target>_<metric>``.
GATE_METRICS: tuple[str, ...] = ("clv_spearman", "clv_gini", "churn_roc_auc")
#: Metrics shown next to them in the comparison table.
REPORT_METRICS: tuple[str, ...] = (
    *GATE_METRICS,
    "clv_rmse",
    "clv_mae",
    "clv_total_error_pct",
    "clv_top_decile_capture",
    "churn_pr_auc",
    "churn_brier",
    "churn_ece",
)


@dataclass
class GateDecision:
    """Whether to promote, and why, with the table that shows it."""

    promote: bool
    reasons: list[str] = field(default_factory=list)
    table: pd.DataFrame = field(default_factory=pd.DataFrame)


def decide(
    candidate: dict[str, float],
    baselines: dict[str, dict[str, float]],
    champion: dict[str, float] | None,
) -> GateDecision:
    """Compare a candidate with the baselines and the champion on the same holdout.

    Parameters
    ----------
    candidate : dict
        The candidate's holdout metrics (``clv_spearman``, ``clv_gini``, ``churn_roc_auc``...).
    baselines : dict
        Name -> holdout metrics of each baseline (a baseline may lack a churn metric).
    champion : dict or None
        The current champion's metrics on the same holdout, or None when there is no champion
        yet (then beating the baselines is enough).

    Returns
    -------
    GateDecision
        ``promote`` is True only when the candidate is strictly better than each baseline on
        every gate metric it reports, no worse than the champion on any, and strictly better
        than the champion on at least one. A full tie does not promote: a retrain on the same
        data keeps the champion it reproduces.
    """
    reasons: list[str] = []
    promote = True
    for metric in GATE_METRICS:
        mine = candidate.get(metric)
        if mine is None or pd.isna(mine):
            promote = False
            reasons.append(f"candidate has no {metric}")
            continue
        for name, theirs in baselines.items():
            value = theirs.get(metric)
            if value is not None and not pd.isna(value) and mine <= value:
                promote = False
                reasons.append(f"{metric}: candidate {mine:.4f} does not beat {name} {value:.4f}")
        if champion is not None and mine < champion.get(metric, float("-inf")):
            promote = False
            reasons.append(
                f"{metric}: candidate {mine:.4f} is worse than champion {champion[metric]:.4f}"
            )
    if champion is not None:
        better = [
            m
            for m in GATE_METRICS
            if pd.notna(candidate.get(m)) and candidate[m] > champion.get(m, float("-inf"))
        ]
        if not better:
            promote = False
            reasons.append("candidate ties the champion on every gate metric; champion stays")
    opponents = {**baselines, **({"champion": champion} if champion is not None else {})}
    if promote:
        beaten = ", ".join(opponents) or "nothing"
        reasons.append(f"beats {beaten} on {', '.join(GATE_METRICS)}")
    columns = {"candidate": candidate, **opponents}
    table = pd.DataFrame(
        {
            name: [metrics.get(m, float("nan")) for m in REPORT_METRICS]
            for name, metrics in columns.items()
        },
        index=pd.Index(REPORT_METRICS, name="metric"),
    )
    return GateDecision(promote, reasons, table)
