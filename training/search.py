"""Bounded hyperparameter search (optuna TPE), each trial a nested MLflow run."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import optuna
import pandas as pd

from features.spec import FeatureSpec
from training import tracking
from training.evaluate import normalized_gini, roc_auc
from training.model import CustomerValueModel, ModelParams, TimeBudgetSpent
from training.purchase import PurchaseModel

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Slices:
    """Short-window training rows cut by time and by customer (never by row within one).

    ``fit`` comes from the older window cutoffs; ``stop`` and ``score`` are two halves (by
    customer) of the latest one: early stopping uses ``stop``, the search is judged on
    ``score``. Labels are ``window_value`` and ``window_churned``. The holdout is not here on
    purpose.
    """

    fit: pd.DataFrame
    stop: pd.DataFrame
    score: pd.DataFrame


@dataclass(frozen=True)
class PartsRecipe:
    """What every boosted fit of one training cutoff shares: its purchase model and window."""

    purchase: PurchaseModel
    window_days: int
    season: float


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
    """Score a trial on the scoring slice (higher wins).

    The boosted parts' window value normalised Gini plus their window churn ROC-AUC.
    """
    parts = model.parts_matrix(score[features].to_numpy(dtype="float64"))
    return normalized_gini(score["window_value"], parts["value"]) + roc_auc(
        score["window_churned"], parts["churn"]
    )


def fit_on_slices(
    slices: Slices,
    features: list[str],
    spec: FeatureSpec,
    params: ModelParams,
    seed: int,
    recipe: PartsRecipe,
    deadline: float | None = None,
) -> CustomerValueModel:
    """Fit the boosted parts on ``fit`` and early-stop them on ``stop`` (no stack yet).

    ``deadline`` (a ``time.perf_counter()`` value): past it the fit raises
    :class:`training.model.TimeBudgetSpent`.
    """
    return CustomerValueModel(spec, params, seed=seed).fit(
        slices.fit[features],
        slices.fit["window_value"],
        slices.fit["window_churned"],
        purchase=recipe.purchase,
        window_days=recipe.window_days,
        season=recipe.season,
        early_stopping=(
            slices.stop[features],
            slices.stop["window_value"],
            slices.stop["window_churned"],
        ),
        deadline=deadline,
    )


def search(
    slices: Slices,
    features: list[str],
    spec: FeatureSpec,
    *,
    recipe: PartsRecipe,
    time_budget: float,
    max_trials: int,
    seed: int,
    base: ModelParams | None = None,
    max_fit_rows: int = 400_000,
) -> SearchResult:
    """Tune :class:`ModelParams` with optuna's seeded TPE over ``max_trials`` trials.

    Trial 0 is always the default parameters, so the search can only improve on them. Each
    trial is logged as a nested MLflow run (params + validation scores) when a run is active.
    The search is bounded by its number of trials, so the same data, seed and trials give the
    same model on any machine under any load. ``time_budget`` (seconds, 0: none) is an extra
    bound only for who asks for one: it makes the number of trials, and so the model, depend
    on the machine's speed at the time. It is a bound, not a wish: no trial starts after it,
    and a trial still boosting when it passes stops after its current tree and is pruned (it
    did not finish, so it has no score). When not even the first trial (the
    default parameters) completes, the search returns the default parameters, as with no
    search. Trials fit on at most ``max_fit_rows`` training rows (a seeded sample of whole
    customers) so that a large base still gets several trials; the final model is then fit on
    every row.
    """
    base = base or ModelParams()
    started = time.perf_counter()
    if max_trials <= 0:
        return SearchResult(base, float("nan"), 0, 0.0)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trial_slices = _cap_rows(slices, max_fit_rows, seed)
    sampled = len(trial_slices.fit) < len(slices.fit)
    best: dict[str, Any] = {}
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=6)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.enqueue_trial(_space_values(base))
    deadline = started + time_budget if time_budget > 0 else None

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
        tick = time.perf_counter()
        try:
            model = fit_on_slices(trial_slices, features, spec, params, seed, recipe, deadline)
        except TimeBudgetSpent:
            logger.info(
                "trial %d: stopped at the time budget (%.0fs) after %.1fs; not counted",
                trial.number,
                time_budget,
                time.perf_counter() - tick,
            )
            raise optuna.TrialPruned() from None
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

    study.optimize(
        objective,
        n_trials=max_trials,
        timeout=time_budget if time_budget > 0 else None,
        gc_after_trial=False,
    )
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        logger.warning(
            "no search trial finished within the time budget of %.0fs; the default parameters "
            "are used (a larger --time-budget, or --max-trials without one, searches)",
            time_budget,
        )
        return SearchResult(base, float("nan"), len(study.trials), time.perf_counter() - started)
    winner = study.best_trial
    return SearchResult(
        replace(base, **winner.params),
        float(study.best_value),
        len(study.trials),
        time.perf_counter() - started,
        fit_rows=len(trial_slices.fit),
        model=best.get("model"),
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
    return {name: getattr(params, name) for name in names}


def split_by_customer(
    frame: pd.DataFrame, seed: int, share: float = 0.5
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split rows by a seeded hash of ``customer_id`` (stable across runs).

    About ``share`` of the customers, with all their rows, go to the first part.
    """
    hashed = pd.util.hash_pandas_object(frame["customer_id"], index=False, hash_key=f"{seed:016d}")
    first = (hashed.to_numpy() % np.uint64(10_000)) < np.uint64(round(10_000 * share))
    return frame.loc[first], frame.loc[~first]
