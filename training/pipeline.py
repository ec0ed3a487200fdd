"""Fit the model of one cutoff, and its evaluation twin, from a store's history.

Shared by ``training.train`` (which then tracks, gates and registers) and
``training.backtest`` (which replays it at past cutoffs). Everything here uses only orders
before the cutoff it is given.

For data ending at ``end`` and a horizon ``H``:

* the **evaluation twin** is fit on the history before ``holdout = end - H``: purchase model
  on the features at ``holdout``, boosted parts on short windows ending on or before it;
* the **holdout** is every customer at ``holdout`` with their real horizon labels. Half of
  them (by a hash of the id) fit the twin's stack; the other half judge the twin, the model
  families and the baselines: nothing fit on that half, strict by construction;
* the **serving model** is fit the same way on the history before ``end`` and takes the
  stack the twin learnt on the whole holdout. The stack calibrates the twin's purchase
  figures, so the serving model feeds it its own refit purchase model's figures restated in
  the twin's scale (:func:`in_own_terms`): the twin's level and spread, the refit's order.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import pandas as pd

from features import FeatureSpec, build_features, build_labels, feature_names
from features.season import season_basis, seasonal_index
from training.baselines import (
    BgNbdGammaGammaBaseline,
    ParetoNbdGammaGammaBaseline,
    SimpleFormulaBaseline,
)
from training.config import FitSettings
from training.evaluate import holdout_metrics, profile_metrics
from training.gate import GATE_METRICS, better
from training.level import (
    BuyersLevel,
    HorizonSeason,
    Level,
    buyers,
    buyers_blend,
    choose_level,
    classical_figures,
    replay_origins,
    with_blend,
)
from training.model import CustomerValueModel, ModelParams
from training.profile import DEFAULT_LEVEL
from training.purchase import PurchaseModel
from training.search import (
    PartsRecipe,
    SearchResult,
    Slices,
    fit_on_slices,
    search,
    split_by_customer,
)
from training.snapshots import SnapshotSource, sampled_window_snapshots

# window_snapshots: re-exported for callers that build unsampled rows.
from training.snapshots import window_snapshots as window_snapshots
from training.split import Plan, plan_cutoffs
from training.stack import Stack

logger = logging.getLogger(__name__)


@contextmanager
def _timed(seconds: dict[str, float], phase: str) -> Iterator[None]:
    """Add the wall time of the block to ``seconds[phase]``."""
    started = time.perf_counter()
    try:
        yield
    finally:
        seconds[phase] = seconds.get(phase, 0.0) + time.perf_counter() - started


#: The model families the training compares on the judging half of the holdout.
FAMILIES: tuple[str, ...] = ("hybrid", "classical", "boosted")


@dataclass
class FittedCutoff:
    """The parts fit on the history before one cutoff."""

    cutoff: pd.Timestamp
    features: pd.DataFrame
    bgnbd: BgNbdGammaGammaBaseline
    model: CustomerValueModel
    search: SearchResult | None = None
    #: Wall seconds per phase: features, bgnbd, window_rows, boosted.
    seconds: dict[str, float] = field(default_factory=dict)


def fit_cutoff(
    orders: pd.DataFrame,
    events: pd.DataFrame | None,
    *,
    cutoff: pd.Timestamp,
    window_cutoffs: list[pd.Timestamp],
    spec: FeatureSpec,
    settings: FitSettings,
    params: ModelParams | None = None,
    n_estimators: tuple[int, int] | None = None,
    snapshots: SnapshotSource | None = None,
) -> FittedCutoff:
    """Fit the purchase model and the boosted parts on the history before ``cutoff``.

    ``snapshots`` gives the fit's window rows (already sampled to ``settings.max_fit_rows``
    with :func:`training.snapshots.sample_customers`' rule) when they are built elsewhere, e.g.
    on Spark (:mod:`training.spark_snapshots`); by default they are built here, on the sampled
    customers only (:func:`training.snapshots.sampled_window_snapshots`).

    With ``n_estimators`` the boosted parts are fit on every window row with those tree
    counts; otherwise the latest window cutoff early-stops them (and the search, when
    ``settings.max_trials`` > 0, tunes them on it first).
    """
    seconds: dict[str, float] = {}
    with _timed(seconds, "features"):
        features = build_features(orders, events, cutoff=cutoff, spec=spec)
    with _timed(seconds, "bgnbd"):
        bgnbd = BgNbdGammaGammaBaseline(random_seed=settings.seed).fit(features)
    purchase = PurchaseModel(**bgnbd.bgnbd_params_, **bgnbd.gamma_gamma_params_)
    window = min(settings.window_days, spec.horizon_days)
    recipe = PartsRecipe(
        purchase, window, seasonal_index(orders, cutoff=cutoff, horizon_days=spec.horizon_days)
    )
    with _timed(seconds, "window_rows"):
        if snapshots is not None:
            rows = snapshots(window_cutoffs)
        else:
            rows = sampled_window_snapshots(
                orders,
                events,
                window_cutoffs,
                spec,
                window,
                limit=settings.max_fit_rows,
                seed=settings.seed,
            )
    logger.info(
        "fit at %s: %d window rows at %d cutoffs in %.1fs",
        cutoff.date(),
        len(rows),
        len(window_cutoffs),
        seconds["window_rows"],
    )
    names = feature_names(spec)
    base = params or settings.params
    if n_estimators is not None:
        with _timed(seconds, "boosted"):
            model = CustomerValueModel(spec, base, seed=settings.seed).fit(
                rows[names],
                rows["window_value"],
                rows["window_churned"],
                purchase=purchase,
                window_days=window,
                season=recipe.season,
                n_estimators=n_estimators,
            )
        return FittedCutoff(cutoff, features, bgnbd, model, seconds=seconds)
    # Early stopping and the search judge on other customers at the same cutoffs: holding out
    # the latest cutoff instead would take the rows most like the ones scored out of the fit
    # (on short histories there are only a few window cutoffs).
    fit_rows, later = split_by_customer(rows, settings.seed, share=0.8)
    stop, score = split_by_customer(later, settings.seed + 1)
    slices = Slices(fit=fit_rows, stop=stop, score=score)
    with _timed(seconds, "boosted"):
        found = search(
            slices,
            names,
            spec,
            recipe=recipe,
            time_budget=settings.time_budget,
            max_trials=settings.max_trials,
            seed=settings.seed,
            base=base,
        )
        model = found.model or fit_on_slices(
            slices, names, spec, found.params, settings.seed, recipe
        )
    return FittedCutoff(cutoff, features, bgnbd, model, found, seconds)


@dataclass
class Trained:
    """What :func:`train_models` produced.

    Attributes
    ----------
    plan : Plan
    evaluation : CustomerValueModel
        The twin, its stack fit on the whole holdout (what the serving model uses).
    serving : CustomerValueModel
        Fit on the history before the data end, with the twin's stack.
    family : str
        The family chosen on the judging half (one of :data:`FAMILIES`).
    judged : pandas.DataFrame
        The judging half of the holdout: features and labels.
    predictions : dict
        Name -> predictions (``clv``, ``p_churn``) on ``judged``: ``model`` (the chosen
        family), each family, and the baselines ``simple``, ``bgnbd``, ``pareto_nbd``.
    metrics : dict
        Name -> holdout metrics of each entry of ``predictions``.
    serving_bgnbd : BgNbdGammaGammaBaseline
        The BG/NBD fit before the data end (the serving model's purchase model).
    profile : dict
        The chosen family's profile against the judging half
        (:func:`training.evaluate.profile_metrics`, interval at the default level).
    search : SearchResult or None
    fitting : pandas.DataFrame or None
        The other half of the holdout, on which the families' stacks were fit (features and
        labels); a champion is restacked on it to be judged like the candidate.
    level : Level
        The serving model's level and its track record at earlier origins
        (:mod:`training.level`); the default Level (factor 1) when the twin is served.
    churn_level : BuyersLevel
        The served count of customers who order and the churn-logit shift that serves it
        (:func:`training.level.buyers_blend`); shift 0 when the twin is served or no level is
        measured.
    season : str
        What the seasonal index at the data end measures: with the trend taken out (two years
        of history) or season and growth together (:func:`features.season.season_basis`).
    serving_pareto : ParetoNbdGammaGammaBaseline or None
        The Pareto/NBD fit on the features at the data end (seed ``settings.seed``), as the
        level's served totals fit it; None when no level was measured. With ``refit=False``,
        the twin's (like ``serving_bgnbd``).
    seconds : dict
        Wall seconds per phase of the fit (``twin.window_rows``, ``pareto_nbd_fit``, ...).
    """

    plan: Plan
    evaluation: CustomerValueModel
    serving: CustomerValueModel
    family: str
    judged: pd.DataFrame
    predictions: dict[str, pd.DataFrame]
    metrics: dict[str, dict[str, float]]
    serving_bgnbd: BgNbdGammaGammaBaseline
    profile: dict[str, float]
    search: SearchResult | None = None
    fitting: pd.DataFrame | None = None
    level: Level = field(default_factory=Level)
    serving_pareto: ParetoNbdGammaGammaBaseline | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    churn_level: BuyersLevel = field(default_factory=BuyersLevel)
    season: str = ""


def train_models(
    orders: pd.DataFrame,
    events: pd.DataFrame | None,
    *,
    spec: FeatureSpec,
    settings: FitSettings,
    refit: bool = True,
    snapshots: SnapshotSource | None = None,
) -> Trained:
    """Fit the twin, judge the families and baselines on the holdout, fit the serving model.

    Parameters
    ----------
    orders, events : pandas.DataFrame
        Validated inputs (``events`` may be None). The data end is the day after the last
        order.
    spec : FeatureSpec
        Horizon and windows.
    settings : FitSettings
    refit : bool
        Fit the serving model on the history before the data end (default); False serves the
        twin itself.
    snapshots : callable, optional
        The window rows of a list of window cutoffs, built elsewhere (see :func:`fit_cutoff`).

    Returns
    -------
    Trained
    """
    plan = plan_cutoffs(
        orders,
        horizon_days=spec.horizon_days,
        window_days=settings.window_days,
        step_days=settings.step_days,
        max_cutoffs=settings.max_cutoffs,
        min_history_days=settings.min_history_days,
    )
    logger.info("plan: %s", plan.note)
    seconds: dict[str, float] = {}
    twin = fit_cutoff(
        orders,
        events,
        cutoff=plan.holdout,
        window_cutoffs=plan.twin_cutoffs,
        spec=spec,
        settings=settings,
        snapshots=snapshots,
    )
    seconds.update({f"twin.{phase}": s for phase, s in twin.seconds.items()})
    names = feature_names(spec)
    labels = build_labels(orders, cutoff=plan.holdout, spec=spec)
    holdout = twin.features.join(labels)
    fitting, judged = split_by_customer(holdout.reset_index(), settings.seed)
    fitting = fitting.set_index("customer_id")
    judged = judged.set_index("customer_id")

    family_models = {name: restack(twin.model, fitting, family=name) for name in FAMILIES}
    predictions = {name: model.predict(judged[names]) for name, model in family_models.items()}
    history = judged[names]
    predictions["simple"] = SimpleFormulaBaseline().fit(history).predict(history, spec.horizon_days)
    predictions["bgnbd"] = twin.bgnbd.predict(history, spec.horizon_days)
    with _timed(seconds, "pareto_nbd_fit"):
        pareto = ParetoNbdGammaGammaBaseline(random_seed=settings.seed).fit(twin.features)
    logger.info(
        "Pareto/NBD baseline fit on %d of %d customers in %.1fs",
        pareto.n_fit_customers_,
        len(twin.features),
        seconds["pareto_nbd_fit"],
    )
    predictions["pareto_nbd"] = pareto.predict(history, spec.horizon_days)
    metrics = {name: holdout_metrics(judged, pred) for name, pred in predictions.items()}
    family = choose_family(metrics)
    predictions["model"] = predictions[family]
    metrics["model"] = metrics[family]
    logger.info("family: %s", family)
    chosen = family_models[family]
    profile = profile_metrics(
        judged,
        chosen.profile(judged[names], level=DEFAULT_LEVEL),
        DEFAULT_LEVEL,
        purchase_orders=chosen.purchase_orders(judged[names]),
    )

    evaluation = restack(twin.model, holdout, family=family)
    stack = served_stack(twin.model, holdout, family, orders, data_end=plan.data_end, spec=spec)
    level = Level()
    churn_level = BuyersLevel()
    serving_pareto: ParetoNbdGammaGammaBaseline | None = pareto
    if refit:
        fitted = fit_cutoff(
            orders,
            events,
            cutoff=plan.data_end,
            window_cutoffs=plan.serving_cutoffs,
            spec=spec,
            settings=settings,
            params=twin.model.params,
            n_estimators=twin.model.best_iterations_,
            snapshots=snapshots,
        )
        seconds.update({f"serving.{phase}": s for phase, s in fitted.seconds.items()})
        stack = in_own_terms(stack, fitted.model, fitted.features, spec)
        with _timed(seconds, "level"):
            level, churn_level, serving_pareto = _validated_level(
                orders,
                events,
                (twin, fitted, pareto),
                stack,
                family,
                spec,
                settings,
                plan,
                snapshots,
            )
        serving = fitted.model.with_stack(
            replace(stack, level=level.factor, churn_shift=churn_level.shift)
        )
        serving_bgnbd = fitted.bgnbd
    else:
        serving, serving_bgnbd = evaluation, twin.bgnbd
    logger.info("fit phases: %s", ", ".join(f"{k} {v:.1f}s" for k, v in seconds.items()))
    return Trained(
        plan,
        evaluation,
        serving,
        family,
        judged,
        predictions,
        metrics,
        serving_bgnbd,
        profile,
        twin.search,
        fitting,
        level,
        serving_pareto,
        seconds,
        churn_level,
        season_basis(orders, cutoff=plan.data_end, horizon_days=spec.horizon_days),
    )


def served_stack(
    model: CustomerValueModel,
    rows: pd.DataFrame,
    family: str,
    orders: pd.DataFrame,
    *,
    data_end: pd.Timestamp,
    spec: FeatureSpec,
) -> Stack:
    """The stack a model refit at ``data_end`` serves with, learnt by ``model`` on ``rows``.

    ``rows`` are the customers one horizon before ``data_end`` with their labels. The serving
    model may know what the evaluation model could not: the season of that horizon, now that
    it has happened. The stack is fit with that season taken out.
    """
    season = seasonal_index(
        orders,
        cutoff=data_end,
        horizon_days=spec.horizon_days,
        window_start=data_end - pd.Timedelta(days=spec.horizon_days),
    )
    return restack(model, rows, family=family, season=season).require_stack()


def in_own_terms(
    stack: Stack, model: CustomerValueModel, features: pd.DataFrame, spec: FeatureSpec
) -> Stack:
    """``stack`` fed by ``model``'s own purchase model, restated in the scale it was learnt on.

    ``features``: the customers at ``model``'s cutoff, over which the two purchase models'
    figures are matched (:meth:`training.stack.Stack.restated`).
    """
    history = model.purchase_history(features[model.feature_names_in_])
    return stack.restated(model.purchase_, history, float(spec.horizon_days))


def _validated_level(
    orders: pd.DataFrame,
    events: pd.DataFrame | None,
    fits: tuple[FittedCutoff, FittedCutoff, ParetoNbdGammaGammaBaseline],
    stack: Stack,
    family: str,
    spec: FeatureSpec,
    settings: FitSettings,
    plan: Plan,
    snapshots: SnapshotSource | None,
) -> tuple[Level, BuyersLevel, ParetoNbdGammaGammaBaseline | None]:
    """The serving model's level, chosen by the candidates' track record (training.level).

    ``fits``: the twin, the serving fit, and the Pareto/NBD already fit on the twin's features.
    Also returns the served churn rate (:func:`training.level.buyers_blend`, from the same
    classical fits at the data end), and the Pareto/NBD fit on the serving fit's features
    (None when no level is measured), for callers that score the data end with it
    (``training.backtest``).
    """
    twin, fitted, pareto = fits
    if settings.level_origins <= 0:
        off = "the track record is switched off (level_origins = 0)"
        own_rate = BuyersLevel(reason=f"{off}; the model's own churn rate is served")
        return Level(reason=off), own_rate, None
    # Where two years of history measure the season at the data end, the classical level in
    # that season is a candidate too (training.level.classical_figures).
    season = HorizonSeason.measure(orders, data_end=plan.data_end, horizon_days=spec.horizon_days)
    origins = replay_origins(
        orders,
        events,
        latest=twin,
        family=family,
        spec=spec,
        settings=settings,
        data_start=plan.data_start,
        snapshots=snapshots,
        pareto=pareto,
        seasonal=season is not None,
    )
    served_model = copy.copy(fitted.model).with_stack(stack)
    serving_pareto = ParetoNbdGammaGammaBaseline(random_seed=settings.seed).fit(fitted.features)
    served, served_buyers = classical_figures(
        fitted.features,
        spec.horizon_days,
        settings.seed,
        fitted.bgnbd,
        serving_pareto,
        None if season is None else season.served,
    )
    own = served_model.predict(fitted.features[served_model.feature_names_in_])
    served["model"] = float(own["clv"].sum())
    served_buyers["model"] = buyers(own["p_churn"])
    level = choose_level(origins, with_blend(served))
    in_season: dict[str, float] = {}
    if season is not None:
        history = fitted.model.purchase_history(fitted.features[fitted.model.feature_names_in_])
        in_season = {
            "served": season.served,
            "learnt": season.learnt,
            **season.factors(fitted.model.purchase_, history, float(spec.horizon_days)),
        }
    churn_level = buyers_blend(served_buyers, own["p_churn"].to_numpy(), in_season)
    logger.info("%s", level.summary())
    logger.info("%s", churn_level.summary())
    return level, churn_level, serving_pareto


def restack(
    model: CustomerValueModel, rows: pd.DataFrame, *, family: str, season: float | None = None
) -> CustomerValueModel:
    """A copy of ``model`` (the same fitted parts) with a stack of ``family`` fit on ``rows``."""
    names = model.feature_names_in_
    return copy.copy(model).fit_stack(
        rows[names],
        rows["future_value"],
        rows["churned"],
        family=family,
        season=season,
        future_orders=rows["future_orders"],
    )


def choose_family(metrics: dict[str, dict[str, float]]) -> str:
    """The family that wins most gate metrics on the judging half; hybrid on a tie.

    The classical family is the purchase model calibrated; boosted is the trees alone. A
    shop where learning adds nothing is served the classical model. The gate then judges the
    chosen family on the same half, so its figures carry a small selection optimism (the best
    of three); the backtests, which score a later cutoff, carry none.
    """
    wins = {name: 0 for name in FAMILIES}
    for metric in GATE_METRICS:
        scores = {name: metrics[name].get(metric, float("nan")) for name in FAMILIES}
        best = FAMILIES[0]
        for name in FAMILIES[1:]:
            if better(metric, scores[name], scores[best]):
                best = name
        wins[best] += 1
    return max(FAMILIES, key=lambda name: (wins[name], name == "hybrid"))
