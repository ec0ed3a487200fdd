"""Training entrypoint: features -> search -> fit -> evaluate vs baselines -> MLflow -> gate."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from features import FeatureSpec, build_features, build_snapshots, feature_names
from features.io import LoadResult, load_events, load_orders
from features.synth import write_demo
from training import tracking
from training.baselines import BgNbdGammaGammaBaseline, SimpleFormulaBaseline
from training.config import DEMO_DIR, TrainConfig, parse_args
from training.evaluate import (
    churn_metrics,
    clv_metrics,
    decile_table,
    plot_calibration,
    plot_cumulative_gain,
    plot_deciles,
    plot_feature_importance,
)
from training.gate import GateDecision, decide
from training.scorer import CustomerValueModel, ModelParams
from training.search import Slices, fit_on_slices, search, split_by_customer
from training.split import CutoffPlan, temporal_split

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a training run produced (returned to callers and tests)."""

    run_id: str
    version: str
    promoted: bool
    plan: CutoffPlan
    metrics: dict[str, dict[str, float]]
    decision: GateDecision
    model: CustomerValueModel
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
    """Load (or generate, for the demo) orders and events; write any quarantine files."""
    orders_path, events_path = config.orders, config.events
    if orders_path is None:
        orders_path, events_path = ensure_demo_data(DEMO_DIR, config.demo_customers, config.seed)
    orders = load_orders(orders_path, columns=config.columns, strict=config.strict)
    events = (
        load_events(events_path, columns=config.columns, strict=config.strict)
        if events_path is not None
        else None
    )
    for name, result in (("orders", orders), ("service_events", events)):
        if result is None:
            continue
        result.write_quarantine(config.output_dir / "quarantine", name)
        logger.info(
            "%s: %d rows read, %d loaded, %d quarantined",
            name,
            result.rows_read,
            result.rows_loaded,
            result.rows_quarantined,
        )
    if orders.frame.empty:
        raise ValueError(
            f"no usable orders in {orders_path}: all {orders.rows_read} rows were quarantined "
            f"({'; '.join(orders.problems) or 'empty file'})"
        )
    return orders, events


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
    names = feature_names(spec)
    with watch.stage("load"):
        orders_result, events_result = load_inputs(config)
    orders = orders_result.frame
    events = events_result.frame if events_result is not None else None

    plan = temporal_split(
        orders["ordered_at"].min(),
        orders["ordered_at"].max(),
        horizon_days=config.horizon_days,
        step_days=config.step_days,
        max_train_cutoffs=config.max_train_cutoffs,
    )
    print(f"cutoffs: {plan.note}")
    with watch.stage("features"):
        snapshots = build_snapshots(orders, events, plan.all_cutoffs, spec, progress=True)
    counts = snapshots.groupby("cutoff").size()
    for cutoff, count in counts.items():
        role = (
            "holdout"
            if cutoff == plan.holdout_cutoff
            else "validation"
            if cutoff == plan.valid_cutoff
            else "train"
        )
        print(f"  {cutoff.date()}  {role:<10} {count:>9,} customers")
    empty = [str(c.date()) for c in plan.all_cutoffs if counts.get(c, 0) == 0]
    if empty:
        raise ValueError(f"snapshot(s) at {', '.join(empty)} have no customers; check the dates")

    train_rows = snapshots[snapshots["cutoff"].isin(plan.fit_cutoffs)]
    valid_rows = snapshots[snapshots["cutoff"] == plan.valid_cutoff]
    holdout = snapshots[snapshots["cutoff"] == plan.holdout_cutoff].set_index("customer_id")
    stop, score = split_by_customer(valid_rows, config.seed)
    slices = Slices(fit=train_rows, stop=stop, score=score)

    tracking.configure()
    fingerprint = tracking.dataset_fingerprint(orders, events)
    with tracking.start_run("train") as run_id:
        tracking.log_params({**config.to_params(), **_plan_params(plan)})
        tracking.log_dict(fingerprint, "dataset_fingerprint.json")
        tracking.set_tags(
            {
                "git_commit": tracking.git_commit(),
                "holdout_strict": plan.strict,
                "dataset_sha256": fingerprint["content_sha256"],
            }
        )
        tracking.log_metrics(
            {
                "rows_quarantined_orders": orders_result.rows_quarantined,
                "rows_quarantined_events": events_result.rows_quarantined if events_result else 0,
                **{f"snapshot_rows_{k}": v for k, v in _role_counts(plan, counts).items()},
            }
        )

        with watch.stage("search"):
            found = search(
                slices,
                names,
                spec,
                time_budget=config.time_budget,
                max_trials=config.max_trials,
                seed=config.seed,
                base=ModelParams(clv_objective=config.clv_objective),
            )
        print(
            f"search: {found.trials} trials on {found.fit_rows:,} rows in {found.seconds:.0f}s, "
            f"best validation score {found.best_score:.4f}"
        )
        tracking.log_params({f"model.{k}": v for k, v in found.params.to_dict().items()})

        with watch.stage("fit"):
            evaluation = found.model or fit_on_slices(
                slices, names, spec, found.params, config.seed
            )
            serving = (
                _refit(evaluation, snapshots, plan, names, config) if config.refit else evaluation
            )

        with watch.stage("baselines"):
            history = holdout[names]
            predictions = {"model": evaluation.predict(history)}
            predictions["simple"] = (
                SimpleFormulaBaseline().fit(history).predict(history, config.horizon_days)
            )
            predictions["bgnbd"] = (
                BgNbdGammaGammaBaseline(random_seed=config.seed)
                .fit(history)
                .predict(history, config.horizon_days)
            )

        with watch.stage("evaluate"):
            metrics = {name: _holdout_metrics(holdout, pred) for name, pred in predictions.items()}
            champion = _champion_metrics(orders, events, holdout, plan, spec)
            decision = decide(
                metrics["model"],
                {"simple": metrics["simple"], "bgnbd": metrics["bgnbd"]},
                champion,
            )
            for name, values in metrics.items():
                tracking.log_metrics(values, prefix=f"holdout.{name}.")
            if champion is not None:
                tracking.log_metrics(champion, prefix="holdout.champion.")
            _log_plots(holdout, predictions, evaluation)

        with watch.stage("logging"):
            example = holdout[names].head(5)
            version = tracking.log_and_register(serving, evaluation, example)
            promoted = False
            if decision.promote:
                tracking.set_alias(tracking.CHAMPION, version.version)
                promoted = True
            tracking.set_tags(
                {
                    "gate": "promoted" if promoted else "not promoted",
                    "gate_reasons": " | ".join(decision.reasons),
                }
            )
            tracking.log_table(decision.table, "gate")
        tracking.log_metrics({f"seconds_{k}": v for k, v in watch.seconds.items()})

    _print_report(decision, version, promoted, plan, watch.seconds)
    return TrainResult(
        run_id, version.version, promoted, plan, metrics, decision, serving, watch.seconds
    )


def _refit(
    evaluation: CustomerValueModel,
    snapshots: pd.DataFrame,
    plan: CutoffPlan,
    names: list[str],
    config: TrainConfig,
) -> CustomerValueModel:
    """The model that serves: same recipe, fit on every complete cutoff, the holdout's included.

    Half of the holdout's customers (by hash) calibrate the churn probability and are kept out
    of the fit; the tree counts are the ones early stopping chose for the evaluation model.
    """
    fit_part, calib_part = split_by_customer(
        snapshots[snapshots["cutoff"] == plan.holdout_cutoff], config.seed
    )
    rows = pd.concat([snapshots[snapshots["cutoff"] != plan.holdout_cutoff], fit_part])
    return CustomerValueModel(evaluation.spec, evaluation.params, seed=config.seed).fit(
        rows[names],
        rows["future_value"],
        rows["churned"],
        calibration=(calib_part[names], calib_part["churned"]),
        n_estimators=evaluation.best_iterations_,
    )


def _holdout_metrics(holdout: pd.DataFrame, pred: pd.DataFrame) -> dict[str, float]:
    clv = clv_metrics(holdout["future_value"].to_numpy(), pred["clv"].to_numpy())
    churn = churn_metrics(holdout["churned"].to_numpy(), pred["p_churn"].to_numpy())
    return {
        **{f"clv_{k}": v for k, v in clv.items()},
        **{f"churn_{k}": v for k, v in churn.items()},
    }


def _champion_metrics(
    orders: pd.DataFrame,
    events: pd.DataFrame | None,
    holdout: pd.DataFrame,
    plan: CutoffPlan,
    spec: FeatureSpec,
) -> dict[str, float] | None:
    """The current champion's evaluation twin scored on this run's holdout, or None.

    The twin never saw labels after its own holdout cutoff, which is at or before this one, so
    champion and candidate are judged on the same rows, both out of sample.
    """
    champion = tracking.alias_version(tracking.CHAMPION)
    if champion is None:
        print("gate: no champion yet; the candidate must beat the baselines")
        return None
    twin = tracking.load_model(champion.model_uri, which=tracking.EVALUATION_DIR)
    if twin.spec.horizon_days != spec.horizon_days:
        print(
            f"gate: champion v{champion.version} predicts {twin.spec.horizon_days} days, this "
            f"run {spec.horizon_days}; not comparable, so the champion stays (force with "
            "`make promote`)"
        )
        return {
            "clv_spearman": float("inf"),
            "clv_gini": float("inf"),
            "churn_roc_auc": float("inf"),
        }
    if twin.spec == spec:
        # Same spec: the holdout snapshot already holds exactly the features the twin needs.
        features = holdout
    else:
        features = build_features(orders, events, cutoff=plan.holdout_cutoff, spec=twin.spec)
    pred = twin.predict(features.loc[holdout.index, twin.feature_names_in_])
    return _holdout_metrics(holdout, pred)


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
        tracking.log_figure(plot_feature_importance(gain), f"{target}_feature_importance")
    tracking.log_table(decile_table(y_value, clv["model"]), "clv_deciles")


def _plan_params(plan: CutoffPlan) -> dict[str, str]:
    return {
        "plan.fit_cutoffs": ",".join(str(c.date()) for c in plan.fit_cutoffs),
        "plan.valid_cutoff": str(plan.valid_cutoff.date()),
        "plan.holdout_cutoff": str(plan.holdout_cutoff.date()),
        "plan.strict_holdout": str(plan.strict),
        "plan.data_end": str(plan.data_end.date()),
    }


def _role_counts(plan: CutoffPlan, counts: pd.Series) -> dict[str, int]:
    return {
        "train": int(sum(counts.get(c, 0) for c in plan.fit_cutoffs)),
        "validation": int(counts.get(plan.valid_cutoff, 0)),
        "holdout": int(counts.get(plan.holdout_cutoff, 0)),
    }


def _print_report(
    decision: GateDecision,
    version: tracking.RegisteredVersion,
    promoted: bool,
    plan: CutoffPlan,
    seconds: dict[str, float],
) -> None:
    print()
    print(f"holdout {plan.holdout_cutoff.date()} ({'strict' if plan.strict else 'NOT strict'}):")
    print(decision.table.to_string(float_format=lambda v: f"{v:,.4f}"))
    print()
    print(f"registered {version.name} version {version.version} (alias candidate)")
    verdict = "promoted to champion" if promoted else "NOT promoted"
    print(f"gate: {verdict}: " + "; ".join(decision.reasons))
    print("stage seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items()))


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (``python -m training.train``)."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("mlflow", "alembic", "urllib3", "pymc", "pytensor", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    config = parse_args(argv)
    try:
        run(config)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
