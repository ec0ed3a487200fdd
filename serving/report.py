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
5. service-quality impact (an optional summary from ``serving.impact``);
6. budget guidance (:mod:`serving.budget`);
7. the readiness caveats the training run logged (``readiness.md``).

Every number about customers is computed here from the scores file itself, so the report and
the batch output agree. The HTML is also logged to the model's MLflow run under ``report/``.
"""

from __future__ import annotations

import argparse
import base64
import io
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

from features.io import DataValidationError, load_orders
from features.synth_manifest import EVENTS_FILE, store_behind
from serving.budget import BudgetAssumptions, budget_table, cohort_budget
from serving.impact import KIND_LABELS
from serving.impact import STATEMENT as IMPACT_STATEMENT
from serving.impact_truth import STATEMENT as TRUTH_STATEMENT
from serving.impact_truth import TruthCheck, truth_path
from serving.run_files import DEFAULT_OUT, META_PREFIX, RunStamp
from serving.segments import VALUE_TIERS
from training import tracking

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
    """The ``n`` customers with the most value at risk (``clv * p_churn``), highest first.

    Ties are broken by ``customer_id``, so the list does not depend on row order.
    """
    columns = ["customer_id", "clv", "p_churn", "value_segment", "risk_segment", "action"]
    top = scores[columns + ["reasons"]].copy()
    top["value_at_risk"] = top["clv"].astype("float64") * top["p_churn"].astype("float64")
    top = top.sort_values(["value_at_risk", "customer_id"], ascending=[False, True]).head(n)
    return top[[*columns[:3], "value_at_risk", *columns[3:], "reasons"]].reset_index(drop=True)


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

    Accepts either the per-customer output of ``serving.impact`` (columns ``clv`` and, per
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
        The per-customer output of ``serving.impact`` (``customer_id``, ``clv``), or an
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
    store = store_behind(orders, events or orders.with_name(EVENTS_FILE))
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


def left_out(what: str, path: Path, scores_path: Path, differences: Sequence[str]) -> str:
    """The note a report shows for an input it left out, naming both files and what differs."""
    return (
        f"{what} {path} left out: it does not belong to the scored run {scores_path} "
        f"({'; '.join(differences)})."
    )


# --- figures -------------------------------------------------------------------------------


def clv_histogram(clv: pd.Series, bins: int = 50) -> Figure:
    """Histogram of predicted CLV; the count axis is logarithmic, the value is skewed."""
    fig = Figure(figsize=(7.0, 3.6), layout="constrained")
    ax = fig.subplots()
    ax.hist(clv.astype("float64").dropna(), bins=bins, color="#3b6ea5")
    ax.set_yscale("log")
    ax.set_xlabel("predicted CLV over the horizon")
    ax.set_ylabel("customers (log scale)")
    ax.set_title("Distribution of predicted CLV")
    return fig


def png_data_uri(png: bytes) -> str:
    """A PNG as a ``data:`` URI, so the HTML needs no other file."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def figure_png(fig: Figure) -> bytes:
    """A matplotlib figure as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


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
        Artifact path -> bytes for the figures (PNG) and ``readiness.md`` the run logged.
    """

    model_uri: str
    run_id: str
    metrics: dict[str, float] = field(default_factory=dict)
    artifacts: dict[str, bytes] = field(default_factory=dict)


def load_model_run(model_uri: str) -> ModelRun:
    """The run behind a ``models:/name/version`` or ``models:/name@alias`` URI, with artifacts.

    The tracking store must be configured (:func:`training.tracking.configure`).
    """
    version = tracking.resolve_version(model_uri)
    wanted = [path for path, _ in QUALITY_FIGURES + IMPORTANCE_FIGURES] + ["readiness.md"]
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
        Service-quality impact, per customer or summarised (:func:`impact_summary`).
    has_service_data : bool, optional
        False when the data has no service events (then impact cannot be measured); None
        when not known.
    orders : pandas.DataFrame, optional
        ``customer_id`` and ``ordered_at``, for the budget by acquisition cohort.
    assumptions : BudgetAssumptions, optional
        Margin and save rate of the budget guidance.
    truth : TruthCheck, optional
        On a synthetic store, the impact estimate beside the planted truth
        (:mod:`serving.impact_truth`), shown with the impact.
    notes : mapping, optional
        Inputs left out because they belong to another run (:func:`left_out`), by section:
        ``impact``, ``truth``, ``cohorts``. Each is shown in its section and at the top.
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
    return Report(
        scores_path=scores_path,
        stamp=stamp or RunStamp("", "", "", ""),
        customers=len(scores),
        horizon_days=str(horizon),
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
        figures={"clv_histogram": figure_png(clv_histogram(scores["clv"]))},
    )


def _fmt(frame: pd.DataFrame, formats: Mapping[str, str], index: bool = True) -> str:
    """A DataFrame as an HTML table, columns formatted with ``str.format`` specs, escaped."""
    shown = frame.copy()
    for column, spec in formats.items():
        if column in shown.columns:
            shown[column] = [
                "" if pd.isna(v) else format(v, spec) for v in shown[column].to_numpy()
            ]
    if index:
        # The index as the first column: one header row instead of pandas' two.
        shown = shown.reset_index()
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
#: Cohort rows shown: the most recent ones (older cohorts say little about new customers).
COHORT_ROWS = 24


def _template_values(report: Report) -> dict[str, object]:
    """The pre-rendered tables and figure URIs the template places."""
    run = report.run
    quality = []
    importance = []
    metrics_html = ""
    readiness = None
    if run is not None:
        quality = [
            (png_data_uri(run.artifacts[p]), c) for p, c in QUALITY_FIGURES if p in run.artifacts
        ]
        importance = [
            (png_data_uri(run.artifacts[p]), c) for p, c in IMPORTANCE_FIGURES if p in run.artifacts
        ]
        table = holdout_table(run.metrics)
        if not table.empty:
            # Two narrower tables, CLV then churn, fit a laptop screen without scrolling.
            metrics_html = "".join(
                _fmt(part, dict.fromkeys(part.columns, ".3f"))
                for part in (
                    table[[c for c in table.columns if c.startswith(prefix)]]
                    for prefix in ("clv_", "churn_")
                )
                if not part.empty
            )
        if "readiness.md" in run.artifacts:
            readiness = run.artifacts["readiness.md"].decode("utf-8", "replace")
    cohorts_html = ""
    cohorts_note = ""
    if report.budget_cohorts is not None:
        cohorts = report.budget_cohorts
        body = cohorts.drop(index="all")
        if len(body) > COHORT_ROWS:
            cohorts_note = f"The {COHORT_ROWS} most recent of {len(body)} cohorts, and all."
            cohorts = pd.concat([body.tail(COHORT_ROWS), cohorts.loc[["all"]]])
        cohorts_html = _fmt(cohorts, _BUDGET_FORMATS)
    at_risk = report.at_risk.copy()
    drivers = report.drivers
    return {
        "histogram": png_data_uri(report.figures["clv_histogram"]),
        "segments_html": _fmt(report.segments, _SEGMENT_FORMATS),
        "at_risk_html": _fmt(
            at_risk,
            {"clv": ",.1f", "p_churn": ".2f", "value_at_risk": ",.1f"},
            index=False,
        ),
        "drivers_html": ""
        if drivers.empty
        else _fmt(drivers, {"customers": ",d", "share": ".1%", "raises": ".0%"}, index=False),
        "impact_statement": IMPACT_STATEMENT,
        "truth_statement": TRUTH_STATEMENT,
        "truth_html": ""
        if report.truth is None
        else _fmt(
            report.truth.table.rename(index=KIND_LABELS),
            {
                "affected": ",d",
                "affected_truth": ",d",
                "estimate": _MONEY,
                "truth": _MONEY,
                "error_pct": "+.1f",
            },
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
        ),
        "budget_segments_html": _fmt(report.budget_segments, _BUDGET_FORMATS),
        "cohorts_html": cohorts_html,
        "cohorts_note": cohorts_note,
        "quality": quality,
        "importance": importance,
        "metrics_html": metrics_html,
        "readiness": readiness,
    }


# Tables arrive pre-rendered by pandas (escaped there), hence |safe; everything else is
# escaped by the template's autoescape.
_TEMPLATE = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined).from_string(
    """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Customer value report{% if r.stamp.cutoff %} {{ r.stamp.cutoff[:10] }}{% endif %}</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2330;
background:#fff;line-height:1.45}
main{max-width:1100px;margin:0 auto;padding:1rem 1.5rem 3rem}
h1{font-size:1.6rem;margin:.5rem 0}h2{font-size:1.25rem;border-bottom:2px solid #dde3ec;
padding-bottom:.2rem;margin-top:2rem}h3{font-size:1.05rem}
.meta,.note{color:#5a6477;font-size:.92rem}
.wrap{overflow-x:auto}
table.t{border-collapse:collapse;font-size:.88rem;margin:.5rem 0}
table.t th,table.t td{padding:.25rem .6rem;border-bottom:1px solid #e6eaf0;text-align:right;
vertical-align:top}
table.t th{background:#f3f6fa}table.t td:first-child,table.t th:first-child{text-align:left}
.reasons td:last-child{text-align:left;min-width:22rem;font-size:.82rem}
figure{margin:1rem 0}figure img{max-width:100%;height:auto;border:1px solid #e6eaf0}
figcaption{font-size:.88rem;color:#5a6477}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(320px,1fr));gap:1rem}
pre{white-space:pre-wrap;background:#f7f8fa;padding:.8rem;font-size:.85rem}
.warn{background:#fff4e5;border-left:4px solid #e8a33d;padding:.4rem .9rem;margin:.8rem 0}
</style></head><body><main>
<h1>Customer value report</h1>
<p class="meta">{{ "{:,}".format(r.customers) }} customers scored
{% if r.stamp.cutoff %} at cutoff {{ r.stamp.cutoff }}{% endif %}
{% if r.horizon_days %}; horizon {{ r.horizon_days }} days{% endif %}
{% if r.stamp.model_version %}; model {{ r.stamp.model_name }} version
{{ r.stamp.model_version }}{% endif %}
{% if r.scores_path %}; scores {{ r.scores_path }}{% endif %}.</p>
{% if r.notes %}<div class="warn">{% for note in r.notes.values() %}<p>{{ note }}</p>
{% endfor %}</div>{% endif %}

<h2 id="quality">1. Model quality on the holdout</h2>
{% if r.run is none %}
<p class="note">No MLflow run found for the model that scored: quality metrics and figures
are not shown.</p>
{% else %}
<p class="note">From the training run {{ r.run.run_id }} of {{ r.run.model_uri }}: every model
and baseline scored on the same holdout customers (<code>model</code> is the candidate trained
in that run; <code>champion</code> the champion it was judged against).</p>
{% if metrics_html %}<div class="wrap">{{ metrics_html|safe }}</div>
{% else %}<p class="note">The run logged no holdout metrics.</p>{% endif %}
{% for uri, caption in quality[:1] %}
<figure><img src="{{ uri }}" alt="{{ caption }}"><figcaption>{{ caption }}</figcaption></figure>
{% endfor %}<div class="grid">{% for uri, caption in quality[1:] %}
<figure><img src="{{ uri }}" alt="{{ caption }}"><figcaption>{{ caption }}</figcaption></figure>
{% endfor %}</div>
{% if not quality %}<p class="note">The run logged no quality figures.</p>{% endif %}
{% endif %}

<h2 id="base">2. The base</h2>
<figure><img src="{{ histogram }}" alt="Distribution of predicted CLV">
<figcaption>Predicted CLV over the horizon, all scored customers.</figcaption></figure>
<p class="note">Value segments split the base by share of predicted value (top: the customers
holding the first 50%, high: the next 30%, medium: 15%, low: the last 5%). Value at risk is
the sum of clv &times; p_churn.</p>
<div class="wrap">{{ segments_html|safe }}</div>

<h2 id="at-risk">3. Top {{ r.at_risk|length }} valuable customers at risk</h2>
<p class="note">Highest value at risk (clv &times; p_churn) first, with what drove their churn
probability.</p>
<div class="wrap reasons">{{ at_risk_html|safe }}</div>

<h2 id="drivers">4. Drivers</h2>
{% if drivers_html %}
<p class="note">How often each driver is among a customer's churn reasons (the per-customer
contributions the batch run wrote; # stands for the customer's own value). "raises" is the
share of those customers for whom it raises the churn probability.</p>
<div class="wrap">{{ drivers_html|safe }}</div>
{% else %}<p class="note">The scores carry no reasons (scored with reasons "none").</p>
{% endif %}
{% if importance %}<p class="note">Global importance as the training run logged it (XGBoost
total gain per feature; the booster names features by position, fN is the model's N-th
feature).</p>
<div class="grid">{% for uri, caption in importance %}
<figure><img src="{{ uri }}" alt="{{ caption }}"><figcaption>{{ caption }}</figcaption></figure>
{% endfor %}</div>{% endif %}

<h2 id="impact">5. Service-quality impact</h2>
{% if impact_html %}<p class="note">{{ r.impact_note }} clv_difference is the sum over the
affected customers of clv_&lt;kind&gt; &minus; clv (clv_&lt;kind&gt;: the impact run's
what-if CLV for that kind from now on, customers already lost staying lost, see
serving/impact.py); clv_difference_if_never also brings those customers back;
mean_p_churn_difference is the mean change of the churn probability.</p>
<p class="note">{{ impact_statement }}</p>
<div class="wrap">{{ impact_html|safe }}</div>
{% if truth_html %}<h3>Estimate and truth, side by side (synthetic store)</h3>
<p class="note">{{ truth_statement }} Cutoff {{ r.truth.cutoff }}, horizon
{{ r.truth.horizon_days }} days, {{ r.truth.model_uri }}; store of
{{ "{:,}".format(r.truth.store.customers) }} customers (seed {{ r.truth.store.seed }}).
error_pct = 100 &times; (estimate / truth &minus; 1). The estimate ranks the three kinds
{% if r.truth.ranks_agree %}in the true order{% else %}<strong>not</strong> in the true
order{% endif %}.</p>
<div class="wrap">{{ truth_html|safe }}</div>{% endif %}
{% if r.notes.get("truth") %}<p class="note">{{ r.notes["truth"] }}</p>{% endif %}
{% else %}<p class="note">{{ r.impact_note }}</p>{% endif %}

<h2 id="budget">6. Budget guidance</h2>
<p>Gross margin {{ r.assumptions.margin }} (<code>--margin</code>), save rate
{{ r.assumptions.save_rate }} (<code>--save-rate</code>): stated assumptions, not measured.</p>
<ul>{% for line in r.assumptions.formulas() %}<li>{{ line }}</li>{% endfor %}</ul>
<p class="note">Per customer: the mean ceiling for one customer of the group;
retention_budget: the group's total retention ceiling.</p>
<h3>By value segment</h3>
<div class="wrap">{{ budget_segments_html|safe }}</div>
<h3>By acquisition cohort (month of first order)</h3>
{% if cohorts_html %}{% if cohorts_note %}<p class="note">{{ cohorts_note }}</p>{% endif %}
<div class="wrap">{{ cohorts_html|safe }}</div>
{% elif r.notes.get("cohorts") %}<p class="note">{{ r.notes["cohorts"] }}</p>
{% else %}<p class="note">First orders unknown: give <code>--orders</code>.</p>{% endif %}

<h2 id="readiness">7. Readiness caveats</h2>
{% if readiness %}<pre>{{ readiness }}</pre>
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
    parser.add_argument(
        "--events", type=Path, help="service events file; without rows, impact cannot be measured"
    )
    parser.add_argument(
        "--orders", type=Path, help="orders file for the cohorts (default: the scores' stamp)"
    )
    parser.add_argument("--columns", default="", help="column mapping canonical=yours,...")
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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    scores, stamp = read_scores(args.scores)
    assumptions = BudgetAssumptions(args.margin, args.save_rate)
    orders_path = args.orders or (Path(stamp.orders) if stamp.orders else None)
    orders = None
    if orders_path is not None and orders_path.exists():
        try:
            # Through the loader, like every input: the mapping applies, bad rows are counted.
            orders = load_orders(orders_path, columns=args.columns).frame
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
        has_service_data = args.events.exists() and _has_rows(args.events)

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
