"""The monitor: did earlier runs come true, and has the base moved since the last run.

``python -m serving.insight.monitor`` (``make monitor``, also a step of ``make nightly``)
reads the run archive (:mod:`serving.insight.run_archive`) and the current orders file, and
for every archived run whose horizon has fully or partly elapsed by the orders' data end:

- **expected vs actual** orders and revenue of the run's customers so far. For a horizon
  still running, the expectation is the share of the horizon's value that falls in the
  elapsed days, as the shop's base of a year before spent it over the same calendar days
  (:func:`expected_share`: the season and the base's front-loading in one ratio), so a run
  that started before a peak is not called wrong for a quiet first month;
- once the horizon is complete, **Gini** of the CLV, **churn ROC-AUC** and **calibration**
  (ECE), with :mod:`training.evaluate`'s functions, against :func:`features.build_labels`.

It compares the latest run with the one before: **drift** per feature (population stability
index, PSI, on deciles of the earlier run, missing values as a bin of their own; and the
two-sample Kolmogorov-Smirnov statistic) and in the score distribution, and the share of
customers whose value or risk tier changed.

It prints a table, logs it to MLflow (a ``monitor`` run in the model's experiment), and exits
with :data:`EXIT_RETRAIN` ("retrain recommended") when the revenue error of the latest run
with a complete horizon is beyond :data:`RETRAIN_ERROR_PCT` either way.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from numpy.typing import ArrayLike
from scipy.stats import ks_2samp

from features import FeatureSpec, build_labels
from features.database import is_database
from features.history import format_cutoff
from features.run_inputs import add_input_arguments, data_end, load_run_inputs
from features.season import seasonal_index
from serving.insight.figures import money_ticks, panel
from serving.insight.run_archive import (
    DEFAULT_RUNS,
    NUMBER_COLUMNS,
    ArchivedRun,
    archive_run,
    archived_runs,
)
from serving.run_files import DEFAULT_FEATURES_OUT, DEFAULT_OUT
from training import tracking
from training.config import run_entrypoint
from training.evaluate import (
    expected_calibration_error,
    normalized_gini,
    roc_auc,
    total_value_error_pct,
)

logger = logging.getLogger(__name__)

#: Retraining is recommended when the latest complete run's revenue missed by more than this
#: (percent, either way). Training serves a classical level within 10% and ignores one off by
#: more than 25% (training.level); on four real shops the served model's total missed by at
#: most 16% (README, "Accuracy on real shops"). A miss beyond 25% is outside anything the
#: model was validated at: the base has changed under it.
RETRAIN_ERROR_PCT = 25.0
#: Exit status of "retrain recommended" (1 and 2 are the commands' environment and input
#: errors, 3 the service's start-up failure).
EXIT_RETRAIN = 4
#: PSI at or above which a distribution is called shifted (the usual reading: under 0.1
#: stable, 0.1-0.25 moving, above 0.25 shifted).
PSI_SHIFT = 0.25
#: Bins of the PSI: deciles of the earlier run.
PSI_BINS = 10
#: A bin's share below this counts as this (an empty bin would make the PSI infinite).
_PSI_FLOOR = 1e-4

#: The track record's columns, one row per judged run.
TRACK_COLUMNS: tuple[str, ...] = (
    "run_id",
    "cutoff",
    "model_version",
    "horizon_days",
    "elapsed_days",
    "complete",
    "customers",
    "expected_share",
    "expected_revenue",
    "actual_revenue",
    "revenue_error_pct",
    "expected_orders",
    "actual_orders",
    "orders_error_pct",
    "gini",
    "churn_auc",
    "churn_ece",
)


#: How far back the share of a horizon's value by day is measured: the same days a year
#: earlier, so that the season is the same (:func:`expected_share`).
YEAR_DAYS = 365


# --- did a run come true ---------------------------------------------------------------------


def elapsed_days(cutoff: pd.Timestamp, end: pd.Timestamp) -> int:
    """Whole days of ``[cutoff, end)``: the part of a horizon the orders file has seen."""
    return max(0, math.floor((end - cutoff) / pd.Timedelta(days=1)))


def expected_share(
    orders: pd.DataFrame, *, cutoff: pd.Timestamp, horizon_days: int, elapsed: int
) -> float:
    """The share of a horizon's value expected in its first ``elapsed`` days.

    Measured on the shop's own history as known at ``cutoff``: the customers a year before the
    cutoff (everyone with an order before then) spent this share of their next
    ``horizon_days`` in the first ``elapsed`` days. That one ratio carries both things that
    make value arrive unevenly over a horizon: the season of those calendar days, and the
    base's own front-loading (customers leave during the horizon, so an existing base buys
    more at its start). A share by the calendar alone was 30-40 points too low early in a
    horizon (bench/RESULTS-nightly.md).

    With less than a year of history before the cutoff, or no revenue in that year's
    horizon, the share falls back to the seasonal one, ``e x index(e) / (h x index(h))``
    (:func:`features.season.seasonal_index`; ``e / h`` without a year of history). At most 1.
    """
    if elapsed >= horizon_days:
        return 1.0
    if elapsed <= 0:
        return 0.0
    known = orders[orders["ordered_at"] < cutoff]
    year_before = cutoff - pd.Timedelta(days=YEAR_DAYS)
    if horizon_days <= YEAR_DAYS and not known.empty and known["ordered_at"].min() < year_before:
        spent = {
            days: float(
                build_labels(known, cutoff=year_before, spec=FeatureSpec(horizon_days=days))[
                    "future_value"
                ].sum()
            )
            for days in (elapsed, horizon_days)
        }
        if spent[horizon_days] > 0:
            return min(1.0, spent[elapsed] / spent[horizon_days])
    part = elapsed * seasonal_index(orders, cutoff=cutoff, horizon_days=elapsed)
    whole = horizon_days * seasonal_index(orders, cutoff=cutoff, horizon_days=horizon_days)
    return min(1.0, part / whole)


def actual_outcomes(
    orders: pd.DataFrame, customers: pd.Index, *, cutoff: pd.Timestamp, days: int
) -> pd.DataFrame:
    """What ``customers`` did in ``[cutoff, cutoff + days)``: :func:`features.build_labels`.

    A customer the current orders file no longer has before the cutoff (rows since removed)
    counts as having spent nothing.
    """
    labels = build_labels(orders, cutoff=cutoff, spec=FeatureSpec(horizon_days=days))
    actual = labels.reindex(customers)
    return actual.fillna({"future_value": 0.0, "future_orders": 0.0, "churned": 1})


def judge_run(run: ArchivedRun, orders: pd.DataFrame, end: pd.Timestamp) -> dict | None:
    """One row of the track record (:data:`TRACK_COLUMNS`); None before the horizon starts.

    Parameters
    ----------
    run : ArchivedRun
        The archived run.
    orders : pandas.DataFrame
        The current validated orders.
    end : pandas.Timestamp
        The orders' data end (the day after the last order): days before it are complete.
    """
    elapsed = min(elapsed_days(run.cutoff, end), run.horizon_days)
    if elapsed <= 0 or run.customers == 0:
        return None
    answers = run.answers()
    actual = actual_outcomes(orders, answers.index, cutoff=run.cutoff, days=elapsed)
    complete = elapsed >= run.horizon_days
    share = expected_share(
        orders, cutoff=run.cutoff, horizon_days=run.horizon_days, elapsed=elapsed
    )
    value = actual["future_value"].to_numpy(dtype="float64")
    bought = actual["future_orders"].to_numpy(dtype="float64")
    clv = answers["clv"].to_numpy(dtype="float64")
    expected_orders = answers["expected_orders"].to_numpy(dtype="float64")
    row = {
        "run_id": run.run_id,
        "cutoff": run.cutoff,
        "model_version": run.stamp.model_version,
        "horizon_days": run.horizon_days,
        "elapsed_days": elapsed,
        "complete": complete,
        "customers": len(answers),
        "expected_share": share,
        "expected_revenue": share * float(clv.sum()),
        "actual_revenue": float(value.sum()),
        "revenue_error_pct": total_value_error_pct(value, share * clv),
        "expected_orders": share * float(expected_orders.sum()),
        "actual_orders": float(bought.sum()),
        "orders_error_pct": total_value_error_pct(bought, share * expected_orders),
        "gini": math.nan,
        "churn_auc": math.nan,
        "churn_ece": math.nan,
    }
    if complete:
        churned = actual["churned"].to_numpy(dtype="float64")
        p_churn = answers["p_churn"].to_numpy(dtype="float64")
        row["gini"] = normalized_gini(value, clv)
        row["churn_auc"] = roc_auc(churned, p_churn)
        row["churn_ece"] = expected_calibration_error(churned, p_churn)
    return row


def orders_label(orders: Path | str) -> str:
    """An orders location as a batch run's stamp names it: a resolved path, or the URL."""
    text = str(orders)
    return text if is_database(text) else str(Path(text).resolve())


def runs_of(runs: Sequence[ArchivedRun], orders: Path | str) -> list[ArchivedRun]:
    """The archived runs scored from ``orders`` (another shop's runs are not judged on it)."""
    label = orders_label(orders)
    kept = [run for run in runs if run.stamp.orders == label]
    if len(kept) < len(runs):
        logger.info(
            "%d archived run(s) of other orders files than %s are left out",
            len(runs) - len(kept),
            label,
        )
    return kept


def judge_runs(runs: Sequence[ArchivedRun], orders: pd.DataFrame) -> pd.DataFrame:
    """The track record: one row per run whose horizon has started by the data end.

    Returns
    -------
    pandas.DataFrame
        :data:`TRACK_COLUMNS`, oldest cutoff first; empty when no run has started.
    """
    end = data_end(orders)
    rows = [row for run in runs if (row := judge_run(run, orders, end)) is not None]
    return pd.DataFrame(rows, columns=list(TRACK_COLUMNS))


# --- has the base moved ----------------------------------------------------------------------


def _values(values: ArrayLike, name: str) -> np.ndarray:
    """One sample as a 1-D float array (NaN allowed: a missing feature); empty refused."""
    array = np.asarray(values, dtype="float64").ravel()
    if array.size == 0:
        raise ValueError(f"{name} is empty; expected one value per customer")
    return array


def population_stability(previous: ArrayLike, current: ArrayLike, bins: int = PSI_BINS) -> float:
    """Population stability index of ``current`` against ``previous``.

    ``sum((c - p) ln(c / p))`` over the deciles of ``previous`` (fewer when values repeat)
    and one bin for missing values; shares below ``1e-4`` count as ``1e-4``. 0 for the same
    distribution.

    Raises
    ------
    ValueError
        When either sample is empty (naming it).
    """
    prev = _values(previous, "previous")
    cur = _values(current, "current")
    finite = prev[~np.isnan(prev)]
    inner = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    edges = np.unique(np.quantile(finite, inner)) if finite.size else np.array([])

    def shares(sample: np.ndarray) -> np.ndarray:
        missing = np.isnan(sample)
        where = np.searchsorted(edges, sample[~missing], side="right")
        counts = np.bincount(where, minlength=edges.size + 1).astype("float64")
        counts = np.append(counts, float(missing.sum()))
        return np.maximum(counts / sample.size, _PSI_FLOOR)

    p, c = shares(prev), shares(cur)
    return float(np.sum((c - p) * np.log(c / p)))


def drift_table(previous: pd.DataFrame, current: pd.DataFrame) -> pd.DataFrame:
    """Drift of every column both frames have, earlier run first.

    Returns
    -------
    pandas.DataFrame
        Indexed by column (``feature``): ``psi`` (:func:`population_stability`), ``ks`` and
        ``ks_pvalue`` (two-sample Kolmogorov-Smirnov on the non-missing values; NaN when a side
        has none), ``missing_before`` and ``missing_now`` (shares), ``shifted``
        (``psi >= PSI_SHIFT``); the most shifted first.
    """
    rows = []
    for name in [c for c in previous.columns if c in current.columns]:
        before = previous[name].to_numpy(dtype="float64")
        now = current[name].to_numpy(dtype="float64")
        known_before, known_now = before[~np.isnan(before)], now[~np.isnan(now)]
        ks = pvalue = math.nan
        if known_before.size and known_now.size:
            test = ks_2samp(known_before, known_now)
            ks, pvalue = float(test.statistic), float(test.pvalue)
        psi = population_stability(before, now)
        rows.append(
            {
                "feature": name,
                "psi": psi,
                "ks": ks,
                "ks_pvalue": pvalue,
                "missing_before": float(np.isnan(before).mean()),
                "missing_now": float(np.isnan(now).mean()),
                "shifted": psi >= PSI_SHIFT,
            }
        )
    table = pd.DataFrame(
        rows,
        columns=["feature", "psi", "ks", "ks_pvalue", "missing_before", "missing_now", "shifted"],
    )
    return table.set_index("feature").sort_values("psi", ascending=False, kind="stable")


def tier_changes(previous: pd.DataFrame, current: pd.DataFrame) -> dict[str, float]:
    """How many customers of both runs changed value or risk tier.

    Returns
    -------
    dict
        ``customers_compared`` (in both runs), ``value_tier_changed`` and
        ``risk_tier_changed`` (shares of them; NaN when none are in both), ``new_customers``
        and ``gone_customers`` (in one run only).
    """
    both = previous.index.intersection(current.index)
    result = {
        "customers_compared": float(len(both)),
        "new_customers": float(len(current.index.difference(previous.index))),
        "gone_customers": float(len(previous.index.difference(current.index))),
        "value_tier_changed": math.nan,
        "risk_tier_changed": math.nan,
    }
    if len(both):
        for column, key in (
            ("value_segment", "value_tier_changed"),
            ("risk_segment", "risk_tier_changed"),
        ):
            before = previous.loc[both, column].to_numpy()
            now = current.loc[both, column].to_numpy()
            result[key] = float(np.mean(before != now))
    return result


# --- the whole check -------------------------------------------------------------------------


@dataclass
class MonitorResult:
    """What the monitor found.

    Attributes
    ----------
    track_record : pandas.DataFrame
        :func:`judge_runs`.
    data_end : pandas.Timestamp
        The current orders' data end.
    threshold_pct : float
        The revenue error beyond which retraining is recommended.
    latest : ArchivedRun or None
        The newest archived run; ``previous`` the one before it.
    feature_drift, score_drift : pandas.DataFrame or None
        :func:`drift_table` of the features (when both runs kept them) and of the answers.
    tiers : dict
        :func:`tier_changes`.
    """

    track_record: pd.DataFrame
    data_end: pd.Timestamp
    threshold_pct: float
    latest: ArchivedRun | None = None
    previous: ArchivedRun | None = None
    feature_drift: pd.DataFrame | None = None
    score_drift: pd.DataFrame | None = None
    tiers: dict[str, float] = field(default_factory=dict)

    @property
    def latest_complete(self) -> pd.Series | None:
        """The track record's row of the newest run whose horizon is complete."""
        done = self.track_record[self.track_record["complete"].astype(bool)]
        return None if done.empty else done.iloc[-1]

    @property
    def retrain(self) -> bool:
        """Whether the latest complete run's revenue missed by more than the threshold."""
        row = self.latest_complete
        if row is None or pd.isna(row["revenue_error_pct"]):
            return False
        return abs(float(row["revenue_error_pct"])) > self.threshold_pct

    def verdict(self) -> str:
        """One line: retrain recommended or not, and on what."""
        row = self.latest_complete
        if row is None:
            return "no run has a complete horizon yet: nothing to judge retraining on"
        error = float(row["revenue_error_pct"])
        said = (
            f"the run of {row['cutoff']:%Y-%m-%d} missed its {int(row['horizon_days'])}-day "
            f"revenue by {error:+.1f}% (threshold {self.threshold_pct:g}%)"
        )
        return f"retrain recommended: {said}" if self.retrain else f"no retrain needed: {said}"

    def to_text(self) -> str:
        """The tables as plain text, for the terminal and the nightly log."""
        out = [
            f"How earlier runs did (orders up to {self.data_end - pd.Timedelta(days=1):%Y-%m-%d})"
        ]
        if self.track_record.empty:
            out.append("  no archived run has a horizon that has started yet")
        else:
            out.append(readable_track_record(self.track_record).to_string(index=False))
        if self.latest is not None and self.previous is not None:
            out += [
                "",
                f"Run of {format_cutoff(self.latest.cutoff)} against the one before "
                f"({format_cutoff(self.previous.cutoff)})",
            ]
            if self.score_drift is not None:
                out.append(_drift_text(self.score_drift, "answers"))
            if self.feature_drift is not None:
                shifted = self.feature_drift[self.feature_drift["shifted"]]
                out.append(
                    f"features: {len(shifted)} of {len(self.feature_drift)} shifted "
                    f"(PSI >= {PSI_SHIFT:g})"
                )
                out.append(_drift_text(self.feature_drift.head(8), "most moved features"))
            else:
                out.append("features: not compared (a run without its features kept)")
            tiers = self.tiers
            if tiers.get("customers_compared"):
                out.append(
                    f"tiers: {tiers['value_tier_changed']:.1%} of "
                    f"{int(tiers['customers_compared']):,} customers changed value tier, "
                    f"{tiers['risk_tier_changed']:.1%} risk tier; "
                    f"{int(tiers['new_customers']):,} new, {int(tiers['gone_customers']):,} gone"
                )
        out += ["", self.verdict()]
        return "\n".join(out)


def _drift_text(table: pd.DataFrame, title: str) -> str:
    """A drift table as text under a title."""
    shown = table[["psi", "ks", "missing_before", "missing_now", "shifted"]]
    return f"{title}:\n" + shown.to_string(float_format=lambda v: f"{v:.3f}")


def readable_track_record(track: pd.DataFrame) -> pd.DataFrame:
    """The track record with dates, rounded figures and blanks where a metric is not due."""
    shown = pd.DataFrame(
        {
            "cutoff": [f"{c:%Y-%m-%d}" for c in track["cutoff"]],
            "model": track["model_version"].astype("str"),
            "days seen": [
                f"{e}/{h}"
                for e, h in zip(track["elapsed_days"], track["horizon_days"], strict=True)
            ],
            "customers": [f"{n:,}" for n in track["customers"]],
            "revenue expected": [f"{v:,.0f}" for v in track["expected_revenue"]],
            "actual": [f"{v:,.0f}" for v in track["actual_revenue"]],
            "error %": [_signed(v) for v in track["revenue_error_pct"]],
            "orders expected": [f"{v:,.0f}" for v in track["expected_orders"]],
            "actual ": [f"{v:,.0f}" for v in track["actual_orders"]],
            "error % ": [_signed(v) for v in track["orders_error_pct"]],
            "Gini": [_plain(v) for v in track["gini"]],
            "churn AUC": [_plain(v) for v in track["churn_auc"]],
            "ECE": [_plain(v) for v in track["churn_ece"]],
        }
    )
    return shown


def _signed(value: float) -> str:
    return "" if pd.isna(value) else f"{value:+.1f}"


def _plain(value: float) -> str:
    return "" if pd.isna(value) else f"{value:.3f}"


def monitor(
    runs: Sequence[ArchivedRun],
    orders: pd.DataFrame,
    *,
    threshold_pct: float = RETRAIN_ERROR_PCT,
) -> MonitorResult:
    """Judge the archived runs against ``orders`` and compare the latest run with the previous.

    Parameters
    ----------
    runs : sequence of ArchivedRun
        The archive, oldest first (:func:`serving.insight.run_archive.archived_runs`).
    orders : pandas.DataFrame
        The current validated orders.
    threshold_pct : float
        Revenue error (percent, either way) of the latest complete run beyond which
        retraining is recommended.
    """
    result = MonitorResult(judge_runs(runs, orders), data_end(orders), threshold_pct)
    if runs:
        result.latest = runs[-1]
    if len(runs) >= 2:
        latest, previous = runs[-1], runs[-2]
        result.previous = previous
        now, before = latest.answers(), previous.answers()
        if len(now) and len(before):
            result.score_drift = drift_table(
                before[list(NUMBER_COLUMNS)], now[list(NUMBER_COLUMNS)]
            )
            result.tiers = tier_changes(before, now)
        features_now, features_before = latest.features(), previous.features()
        if features_now is not None and features_before is not None:
            if len(features_now) and len(features_before):
                result.feature_drift = drift_table(features_before, features_now)
    return result


# --- figure and MLflow -----------------------------------------------------------------------


def track_record_figure(track: pd.DataFrame) -> Figure:
    """Predicted vs actual revenue of each judged run, so far (partly elapsed runs hollow)."""
    fig, ax = panel(rotated_dates=True)
    dates = pd.to_datetime(track["cutoff"])
    complete = track["complete"].astype(bool).to_numpy()
    ax.plot(dates, track["actual_revenue"], color="#1d3f72", marker="s", label="actually spent")
    ax.plot(dates, track["expected_revenue"], color="#e8a33d", label="predicted")
    ax.scatter(dates[complete], track["expected_revenue"][complete], color="#e8a33d", zorder=3)
    ax.scatter(
        dates[~complete],
        track["expected_revenue"][~complete],
        facecolors="none",
        edgecolors="#e8a33d",
        zorder=3,
        label="predicted, horizon still running (pro rata)",
    )
    ax.set_xlabel("run (cutoff)")
    ax.set_ylabel("revenue of the run's customers")
    ax.set_ylim(bottom=0)
    money_ticks(ax.yaxis)
    ax.set_title("Predicted vs actual revenue of earlier runs, so far")
    ax.legend()
    fig.autofmt_xdate()
    return fig


def log_monitor(result: MonitorResult) -> str:
    """Log the monitor's tables, figure and headline figures as a ``monitor`` MLflow run.

    The run goes to the experiment of the latest run's model (where its training runs are).

    Returns
    -------
    str
        The MLflow run id.
    """
    experiment = result.latest.stamp.model_name if result.latest else tracking.EXPERIMENT
    tracking.configure(experiment=experiment or tracking.EXPERIMENT)
    end = f"{result.data_end - pd.Timedelta(days=1):%Y-%m-%d}"
    with tracking.start_run(f"monitor {end}") as run_id:
        tracking.set_tags(
            {
                "kind": "monitor",
                "data_end": end,
                "retrain_recommended": result.retrain,
                "verdict": result.verdict(),
            }
        )
        tracking.log_params({"threshold_pct": result.threshold_pct, "psi_shift": PSI_SHIFT})
        latest = result.latest_complete
        if latest is not None:
            tracking.log_metrics(
                {k: latest[k] for k in ("revenue_error_pct", "orders_error_pct", "gini")},
                prefix="latest_complete.",
            )
            tracking.log_metrics(
                {"churn_auc": latest["churn_auc"], "churn_ece": latest["churn_ece"]},
                prefix="latest_complete.",
            )
        tracking.log_metrics(result.tiers, prefix="tiers.")
        if not result.track_record.empty:
            tracking.log_table(result.track_record.set_index("run_id"), "monitor_runs")
            tracking.log_figure(track_record_figure(result.track_record), "predicted_vs_actual")
        for name, table in (
            ("feature_drift", result.feature_drift),
            ("score_drift", result.score_drift),
        ):
            if table is not None:
                tracking.log_table(table, name)
                tracking.log_metrics({"max_psi": float(table["psi"].max())}, prefix=f"{name}.")
        tracking.log_text(result.to_text(), "monitor.txt")
    return run_id


# --- command line ----------------------------------------------------------------------------


@dataclass(frozen=True)
class MonitorConfig:
    """What the monitor reads, and when it recommends retraining.

    ``scores`` is archived first when it is a stamped Parquet file not yet in the archive (so
    ``make score`` then ``make monitor`` keeps the run); None archives nothing. ``orders``
    None reads the orders file the latest run was scored from (its stamp).
    """

    runs_dir: Path = DEFAULT_RUNS
    scores: Path | None = DEFAULT_OUT
    orders: Path | str | None = None
    columns: str = ""
    threshold_pct: float = RETRAIN_ERROR_PCT
    log: bool = True


def run(config: MonitorConfig) -> MonitorResult:
    """Archive the live scores if needed, judge the archive, log it; see the module docstring.

    Raises
    ------
    ValueError
        No archived run, or no orders file to judge against.
    """
    scores = config.scores
    # Only stamped Parquet scores can be archived; a CSV run (make score OUT=x.csv) is not one.
    if scores is not None and scores.suffix.lower() == ".parquet" and scores.is_file():
        archive_run(scores, config.runs_dir, features=scores.with_name(DEFAULT_FEATURES_OUT.name))
    runs = archived_runs(config.runs_dir)
    if not runs:
        raise ValueError(
            f"no archived runs in {config.runs_dir}; run `make score` (or `make nightly`) first"
        )
    orders_path = config.orders or runs[-1].stamp.orders
    if not orders_path:
        raise ValueError(f"the latest run in {config.runs_dir} names no orders file; pass --orders")
    runs = runs_of(runs, orders_path)
    if not runs:
        raise ValueError(
            f"no archived run in {config.runs_dir} was scored from {orders_label(orders_path)}; "
            "pass the --orders the runs were scored from"
        )
    orders = load_run_inputs(orders_path, None, columns=config.columns).orders.frame
    result = monitor(runs, orders, threshold_pct=config.threshold_pct)
    if config.log:
        result_run = log_monitor(result)
        logger.info("logged the monitor to MLflow run %s", result_run)
    return result


def parse_args(argv: Sequence[str] | None = None) -> MonitorConfig:
    """Build a :class:`MonitorConfig` from flags."""
    parser = argparse.ArgumentParser(
        prog="python -m serving.insight.monitor",
        description="How earlier batch runs did against what customers then did, and drift "
        f"since the last run. Exit status {EXIT_RETRAIN}: retrain recommended.",
    )
    parser.add_argument("--runs", type=Path, default=DEFAULT_RUNS, help="the run archive")
    parser.add_argument(
        "--scores",
        default=str(DEFAULT_OUT),
        help="the live scores, archived first when not yet kept; 'none' archives nothing",
    )
    add_input_arguments(
        parser,
        orders_help="the current orders (default: the file the latest run was scored from)",
        events_help="service events (not read: runs are judged on their orders)",
        strict=False,
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=RETRAIN_ERROR_PCT,
        help="revenue error, %% either way, of the latest complete run beyond which retraining "
        f"is recommended (default {RETRAIN_ERROR_PCT:g})",
    )
    parser.add_argument("--no-log", action="store_true", help="do not log to MLflow")
    args = parser.parse_args(argv)
    if args.threshold <= 0:
        parser.error(f"--threshold must be > 0 (percent); got {args.threshold}")
    return MonitorConfig(
        runs_dir=args.runs,
        scores=None if args.scores.lower() == "none" else Path(args.scores),
        orders=args.orders,
        columns=args.columns,
        threshold_pct=args.threshold,
        log=not args.no_log,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (``make monitor``)."""
    config = parse_args(argv)
    found: list[MonitorResult] = []

    def work() -> None:
        result = run(config)
        print(result.to_text())
        found.append(result)

    status = run_entrypoint(work)
    if status == 0 and found and found[0].retrain:
        return EXIT_RETRAIN
    return status


if __name__ == "__main__":
    sys.exit(main())
