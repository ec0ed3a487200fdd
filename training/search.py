"""Bounded hyperparameter search (optuna TPE), each trial a nested MLflow run."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace

import numpy as np
import optuna
import pandas as pd

from features.spec import FeatureSpec
from training import tracking
from training.evaluate import normalized_gini, roc_auc
from training.scorer import CustomerValueModel, ModelParams

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Slices:
    """The training rows cut by time and by customer (never by row within a customer-cutoff).

    ``fit`` comes from the older training cutoffs; ``stop`` and ``score`` are two halves (by
    customer) of the latest training cutoff: early stopping uses ``stop``, the search and the
    churn calibration are judged on ``score``. The holdout is not here on purpose.
    """

    fit: pd.DataFrame
    stop: pd.DataFrame
    score: pd.DataFrame


@dataclass(frozen=True)
class SearchResult:
    """The best parameters found and what the search did.

    ``model`` is the best trial's fitted model when the trials saw every training row (it is
    then exactly the model a final fit would produce, so it is reused instead of refit).
    """

    params: ModelParams
    best_score: float
    trials: int
    seconds: float
    fit_rows: int = 0
    model: CustomerValueModel | None = None


def trial_score(model: CustomerValueModel, score: pd.DataFrame, features: list[str]) -> float:
    """Search objective: CLV normalised Gini + churn ROC-AUC on the scoring slice (higher wins)."""
    pred = model.predict(score[features])
    return normalized_gini(score["future_value"], pred["clv"]) + roc_auc(
        score["churned"], pred["p_churn"]
    )


def fit_on_slices(
    slices: Slices, features: list[str], spec: FeatureSpec, params: ModelParams, seed: int
) -> CustomerValueModel:
    """Fit on ``fit``, early-stop on ``stop``, calibrate churn on ``score``."""
    return CustomerValueModel(spec, params, seed=seed).fit(
        slices.fit[features],
        slices.fit["future_value"],
        slices.fit["churned"],
        early_stopping=(slices.stop[features], slices.stop["future_value"], slices.stop["churned"]),
        calibration=(slices.score[features], slices.score["churned"]),
    )


def search(
    slices: Slices,
    features: list[str],
    spec: FeatureSpec,
    *,
    time_budget: float,
    max_trials: int,
    seed: int,
    base: ModelParams | None = None,
    max_fit_rows: int = 400_000,
) -> SearchResult:
    """Tune :class:`ModelParams` with optuna's seeded TPE within a time budget.

    Trial 0 is always the default parameters, so the search can only improve on them. Each
    trial is logged as a nested MLflow run (params + validation scores) when a run is active.
    With the same data, seed and number of trials the result is the same; the time budget may
    stop a slower machine after fewer trials. Trials fit on at most ``max_fit_rows`` training
    rows (a seeded sample of whole customers) so that a large base still gets several trials;
    the final model is then fit on every row.
    """
    base = base or ModelParams()
    started = time.perf_counter()
    if time_budget <= 0:
        return SearchResult(base, float("nan"), 0, 0.0)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trial_slices = _cap_rows(slices, max_fit_rows, seed)
    sampled = len(trial_slices.fit) < len(slices.fit)
    best: dict[str, object] = {}
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=6)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.enqueue_trial(_space_values(base))

    def objective(trial: optuna.Trial) -> float:
        params = replace(
            base,
            # Bounded so the model stays within its serving budget (see ModelParams): a lower
            # rate would run into the tree cap, deeper trees make every contribution dearer.
            learning_rate=trial.suggest_float("learning_rate", 0.05, 0.3, log=True),
            max_depth=trial.suggest_int("max_depth", 3, 7),
            min_child_weight=trial.suggest_float("min_child_weight", 1.0, 50.0, log=True),
            subsample=trial.suggest_float("subsample", 0.6, 1.0),
            colsample_bytree=trial.suggest_float("colsample_bytree", 0.5, 1.0),
            reg_lambda=trial.suggest_float("reg_lambda", 0.1, 20.0, log=True),
        )
        if base.clv_objective == "reg:tweedie":
            params = replace(
                params,
                tweedie_variance_power=trial.suggest_float("tweedie_variance_power", 1.1, 1.8),
            )
        tick = time.perf_counter()
        model = fit_on_slices(trial_slices, features, spec, params, seed)
        value = trial_score(model, trial_slices.score, features)
        if not sampled and value > best.get("score", float("-inf")):
            best.update(score=value, model=model)
        if tracking.has_active_run():
            with tracking.start_run(f"trial-{trial.number}", nested=True):
                tracking.log_params({**trial.params, "trial": trial.number})
                tracking.log_metrics(
                    {
                        "valid_score": value,
                        "clv_trees": model.best_iterations_[0],
                        "churn_trees": model.best_iterations_[1],
                        "seconds": time.perf_counter() - tick,
                    }
                )
        logger.info("trial %d: score %.4f (%.1fs)", trial.number, value, time.perf_counter() - tick)
        return value

    study.optimize(objective, n_trials=max_trials, timeout=time_budget, gc_after_trial=False)
    winner = study.best_trial
    return SearchResult(
        replace(base, **winner.params),
        float(winner.value),
        len(study.trials),
        time.perf_counter() - started,
        fit_rows=len(trial_slices.fit),
        model=best.get("model"),  # type: ignore[arg-type]
    )


def _cap_rows(slices: Slices, max_fit_rows: int, seed: int) -> Slices:
    """Keep at most ``max_fit_rows`` fit rows, sampling whole customers (seeded)."""
    if len(slices.fit) <= max_fit_rows:
        return slices
    hashed = pd.util.hash_pandas_object(
        slices.fit["customer_id"], index=False, hash_key=f"{seed + 1:016d}"
    ).to_numpy()
    keep = (hashed % np.uint64(1_000_000)) < np.uint64(1_000_000 * max_fit_rows // len(slices.fit))
    return replace(slices, fit=slices.fit.loc[keep])


def _space_values(params: ModelParams) -> dict[str, float]:
    names = (
        "learning_rate",
        "max_depth",
        "min_child_weight",
        "subsample",
        "colsample_bytree",
        "reg_lambda",
    )
    values = {name: getattr(params, name) for name in names}
    if params.clv_objective == "reg:tweedie":
        values["tweedie_variance_power"] = params.tweedie_variance_power
    return values


def split_by_customer(frame: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split rows into two halves by a seeded hash of ``customer_id`` (stable across runs)."""
    hashed = pd.util.hash_pandas_object(frame["customer_id"], index=False, hash_key=f"{seed:016d}")
    first = (hashed.to_numpy() % np.uint64(2)) == 0
    return frame.loc[first], frame.loc[~first]
