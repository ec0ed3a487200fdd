"""`make backtest`: how the whole pipeline would have done at past cutoffs of your own data.

For each ``--cutoff``: train exactly as ``make train`` would on the rows before the cutoff
(nothing after it is read), score every customer at the cutoff, and compare with what they
really did in ``[cutoff, cutoff + horizon)``, side by side with the simple formula, BG/NBD +
Gamma-Gamma and Pareto/NBD + Gamma-Gamma fit on the same rows. Each metric of the model
comes with its bootstrap standard error and that of its difference to each baseline. Everything is
logged to MLflow as one ``backtest`` run (a nested run per cutoff, with decile and
calibration plots); nothing is registered.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from features import FeatureSpec, build_features, build_labels
from features.history import as_cutoff
from features.run_inputs import add_input_arguments, given_events, load_run_inputs
from training import tracking
from training.baselines import ParetoNbdGammaGammaBaseline, SimpleFormulaBaseline
from training.config import (
    FitSettings,
    TrainConfig,
    check_run_paths,
    non_negative_int,
    positive_int,
    run_entrypoint,
)
from training.evaluate import (
    holdout_metrics,
    likely_coverage_text,
    paired_standard_errors,
    profile_metrics,
)
from training.gate import CLASSICAL, GATE_METRICS, TOTAL_METRIC, gain
from training.level import CANDIDATES, Level, buyers
from training.pipeline import train_models
from training.plots import plot_calibration, plot_deciles
from training.profile import DEFAULT_LEVEL

logger = logging.getLogger(__name__)

#: Columns of the backtest table, in order: every holdout metric
#: (training.evaluate.HOLDOUT_METRICS; tests/training/test_metric_rules.py keeps them equal).
TABLE_METRICS: tuple[str, ...] = (
    "clv_gini",
    "clv_spearman",
    "clv_rmse",
    "clv_mae",
    "clv_total_error_pct",
    "clv_top_decile_capture",
    "churn_roc_auc",
    "churn_pr_auc",
    "churn_brier",
    "churn_ece",
)


@dataclass(frozen=True)
class BacktestConfig:
    """One backtest: the data, the cutoffs, the horizon and the fit settings."""

    orders: Path | str
    events: Path | str | None
    columns: str
    cutoffs: tuple[pd.Timestamp, ...]
    horizon_days: int
    settings: FitSettings
    cohort: tuple[pd.Timestamp, pd.Timestamp] | None = None
    out: Path | None = None
    seeds: int = 1


@dataclass
class CutoffResult:
    """The metrics at one cutoff: name -> metrics, and model-minus-name standard errors."""

    cutoff: pd.Timestamp
    customers: int
    family: str
    metrics: dict[str, dict[str, float]]
    noise: dict[str, dict[str, float]]
    seconds: float
    profile: dict[str, float] = field(default_factory=dict)
    level: Level = field(default_factory=Level)
    #: The served churn rate (training.level.buyers_blend): its logit shift, and the expected
    #: buyers of the served model, of the model before the shift, of the classical models,
    #: beside the customers who did order (``actual``).
    churn_shift: float = 0.0
    buyers: dict[str, float] = field(default_factory=dict)
    #: The served horizon's season the counts were put in (training.level.HorizonSeason):
    #: its indices and factors; empty where it was not measured.
    churn_season: dict[str, float] = field(default_factory=dict)
    #: The model's metrics with each further seed (``--seeds``): what is noise.
    other_seeds: list[dict[str, float]] = field(default_factory=list)


def restrict_to_cohort(
    orders: pd.DataFrame, events: pd.DataFrame | None, first: pd.Timestamp, last: pd.Timestamp
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Keep only the customers whose first order falls in ``[first, last]`` (whole days)."""
    first_order = orders.groupby("customer_id")["ordered_at"].min()
    end = last.normalize() + pd.Timedelta(days=1)
    keep = first_order.index[(first_order >= first.normalize()) & (first_order < end)]
    if len(keep) == 0:
        raise ValueError(
            f"no customer's first order is between {first.date()} and {last.date()}; check --cohort"
        )
    orders = orders[orders["customer_id"].isin(keep)].reset_index(drop=True)
    if events is not None:
        events = events[events["customer_id"].isin(keep)].reset_index(drop=True)
    return orders, events


def backtest_cutoff(
    orders: pd.DataFrame,
    events: pd.DataFrame | None,
    *,
    cutoff: pd.Timestamp,
    spec: FeatureSpec,
    settings: FitSettings,
) -> tuple[CutoffResult, pd.DataFrame, dict[str, pd.DataFrame]]:
    """Train on the rows before ``cutoff``, score at it, compare with what happened after.

    Returns
    -------
    (CutoffResult, pandas.DataFrame, dict)
        The metrics, the actual labels per customer, and name -> predictions.
    """
    started = time.perf_counter()
    data_end = orders["ordered_at"].max()
    if cutoff + pd.Timedelta(days=spec.horizon_days) > data_end + pd.Timedelta(days=1):
        raise ValueError(
            f"cutoff {cutoff.date()} + {spec.horizon_days} days ends after the last order "
            f"({data_end.date()}); the outcome is not known yet, choose an earlier --cutoff"
        )
    history = orders[orders["ordered_at"] < cutoff].reset_index(drop=True)
    history_events = (
        events[events["occurred_at"] < cutoff].reset_index(drop=True)
        if events is not None
        else None
    )
    if history.empty:
        raise ValueError(f"no orders before cutoff {cutoff.date()}; choose a later --cutoff")
    trained = train_models(history, history_events, spec=spec, settings=settings)
    features = build_features(history, history_events, cutoff=cutoff, spec=spec)
    actual = build_labels(orders, cutoff=cutoff, spec=spec).loc[features.index]
    predictions = {"model": trained.serving.predict(features[trained.serving.feature_names_in_])}
    predictions["simple"] = (
        SimpleFormulaBaseline().fit(features).predict(features, spec.horizon_days)
    )
    bgnbd = trained.serving_bgnbd
    if trained.plan.data_end != cutoff:  # the file has no order on the cutoff's eve
        bgnbd = type(bgnbd)(random_seed=settings.seed).fit(features)
    predictions["bgnbd"] = bgnbd.predict(features, spec.horizon_days)
    # The training fit both classical models on these features already (same rows, same seed)
    # when its data end is the cutoff: the serving BG/NBD, and the Pareto/NBD of the level.
    pareto = trained.serving_pareto
    if pareto is None or trained.plan.data_end != cutoff:
        pareto = ParetoNbdGammaGammaBaseline(random_seed=settings.seed).fit(features)
    predictions["pareto_nbd"] = pareto.predict(features, spec.horizon_days)
    metrics = {name: holdout_metrics(actual, pred) for name, pred in predictions.items()}
    noise = paired_standard_errors(actual, predictions, "model", seed=settings.seed)
    served = features[trained.serving.feature_names_in_]
    profile = profile_metrics(
        actual,
        trained.serving.profile(served, level=DEFAULT_LEVEL),
        DEFAULT_LEVEL,
        purchase_orders=trained.serving.purchase_orders(served),
    )
    result = CutoffResult(
        cutoff,
        len(actual),
        trained.family,
        metrics,
        noise,
        time.perf_counter() - started,
        profile,
        trained.level,
        trained.churn_level.shift,
        {
            "actual": buyers(actual["churned"]),
            **{name: buyers(predictions[name]["p_churn"]) for name in ("model", *CLASSICAL)},
            "own": trained.churn_level.counts.get("model", float("nan")),
        },
        trained.churn_level.season,
    )
    return result, actual, predictions


def floor_verdicts(result: CutoffResult) -> dict[str, str]:
    """Per gate metric: how the model stands against the better classical model.

    ``ahead`` (better), ``within noise`` (worse by at most the bootstrap standard error of the
    model's metric) or ``behind``; and for the total error, ``ok`` when within 10% or at most half
    of the better classical model's miss where that is over 20%.
    """
    out = {}
    mine = result.metrics["model"]
    for metric in GATE_METRICS:
        # The better classical model: the one the model gains least on.
        margin = min(gain(metric, mine[metric], result.metrics[name][metric]) for name in CLASSICAL)
        se = result.noise["model"].get(metric, 0.0)
        out[metric] = "ahead" if margin > 0 else "within noise" if margin >= -se else "behind"
    total = abs(mine[TOTAL_METRIC])
    classical = min(abs(result.metrics[name][TOTAL_METRIC]) for name in CLASSICAL)
    fine = total <= 10 or (classical > 20 and total <= classical / 2)
    out[TOTAL_METRIC] = "ok" if fine else "off"
    return out


def result_table(results: list[CutoffResult]) -> pd.DataFrame:
    """One row per (cutoff, model), the metrics as columns, the model's rows with SEs."""
    rows = []
    for result in results:
        for name, metrics in result.metrics.items():
            row: dict[str, str | float] = {"cutoff": str(result.cutoff.date()), "model": name}
            row.update({metric: metrics.get(metric, float("nan")) for metric in TABLE_METRICS})
            rows.append(row)
    return pd.DataFrame(rows).set_index(["cutoff", "model"])


def markdown(results: list[CutoffResult], config: BacktestConfig) -> str:
    """The backtest as a Markdown section: settings, the table, the floor verdicts."""
    lines = [
        f"orders: `{config.orders}`"
        + (
            f", cohort first ordering {config.cohort[0].date()}..{config.cohort[1].date()}"
            if config.cohort
            else ""
        )
        + f"; horizon {config.horizon_days} days",
        "",
        "| cutoff | model | Gini | Spearman | RMSE | MAE | total error | top-decile | churn AUC "
        "| PR-AUC | Brier | ECE |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        for name, m in result.metrics.items():
            label = f"**{name}** ({result.family})" if name == "model" else name
            lines.append(
                f"| {result.cutoff.date()} | {label} | {m['clv_gini']:.3f} | "
                f"{m['clv_spearman']:.3f} | {m['clv_rmse']:.1f} | {m['clv_mae']:.1f} | "
                f"{m['clv_total_error_pct']:+.0f}% | {m['clv_top_decile_capture']:.3f} | "
                f"{m['churn_roc_auc']:.3f} | {m['churn_pr_auc']:.3f} | {m['churn_brier']:.3f} | "
                f"{m['churn_ece']:.3f} |"
            )
    lines.append("")
    for result in results:
        verdicts = floor_verdicts(result)
        se = {
            name: ", ".join(f"{k} {v:.4f}" for k, v in result.noise[name].items())
            for name in ("model", *CLASSICAL)
        }
        lines.append(
            f"- {result.cutoff.date()} ({result.customers:,} customers, {result.seconds:.0f} s): "
            + ", ".join(f"{k} {v}" for k, v in verdicts.items())
            + f". Bootstrap SE of the model's metrics: {se['model']}; of the difference to "
            f"BG/NBD: {se['bgnbd']}; to Pareto/NBD: {se['pareto_nbd']}"
        )
    lines += ["", *profile_lines(results), "", *level_lines(results), "", *churn_lines(results)]
    spread = seed_lines(results, config.settings.seed)
    if spread:
        lines += ["", *spread]
    return "\n".join(lines)


#: The model's figures whose spread over seeds the backtest states (holdout metrics).
SPREAD_METRICS: tuple[str, ...] = (
    "clv_gini",
    "clv_spearman",
    "clv_rmse",
    "clv_total_error_pct",
    "churn_roc_auc",
    "churn_ece",
)


def seed_lines(results: list[CutoffResult], seed: int) -> list[str]:
    """The model's figures at each seed and their spread (Markdown); none with one seed.

    A shop reads a difference smaller than the spread as noise: the search, the samples and
    the holdout halves all follow the seed.
    """
    if not any(result.other_seeds for result in results):
        return []
    lines = [
        "The model's figures over seeds (the first is the table's; spread = max - min):",
        "",
        "| cutoff | seeds | " + " | ".join(SPREAD_METRICS) + " |",
        "|---|---|" + "---|" * len(SPREAD_METRICS),
    ]
    for result in results:
        runs = [result.metrics["model"], *result.other_seeds]
        cells = []
        for metric in SPREAD_METRICS:
            values = np.array([run.get(metric, np.nan) for run in runs], dtype="float64")
            shown = " / ".join(f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}" for v in values)
            cells.append(f"{shown} (spread {np.nanmax(values) - np.nanmin(values):.3f})")
        seeds = ", ".join(str(seed + i) for i in range(len(runs)))
        lines.append(f"| {result.cutoff.date()} | {seeds} | " + " | ".join(cells) + " |")
    return lines


def level_lines(results: list[CutoffResult]) -> list[str]:
    """The level at each cutoff and its track record at the origins before it (Markdown).

    Per cutoff: the total error of the served model, of the stack's own level (before the
    level was chosen) and of each classical model, and which level was served and why; then
    one row per earlier origin the history allowed, with each candidate's total error there.
    What a shop reads before it budgets on the total: how far the level has missed before.
    """
    lines = [
        "Total error at each cutoff (served model, the stack's own level, the classical "
        "models), and the level served:",
        "",
        "| cutoff | served | stack's own | BG/NBD | Pareto/NBD | level served |",
        "|---|---|---|---|---|---|",
    ]
    for result in results:
        m = result.metrics
        served = m["model"]["clv_total_error_pct"]
        own = 100.0 * ((1.0 + served / 100.0) / result.level.factor - 1.0)
        lines.append(
            f"| {result.cutoff.date()} | {served:+.1f}% | {own:+.1f}% | "
            f"{m['bgnbd']['clv_total_error_pct']:+.1f}% | "
            f"{m['pareto_nbd']['clv_total_error_pct']:+.1f}% | {result.level.source} "
            f"(x{result.level.factor:.3f}): {result.level.reason} |"
        )
    lines += [
        "",
        "Rolling origins: the same procedure replayed before each cutoff, total error of each "
        "candidate level over the horizon from the origin (blank: could not be replayed):",
        "",
        "| cutoff | origin | customers | actual total | " + " | ".join(CANDIDATES) + " |",
        "|---|---|---|---|" + "---|" * len(CANDIDATES),
    ]
    for result in results:
        for record in result.level.origins:
            errors = [record.error_pct(name) for name in CANDIDATES]
            cells = " | ".join(f"{e:+.1f}%" if np.isfinite(e) else "" for e in errors)
            lines.append(
                f"| {result.cutoff.date()} | {record.origin.date()} | {record.customers:,} | "
                f"{record.actual:,.0f} | {cells} |"
            )
    return lines


def churn_lines(results: list[CutoffResult]) -> list[str]:
    """The served churn rate at each cutoff: expected buyers against those who ordered (Markdown).

    The served count is the geometric mean of the model's own and the classical counts at the
    data end, each first put in the served horizon's season where two years of history
    measure it (:func:`training.level.buyers_blend`); "model's own" is the count before the
    season and the shift, at the data end of the training (the cutoff's customers when the
    data ends there).
    """
    lines = [
        "Customers who order in the horizon: expected by each model against those who did "
        "(error in %), the factors that put the counts in the horizon's season (the model's / "
        "the classical models'), and the churn-logit shift served:",
        "",
        "| cutoff | ordered | served | model's own | BG/NBD | Pareto/NBD | season | shift |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        count = result.buyers
        if not count:
            continue
        actual = count["actual"]
        errors = [
            _error_pct(count.get(name, float("nan")), actual)
            for name in ("model", "own", "bgnbd", "pareto_nbd")
        ]
        season = result.churn_season
        factors = (
            f"x{season['model']:.3f} / x{season['classical']:.3f} (index {season['served']:.3f}, "
            f"learnt in {season['learnt']:.3f})"
            if season
            else "none"
        )
        lines.append(
            f"| {result.cutoff.date()} | {actual:,.0f} | {' | '.join(errors)} | {factors} | "
            f"{result.churn_shift:+.3f} |"
        )
    return lines


def _error_pct(value: float, actual: float) -> str:
    """``value`` against ``actual`` in percent ("" when either is unknown or not positive)."""
    return f"{100.0 * (value / actual - 1.0):+.1f}%" if actual > 0 and value > 0 else ""


def profile_lines(results: list[CutoffResult]) -> list[str]:
    """The profile's figures against the outcomes, one Markdown table row per cutoff."""
    lines = [
        "| cutoff | orders total error (purchase model alone) | orders MAE (purchase model) "
        "| interval coverage (nominal; p_churn < .5) "
        "| next-order error, days: MAE / median (customers) |",
        "|---|---|---|---|---|",
    ]
    for result in results:
        p = result.profile
        lines.append(
            f"| {result.cutoff.date()} | {p['orders_total_error_pct']:+.1f}% "
            f"({p['purchase_orders_total_error_pct']:+.1f}%) | {p['orders_mae']:.2f} "
            f"({p['purchase_orders_mae']:.2f}) | {p['interval_coverage']:.1%} "
            f"({p['interval_level']:.0%}; {likely_coverage_text(p)}) "
            f"| {p['next_order_mae_days']:.0f} / "
            f"{p['next_order_median_error_days']:+.0f} ({p['next_order_customers']:,.0f}) |"
        )
    return lines


def run(config: BacktestConfig) -> list[CutoffResult]:
    """Backtest every cutoff of ``config``; print the table and log it to MLflow."""
    check_run_paths({"--orders": config.orders, "--events": config.events}, {"--out": config.out})
    # The same loading as training: unusable rows are counted, logged and quarantined.
    loaded = load_run_inputs(
        config.orders,
        config.events,
        columns=config.columns,
        strict=False,
        quarantine_dir=TrainConfig().output_dir / "quarantine",
    )
    orders = loaded.orders.frame
    events = loaded.events.frame if loaded.events is not None else None
    if config.cohort is not None:
        orders, events = restrict_to_cohort(orders, events, *config.cohort)
    spec = FeatureSpec(horizon_days=config.horizon_days)
    results = []
    tracking.configure()
    with tracking.start_run("backtest"):
        tracking.log_params(
            {
                "orders": str(config.orders),
                "events": str(config.events or ""),
                "columns": config.columns,
                "horizon_days": config.horizon_days,
                "cutoffs": ",".join(str(c.date()) for c in config.cutoffs),
                "cohort": ""
                if config.cohort is None
                else f"{config.cohort[0].date()}..{config.cohort[1].date()}",
                **{f"fit.{k}": str(v) for k, v in vars(config.settings).items()},
            }
        )
        for cutoff in config.cutoffs:
            result, actual, predictions = backtest_cutoff(
                orders, events, cutoff=cutoff, spec=spec, settings=config.settings
            )
            for extra in range(1, config.seeds):
                settings = replace(config.settings, seed=config.settings.seed + extra)
                again, _, _ = backtest_cutoff(
                    orders, events, cutoff=cutoff, spec=spec, settings=settings
                )
                result.other_seeds.append(again.metrics["model"])
            results.append(result)
            with tracking.start_run(f"backtest-{cutoff.date()}", nested=True):
                tracking.set_tags({"family": result.family})
                for name, values in result.metrics.items():
                    tracking.log_metrics(values, prefix=f"{name}.")
                for name, values in result.noise.items():
                    prefix = "se." if name == "model" else f"se_vs_{name}."
                    tracking.log_metrics(values, prefix=prefix)
                tracking.log_metrics(result.profile, prefix="profile.")
                value = actual["future_value"].to_numpy()
                churn = actual["churned"].to_numpy()
                tracking.log_figure(
                    plot_deciles(value, {k: p["clv"].to_numpy() for k, p in predictions.items()}),
                    "clv_deciles",
                )
                tracking.log_figure(
                    plot_calibration(
                        churn, {k: p["p_churn"].to_numpy() for k, p in predictions.items()}
                    ),
                    "churn_calibration",
                )
            print(
                f"cutoff {cutoff.date()}: done in {result.seconds:.0f} s (family {result.family})"
            )
        text = markdown(results, config)
        tracking.log_text(text, "backtest.md")
        tracking.log_table(result_table(results).reset_index(), "backtest")
    print()
    print(text)
    if config.out is not None:
        config.out.parent.mkdir(parents=True, exist_ok=True)
        config.out.write_text(text + "\n")
        print(f"\nwritten to {config.out}")
    return results


def _date(text: str) -> pd.Timestamp:
    try:
        return as_cutoff(text)
    except (ValueError, TypeError) as err:
        raise argparse.ArgumentTypeError(f"{err}; expected a date like 2007-07-15") from err


def parse_args(argv: list[str] | None = None) -> BacktestConfig:
    """Build a :class:`BacktestConfig` from command-line flags."""
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(
        prog="python -m training.backtest",
        description="Replay training at past cutoffs of your data and compare with what "
        "happened, beside the classical CLV models.",
    )
    add_input_arguments(parser, orders_required=True, strict=False)
    parser.add_argument(
        "--cutoff",
        type=_date,
        action="append",
        required=True,
        dest="cutoffs",
        help="a past cutoff (repeat for several); cutoff + horizon must be within the data",
    )
    parser.add_argument("--horizon-days", type=positive_int, default=defaults.horizon_days)
    parser.add_argument(
        "--cohort",
        nargs=2,
        type=_date,
        metavar=("FIRST", "LAST"),
        help="only customers whose first order is between these dates",
    )
    parser.add_argument("--window-days", type=positive_int, default=defaults.window_days)
    parser.add_argument(
        "--time-budget",
        type=float,
        default=0.0,
        help="an extra bound in seconds on each cutoff's search (default 0: none)",
    )
    parser.add_argument(
        "--max-trials",
        type=non_negative_int,
        default=0,
        help="trials of hyperparameter search per cutoff (default 0: the default parameters)",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--seeds",
        type=positive_int,
        default=1,
        help="also run each cutoff with the next seeds and state the model's spread over "
        "them (default %(default)s: one run)",
    )
    parser.add_argument(
        "--level-origins",
        type=non_negative_int,
        default=defaults.level_origins,
        help="earlier origins that judge each cutoff's served level (default %(default)s)",
    )
    parser.add_argument("--out", type=Path, help="also write the Markdown table here")
    args = parser.parse_args(argv)
    settings = FitSettings(
        window_days=args.window_days,
        time_budget=args.time_budget,
        max_trials=args.max_trials,
        seed=args.seed,
        level_origins=args.level_origins,
    )
    return BacktestConfig(
        orders=args.orders,
        events=given_events(args.events),
        columns=args.columns,
        cutoffs=tuple(args.cutoffs),
        horizon_days=args.horizon_days,
        settings=settings,
        cohort=tuple(args.cohort) if args.cohort else None,
        out=args.out,
        seeds=args.seeds,
    )


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (``python -m training.backtest``)."""
    return run_entrypoint(lambda: run(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
