"""One self-contained HTML report on a batch run: model quality, the base, risks, budget.

``python -m serving.report --scores models/scores/scores.parquet`` (``make report``) writes
one HTML file (figures embedded as base64 PNG, no external CSS, scripts or fonts) with:

1. model quality on the holdout against every baseline: the metrics of the MLflow run that
   trained the model that scored, and the figures that run logged (deciles, cumulative gain,
   churn calibration);
2. the base: a histogram of predicted CLV and the value segments (customers, shares of
   customers and of predicted value, mean churn probability, value at risk);
3. the 20 valuable customers most at risk (highest ``clv * p_churn``) with their reasons;
4. drivers: how often each driver appears in the customers' churn reasons, and the run's
   feature-importance figures (XGBoost total gain);
5. service-quality impact (an optional summary from ``serving.insight.impact``);
6. budget guidance (:mod:`serving.insight.budget`);
7. how earlier runs did: the track record of the run archive against what their customers
   did since, with a predicted-vs-actual figure (:mod:`serving.insight.monitor`);
8. the readiness caveats the training run logged (``readiness.md``).

Every number about customers is computed here from the scores file itself, so the report and
the batch output agree. The HTML is also logged to the model's MLflow run under ``report/``.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import logging
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from matplotlib.figure import Figure

from features.database import is_database
from features.history import format_cutoff
from features.io import DataValidationError
from features.run_inputs import add_input_arguments, given_events, load_run_inputs
from serving.insight.budget import BudgetAssumptions, budget_table, cohort_budget
from serving.insight.figures import figure_png, money_ticks, panel
from serving.insight.impact import KIND_LABELS
from serving.insight.impact import STATEMENT as IMPACT_STATEMENT
from serving.insight.impact_truth import STATEMENT as TRUTH_STATEMENT
from serving.insight.impact_truth import TruthCheck, events_beside, synthetic_store, truth_path
from serving.insight.monitor import (
    judge_runs,
    readable_track_record,
    runs_of,
    track_record_figure,
)
from serving.insight.run_archive import DEFAULT_RUNS, archived_runs
from serving.run_files import DEFAULT_OUT, META_PREFIX, RunStamp
from serving.segments import RISK_TIERS, VALUE_TIERS
from training import tracking
from training.config import check_run_paths
from training.level import Level

logger = logging.getLogger(__name__)

DEFAULT_REPORT = DEFAULT_OUT.with_name("report.html")
#: How many at-risk customers the report lists.
TOP_AT_RISK = 20
#: Figures the training run logs (training.train._log_plots), in the order shown, with captions.
QUALITY_FIGURES: tuple[tuple[str, str], ...] = (
    ("plots/clv_deciles.png", "Predicted vs actual value by decile (holdout)"),
    ("plots/clv_cumulative_gain.png", "Cumulative gain (holdout)"),
    ("plots/churn_calibration.png", "Churn calibration (holdout)"),
)
IMPORTANCE_FIGURES: tuple[tuple[str, str], ...] = (
    ("plots/clv_feature_importance.png", "CLV model: feature importance (XGBoost total gain)"),
    ("plots/churn_feature_importance.png", "Churn model: feature importance (total gain)"),
)
#: Holdout metrics shown, in order (training.evaluate.holdout_metrics names).
METRICS: tuple[str, ...] = (
    "clv_gini",
    "clv_spearman",
    "clv_top_decile_capture",
    "clv_mae",
    "clv_rmse",
    "clv_total_error_pct",
    "churn_roc_auc",
    "churn_pr_auc",
    "churn_brier",
    "churn_ece",
)
#: Model names of the holdout metrics shown first; any other name the run logged follows.
MODEL_ORDER: tuple[str, ...] = ("model", "champion", "simple", "bgnbd", "pareto_nbd")
#: MLflow's switch for its download progress bars.
NO_IMPACT = "Service impact not measured (run make impact)."
NO_SERVICE_DATA = "Service impact cannot be measured without service data."
IMPACT_KINDS: tuple[str, ...] = ("late", "returns", "bad_tickets", "all")
#: The decile table the training run logs beside its figures (training.train._log_plots).
DECILE_TABLE = "tables/clv_deciles.csv"
#: The served level and its track record, as training logs it (training.level).
LEVEL_FILE = "level.json"
#: How the report names each candidate level.
LEVEL_LABELS: dict[str, str] = {
    "model": "the model",
    "bgnbd": "BG/NBD",
    "pareto_nbd": "Pareto/NBD",
    "classical_mean": "the mean of BG/NBD and Pareto/NBD",
    "blend": "a blend of the model and the classical models",
    "classical_season": "the mean of BG/NBD and Pareto/NBD in the horizon's season",
}

#: What a marketer reads instead of a metric's identifier, and which way is better.
METRIC_LABELS: dict[str, str] = {
    "clv_gini": "Ranking quality (Gini, higher is better)",
    "clv_spearman": "Rank correlation (Spearman, higher)",
    "clv_top_decile_capture": "Value in the top 10% by prediction (higher)",
    "clv_mae": "Mean absolute error per customer (lower)",
    "clv_rmse": "Root mean squared error per customer (lower)",
    "clv_total_error_pct": "Error on the base's total, % (near 0)",
    "churn_roc_auc": "Churn ranking (ROC AUC, higher)",
    "churn_pr_auc": "Churn precision-recall (PR AUC, higher)",
    "churn_brier": "Churn probability error (Brier, lower)",
    "churn_ece": "Churn calibration error (ECE, lower)",
}
#: The rows of the holdout tables: a name, and one line on what it is.
MODEL_LABELS: dict[str, tuple[str, str]] = {
    "model": ("This model", "the version that scored, as evaluated in its training run"),
    "champion": ("Previous champion", "the version serving before it, on the same customers"),
    "simple": ("Simple formula", "average order value x purchase rate x horizon"),
    "bgnbd": ("BG/NBD", "the classic purchase model (BG/NBD with Gamma-Gamma for spend)"),
    "pareto_nbd": ("Pareto/NBD", "the other classic purchase model (with Gamma-Gamma)"),
    "hybrid": ("Hybrid family", "purchase model and boosted trees, stacked (candidate family)"),
    "classical": ("Classical family", "the purchase model alone, calibrated (candidate family)"),
    "boosted": ("Boosted family", "the boosted trees alone (candidate family)"),
}
#: What each retention action means for the team; an action not listed is shown by its name.
ACTION_TEXT: dict[str, str] = {
    "win back": "valuable customers likely to leave: a personal win-back offer",
    "retain": "valuable customers starting to drift: a retention offer before they go",
    "reactivate (low cost)": "mid-value customers likely to leave: low-cost reminders",
    "let go": "low-value customers likely to leave: no spend",
    "nurture": "modest value at some risk, or new and at risk: regular, low-cost contact",
    "maintain (VIP care)": "the most valuable customers, at low risk: VIP care, no discounts",
    "maintain": "valuable customers at low risk: keep service good",
    "grow": "loyal customers with room to spend more: cross-sell and upsell",
    "onboard": "new customers worth a lot: bring them to a second order",
}
#: Actions that ask for no spend: never among the things to do first.
NO_SPEND_ACTIONS: frozenset[str] = frozenset({"let go"})
#: How many things to do the summary names.
TODO_COUNT = 3
#: Readable column headings of every table (a column not listed keeps its name).
COLUMN_LABELS: dict[str, str] = {
    "value_segment": "Value segment",
    "risk_segment": "Risk",
    "customer_id": "Customer",
    "customers": "Customers",
    "share_customers": "Share of customers",
    "predicted_value": "Predicted value",
    "share_value": "Share of value",
    "mean_clv": "Mean predicted value",
    "mean_p_churn": "Mean churn probability",
    "value_at_risk": "Value at risk",
    "clv": "Predicted value",
    "p_churn": "Churn probability",
    "historic_value": "Spent so far",
    "action": "Action",
    "meaning": "What it means",
    "reasons": "Why (strongest reasons first)",
    "driver": "Reason",
    "share": "Share of customers",
    "raises": "Raises churn for",
    "kind": "Service failure",
    "customers_affected": "Customers affected",
    "clv_difference": "Value they still cost (from now on)",
    "clv_difference_if_never": "Value if they had never happened",
    "mean_p_churn_difference": "Churn probability change (mean)",
    "affected": "Customers affected (estimate)",
    "affected_truth": "Customers affected (simulation)",
    "estimate": "Estimated value lost",
    "truth": "True value lost (simulated)",
    "error_pct": "Error, %",
    "max_acquisition_cost": "Max acquisition cost per new customer",
    "max_retention_spend": "Max retention spend per customer",
    "retention_budget": "Retention budget (group total)",
    "cohort": "First order (month)",
    "model": "Model or baseline",
}


# --- the numbers ---------------------------------------------------------------------------


def segment_table(scores: pd.DataFrame) -> pd.DataFrame:
    """Customers, shares and risk per value segment, most valuable first, plus an ``all`` row.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``value_segment``: ``customers``, ``share_customers``, ``predicted_value``
        (sum of ``clv``), ``share_value``, ``mean_clv``, ``mean_p_churn`` and
        ``value_at_risk`` (sum of ``clv * p_churn``). Segments without customers are left out.
    """
    frame = pd.DataFrame(
        {
            "value_segment": scores["value_segment"].astype("str"),
            "clv": scores["clv"].astype("float64"),
            "p_churn": scores["p_churn"].astype("float64"),
        }
    )
    frame["at_risk"] = frame["clv"] * frame["p_churn"]
    groups = frame.groupby("value_segment")
    table = pd.DataFrame(
        {
            "customers": groups.size(),
            "predicted_value": groups["clv"].sum(),
            "mean_clv": groups["clv"].mean(),
            "mean_p_churn": groups["p_churn"].mean(),
            "value_at_risk": groups["at_risk"].sum(),
        }
    )
    known = [name for name, _ in VALUE_TIERS if name in table.index]
    table = table.loc[known + sorted(set(table.index) - set(known))]
    table.loc["all"] = [
        len(frame),
        frame["clv"].sum(),
        frame["clv"].mean(),
        frame["p_churn"].mean(),
        frame["at_risk"].sum(),
    ]
    total_value = frame["clv"].sum()
    table.insert(1, "share_customers", table["customers"] / max(len(frame), 1))
    share = table["predicted_value"] / total_value if total_value > 0 else np.nan
    table.insert(3, "share_value", share)
    return table.astype({"customers": "int64"})


def top_at_risk(scores: pd.DataFrame, n: int = TOP_AT_RISK) -> pd.DataFrame:
    """The ``n`` at-risk customers with the most value at stake (``clv * p_churn``), highest first.

    At risk means outside the lowest risk segment (:data:`serving.segments.RISK_TIERS`):
    a valuable customer who is not at risk is not listed, however large ``clv * p_churn``.
    Ties are broken by ``customer_id``, so the list does not depend on row order.

    Returns
    -------
    pandas.DataFrame
        ``customer_id``, ``risk_segment``, ``p_churn``, ``clv``, ``value_at_risk``,
        ``historic_value`` (when the scores have it), ``value_segment``, ``action`` and
        ``reasons``.
    """
    at_risk = scores[scores["risk_segment"].astype("str") != RISK_TIERS[0][0]]
    columns = [
        "customer_id",
        "risk_segment",
        "p_churn",
        "clv",
        "historic_value",
        "value_segment",
        "action",
        "reasons",
    ]
    top = at_risk[[c for c in columns if c in at_risk.columns]].copy()
    top.insert(4, "value_at_risk", top["clv"].astype("float64") * top["p_churn"].astype("float64"))
    top = top.sort_values(["value_at_risk", "customer_id"], ascending=[False, True]).head(n)
    return top.reset_index(drop=True)


def action_table(
    scores: pd.DataFrame, assumptions: BudgetAssumptions | None = None
) -> pd.DataFrame:
    """Customers, value and value at risk per action, the most value at risk first.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``action``: ``meaning`` (:data:`ACTION_TEXT`), ``customers``,
        ``share_customers``, ``predicted_value`` (sum of ``clv``), ``value_at_risk`` (sum of
        ``clv * p_churn``), ``mean_p_churn``, ``max_retention_spend`` (mean per customer) and
        ``retention_budget`` (the group's total), as :func:`serving.insight.budget.budget_table`.
    """
    budget = budget_table(scores, "action", assumptions).drop(index="all")
    frame = pd.DataFrame(
        {
            "action": scores["action"].astype("str").to_numpy(),
            "clv": scores["clv"].to_numpy(dtype="float64"),
            "at_risk": scores["clv"].to_numpy(dtype="float64")
            * scores["p_churn"].to_numpy(dtype="float64"),
        }
    )
    groups = frame.groupby("action")
    table = pd.DataFrame(
        {
            "customers": budget["customers"],
            "share_customers": budget["customers"] / max(len(frame), 1),
            "predicted_value": groups["clv"].sum(),
            "value_at_risk": groups["at_risk"].sum(),
            "mean_p_churn": budget["mean_p_churn"],
            "max_retention_spend": budget["max_retention_spend"],
            "retention_budget": budget["retention_budget"],
        }
    )
    table.insert(0, "meaning", [ACTION_TEXT.get(str(a), "") for a in table.index])
    table = table.rename_axis("action").reset_index()
    table = table.sort_values(["value_at_risk", "action"], ascending=[False, True])
    return table.set_index("action").astype({"customers": "int64"})


@dataclass(frozen=True)
class Summary:
    """The first thing a marketer reads: what the base is worth and what to do first.

    Attributes
    ----------
    customers : int
        Customers scored.
    predicted_value : float
        Sum of ``clv``: what the base is predicted to spend over the horizon.
    historic_value : float or None
        Sum of ``historic_value`` (spent before the cutoff); None when the scores lack it.
    value_at_risk : float
        Sum of ``clv * p_churn``.
    at_risk_customers : int
        Customers outside the lowest risk segment.
    at_risk_value : float
        Their summed ``clv``.
    todo : list of str
        The :data:`TODO_COUNT` actions with the most value at risk (no-spend actions left
        out), one sentence each with their customers, stake and the spend that pays back.
    """

    customers: int
    predicted_value: float
    historic_value: float | None
    value_at_risk: float
    at_risk_customers: int
    at_risk_value: float
    todo: list[str]


def summarise(scores: pd.DataFrame, actions: pd.DataFrame) -> Summary:
    """The :class:`Summary` of a scores frame and its :func:`action_table`."""
    clv = scores["clv"].to_numpy(dtype="float64")
    p_churn = scores["p_churn"].to_numpy(dtype="float64")
    at_risk = (scores["risk_segment"].astype("str") != RISK_TIERS[0][0]).to_numpy()
    total_risk = float((clv * p_churn).sum())
    todo: list[str] = []
    for action, row in actions.iterrows():
        if len(todo) == TODO_COUNT:
            break
        if action in NO_SPEND_ACTIONS or row["customers"] == 0 or row["value_at_risk"] <= 0:
            continue
        share = row["value_at_risk"] / total_risk if total_risk > 0 else 0.0
        name = str(action)
        meaning = ACTION_TEXT.get(name)
        todo.append(
            f"{name[:1].upper()}{name[1:]}: {int(row['customers']):,} customers"
            + (f" ({meaning})" if meaning else "")
            + f". {row['value_at_risk']:,.0f} of predicted value at risk, {share:.0%} of all;"
            f" mean churn probability {row['mean_p_churn']:.2f}. Spend up to"
            f" {row['max_retention_spend']:,.2f} per customer"
            f" ({row['retention_budget']:,.0f} for the group) pays back."
        )
    return Summary(
        customers=len(scores),
        predicted_value=float(clv.sum()),
        historic_value=float(scores["historic_value"].sum())
        if "historic_value" in scores
        else None,
        value_at_risk=total_risk,
        at_risk_customers=int(at_risk.sum()),
        at_risk_value=float(clv[at_risk].sum()),
        todo=todo,
    )


#: A number (with its sign, decimals, thousands commas and a trailing %) inside a reason.
_NUMBER = re.compile(r"[-+]?\d[\d,]*(\.\d+)?%?")


def reason_drivers(reasons: pd.Series, top: int = 12) -> pd.DataFrame:
    """How often each driver appears in the per-customer reasons, most frequent first.

    A reason such as ``"↓ last order 4 days ago"`` is reduced to its driver (``"last order #
    days ago"``: arrow and numbers dropped), so the same driver with different values counts
    once per customer.

    Returns
    -------
    pandas.DataFrame
        ``driver``, ``customers`` (how many have it among their reasons), ``share`` (of all
        customers), ``raises`` (share of those mentions with ↑, i.e. the driver raises the
        prediction). Empty when no customer has reasons (scored with reasons "none").
    """
    texts = reasons.fillna("").astype("str")
    parts = texts[texts != ""].str.split("; ").explode()
    columns = ["driver", "customers", "share", "raises"]
    if parts.empty:
        return pd.DataFrame(columns=columns)
    parts = parts.str.strip()
    raises = parts.str.startswith("↑")
    driver = parts.str.lstrip("↑↓ ").str.replace(_NUMBER, "#", regex=True)
    mentions = pd.DataFrame({"row": parts.index, "driver": driver.to_numpy(), "up": raises})
    mentions = mentions.drop_duplicates(["row", "driver"])
    counts = mentions.groupby("driver").agg(customers=("row", "size"), raises=("up", "mean"))
    counts["share"] = counts["customers"] / max(len(texts), 1)
    counts = counts.reset_index().sort_values(["customers", "driver"], ascending=[False, True])
    return counts[columns].head(top).reset_index(drop=True)


def impact_summary(impact: pd.DataFrame) -> pd.DataFrame:
    """One row per service-quality kind: customers affected and the total CLV difference.

    Accepts either the per-customer output of ``serving.insight.impact`` (columns ``clv`` and, per
    kind k, ``clv_<k>`` and ``affected_<k>``), summed here as ``customers_affected`` =
    count of ``affected_<k>`` and ``clv_difference`` = sum of ``clv_<k> - clv`` over the
    affected customers (with ``clv_if_never_<k>``, ``clv_difference_if_never`` likewise: the
    reading that also brings back customers already lost; with ``p_churn_<k>``,
    ``mean_p_churn_difference``: the mean of ``p_churn_<k> - p_churn`` over them), or an already
    summarised table, returned as it is.
    """
    kinds = [k for k in IMPACT_KINDS if {f"clv_{k}", f"affected_{k}"} <= set(impact.columns)]
    if "clv" not in impact.columns or not kinds:
        return impact
    rows = {}
    for kind in kinds:
        affected = impact[f"affected_{kind}"].fillna(False).astype(bool)
        difference = impact[f"clv_{kind}"] - impact["clv"]
        rows[kind] = {
            "customers_affected": int(affected.sum()),
            "clv_difference": float(difference[affected].sum()),
        }
        if f"clv_if_never_{kind}" in impact.columns:
            never = impact[f"clv_if_never_{kind}"] - impact["clv"]
            rows[kind]["clv_difference_if_never"] = float(never[affected].sum())
        if f"p_churn_{kind}" in impact.columns and "p_churn" in impact.columns:
            change = impact[f"p_churn_{kind}"] - impact["p_churn"]
            rows[kind]["mean_p_churn_difference"] = (
                float(change[affected].mean()) if affected.any() else np.nan
            )
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("kind")


def holdout_table(metrics: Mapping[str, float]) -> pd.DataFrame:
    """The run's holdout metrics as a table: one row per model or baseline, one column each.

    Only ``holdout.<name>.<metric>`` keys with a metric of :data:`METRICS` are kept (standard
    errors and the profile are elsewhere).
    """
    rows: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        parts = key.split(".")
        # holdout.se*.<metric> are standard errors of differences, not a model's score.
        if (
            len(parts) == 3
            and parts[0] == "holdout"
            and parts[2] in METRICS
            and not parts[1].startswith("se")
        ):
            rows.setdefault(parts[1], {})[parts[2]] = value
    names = [n for n in MODEL_ORDER if n in rows] + sorted(set(rows) - set(MODEL_ORDER))
    table = pd.DataFrame.from_dict(rows, orient="index").reindex(index=names)
    return table.reindex(columns=[m for m in METRICS if m in table.columns]).rename_axis("model")


# --- does an input belong to the scored run? ------------------------------------------------

#: Fields of a run stamp that must agree between the scores and a file made for them (the run
#: id is not one: ``make impact`` is a run of its own).
SAME_RUN_FIELDS: tuple[str, ...] = ("cutoff", "model_name", "model_version", "store", "orders")
#: How far a CLV in an impact file may be from the scores' own: the same model on the same
#: features gives the same figures; this only absorbs a text (CSV) round trip.
CLV_RTOL = 1e-6


def _same_field(name: str, a: str, b: str) -> bool:
    """Whether two stamp values agree (cutoffs as points in time, files as resolved paths)."""
    if name == "cutoff":
        return pd.Timestamp(a) == pd.Timestamp(b)
    if name == "orders" and "://" not in a and "://" not in b:
        return Path(a).resolve() == Path(b).resolve()
    return a == b


def stamp_differences(scores: RunStamp, other: RunStamp) -> list[str]:
    """What differs between the scores' stamp and another file's, as ``field A vs B`` phrases.

    Only fields both stamps carry are compared (:data:`SAME_RUN_FIELDS`): an older file
    without a field is judged by what it does carry.
    """
    return [
        f"{name} {getattr(scores, name)!r} vs {getattr(other, name)!r}"
        for name in SAME_RUN_FIELDS
        if getattr(scores, name)
        and getattr(other, name)
        and not _same_field(name, getattr(scores, name), getattr(other, name))
    ]


def impact_differences(
    scores: pd.DataFrame,
    stamp: RunStamp,
    impact: pd.DataFrame,
    impact_stamp: RunStamp | None = None,
) -> list[str]:
    """Why a per-customer impact table is not the one of these scores; empty when it is.

    ``make impact`` scores the base itself with the same model, at the same cutoff, from the
    same files as ``make score``: its ``clv`` per customer must then be the scores' own. A
    table of another run (another shop, cutoff or model version) differs in its customers or
    in their CLV, whether or not it carries a stamp; when it does (``impact_stamp``, from its
    Parquet footer), that is compared too.

    Parameters
    ----------
    scores : pandas.DataFrame
        The batch scores (``customer_id``, ``clv``).
    stamp : RunStamp
        The scores' stamp.
    impact : pandas.DataFrame
        The per-customer output of ``serving.insight.impact`` (``customer_id``, ``clv``), or an
        already summarised table (then only its stamp can be compared).
    impact_stamp : RunStamp, optional
        The impact file's stamp, when it has one.

    Returns
    -------
    list of str
        One phrase per difference (``cutoff '2026-07-01' vs '2008-01-14'``,
        ``1,200 of the 50,000 scored customers are not in it``, ...).
    """
    found = stamp_differences(stamp, impact_stamp) if impact_stamp is not None else []
    if not {"customer_id", "clv"} <= set(impact.columns):
        return found
    ours = pd.Series(
        scores["clv"].to_numpy(dtype="float64"), index=scores["customer_id"].astype("str")
    )
    theirs = pd.Series(
        impact["clv"].to_numpy(dtype="float64"), index=impact["customer_id"].astype("str")
    )
    missing = ~ours.index.isin(theirs.index)
    extra = ~theirs.index.isin(ours.index)
    if missing.any():
        found.append(
            f"{int(missing.sum()):,} of the {len(ours):,} scored customers are not in it "
            f"(e.g. {ours.index[missing][0]!r})"
        )
    if extra.any():
        found.append(
            f"it has {int(extra.sum()):,} customers the scores do not have "
            f"(e.g. {theirs.index[extra][0]!r})"
        )
    common = ours.index[~missing]
    if len(common):
        a = ours.loc[common].to_numpy()
        b = theirs[~theirs.index.duplicated()].loc[common].to_numpy()
        off = ~np.isclose(a, b, rtol=CLV_RTOL, atol=CLV_RTOL, equal_nan=True)
        if off.any():
            first = int(np.flatnonzero(off)[0])
            found.append(
                f"clv differs for {int(off.sum()):,} of {len(common):,} customers in both "
                f"(e.g. {common[first]!r}: {a[first]:,.2f} in the scores, {b[first]:,.2f} in it)"
            )
    return found


def truth_differences(
    truth: TruthCheck,
    scores: pd.DataFrame,
    stamp: RunStamp,
    events: Path | None = None,
) -> list[str]:
    """Why a check against the planted truth is not about these scores; empty when it is.

    The check is made at the model's holdout cutoff, not the scoring cutoff, so the cutoffs
    are not compared. What must agree: the model version, the horizon, and the synthetic
    store, which must be the very files the scores were built from (``stamp.orders``; the
    service events are ``events`` or the store's own file beside the orders).
    """
    found = []
    if stamp.model_version:
        ours = f"models:/{stamp.model_name}/{stamp.model_version}"
        if truth.model_uri != ours:
            found.append(f"model {ours!r} vs {truth.model_uri!r}")
    horizon = scores["horizon_days"].iloc[0] if len(scores) and "horizon_days" in scores else None
    if horizon is not None and int(horizon) != truth.horizon_days:
        found.append(f"horizon {int(horizon)} days vs {truth.horizon_days} days")
    if not stamp.orders:
        found.append("the scores do not say which orders file they were built from")
        return found
    orders = Path(stamp.orders)
    store = synthetic_store(orders, events or events_beside(orders))
    if store is None:
        found.append(
            f"the scores' orders file {orders} is not an unchanged synthetic store, so no "
            "planted truth belongs to it"
        )
        return found
    for key in ("customers", "seed", "start", "end"):
        if key in truth.store and str(truth.store[key]) != str(getattr(store, key)):
            found.append(f"synthetic store {key} {getattr(store, key)!r} vs {truth.store[key]!r}")
    return found


def left_out(what: str, path: Path | str, scores_path: Path, differences: Sequence[str]) -> str:
    """The note a report shows for an input it left out, naming both files and what differs."""
    return (
        f"{what} {path} left out: it does not belong to the scored run {scores_path} "
        f"({'; '.join(differences)})."
    )


# --- figures -------------------------------------------------------------------------------


def clv_histogram(clv: pd.Series, bins: int = 50, horizon_days: str = "") -> Figure:
    """Histogram of predicted CLV; the count axis is logarithmic, the value is skewed."""
    fig, ax = panel()
    ax.hist(clv.astype("float64").dropna(), bins=bins, color="#3b6ea5")
    ax.set_yscale("log")
    money_ticks(ax.xaxis)
    ahead = f"the next {horizon_days} days" if horizon_days else "the horizon"
    ax.set_xlabel(f"predicted value per customer over {ahead}")
    ax.set_ylabel("customers (log scale)")
    ax.set_title("How predicted value is spread over the customers")
    return fig


def decile_figure(table: pd.DataFrame) -> Figure:
    """Mean predicted and mean actual value per decile of the model's prediction.

    Drawn from the decile table the training run logged (:data:`DECILE_TABLE`), on an axis of
    its own: the run's figure puts every baseline on one shared axis, where the simple
    formula's largest decile flattens the model's line.
    """
    fig, ax = panel()
    ax.plot(table["decile"], table["mean_predicted"], marker="o", label="predicted")
    ax.plot(table["decile"], table["mean_actual"], marker="s", label="actually spent")
    ax.set_xticks(table["decile"])
    money_ticks(ax.yaxis)
    ax.set_xlabel("customers in ten groups by predicted value (1 = highest)")
    ax.set_ylabel("mean value per customer")
    ax.set_title("This model: predicted vs actual value by decile (holdout)")
    ax.legend()
    return fig


#: The Markdown the readiness caveats use (training.readiness.Readiness.to_markdown).
_MD_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")
_MD_ITEM = re.compile(r"^\s*[-*]\s+(.*)$")
_MD_STRONG = re.compile(r"\*\*(.+?)\*\*")
_MD_CODE = re.compile(r"`([^`]+)`")


def _md_inline(text: str) -> str:
    """Escape a line, then render its bold and code spans."""
    escaped = html.escape(text, quote=False)
    escaped = _MD_CODE.sub(r"<code>\1</code>", escaped)
    return _MD_STRONG.sub(r"<strong>\1</strong>", escaped)


def markdown_html(text: str) -> str:
    """The few Markdown constructs of the readiness report as HTML, everything escaped.

    Headings become ``h4`` (the report's sections own the larger ones), ``- `` lines list
    items, blank lines end a paragraph, ``**bold**`` and ```code``` render. Anything else
    is shown as its text: no Markdown library is a dependency of the product for one section.
    """
    out: list[str] = []
    paragraph: list[str] = []
    items: list[str] = []

    def flush() -> None:
        if paragraph:
            out.append("<p>" + " ".join(paragraph) + "</p>")
            paragraph.clear()
        if items:
            out.append("<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>")
            items.clear()

    for line in text.splitlines():
        heading = _MD_HEADING.match(line)
        item = _MD_ITEM.match(line)
        if not line.strip():
            flush()
        elif heading:
            flush()
            out.append(f"<h4>{_md_inline(heading.group(2))}</h4>")
        elif item:
            if paragraph:
                flush()
            items.append(_md_inline(item.group(1)))
        elif items:
            # A wrapped list item continues on the next line.
            items[-1] += " " + _md_inline(line.strip())
        else:
            paragraph.append(_md_inline(line.strip()))
    flush()
    return "\n".join(out)


def png_data_uri(png: bytes) -> str:
    """A PNG as a ``data:`` URI, so the HTML needs no other file."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


# --- the model's run -----------------------------------------------------------------------


@dataclass(frozen=True)
class ModelRun:
    """What the report uses from the MLflow run that trained the model that scored.

    Attributes
    ----------
    model_uri : str
        The registered version (``models:/customer-value/3``).
    run_id : str
    metrics : dict
        The run's metrics.
    artifacts : dict
        Artifact path -> bytes for the figures (PNG), the decile table (CSV) and
        ``readiness.md`` the run logged.
    """

    model_uri: str
    run_id: str
    metrics: dict[str, float] = field(default_factory=dict)
    artifacts: dict[str, bytes] = field(default_factory=dict)

    @property
    def level(self) -> Level | None:
        """The served level and its track record (``level.json``); None for older runs."""
        if LEVEL_FILE not in self.artifacts:
            return None
        return Level.from_dict(json.loads(self.artifacts[LEVEL_FILE]))


def level_note(run: ModelRun | None) -> str:
    """One paragraph for the budget section: how far the base total has missed before.

    Budgets are built on the total; this says which level it is (the model's own, a
    classical model's, a blend) and the band its total missed by at the earlier origins
    training replayed, or that it has no such record.
    """
    if run is None:
        return ""
    level = run.level
    if level is None:
        return (
            "The model's training run has no track record of its base total (trained before "
            "it was measured): read totals and budgets as unvalidated."
        )
    band = level.band_pct()
    source = LEVEL_LABELS.get(level.source, level.source)
    if band is None:
        return (
            f"The base total is {source}'s and has no measured track record "
            f"({level.reason}): read totals and budgets as unvalidated."
        )
    return (
        f"The base total is {source}'s (x{level.factor:.2f} on the model's own stack). "
        f"Replayed at {len(level.origins)} earlier origin(s), that total missed what the "
        f"customers then spent by {band[0]:+.0f}% to {band[1]:+.0f}%: read every total and "
        "budget below within that band."
    )


def load_model_run(model_uri: str) -> ModelRun:
    """The run behind a ``models:/name/version`` or ``models:/name@alias`` URI, with artifacts.

    The tracking store must be configured (:func:`training.tracking.configure`).
    """
    version = tracking.resolve_version(model_uri)
    wanted = [path for path, _ in QUALITY_FIGURES + IMPORTANCE_FIGURES]
    wanted += [DECILE_TABLE, "readiness.md", LEVEL_FILE]
    artifacts = tracking.run_artifacts(version.run_id, wanted)
    return ModelRun(version.model_uri, version.run_id, tracking.version_metrics(version), artifacts)


def log_report(run_id: str, html_path: Path) -> None:
    """Log the HTML to the run that trained the model, under ``report/``."""
    tracking.log_run_artifact(run_id, html_path, "report")


# --- the report ----------------------------------------------------------------------------


@dataclass
class Report:
    """Every table and figure of the report, computed from one scores frame.

    Build it with :func:`build_report`, write it with :meth:`render`.
    """

    scores_path: str
    stamp: RunStamp
    customers: int
    horizon_days: str
    summary: Summary
    actions: pd.DataFrame
    segments: pd.DataFrame
    at_risk: pd.DataFrame
    drivers: pd.DataFrame
    budget_segments: pd.DataFrame
    budget_cohorts: pd.DataFrame | None
    assumptions: BudgetAssumptions
    impact: pd.DataFrame | None
    impact_note: str
    truth: TruthCheck | None
    run: ModelRun | None
    notes: dict[str, str]
    figures: dict[str, bytes]
    #: How earlier runs did (:func:`serving.insight.monitor.judge_runs`); None: not known.
    track_record: pd.DataFrame | None = None

    def render(self) -> str:
        """The report as one HTML document (figures inline, no external resources)."""
        return _TEMPLATE.render(r=self, **_template_values(self))


def build_report(
    scores: pd.DataFrame,
    *,
    scores_path: str = "",
    stamp: RunStamp | None = None,
    run: ModelRun | None = None,
    impact: pd.DataFrame | None = None,
    has_service_data: bool | None = None,
    orders: pd.DataFrame | None = None,
    assumptions: BudgetAssumptions | None = None,
    truth: TruthCheck | None = None,
    notes: Mapping[str, str] | None = None,
    track_record: pd.DataFrame | None = None,
) -> Report:
    """Compute everything the report shows.

    Parameters
    ----------
    scores : pandas.DataFrame
        A batch scores frame (:data:`serving.run_files.SCORE_COLUMNS`).
    scores_path : str, optional
        Where it was read from (shown in the report).
    stamp : RunStamp, optional
        The batch run's stamp (cutoff, model); empty when not known.
    run : ModelRun, optional
        The model's MLflow run: without it the quality and importance sections say so.
    impact : pandas.DataFrame, optional
        Service-quality impact, per customer or summarised (:func:`impact_summary`). It is
        shown as given: :func:`impact_differences` tells whether it belongs to the scores.
    has_service_data : bool, optional
        False when the data has no service events (then impact cannot be measured); None
        when not known.
    orders : pandas.DataFrame, optional
        ``customer_id`` and ``ordered_at``, for the budget by acquisition cohort.
    assumptions : BudgetAssumptions, optional
        Margin and save rate of the budget guidance.
    truth : TruthCheck, optional
        On a synthetic store, the impact estimate beside the planted truth
        (:mod:`serving.insight.impact_truth`), shown with the impact.
    notes : mapping, optional
        Inputs left out because they belong to another run (:func:`left_out`), by section:
        ``impact``, ``truth``, ``cohorts``. Each is shown in its section and at the top.
    track_record : pandas.DataFrame, optional
        How earlier runs did (:func:`serving.insight.monitor.judge_runs`), shown with a
        predicted-vs-actual figure; None or empty: the section says why there is none.
    """
    assumptions = assumptions or BudgetAssumptions()
    notes = dict(notes or {})
    if impact is not None:
        note = "Summed from the service-quality impact file."
        impact = impact_summary(impact)
    elif "impact" in notes:
        note = notes["impact"]
    elif has_service_data is False:
        note = NO_SERVICE_DATA
    else:
        note = NO_IMPACT
    horizon = scores["horizon_days"].iloc[0] if len(scores) and "horizon_days" in scores else ""
    actions = action_table(scores, assumptions)
    figures = {"clv_histogram": figure_png(clv_histogram(scores["clv"], horizon_days=str(horizon)))}
    if run is not None and DECILE_TABLE in run.artifacts:
        deciles = pd.read_csv(io.BytesIO(run.artifacts[DECILE_TABLE]))
        if {"decile", "mean_predicted", "mean_actual"} <= set(deciles.columns):
            figures["clv_deciles"] = figure_png(decile_figure(deciles))
    if track_record is not None and not track_record.empty:
        figures["track_record"] = figure_png(track_record_figure(track_record))
    return Report(
        scores_path=scores_path,
        stamp=stamp or RunStamp("", "", "", ""),
        customers=len(scores),
        horizon_days=str(horizon),
        summary=summarise(scores, actions),
        actions=actions,
        segments=segment_table(scores),
        at_risk=top_at_risk(scores),
        drivers=reason_drivers(scores["reasons"]),
        budget_segments=budget_table(scores, "value_segment", assumptions),
        budget_cohorts=cohort_budget(scores, orders, assumptions),
        assumptions=assumptions,
        impact=impact,
        impact_note=note,
        truth=truth,
        run=run,
        notes=notes,
        figures=figures,
        track_record=track_record,
    )


def _fmt(
    frame: pd.DataFrame,
    formats: Mapping[str, str],
    index: bool = True,
    labels: Mapping[str, str] | None = None,
) -> str:
    """A DataFrame as an HTML table, its columns formatted and headed by readable labels.

    Columns are formatted with ``str.format`` specs (``formats``) and headed by
    :data:`COLUMN_LABELS` then ``labels``, which also name the rows; everything is escaped.
    """
    names = {**COLUMN_LABELS, **(labels or {})}
    shown = frame.copy()
    for column, spec in formats.items():
        if column in shown.columns:
            shown[column] = [
                "" if pd.isna(v) else format(v, spec) for v in shown[column].to_numpy()
            ]
    if index:
        shown.index = [names.get(str(i), str(i)) for i in shown.index]
        # The index's heading is a column's (a row label may share its name: "model").
        heading = str(frame.index.name)
        shown.index.name = COLUMN_LABELS.get(heading, names.get(heading, frame.index.name))
        # The index as the first column: one header row instead of pandas' two.
        shown = shown.reset_index()
    shown.columns = [names.get(str(c), str(c)) for c in shown.columns]
    return shown.to_html(index=False, escape=True, border=0, classes="t", na_rep="")


_MONEY = ",.0f"
_SEGMENT_FORMATS = {
    "customers": ",d",
    "share_customers": ".1%",
    "predicted_value": _MONEY,
    "share_value": ".1%",
    "mean_clv": ",.1f",
    "mean_p_churn": ".2f",
    "value_at_risk": _MONEY,
}
_BUDGET_FORMATS = {
    "customers": ",d",
    "mean_clv": ",.1f",
    "mean_p_churn": ".2f",
    "max_acquisition_cost": ",.2f",
    "max_retention_spend": ",.2f",
    "retention_budget": _MONEY,
}
_ACTION_FORMATS = {**_SEGMENT_FORMATS, **_BUDGET_FORMATS}
#: Value segments as a marketer reads them (:data:`serving.segments.VALUE_TIERS`).
SEGMENT_LABELS: dict[str, str] = {
    "top": "top (first 50% of value)",
    "high": "high (next 30%)",
    "medium": "medium (next 15%)",
    "low": "low (last 5%)",
    "all": "all customers",
}
#: Cohort rows shown: the most recent ones (older cohorts say little about new customers).
COHORT_ROWS = 24


#: Column names that texts of other modules quote, as the report's tables call them.
_QUOTED_NAMES: tuple[tuple[str, str], ...] = (
    ("clv_gain_if_never", '"value if they had never happened"'),
    ("clv_gain", '"value they still cost"'),
)


def readable(text: str) -> str:
    """A statement of another module with the column names it quotes in the report's words."""
    for name, label in _QUOTED_NAMES:
        text = text.replace(name, label)
    return text


def display_cutoff(cutoff: str) -> str:
    """A stamp's cutoff as a reader wants it: the date alone when it is midnight."""
    if not cutoff:
        return ""
    try:
        return format_cutoff(pd.Timestamp(cutoff))
    except ValueError:
        return cutoff


def _template_values(report: Report) -> dict[str, object]:
    """The pre-rendered tables and figure URIs the template places."""
    run = report.run
    quality = []
    importance = []
    metrics_html = ""
    models: list[tuple[str, str]] = []
    readiness = None
    if run is not None:
        # The model's own decile panel replaces the run's shared-axis one when it can be drawn.
        own_deciles = "clv_deciles" in report.figures
        quality = [
            (png_data_uri(run.artifacts[p]), c)
            for p, c in QUALITY_FIGURES
            if p in run.artifacts and not (own_deciles and p == QUALITY_FIGURES[0][0])
        ]
        if own_deciles:
            caption = "This model: predicted vs actual value by decile (holdout), own scale"
            quality.insert(0, (png_data_uri(report.figures["clv_deciles"]), caption))
        importance = [
            (png_data_uri(run.artifacts[p]), c) for p, c in IMPORTANCE_FIGURES if p in run.artifacts
        ]
        table = holdout_table(run.metrics)
        if not table.empty:
            rows = {name: label for name, (label, _) in MODEL_LABELS.items()}
            models = [MODEL_LABELS.get(str(n), (str(n), "")) for n in table.index]
            # Two narrower tables, CLV then churn, fit a laptop screen without scrolling.
            metrics_html = "".join(
                _fmt(part, dict.fromkeys(part.columns, ".3f"), labels={**METRIC_LABELS, **rows})
                for part in (
                    table[[c for c in table.columns if c.startswith(prefix)]]
                    for prefix in ("clv_", "churn_")
                )
                if not part.empty
            )
        if "readiness.md" in run.artifacts:
            readiness = markdown_html(run.artifacts["readiness.md"].decode("utf-8", "replace"))
    cohorts_html = ""
    cohorts_note = ""
    if report.budget_cohorts is not None:
        cohorts = report.budget_cohorts
        body = cohorts.drop(index="all")
        if len(body) > COHORT_ROWS:
            cohorts_note = f"The {COHORT_ROWS} most recent of {len(body)} cohorts, and all."
            cohorts = pd.concat([body.tail(COHORT_ROWS), cohorts.loc[["all"]]])
        cohorts_html = _fmt(cohorts, _BUDGET_FORMATS, labels={"all": "all customers"})
    drivers = report.drivers
    actions = report.actions[
        [
            "meaning",
            "customers",
            "predicted_value",
            "value_at_risk",
            "mean_p_churn",
            "max_retention_spend",
        ]
    ]
    return {
        "cutoff": display_cutoff(report.stamp.cutoff),
        "histogram": png_data_uri(report.figures["clv_histogram"]),
        "actions_html": _fmt(actions, _ACTION_FORMATS),
        "segments_html": _fmt(report.segments, _SEGMENT_FORMATS, labels=SEGMENT_LABELS),
        "at_risk_html": _fmt(
            report.at_risk,
            {"clv": ",.1f", "p_churn": ".2f", "value_at_risk": ",.1f", "historic_value": ",.1f"},
            index=False,
        ),
        "drivers_html": ""
        if drivers.empty
        else _fmt(drivers, {"customers": ",d", "share": ".1%", "raises": ".0%"}, index=False),
        "impact_statement": readable(IMPACT_STATEMENT),
        "truth_statement": TRUTH_STATEMENT,
        "truth_html": ""
        if report.truth is None
        else _fmt(
            report.truth.table,
            {
                "affected": ",d",
                "affected_truth": ",d",
                "estimate": _MONEY,
                "truth": _MONEY,
                "error_pct": "+.1f",
            },
            labels=KIND_LABELS,
        ),
        "impact_html": ""
        if report.impact is None
        else _fmt(
            report.impact,
            {
                "customers_affected": ",d",
                "clv_difference": _MONEY,
                "clv_difference_if_never": _MONEY,
                "mean_p_churn_difference": "+.3f",
            },
            labels=KIND_LABELS,
        ),
        "budget_segments_html": _fmt(
            report.budget_segments, _BUDGET_FORMATS, labels=SEGMENT_LABELS
        ),
        "cohorts_html": cohorts_html,
        "cohorts_note": cohorts_note,
        "quality": quality,
        "importance": importance,
        "metrics_html": metrics_html,
        "models": models,
        "readiness": readiness,
        "level_note": level_note(run),
        "track_html": ""
        if report.track_record is None or report.track_record.empty
        else _fmt(readable_track_record(report.track_record), {}, index=False),
        "track_figure": png_data_uri(report.figures["track_record"])
        if "track_record" in report.figures
        else "",
    }


# Tables arrive pre-rendered by pandas (escaped there), hence |safe; everything else is
# escaped by the template's autoescape.
_TEMPLATE = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined).from_string(
    """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Customer value report{% if cutoff %} {{ cutoff }}{% endif %}</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2330;
background:#fff;line-height:1.45}
main{max-width:1100px;margin:0 auto;padding:.6rem 1.5rem 3rem}
h1{font-size:1.5rem;margin:.4rem 0 .1rem}h2{font-size:1.2rem;border-bottom:2px solid #dde3ec;
padding-bottom:.2rem;margin-top:2rem}h3{font-size:1.02rem}h4{font-size:.95rem;margin:.8rem 0 .3rem}
.meta,.note{color:#5a6477;font-size:.9rem}.meta{margin:.1rem 0 .6rem}
.wrap{overflow-x:auto}
table.t{border-collapse:collapse;font-size:.86rem;margin:.5rem 0}
table.t th,table.t td{padding:.22rem .55rem;border-bottom:1px solid #e6eaf0;text-align:right;
vertical-align:top}
table.t th{background:#f3f6fa}table.t td:first-child,table.t th:first-child{text-align:left}
.reasons td:last-child{text-align:left;min-width:22rem;font-size:.8rem}
.actions td:nth-child(2),.actions th:nth-child(2){text-align:left}
.actions td:nth-child(2){color:#5a6477;font-size:.82rem}
figure{margin:1rem 0}figure img{max-width:100%;height:auto;border:1px solid #e6eaf0}
figcaption{font-size:.88rem;color:#5a6477}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(320px,1fr));gap:1rem}
.kpis{display:grid;grid-template-columns:repeat(4,1fr);gap:.7rem;margin:.4rem 0 .8rem}
.kpi{background:#f3f6fa;border-radius:6px;padding:.5rem .8rem}
.kpi b{display:block;font-size:1.45rem;color:#1d3f72}.kpi span{font-size:.84rem;color:#5a6477}
ol.todo{margin:.2rem 0 .6rem;padding-left:1.3rem}ol.todo li{margin:.2rem 0}
.warn{background:#fff4e5;border-left:4px solid #e8a33d;padding:.3rem .9rem;margin:.6rem 0}
.caveats{background:#f7f8fa;padding:.2rem 1rem;font-size:.9rem}
dl.models{font-size:.86rem}dl.models dt{font-weight:600;float:left;clear:left;width:10rem}
dl.models dd{margin:0 0 .15rem 10.5rem;color:#5a6477}
nav{font-size:.86rem}nav a{margin-right:.8rem}
</style></head><body><main>
<h1>Customer value report</h1>
<p class="meta">{{ "{:,}".format(r.customers) }} customers scored
{%- if cutoff %} on {{ cutoff }}{% endif %}
{%- if r.horizon_days %}, looking {{ r.horizon_days }} days ahead{% endif %}
{%- if r.stamp.model_version %}; model {{ r.stamp.model_name }} version
{{ r.stamp.model_version }}{% endif %}
{%- if r.scores_path %}; scores {{ r.scores_path }}{% endif %}.</p>
{% if r.notes %}<div class="warn">{% for note in r.notes.values() %}<p>{{ note }}</p>
{% endfor %}</div>{% endif %}

<h2 id="summary">At a glance</h2>
{% set s = r.summary %}
<div class="kpis">
<div class="kpi"><b>{{ "{:,.0f}".format(s.predicted_value) }}</b><span>predicted revenue from
these customers over the next {{ r.horizon_days or "horizon's" }} days</span></div>
<div class="kpi"><b>{{ "{:,.0f}".format(s.value_at_risk) }}</b><span>value at risk: predicted
value &times; churn probability ({{ "{:.0%}".format(s.value_at_risk / s.predicted_value
if s.predicted_value > 0 else 0) }} of it)</span></div>
<div class="kpi"><b>{{ "{:,}".format(s.at_risk_customers) }}</b><span>customers at risk
(medium or high churn risk), {{ "{:.0%}".format(s.at_risk_customers / s.customers
if s.customers else 0) }} of the base</span></div>
<div class="kpi">{% if s.historic_value is not none %}<b>{{ "{:,.0f}".format(s.historic_value)
}}</b><span>spent by these customers so far</span>{% else %}<b>{{
"{:,.2f}".format(s.predicted_value / s.customers if s.customers else 0) }}</b><span>predicted
value per customer</span>{% endif %}</div>
</div>
<h3>What to do first</h3>
{% if s.todo %}<ol class="todo">{% for line in s.todo %}<li>{{ line }}</li>{% endfor %}</ol>
<p class="note">The actions with the most value at risk. Spend ceilings assume a gross margin of
{{ r.assumptions.margin }} and that an action saves {{ "{:.0%}".format(r.assumptions.save_rate) }}
of the value at risk (<a href="#budget">budget guidance</a>).</p>
{% else %}<p class="note">No action has value at risk.</p>{% endif %}
<h3>Customers by action</h3>
<div class="wrap actions">{{ actions_html|safe }}</div>
<nav><a href="#at-risk">At-risk customers</a><a href="#base">The base</a>
<a href="#budget">Budget</a><a href="#impact">Service impact</a><a href="#drivers">Drivers</a>
<a href="#quality">Model quality</a><a href="#track-record">How last runs did</a>
<a href="#readiness">Data caveats</a></nav>

<h2 id="at-risk">1. The {{ r.at_risk|length }} at-risk customers with the most value at
stake</h2>
<p class="note">Customers at medium or high churn risk, the highest value at risk (predicted
value &times; churn probability) first, with the reasons behind their churn probability
(&uarr; raises it, &darr; lowers it).</p>
<div class="wrap reasons">{{ at_risk_html|safe }}</div>

<h2 id="base">2. The base</h2>
<p class="note">Value segments split the base by share of predicted value: the customers
holding the first 50% of it are "top", the next 30% "high", 15% "medium", the last 5% "low".
Value at risk is predicted value &times; churn probability.</p>
<div class="wrap">{{ segments_html|safe }}</div>
<figure><img src="{{ histogram }}" alt="Distribution of predicted value">
<figcaption>Predicted value over the next {{ r.horizon_days }} days, all scored customers
(count on a log scale).</figcaption></figure>

<h2 id="budget">3. Budget guidance</h2>
<p>Gross margin {{ r.assumptions.margin }} (<code>--margin</code>), save rate
{{ r.assumptions.save_rate }} (<code>--save-rate</code>): stated assumptions, not measured.</p>
<ul>{% for line in r.assumptions.formulas() %}<li>{{ line }}</li>{% endfor %}</ul>
<p class="note">Per customer: the mean ceiling for one customer of the group; the retention
budget is the group's total ceiling.</p>
{% if level_note %}<p class="note"><b>How far the total can be trusted.</b>
{{ level_note }}</p>{% endif %}
<h3>By value segment</h3>
<div class="wrap">{{ budget_segments_html|safe }}</div>
<h3>By acquisition cohort (month of first order)</h3>
{% if cohorts_html %}{% if cohorts_note %}<p class="note">{{ cohorts_note }}</p>{% endif %}
<div class="wrap">{{ cohorts_html|safe }}</div>
{% elif r.notes.get("cohorts") %}<p class="note">{{ r.notes["cohorts"] }}</p>
{% else %}<p class="note">First orders unknown: give <code>--orders</code>.</p>{% endif %}

<h2 id="impact">4. Service-quality impact</h2>
{% if impact_html %}<p class="note">{{ r.impact_note }} Per kind of failure, over the customers
who had one: the predicted value the failures still cost from now on (customers already lost
staying lost), the value if they had never happened (those customers brought back too), and
the mean change of the churn probability.</p>
<div class="wrap">{{ impact_html|safe }}</div>
<p class="note">{{ impact_statement }}</p>
{% if truth_html %}<h3>Estimate and truth, side by side (synthetic store)</h3>
<p class="note">{{ truth_statement }} Cutoff {{ r.truth.cutoff }}, horizon
{{ r.truth.horizon_days }} days, {{ r.truth.model_uri }}; store of
{{ "{:,}".format(r.truth.store.customers) }} customers (seed {{ r.truth.store.seed }}).
Error = 100 &times; (estimate / truth &minus; 1). The estimate ranks the three kinds
{% if r.truth.ranks_agree %}in the true order{% else %}<strong>not</strong> in the true
order{% endif %}.</p>
<div class="wrap">{{ truth_html|safe }}</div>{% endif %}
{% if r.notes.get("truth") %}<p class="note">{{ r.notes["truth"] }}</p>{% endif %}
{% else %}<p class="note">{{ r.impact_note }}</p>{% endif %}

<h2 id="drivers">5. Drivers</h2>
{% if drivers_html %}
<p class="note">How often each reason is among a customer's churn reasons (# stands for the
customer's own figure), and for what share of those customers it raises the churn
probability.</p>
<div class="wrap">{{ drivers_html|safe }}</div>
{% else %}<p class="note">The scores carry no reasons (scored with reasons "none").</p>
{% endif %}
{% if importance %}<p class="note">Global importance as the training run logged it (XGBoost
total gain per feature).</p>
<div class="grid">{% for uri, caption in importance %}
<figure><img src="{{ uri }}" alt="{{ caption }}"><figcaption>{{ caption }}</figcaption></figure>
{% endfor %}</div>{% endif %}

<h2 id="quality">6. Model quality on the holdout</h2>
{% if r.run is none %}
<p class="note">No MLflow run found for the model that scored: quality metrics and figures
are not shown.</p>
{% else %}
<p class="note">From the training run {{ r.run.run_id }} of {{ r.run.model_uri }}: the model
and every baseline scored on the same holdout customers, whose real spend is known.</p>
{% if models %}<dl class="models">{% for label, line in models %}<dt>{{ label }}</dt>
<dd>{{ line }}</dd>{% endfor %}</dl>{% endif %}
{% if metrics_html %}<div class="wrap">{{ metrics_html|safe }}</div>
{% else %}<p class="note">The run logged no holdout metrics.</p>{% endif %}
{% for uri, caption in quality[:1] %}
<figure><img src="{{ uri }}" alt="{{ caption }}"><figcaption>{{ caption }}</figcaption></figure>
{% endfor %}<div class="grid">{% for uri, caption in quality[1:] %}
<figure><img src="{{ uri }}" alt="{{ caption }}"><figcaption>{{ caption }}</figcaption></figure>
{% endfor %}</div>
{% if not quality %}<p class="note">The run logged no quality figures.</p>{% endif %}
{% endif %}

<h2 id="track-record">7. How last runs did</h2>
{% if track_html %}
<p class="note">Each earlier batch run, kept in the run archive, against what its customers
really did since, up to the last day of the orders. While a horizon is still running, the
prediction shown is the share of it expected by now (pro rata by the store's seasonal
index). Ranking (Gini), churn ranking (AUC) and calibration error (ECE) are given once the
horizon is complete. <code>make monitor</code> prints the same table with the drift since
the last run, and recommends retraining when a complete run's revenue missed by too much.</p>
<div class="wrap">{{ track_html|safe }}</div>
<figure><img src="{{ track_figure }}" alt="Predicted vs actual revenue of earlier runs">
<figcaption>Predicted vs actual revenue of each earlier run's customers so far; hollow
points: horizon still running.</figcaption></figure>
{% else %}<p class="note">No earlier run to judge yet: runs scored to the default place are
kept in the run archive (<code>make score</code>, <code>make nightly</code>), and a run is
judged here once its horizon has started.</p>{% endif %}

<h2 id="readiness">8. Data caveats</h2>
{% if readiness %}<div class="caveats">{{ readiness|safe }}</div>
{% else %}<p class="note">The training run logged no readiness report.</p>{% endif %}
</main></body></html>
"""
)


# --- command line --------------------------------------------------------------------------


def read_scores(path: Path) -> tuple[pd.DataFrame, RunStamp]:
    """A scores file (Parquet with its stamp, or CSV without one)."""
    if path.suffix.lower() == ".csv":
        frame = pd.read_csv(path, dtype={"customer_id": "str", "model_version": "str"})
        return frame, stamp_of_columns(frame, path)
    stamp = RunStamp.from_metadata(pq.read_schema(path).metadata)
    return pd.read_parquet(path), stamp


def stamp_of_columns(scores: pd.DataFrame, path: Path) -> RunStamp:
    """What a scores file without a footer (CSV) says of its run: cutoff and model, by column.

    Raises
    ------
    ValueError
        When a column holds more than one value: rows of several runs in one file.
    """
    values = {}
    for name in ("cutoff", "model_name", "model_version"):
        column = scores[name].dropna().astype("str") if name in scores else pd.Series(dtype="str")
        if column.nunique() > 1:
            raise ValueError(
                f"{path}: column '{name}' has {column.nunique()} different values "
                f"({', '.join(sorted(column.unique())[:3])}); expected the rows of one batch run"
            )
        values[name] = column.iloc[0] if len(column) else ""
    return RunStamp("", values["cutoff"], values["model_name"], values["model_version"])


def read_impact(path: Path) -> tuple[pd.DataFrame, RunStamp | None]:
    """An impact file of ``serving.impact`` and its stamp (None when its footer has none)."""
    if path.suffix.lower() == ".csv":
        return pd.read_csv(path, dtype={"customer_id": "str"}), None
    metadata = pq.read_schema(path).metadata or {}
    stamped = any(key.startswith(META_PREFIX.encode()) for key in metadata)
    return pd.read_parquet(path), RunStamp.from_metadata(metadata) if stamped else None


def _stamped_input(location: str) -> Path | str:
    """The orders a run's stamp names: a file's absolute path, or a database location."""
    return location if is_database(location) else Path(location)


def _has_rows(path: Path) -> bool:
    """Whether a Parquet or CSV file has at least one row."""
    if path.suffix.lower() == ".csv":
        return len(pd.read_csv(path, nrows=1)) > 0
    return pq.ParquetFile(path).metadata.num_rows > 0


def main(argv: Sequence[str] | None = None) -> int:
    """Write the report (``make report``); log it to the model's MLflow run."""
    parser = argparse.ArgumentParser(prog="python -m serving.report", description=__doc__)
    parser.add_argument("--scores", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--impact", type=Path, help="serving.impact output (.parquet or .csv)")
    parser.add_argument(
        "--impact-truth",
        type=Path,
        help="the check against the planted truth that serving.impact wrote on a synthetic "
        "store (default: the <impact>_truth.json beside --impact, when there is one)",
    )
    add_input_arguments(
        parser,
        orders_help="orders file for the cohorts (default: the scores' stamp)",
        events_help="service events file; without rows, impact cannot be measured",
        strict=False,
    )
    parser.add_argument(
        "--no-service-data",
        action="store_true",
        help="the data has no service events: impact cannot be measured",
    )
    parser.add_argument("--margin", type=float, default=BudgetAssumptions.margin)
    parser.add_argument("--save-rate", type=float, default=BudgetAssumptions.save_rate)
    parser.add_argument("--out", type=Path, default=DEFAULT_REPORT)
    parser.add_argument(
        "--model-uri", help="default: the version that wrote the scores (their stamp)"
    )
    parser.add_argument("--no-log", action="store_true", help="do not log the HTML to MLflow")
    parser.add_argument(
        "--runs",
        type=Path,
        default=DEFAULT_RUNS,
        help="the run archive, for how earlier runs did (default: models/runs)",
    )
    args = parser.parse_args(argv)
    if given_events(args.events) is None and args.events is not None:
        args.no_service_data = True  # --events none: the data has no service events
    args.events = given_events(args.events)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        check_run_paths(
            {
                "--scores": args.scores,
                "--impact": args.impact,
                "--impact-truth": args.impact_truth,
                "--events": args.events,
                "--orders": args.orders,
            },
            {"--out": args.out},
        )
    except ValueError as err:
        parser.error(str(err))

    scores, stamp = read_scores(args.scores)
    assumptions = BudgetAssumptions(args.margin, args.save_rate)
    orders_path = args.orders or (_stamped_input(stamp.orders) if stamp.orders else None)
    orders = None
    if orders_path is not None and (is_database(orders_path) or Path(orders_path).exists()):
        try:
            # Through the loader, like every input: the mapping applies, bad rows are counted.
            orders = load_run_inputs(orders_path, None, columns=args.columns).orders.frame
        except (DataValidationError, FileNotFoundError) as err:
            # The cohorts are one section; the rest of the report does not need the orders.
            logger.warning("no cohorts in the report: %s", err)
    notes: dict[str, str] = {}
    if orders_path is not None and stamp.orders:
        differ = stamp_differences(stamp, RunStamp("", "", "", "", orders=str(orders_path)))
        if differ:
            notes["cohorts"] = left_out("orders file", orders_path, args.scores, differ)
            orders = None
    impact = None
    if args.impact is not None:
        impact, impact_stamp = read_impact(args.impact)
        differ = impact_differences(scores, stamp, impact, impact_stamp)
        if differ:
            # Never another run's figures: the section says what was left out and why.
            notes["impact"] = left_out("impact file", args.impact, args.scores, differ) + (
                " Run make impact with the same ORDERS=, EVENTS=, COLUMNS= and CUTOFF= as "
                "make score to measure this run."
            )
            impact = None
    truth_file = args.impact_truth
    if truth_file is None and args.impact is not None:
        truth_file = truth_path(args.impact)
        truth_file = truth_file if truth_file.is_file() else None
    truth = None
    if truth_file is not None and impact is not None:
        truth = TruthCheck.read(truth_file)
        differ = truth_differences(truth, scores, stamp, args.events)
        if differ:
            notes["truth"] = left_out("truth check", truth_file, args.scores, differ)
            truth = None
    for note in notes.values():
        logger.warning("%s", note)
    has_service_data = None
    if args.no_service_data:
        has_service_data = False
    elif args.events is not None:
        # A database table is read by the impact, not here: the report takes its word.
        has_service_data = is_database(args.events) or (
            Path(args.events).exists() and _has_rows(Path(args.events))
        )

    model_uri = args.model_uri
    if model_uri is None and stamp.model_version:
        model_uri = f"models:/{stamp.model_name}/{stamp.model_version}"
    run = None
    if model_uri:
        try:
            tracking.configure(read_only=True)
            run = load_model_run(model_uri)
        except Exception as err:  # the report is still useful without the run's figures
            logger.warning("no MLflow run for %s: %s", model_uri, err)

    track_record = None
    if orders is not None and orders_path is not None:
        try:
            # Only the runs of these orders: the archive may hold another shop's runs too.
            track_record = judge_runs(runs_of(archived_runs(args.runs), orders_path), orders)
        except (ValueError, OSError) as err:
            # One section; an unreadable archive file must not cost the whole report.
            logger.warning("no track record in the report: %s", err)

    report = build_report(
        scores,
        scores_path=str(args.scores),
        stamp=stamp,
        run=run,
        impact=impact,
        has_service_data=has_service_data,
        orders=orders,
        assumptions=assumptions,
        truth=truth,
        notes=notes,
        track_record=track_record,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report.render(), encoding="utf-8")
    print(f"report: {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")
    if run is not None and not args.no_log:
        log_report(run.run_id, args.out)
        print(f"logged to MLflow run {run.run_id} under report/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
