"""Training entrypoint: fit (training.pipeline) -> evaluate vs baselines -> MLflow -> gate."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from demo.generator import write_demo
from features import FeatureSpec, build_features
from features.io import LoadResult
from features.labels import LABEL_COLUMNS
from features.run_inputs import NoUsableOrders, load_run_inputs, no_usable_orders
from training import tracking
from training.config import DEMO_DIR, FitSettings, TrainConfig, parse_args, run_entrypoint
from training.evaluate import (
    decile_table,
    holdout_metrics,
    likely_coverage_text,
    paired_standard_errors,
)
from training.gate import GateDecision, decide, report_table
from training.level import BuyersLevel, Level
from training.model import CustomerValueModel
from training.pipeline import FAMILIES, Plan, Trained, restack, train_models
from training.plots import (
    plot_calibration,
    plot_cumulative_gain,
    plot_deciles,
    plot_feature_importance,
)
from training.readiness import check_before_training
from training.snapshots import SnapshotSource

#: The baselines every run reports and the gate compares with.
BASELINES: tuple[str, ...] = ("simple", "bgnbd", "pareto_nbd")
#: Everything the candidate is compared with on the holdout.
OPPONENTS: tuple[str, ...] = (*BASELINES, "champion")

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a training run produced (returned to callers and tests)."""

    run_id: str
    version: str
    promoted: bool
    plan: Plan
    metrics: dict[str, dict[str, float]]
    decision: GateDecision
    model: CustomerValueModel
    family: str
    stage_seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class _Stopwatch:
    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        logger.info("stage %s ...", name)
        yield
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
        logger.info("stage %s done in %.1fs", name, self.seconds[name])


def load_inputs(config: TrainConfig) -> tuple[LoadResult, LoadResult | None]:
    """Load (or generate, for the demo) orders and events; write any quarantine files.

    Raises
    ------
    features.run_inputs.NoUsableOrders
        When no order row is usable.
    """
    orders_path, events_path = config.orders, config.events
    if orders_path is None:
        orders_path, events_path = ensure_demo_data(DEMO_DIR, config.demo_customers, config.seed)
    inputs = load_run_inputs(
        orders_path,
        events_path,
        columns=config.columns,
        strict=config.strict,
        quarantine_dir=config.output_dir / "quarantine",
    )
    return inputs.orders, inputs.events


def load_on_spark(
    config: TrainConfig, spec: FeatureSpec, settings: FitSettings
) -> tuple[LoadResult, LoadResult | None, SnapshotSource]:
    """The history read, validated and sampled on Spark, and its snapshots built there.

    See :mod:`training.spark_snapshots` (imported here: the spark extra is optional).
    """
    from features.spark_input import spark_session
    from training.spark_snapshots import load_history, snapshot_source

    orders_path, events_path = config.orders, config.events
    if orders_path is None:
        orders_path, events_path = ensure_demo_data(DEMO_DIR, config.demo_customers, config.seed)
    history = load_history(
        spark_session(config.spark_master),
        orders_path,
        events_path,
        columns=config.columns,
        sample_customers=config.sample_customers,
        seed=config.seed,
        quarantine_dir=config.output_dir / "quarantine",
    )
    print(
        f"spark: {history.customers:,} customers, {history.sampled:,} in the training sample, "
        f"{history.groups} groups"
    )
    if history.orders_result.frame.empty:
        result = history.orders_result
        raise NoUsableOrders(
            no_usable_orders(
                orders_path, result.rows_read, result.rows_quarantined, result.problems
            )
        )
    source = snapshot_source(
        history,
        spec=spec,
        window_days=settings.window_days,
        limit=settings.max_fit_rows,
        seed=settings.seed,
    )
    return history.orders_result, history.events_result, source


def ensure_demo_data(directory: Path, customers: int, seed: int) -> tuple[Path, Path]:
    """Return the demo files, generating them first if they are not there."""
    orders_path = directory / "orders.parquet"
    events_path = directory / "service_events.parquet"
    if not orders_path.exists() or not events_path.exists():
        logger.info(
            "no demo data in %s: generating %d customers (seed %d)", directory, customers, seed
        )
        write_demo(customers=customers, seed=seed, out=directory)
    return orders_path, events_path


def run(config: TrainConfig) -> TrainResult:
    """Run the whole training pipeline for ``config``; see the module docstring."""
    watch = _Stopwatch()
    spec = FeatureSpec(horizon_days=config.horizon_days)
    settings = config.fit_settings()
    snapshots: SnapshotSource | None = None
    with watch.stage("load"):
        if config.spark:
            orders_result, events_result, snapshots = load_on_spark(config, spec, settings)
        else:
            orders_result, events_result = load_inputs(config)
    orders = orders_result.frame
    events = events_result.frame if events_result is not None else None

    with watch.stage("check"):
        # Before any MLflow run: data that cannot support a model is refused with the
        # thresholds it failed, instead of a model that looks fine on too little data.
        readiness = check_before_training(
            orders,
            events,
            horizon_days=config.horizon_days,
            quarantined={
                "orders": orders_result.rows_quarantined,
                "service_events": events_result.rows_quarantined if events_result else 0,
            },
            problems=orders_result.problems + (events_result.problems if events_result else []),
            force=config.force,
            window_days=settings.window_days,
            step_days=settings.step_days,
            max_cutoffs=settings.max_cutoffs,
            min_history_days=settings.min_history_days,
        )

    model_name = config.model_name
    tracking.configure(experiment=model_name)
    fingerprint = tracking.dataset_fingerprint(orders, events)
    source = config.orders if config.orders is not None else DEMO_DIR / "orders.parquet"
    # Runs are told apart in the MLflow UI by what they learnt from, not all named "train".
    run_name = f"train {tracking.dataset_name(source)} {config.horizon_days}d"
    with tracking.start_run(run_name) as run_id:
        tracking.log_params(config.to_params())
        tracking.log_dict(fingerprint, "dataset_fingerprint.json")
        tracking.log_dataset(orders, source, fingerprint)
        tracking.set_tags(
            {
                "git_commit": tracking.git_commit(),
                "dataset_sha256": fingerprint["content_sha256"],
                "readiness": readiness.verdict,
            }
        )
        tracking.log_text(readiness.to_markdown(), "readiness.md")
        tracking.log_metrics(
            {
                "rows_quarantined_orders": orders_result.rows_quarantined,
                "rows_quarantined_events": events_result.rows_quarantined if events_result else 0,
            }
        )
        with watch.stage("fit"):
            trained = train_models(
                orders,
                events,
                spec=spec,
                settings=settings,
                refit=config.refit,
                snapshots=snapshots,
            )
        plan = trained.plan
        print(f"cutoffs: {plan.note}")
        tracking.log_params(_plan_params(plan))
        tracking.set_tags({"family": trained.family})
        _log_level(trained.level)
        _log_churn_level(trained.churn_level)
        tracking.set_tags({"season_basis": trained.season})
        if trained.search is not None and trained.search.trials:
            found = trained.search
            print(
                f"search: {found.trials} trials on {found.fit_rows:,} rows in "
                f"{found.seconds:.0f}s, best validation score {found.best_score:.4f}"
            )
            tracking.log_params({f"model.{k}": v for k, v in found.params.to_dict().items()})

        with watch.stage("evaluate"):
            judged = trained.judged
            champion, comparable, outdated = _champion_predictions(
                orders, events, judged, trained.fitting, plan, spec, model_name
            )
            predictions = dict(trained.predictions)
            metrics = dict(trained.metrics)
            if champion is not None:
                predictions["champion"] = champion
                metrics["champion"] = holdout_metrics(judged, champion)
            opponents = {
                name: predictions[name] for name in ("model", *OPPONENTS) if name in predictions
            }
            noise = paired_standard_errors(judged, opponents, "model", seed=config.seed)
            decision = decide(
                metrics["model"],
                {name: metrics[name] for name in BASELINES},
                metrics.get("champion"),
                noise=noise["model"],
                comparable=comparable,
                champion_outdated=outdated,
            )
            for name, values in metrics.items():
                tracking.log_metrics(values, prefix=f"holdout.{name}.")
            for name, values in noise.items():
                prefix = "holdout.se." if name == "model" else f"holdout.se_vs_{name}."
                tracking.log_metrics(values, prefix=prefix)
            tracking.log_metrics(trained.profile, prefix="holdout.profile.")
            _log_plots(
                judged, {k: predictions[k] for k in ("model", *BASELINES)}, trained.evaluation
            )

        with watch.stage("logging"):
            example = judged[trained.serving.feature_names_in_].head(5)
            version = tracking.log_and_register(
                trained.serving, trained.evaluation, example, name=model_name
            )
            tracking.describe_version(
                version,
                _version_description(source, fingerprint, config, trained.family, decision),
            )
            if decision.promote:
                tracking.set_alias(tracking.CHAMPION, version.version, model_name)
            tracking.set_tags(
                {"gate": decision.outcome, "gate_reasons": " | ".join(decision.reasons)}
            )
            tracking.log_table(decision.table, "gate")
            tracking.log_table(_family_table(metrics), "families")
        tracking.log_metrics({f"seconds_{k}": v for k, v in watch.seconds.items()})

    _print_report(decision, version, trained, metrics, noise, watch.seconds)
    return TrainResult(
        run_id,
        version.version,
        decision.promote,
        plan,
        metrics,
        decision,
        trained.serving,
        trained.family,
        watch.seconds,
    )


def _log_level(level: Level) -> None:
    """The served level, why, and its track record (training.level) on the MLflow run."""
    tracking.log_params({"level.source": level.source, "level.factor": f"{level.factor:.6f}"})
    tracking.set_tags({"level_reason": level.reason})
    tracking.log_dict(level.to_dict(), "level.json")
    band = level.band_pct()
    tracking.log_metrics(
        {
            "level.factor": level.factor,
            "level.origins": float(len(level.origins)),
            "level.error_low_pct": band[0] if band else float("nan"),
            "level.error_high_pct": band[1] if band else float("nan"),
        }
    )
    if level.origins:
        tracking.log_table(level.table().set_index("origin"), "level_track_record")


def _log_churn_level(level: BuyersLevel) -> None:
    """The served churn rate (training.level.buyers_blend) on the MLflow run."""
    tracking.log_params({"churn_level.shift": f"{level.shift:.6f}"})
    tracking.set_tags({"churn_level_reason": level.reason})
    tracking.log_dict(level.to_dict(), "churn_level.json")
    tracking.log_metrics(
        {"churn_level.shift": level.shift}
        | {f"churn_level.buyers_{name}": count for name, count in level.counts.items()}
        | {f"churn_level.season_{name}": value for name, value in level.season.items()}
    )


def _version_description(
    source: Path | str,
    fingerprint: dict[str, Any],
    config: TrainConfig,
    family: str,
    decision: GateDecision,
) -> str:
    """What a registered version learnt from and how the gate judged it, for the registry."""
    return (
        f"Trained on {source} ({fingerprint['customers']:,} customers, "
        f"{fingerprint['orders_rows']:,} orders, {fingerprint['first_order'][:10]} to "
        f"{fingerprint['last_order'][:10]}; content sha256 {fingerprint['content_sha256'][:12]}), "
        f"{config.horizon_days}-day horizon, {family} family. Gate: {decision.outcome}: "
        + "; ".join(decision.reasons)
    )


def _champion_predictions(
    orders: pd.DataFrame,
    events: pd.DataFrame | None,
    judged: pd.DataFrame,
    fitting: pd.DataFrame | None,
    plan: Plan,
    spec: FeatureSpec,
    name: str,
) -> tuple[pd.DataFrame | None, bool, bool]:
    """The champion's evaluation twin scored on this run's judging half, and its standing.

    The twin's parts never saw labels after its own holdout cutoff, which is at or before this
    one. Its stack, though, was fit on its whole holdout: on the same data that holds the
    judging half's labels. So the twin is restacked like the candidate, in the champion's
    family (its run's ``family`` tag), on this run's ``fitting`` half, and both are judged out
    of sample on the same rows. The restack is this code's: what is judged is the champion's
    parts, under the stack the candidate also gets. Returns the predictions, whether they are
    comparable (a champion of another horizon is not: None, False) and whether the champion
    is outdated (saved without the customer profile, its risk groups or its usual customer).
    """
    # The champion of this shop's model only: a model of other data is never the judge.
    champion = tracking.alias_version(tracking.CHAMPION, name)
    if champion is None:
        print(f"gate: {name} has no champion yet; the candidate must hold up against the baselines")
        return None, True, False
    # Which version the "champion" column of this run's tables is: make promote names it.
    tracking.set_tags({"judged_champion_version": champion.version})
    try:
        twin = tracking.load_model(champion.model_uri, which=tracking.EVALUATION_DIR)
    except ValueError as err:  # an older model format: it cannot score these features
        print(f"gate: champion v{champion.version} cannot be loaded ({err}); not comparable")
        return None, False, True
    if twin.spec.horizon_days != spec.horizon_days:
        print(
            f"gate: champion v{champion.version} predicts {twin.spec.horizon_days} days, this "
            f"run {spec.horizon_days}; not comparable"
        )
        return None, False, False
    # Saved without the customer profile, with its range calibrated over the whole base only
    # (before the risk groups, docs/experiments.md entry 48), or without the usual customer
    # its reasons are read against (training.model.USUAL_FEATURES): a tying candidate
    # replaces it, so that retraining after an upgrade serves what this code answers.
    profile = twin.require_stack().profile
    outdated = profile is None or profile.risk_edges is None or not twin.usual_
    if twin.spec == spec:
        # Same spec: the holdout rows already hold exactly the features the twin needs.
        features = judged
        fit_rows = fitting
    else:
        features = build_features(orders, events, cutoff=plan.holdout, spec=twin.spec)
        labels = [*LABEL_COLUMNS, "future_orders"]
        fit_rows = None if fitting is None else features.join(fitting[labels], how="inner")
    if fit_rows is not None:
        family = tracking.run_tags(champion).get("family")
        if family not in FAMILIES:
            print(f"gate: champion v{champion.version} has no family tag; restacked as hybrid")
            family = "hybrid"
        twin = restack(twin, fit_rows, family=family)
    return twin.predict(features.loc[judged.index, twin.feature_names_in_]), True, outdated


def _log_plots(
    holdout: pd.DataFrame, predictions: dict[str, pd.DataFrame], model: CustomerValueModel
) -> None:
    y_value = holdout["future_value"].to_numpy()
    y_churn = holdout["churned"].to_numpy()
    clv = {name: pred["clv"].to_numpy() for name, pred in predictions.items()}
    churn = {name: pred["p_churn"].to_numpy() for name, pred in predictions.items()}
    tracking.log_figure(plot_deciles(y_value, clv), "clv_deciles")
    tracking.log_figure(plot_cumulative_gain(y_value, clv), "clv_cumulative_gain")
    tracking.log_figure(plot_calibration(y_churn, churn), "churn_calibration")
    for target, booster in (("clv", model.clv_model_), ("churn", model.churn_model_)):
        gain = pd.Series(booster.get_booster().get_score(importance_type="total_gain"))
        # The trees are fit on a matrix, so XGBoost names the columns f0, f1, ...: put the
        # model's own names back, so the figure (and the report that embeds it) says which.
        names = model.derived_names_
        gain.index = [
            names[int(key[1:])] if key[1:].isdigit() and int(key[1:]) < len(names) else key
            for key in gain.index
        ]
        tracking.log_figure(plot_feature_importance(gain), f"{target}_feature_importance")
    tracking.log_table(decile_table(y_value, clv["model"]), "clv_deciles")


def _plan_params(plan: Plan) -> dict[str, str]:
    return {
        "plan.holdout_cutoff": str(plan.holdout.date()),
        "plan.data_end": str(plan.data_end.date()),
        "plan.window_days": str(plan.window_days),
        "plan.twin_cutoffs": f"{plan.twin_cutoffs[0].date()}..{plan.twin_cutoffs[-1].date()}",
        "plan.serving_cutoffs": (
            f"{plan.serving_cutoffs[0].date()}..{plan.serving_cutoffs[-1].date()}"
        ),
    }


def _family_table(metrics: dict[str, dict[str, float]]) -> pd.DataFrame:
    return report_table({name: metrics[name] for name in FAMILIES})


def profile_summary(profile: dict[str, float]) -> str:
    """The profile against the judging half, as one paragraph a person reads."""
    return (
        f"profile: expected orders total {profile['orders_total_error_pct']:+.1f}% vs actual "
        f"(purchase model alone {profile['purchase_orders_total_error_pct']:+.1f}%), MAE "
        f"{profile['orders_mae']:.2f} ({profile['purchase_orders_mae']:.2f}); "
        f"{profile['interval_level']:.0%} range covers {profile['interval_coverage']:.1%} of "
        f"customers ({likely_coverage_text(profile)} of those with p_churn under .5); next-order "
        f"date off by {profile['next_order_mae_days']:.0f} days on "
        f"average (median {profile['next_order_median_error_days']:+.0f}) for the "
        f"{profile['next_order_customers']:,.0f} customers who ordered and had a date"
    )


def _print_report(
    decision: GateDecision,
    version: tracking.RegisteredVersion,
    trained: Trained,
    metrics: dict[str, dict[str, float]],
    noise: dict[str, dict[str, float]],
    seconds: dict[str, float],
) -> None:
    plan = trained.plan
    print()
    print(
        f"model families on the judging half of the holdout {plan.holdout.date()} "
        f"({len(trained.judged):,} customers; the other half fit the stack):"
    )
    print(_family_table(metrics).to_string(float_format=lambda v: f"{v:,.4f}"))
    print(f"chosen family: {trained.family}")
    print(profile_summary(trained.profile))
    print()
    print(
        "candidate vs baselines on the same customers (se: bootstrap standard error of the "
        "candidate's metric, the gate's noise; se vs X: of the candidate-minus-X difference):"
    )
    table = decision.table.copy()
    table.insert(1, "se", [noise["model"].get(m, float("nan")) for m in table.index])
    for name in decision.table.columns:
        if name in noise:
            table[f"se vs {name}"] = [noise[name].get(m, float("nan")) for m in table.index]
    print(table.to_string(float_format=lambda v: f"{v:,.4f}"))
    print()
    print(trained.level.summary())
    if trained.level.origins:
        print("the served level's track record (total error at earlier origins, in %):")
        print(trained.level.table().to_string(index=False))
    print(trained.churn_level.summary())
    print(f"season: {trained.season}")
    print()
    print(f"registered {version.name} version {version.version} (alias candidate)")
    print(f"gate: {decision.outcome}: " + "; ".join(decision.reasons))
    print("stage seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items()))
    # Where the fit stage's time went (training.pipeline.Trained.seconds): the search, the
    # level's replay and the window rows are what grow with the base.
    print("fit phases: " + ", ".join(f"{k} {v:.1f}" for k, v in trained.seconds.items()))


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (``python -m training.train``)."""
    return run_entrypoint(lambda: run(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
