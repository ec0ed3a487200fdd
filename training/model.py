"""The CLV + churn model: a purchase model, boosted corrections and a stack, in one object.

Three parts, each there for a reason measured on real shops (docs/experiments.md):

1. **Purchase model** (:class:`training.purchase.PurchaseModel`): BG/NBD + Gamma-Gamma fitted
   on the history before the model's cutoff. It extrapolates to customers older and quieter
   than any training example, which trees cannot.
2. **Boosted models** (XGBoost) trained on *short* label windows (``window_days``, 90 by
   default) at cutoffs every two weeks up to ``cutoff - window``: P(no order in the window)
   and the revenue in it. Short windows let the latest training rows have the same ages and
   gaps as the customers being scored; with a horizon-long window every training row would be
   a year older than the data allows. They see every feature (service quality included) and
   the purchase model's own quantities for the window.
3. **Stack** (:class:`training.stack.Stack`): regressions of horizon churn and revenue on the
   two parts' figures (and the service-failure counts), fitted on a later, horizon-long label
   window that neither part was fit on. It learns how far to trust each part, turns the
   window figures into horizon figures, and puts the level right. Revenue is divided by the
   store's seasonal index for the horizon (:func:`features.season.seasonal_index`) before the
   stack and multiplied back at scoring time.

Scikit-learn's estimator contract holds: ``__init__`` only stores, ``fit`` returns self,
learned attributes end in ``_``, and a frame whose columns differ from the training columns
raises an error listing the missing and unexpected features.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn.exceptions import NotFittedError

from features.spec import FeatureSpec
from training.profile import (
    DEFAULT_LEVEL,
    DISCOUNT_STEPS,
    Profile,
    check_level,
    discount_factor,
)
from training.purchase import PURCHASE_COLUMNS, Activity, PurchaseHistory, PurchaseModel
from training.stack import Stack, log_value, logit, service_stack_names

logger = logging.getLogger(__name__)

FORMAT_VERSION = 4

#: Columns the model derives from the features before the trees see them (see :meth:`derive`).
RECENCY_GAP = "recency_gap_ratio"
P_ALIVE = "p_alive"
#: Pseudo-features that carry the purchase model's horizon figures into the reasons.
PURCHASE_CHURN = "purchase_model_p_no_order"
PURCHASE_VALUE = "purchase_model_value"


#: Whole-history quantities of a customer's buying that the trees may read either way (unlike
#: the recent windows, :func:`monotone_directions`): a long history with little of it lately
#: can lower the value its total would suggest. A marketer reads more of them as a better
#: customer, but whether a figure is a lot is known only against the shop's usual customer,
#: so the model keeps their medians over its training rows (:attr:`CustomerValueModel.usual_`)
#: and the reasons are read against them (``serving.explain``).
USUAL_FEATURES: tuple[str, ...] = (
    "orders_total",
    "revenue_total",
    "frequency",
    "avg_order_value",
    "repeat_order_value_mean",
)
#: The usual value is the median of at most this many training rows (every k-th row): the
#: reasons need it as a reference point, not to the last unit, and a million customers'
#: window rows would otherwise be sorted at every search trial.
_USUAL_ROWS = 200_000


def usual_values(features: pd.DataFrame) -> dict[str, float]:
    """The median of each of :data:`USUAL_FEATURES` in ``features`` (missing values skipped).

    Parameters
    ----------
    features : pandas.DataFrame
        The training rows.

    Returns
    -------
    dict
        Feature name -> median, for the features present with at least one value.
    """
    step = max(1, -(-len(features) // _USUAL_ROWS))
    usual: dict[str, float] = {}
    for name in USUAL_FEATURES:
        if name not in features.columns:
            continue
        column = features[name].to_numpy(dtype="float64")[::step]
        column = column[np.isfinite(column)]
        if len(column):
            usual[name] = float(np.median(column))
    return usual


def expected_orders_name(window_days: int) -> str:
    """Name of the derived feature "purchase model's expected orders in the window"."""
    return f"expected_orders_{window_days}d"


def monotone_directions(spec: FeatureSpec, window_days: int) -> dict[str, dict[str, int]]:
    """Directions each model's prediction may move with a feature, everything else equal.

    They encode what a retention team takes as given, so that no reason contradicts common
    sense: a more recent order, more orders or more spend in a recent window never raise the
    churn risk or lower the value; time passing without an order (older customer, older last
    order, same orders) never lowers the risk or raises the value; a late delivery or a badly
    resolved ticket never raises value. ``churn`` is P(no order), ``clv`` is revenue: +1
    increasing, -1 decreasing. Names are derived from ``spec`` so that another spec keeps its
    constraints.
    """
    q = spec.quality_days
    t = spec.trend_days
    activity = {
        # Waiting with nothing bought ages the customer as well: older with the same orders
        # means a slower customer.
        "days_since_last_order": -1,
        "days_since_first_order": -1,
        "T": -1,
        f"orders_trend_{t}d": +1,
        f"revenue_trend_{t}d": +1,
        RECENCY_GAP: -1,
        P_ALIVE: +1,
        expected_orders_name(window_days): +1,
        **{f"orders_{w}d": +1 for w in spec.windows},
        **{f"revenue_{w}d": +1 for w in spec.windows},
    }
    service = {f"late_deliveries_{q}d": -1, f"bad_tickets_{q}d": -1, "open_tickets": -1}
    value = {**activity, **service}
    churn = {name: -direction for name, direction in value.items()}
    return {"clv": value, "churn": churn}


@dataclass(frozen=True)
class ModelParams:
    """XGBoost hyperparameters shared by the two boosted models (the search tunes these).

    ``n_estimators`` is a serving budget as much as a hyperparameter: every tree is paid for in
    each nightly batch, so the search keeps the learning rate at 0.05 or more and early
    stopping picks the count below this cap.
    """

    n_estimators: int = 300
    learning_rate: float = 0.05
    max_depth: int = 5
    min_child_weight: float = 20.0
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    reg_lambda: float = 1.0
    tweedie_variance_power: float = 1.5
    early_stopping_rounds: int = 30
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """All fields, JSON-ready."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class _Evaluated:
    """One evaluation of a feature matrix.

    The derived features (float64, and float32 as the trees take them) and each part's
    figures (:meth:`CustomerValueModel.parts_matrix`).
    """

    derived: np.ndarray
    trees_in: np.ndarray
    parts: dict[str, np.ndarray]


class TimeBudgetSpent(RuntimeError):
    """A fit given a deadline (a search's time budget) was still boosting when it passed."""


class _Deadline(xgb.callback.TrainingCallback):
    """Raises :class:`TimeBudgetSpent` once ``time.perf_counter()`` passes ``deadline``.

    Checked after each tree, so a fit overruns by one tree at most. Raising, rather than
    stopping early, leaves no half-fit model behind: the caller's trial simply did not finish.
    """

    def __init__(self, deadline: float) -> None:
        super().__init__()
        self.deadline = deadline

    def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
        """Never asks to stop; raises once the deadline has passed."""
        if time.perf_counter() > self.deadline:
            raise TimeBudgetSpent(f"the deadline passed after tree {epoch + 1}")
        return False


class CustomerValueModel:
    """Predicts CLV over the spec's horizon and a calibrated churn probability.

    Parameters
    ----------
    spec : FeatureSpec
        How the features were built; serving rebuilds features with it.
    params : ModelParams
        XGBoost hyperparameters.
    seed : int
        Random seed (same data + seed => same model).
    n_jobs : int
        Threads for XGBoost.

    Attributes
    ----------
    usual_ : dict
        After :meth:`fit`: the usual value (median over the training rows) of each of
        :data:`USUAL_FEATURES`, which the reasons are read against; empty for a model saved
        before they were kept.
    """

    def __init__(
        self, spec: FeatureSpec, params: ModelParams | None = None, seed: int = 0, n_jobs: int = 2
    ) -> None:
        self.spec = spec
        self.params = params
        self.seed = seed
        self.n_jobs = n_jobs
        self.usual_: dict[str, float] = {}

    # -- fitting -------------------------------------------------------------------------------
    def fit(
        self,
        features: pd.DataFrame,
        window_value: pd.Series,
        window_churned: pd.Series,
        *,
        purchase: PurchaseModel,
        window_days: int,
        season: float = 1.0,
        early_stopping: tuple[pd.DataFrame, pd.Series, pd.Series] | None = None,
        n_estimators: tuple[int, int] | None = None,
        deadline: float | None = None,
    ) -> CustomerValueModel:
        """Fit the boosted models on short-window labels; the stack comes from :meth:`fit_stack`.

        Parameters
        ----------
        features : pandas.DataFrame
            Training rows (snapshots at several cutoffs); the columns become the contract.
        window_value, window_churned : pandas.Series
            Revenue in, and no order in, ``[cutoff, cutoff + window_days)`` of each row.
        purchase : PurchaseModel
            Fitted on the history before this model's cutoff.
        window_days : int
            Length of the short label window.
        season : float
            Seasonal index of the revenue in this model's horizon (1 = an average horizon).
        early_stopping : (features, window_value, window_churned), optional
            A later slice that stops boosting when it stops improving.
        n_estimators : (int, int), optional
            Tree counts (value, churn) for a fit without an early-stopping slice.
        deadline : float, optional
            A ``time.perf_counter()`` value (a search's time budget): once it passes, the fit
            stops after the tree it is on and raises :class:`TimeBudgetSpent`.

        Raises
        ------
        TimeBudgetSpent
            When ``deadline`` passed during the fit.
        """
        params = self.params or ModelParams()
        missing = [c for c in PURCHASE_COLUMNS if c not in features.columns]
        if missing:
            raise ValueError(
                f"features lack the purchase model's column(s) {missing}; "
                "build them with features.build_features"
            )
        if window_days <= 0 or not np.isfinite(season) or season <= 0:
            raise ValueError(f"window_days and season must be > 0; got {window_days}, {season}")
        self.feature_names_in_ = [str(c) for c in features.columns]
        self.n_features_in_ = len(self.feature_names_in_)
        self.purchase_ = purchase
        self.window_days_ = int(window_days)
        self.season_ = float(season)
        self.usual_ = usual_values(features)
        self.stack_: Stack | None = None
        names = self.derived_names_
        directions = monotone_directions(self.spec, self.window_days_)
        for target, table in directions.items():
            unknown = sorted(set(table) - set(names))
            # Quality and window features exist for every spec; a miss is a naming bug.
            if unknown:
                raise ValueError(
                    f"monotone constraints for {target} name missing features {unknown}"
                )
        X = self.derive(features.to_numpy(dtype="float64"))
        trees = n_estimators or (params.n_estimators, params.n_estimators)
        stop = None
        if early_stopping is not None:
            stop = (
                self.derive(self._feature_matrix(early_stopping[0])),
                np.asarray(early_stopping[1], "float64"),
                np.asarray(early_stopping[2], "int32"),
            )
        clock = None if deadline is None else _Deadline(deadline)
        self.clv_model_ = xgb.XGBRegressor(
            **self._xgb_kwargs(params, trees[0], stop is not None, clock),
            objective="reg:tweedie",
            tweedie_variance_power=params.tweedie_variance_power,
            monotone_constraints=self._constraints(directions["clv"]),
        )
        self.clv_model_.fit(
            X,
            np.asarray(window_value, dtype="float64"),
            eval_set=[(stop[0], stop[1])] if stop else None,
            verbose=False,
        )
        self.churn_model_ = xgb.XGBClassifier(
            **self._xgb_kwargs(params, trees[1], stop is not None, clock),
            objective="binary:logistic",
            eval_metric="logloss",
            monotone_constraints=self._constraints(directions["churn"]),
        )
        self.churn_model_.fit(
            X,
            np.asarray(window_churned, dtype="int32"),
            eval_set=[(stop[0], stop[2])] if stop else None,
            verbose=False,
        )
        self.best_iterations_ = (
            self._best_or_all(self.clv_model_) or trees[0],
            self._best_or_all(self.churn_model_) or trees[1],
        )
        if clock is not None:
            # A saved or copied model carries no callback.
            self.clv_model_.set_params(callbacks=None)
            self.churn_model_.set_params(callbacks=None)
        return self

    def fit_stack(
        self,
        features: pd.DataFrame,
        future_value: pd.Series,
        churned: pd.Series,
        *,
        family: str = "hybrid",
        season: float | None = None,
        future_orders: pd.Series | None = None,
    ) -> CustomerValueModel:
        """Fit the stack on horizon-long labels the parts were not fit on.

        Parameters
        ----------
        features : pandas.DataFrame
            One row per customer at this model's own cutoff (the one its parts were fit
            before), so that the labels are horizon-long and unseen by the parts. Its seasonal
            index (``season`` of :meth:`fit`) divides the revenue.
        future_value, churned : pandas.Series
            Horizon labels aligned with ``features``.
        family : {"hybrid", "classical", "boosted"}
            Which parts the stack combines: both, the purchase model alone (the classical
            model, calibrated) or the boosted parts alone.
        season : float, optional
            Seasonal index of the labels' horizon (default: this model's own, as known at its
            cutoff). Training passes the index measured once the horizon has happened, for
            the stack the serving model takes.
        future_orders : pandas.Series, optional
            Orders each customer placed in the horizon; with it the profile's order scale and
            value interval are fit on the same rows (:class:`training.profile.Profile`).
        """
        self._require_fitted()
        season = self.season_ if season is None else float(season)
        X = self._feature_matrix(features)
        # Learnt on this model's own purchase figures, whatever stack it held before.
        parts = self._evaluate(X, self.purchase_).parts
        # The classical family stays the textbook model, calibrated: no service terms.
        candidates = (
            []
            if family == "classical"
            else [n for n in service_stack_names(self.spec) if n in self.feature_names_in_]
        )
        y_value = np.asarray(future_value, dtype="float64")
        stack = Stack.fit(
            parts,
            np.asarray(churned, dtype="int32"),
            y_value,
            family=family,
            season=season,
            failures=self._service_matrix(X, candidates),
            failure_names=candidates,
            purchase=self.purchase_,
        )
        if future_orders is not None:
            history = self._history(X)
            clv, p_churn = self._combine(stack, parts, X, season)
            profile = Profile.fit(
                clv,
                p_churn,
                self._expected_orders(history, p_churn, season, scale=1.0),
                y_value,
                np.asarray(future_orders, dtype="float64"),
            )
            stack = replace(stack, profile=profile)
        self.stack_ = stack
        logger.info(
            "stack: churn %s, value %s, service %s",
            np.round(stack.churn, 3),
            np.round(stack.value, 3),
            {k: round(v, 3) for k, v in stack.service.items()},
        )
        return self

    def with_stack(self, stack: Stack) -> CustomerValueModel:
        """Use ``stack`` (e.g. the evaluation model's) and return self."""
        self._require_fitted()
        self.stack_ = stack
        return self

    def _feature_matrix(self, features: pd.DataFrame) -> np.ndarray:
        self._check_columns(features)
        return features[self.feature_names_in_].to_numpy(dtype="float64")

    def _service_terms(self, stack: Stack, X: np.ndarray) -> tuple[list[int], np.ndarray]:
        """The stack's service terms in log value: feature positions, and weight x count.

        ``X`` holds the features in the model's order first (a feature or derived matrix);
        the terms are rows x ``len(stack.service)``.
        """
        names = list(stack.service)
        index = [self.feature_names_in_.index(name) for name in names]
        return index, stack.service_terms(self._service_matrix(X, names))

    def _service_matrix(self, X: np.ndarray, names: list[str]) -> np.ndarray:
        """The columns ``names`` of ``X``; unknown (NaN: no service data) counts as none."""
        index = [self.feature_names_in_.index(name) for name in names]
        return np.nan_to_num(np.asarray(X, dtype="float64")[:, index], nan=0.0).reshape(
            len(X), len(index)
        )

    def _xgb_kwargs(
        self,
        params: ModelParams,
        trees: int,
        early_stop: bool,
        clock: _Deadline | None = None,
    ) -> dict[str, Any]:
        return {
            "callbacks": None if clock is None else [clock],
            "n_estimators": trees,
            "learning_rate": params.learning_rate,
            "max_depth": params.max_depth,
            "min_child_weight": params.min_child_weight,
            "subsample": params.subsample,
            "colsample_bytree": params.colsample_bytree,
            "reg_lambda": params.reg_lambda,
            "tree_method": "hist",
            "random_state": self.seed,
            "n_jobs": self.n_jobs,
            "early_stopping_rounds": params.early_stopping_rounds if early_stop else None,
            **params.extra,
        }

    def _constraints(self, directions: dict[str, int]) -> tuple[int, ...]:
        return tuple(directions.get(name, 0) for name in self.derived_names_)

    # -- the derived features ------------------------------------------------------------------
    @property
    def derived_names_(self) -> list[str]:
        """What the boosted models see: the features plus the derived columns."""
        return [
            *self.feature_names_in_,
            RECENCY_GAP,
            P_ALIVE,
            expected_orders_name(self.window_days_),
        ]

    @property
    def explanation_names_(self) -> list[str]:
        """Columns of :meth:`contributions_matrix` (before ``bias``) and of :meth:`explain`."""
        return [*self.derived_names_, PURCHASE_CHURN, PURCHASE_VALUE]

    def _history(self, X: np.ndarray) -> PurchaseHistory:
        index = {name: i for i, name in enumerate(self.feature_names_in_)}
        return PurchaseHistory.from_columns({c: X[:, index[c]] for c in PURCHASE_COLUMNS})

    def purchase_history(self, features: pd.DataFrame) -> PurchaseHistory:
        """The purchase model's inputs (repeat orders, ages, spend) of these customers."""
        return self._history(self._matrix(features))

    def derive(self, X: np.ndarray) -> np.ndarray:
        """Append the derived columns to a feature matrix (rows x features, model order).

        ``recency_gap_ratio`` is the days since the last order over the usual days between
        orders (a gap of at least one day): how overdue the next order is, comparable across
        customers of any rhythm and age. ``p_alive`` and ``expected_orders_<window>d`` are the
        purchase model's.
        """
        return self._derive(np.asarray(X, dtype="float64"), self._history(X))

    def _derive(self, X: np.ndarray, history: PurchaseHistory) -> np.ndarray:
        index = {name: i for i, name in enumerate(self.feature_names_in_)}
        gap = X[:, index["days_between_orders_mean"]]
        ratio = X[:, index["days_since_last_order"]] / np.maximum(gap, 1.0)
        return np.column_stack(
            [
                X,
                ratio,
                self.purchase_.p_alive(history),
                self.purchase_.expected_orders(history, self.window_days_),
            ]
        )

    def parts_matrix(self, X: np.ndarray) -> dict[str, np.ndarray]:
        """Each part's own horizon figures, before the stack.

        Returns
        -------
        dict
            ``purchase_churn``, ``purchase_value``: the purchase model the stack was learnt on
            (:attr:`training.stack.Stack.purchase`), over the horizon;
            ``churn``: the boosted P(no order in the window); ``value``: the boosted revenue
            in the window scaled to the horizon (horizon / window).
        """
        self._require_fitted()
        return self._evaluate(np.asarray(X, dtype="float64")).parts

    def _stack_purchase(self) -> PurchaseModel:
        """The purchase model the stack was learnt on (``stack_.purchase``), else its own."""
        return self.stack_.purchase if self.stack_ is not None else self.purchase_

    def _evaluate(self, X: np.ndarray, purchase: PurchaseModel | None = None) -> _Evaluated:
        """The derived features and every part's figures, computed once for all uses.

        The trees' purchase features come from this model's purchase model; the purchase
        parts from ``purchase`` (default: the one the stack was learnt on).
        """
        history = self._history(X)
        horizon = float(self.spec.horizon_days)
        derived = self._derive(X, history)
        trees_in = derived.astype("float32")
        scale = horizon / self.window_days_
        purchase = purchase or self._stack_purchase()
        parts = {
            "purchase_churn": purchase.p_no_order(history, horizon),
            "purchase_value": purchase.expected_value(history, horizon),
            "churn": self._booster_predict(self.churn_model_, trees_in).astype("float64"),
            "value": self._booster_predict(self.clv_model_, trees_in).astype("float64") * scale,
        }
        return _Evaluated(derived, trees_in, parts)

    # -- predicting ----------------------------------------------------------------------------
    def predict(self, features: pd.DataFrame) -> pd.DataFrame:
        """Predict ``clv`` (revenue over the horizon) and ``p_churn`` for each row.

        Returns
        -------
        pandas.DataFrame
            Same index as ``features``; columns ``clv`` (>= 0) and ``p_churn`` in [0, 1].
        """
        clv, p_churn = self.predict_matrix(self._matrix(features))
        return pd.DataFrame({"clv": clv, "p_churn": p_churn}, index=features.index)

    def predict_matrix(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`predict` on a bare matrix, for callers that already hold one (online scoring).

        Parameters
        ----------
        X : numpy.ndarray
            rows x features, columns in :attr:`feature_names_in_` order.

        Returns
        -------
        (numpy.ndarray, numpy.ndarray)
            ``clv`` and ``p_churn``, float64.
        """
        X = np.asarray(self._checked_matrix(X), dtype="float64")
        stack = self.require_stack()
        return self._combine(stack, self._evaluate(X).parts, X)

    def _combine(
        self,
        stack: Stack,
        parts: dict[str, np.ndarray],
        X: np.ndarray,
        season: float | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The stack: the parts' figures (and ``X``'s failure counts) into ``clv`` and ``p_churn``.

        ``season``: the model's own seasonal index when None.
        """
        failures = self._service_matrix(X, list(stack.service)) if stack.service else None
        return stack.combine(parts, failures, self.season_ if season is None else season)

    # -- the profile ---------------------------------------------------------------------------
    def _activity(self, history: PurchaseHistory, p_churn: np.ndarray) -> Activity:
        """Active or gone, consistent with ``p_churn`` (:meth:`PurchaseModel.activity`)."""
        return self.purchase_.activity(history, p_churn, float(self.spec.horizon_days))

    def _p_active(self, history: PurchaseHistory, p_churn: np.ndarray) -> np.ndarray:
        """P(still a customer at the cutoff) consistent with ``p_churn`` (training.profile)."""
        return self._activity(history, p_churn).p_active

    def _expected_orders(
        self, history: PurchaseHistory, p_churn: np.ndarray, season: float, scale: float
    ) -> np.ndarray:
        # The served chance of any order times the purchase model's orders of a customer who
        # orders at all: never fewer than that chance, and independent of how the no-order
        # chance splits into gone and quiet (docs/experiments.md, entry 19).
        horizon = float(self.spec.horizon_days)
        if_alive = self.purchase_.expected_orders_if_alive(history, horizon)
        quiet = self.purchase_.quiet(history, horizon)
        per_buyer = if_alive / np.maximum(1.0 - quiet, 1e-12)
        p_order = 1.0 - np.clip(p_churn, 0.0, 1.0)
        # The holdout's order scale, the season and the served level can each be below 1; the
        # orders may shrink with them, but never below the chance of any order at all, which
        # the served p_churn states (someone who orders places at least one order).
        return np.maximum(scale * season * p_order * per_buyer, p_order)

    def _served_orders(
        self, history: PurchaseHistory, p_churn: np.ndarray, scale: float
    ) -> np.ndarray:
        """Expected orders beside the served ``clv`` and ``p_churn``.

        The served level scales the orders with the value: the level is how much the base will
        buy, and a level applied to one and not the other would change the implied order
        value (training.level). The orders follow the stack's own chance of an order before the
        churn shift, which the value level already accounts for (applying both would count a
        change in buyers twice), and never fall below the served chance of any order.
        """
        stack = self.require_stack()
        own_churn = p_churn
        if stack.churn_shift != 0.0:
            own_churn = 1.0 / (1.0 + np.exp(stack.churn_shift - logit(p_churn)))
        orders = self._expected_orders(history, own_churn, self.season_, scale * stack.level)
        return np.maximum(orders, 1.0 - np.clip(p_churn, 0.0, 1.0))

    def profile(
        self,
        features: pd.DataFrame,
        *,
        level: float = DEFAULT_LEVEL,
        discount_rate: float = 0.0,
    ) -> pd.DataFrame:
        """:meth:`profile_matrix` of a feature table, with this model's own predictions.

        Returns
        -------
        pandas.DataFrame
            ``clv``, ``p_churn`` and the profile's columns; same index as ``features``.
        """
        X = self._matrix(features)
        clv, p_churn = self.predict_matrix(X)
        columns = self.profile_matrix(X, clv, p_churn, level=level, discount_rate=discount_rate)
        return pd.DataFrame({"clv": clv, "p_churn": p_churn, **columns}, index=features.index)

    def p_active_matrix(self, X: np.ndarray, p_churn: np.ndarray) -> np.ndarray:
        """P(still a customer at the cutoff) consistent with ``p_churn``, in [0, 1].

        ``(1 - p_churn) / (1 - P(no order | active))``, the last factor the purchase model's
        from the order dates in ``X`` alone (the profile's ``p_active``).
        """
        X = np.asarray(self._checked_matrix(X), dtype="float64")
        return self._p_active(self._history(X), np.asarray(p_churn, dtype="float64"))

    def purchase_orders(self, features: pd.DataFrame) -> np.ndarray:
        """The purchase model's own expected orders over the horizon (for comparison)."""
        history = self._history(self._matrix(features))
        return self.purchase_.expected_orders(history, float(self.spec.horizon_days))

    def profile_matrix(
        self,
        X: np.ndarray,
        clv: np.ndarray,
        p_churn: np.ndarray,
        *,
        level: float = DEFAULT_LEVEL,
        discount_rate: float = 0.0,
    ) -> dict[str, np.ndarray]:
        """The customer profile beside ``clv`` and ``p_churn`` (:mod:`training.profile`).

        Parameters
        ----------
        X : numpy.ndarray
            The feature rows ``clv`` and ``p_churn`` were predicted from (model order).
        clv, p_churn : numpy.ndarray
            This model's predictions for them.
        level : float
            Level of the ``clv_low``-``clv_high`` interval.
        discount_rate : float
            Yearly rate for ``clv_discounted`` (0: the CLV itself).

        Returns
        -------
        dict of numpy.ndarray
            ``historic_value``, ``total_value``, ``expected_orders``, ``p_active``,
            ``next_order_days`` (the days until the customer has even odds of having ordered;
            NaN when that is past the horizon, i.e. ``p_churn > 1/2``),
            ``avg_days_between_orders`` (between purchase days; NaN before a second one),
            ``new_customer`` (1.0 in the customer's first horizon, else 0.0), ``clv_low``,
            ``clv_high`` (NaN for a stack fit without ``future_orders``), ``clv_discounted``.
        """
        check_level(level)
        X = np.asarray(X, dtype="float64")
        history = self._history(X)
        index = {name: i for i, name in enumerate(self.feature_names_in_)}
        profile = self.require_stack().profile
        activity = self._activity(history, p_churn)
        scale = profile.orders_scale if profile is not None else 1.0
        if profile is not None:
            low, high = profile.interval(clv, p_churn, level)
        else:
            low = high = np.full(len(clv), np.nan)
        horizon = float(self.spec.horizon_days)
        steps = horizon * np.arange(1, DISCOUNT_STEPS + 1) / DISCOUNT_STEPS
        cumulative = (
            np.column_stack([self.purchase_.expected_orders_if_alive(history, t) for t in steps])
            if discount_rate and len(X)
            else np.zeros((len(X), DISCOUNT_STEPS))
        )
        historic = np.nan_to_num(X[:, index["revenue_total"]], nan=0.0)
        # The day by which the customer has even odds of having ordered: within the horizon
        # exactly when p_churn < 1/2 (the two agree by construction); no date otherwise.
        wait = activity.days_to_even_odds()
        # Purchase days, as BG/NBD counts them: orders of one session are one purchase.
        with np.errstate(divide="ignore", invalid="ignore"):
            gap = np.where(history.x > 0, history.t_x / history.x, np.nan)
        return {
            "historic_value": historic,
            "total_value": historic + clv,
            "expected_orders": self._served_orders(history, p_churn, scale),
            "p_active": activity.p_active,
            "next_order_days": np.where(wait < horizon, wait, np.nan),
            "avg_days_between_orders": gap,
            # 1.0 for a customer whose first order lies within one horizon of the cutoff:
            # too new to have drifted away (serving.segments.NEW_ACTIONS).
            "new_customer": (X[:, index["days_since_first_order"]] < horizon).astype("float64"),
            "clv_low": low,
            "clv_high": high,
            "clv_discounted": clv * discount_factor(cumulative, steps, discount_rate),
        }

    def _booster_predict(self, model: xgb.XGBModel, X: np.ndarray) -> np.ndarray:
        # The booster's own in-place prediction: what the scikit-learn wrapper calls for a numpy
        # input (same numbers), without the wrapper's per-call checks that dominate small calls.
        return model.get_booster().inplace_predict(
            X, iteration_range=(0, self._best_or_all(model)), validate_features=False
        )

    def explain(self, X: np.ndarray) -> np.ndarray:
        """The values behind :meth:`contributions_matrix`'s columns (rows x explanation names)."""
        X = self._checked_matrix(X)
        return self._explained_values(self._evaluate(np.asarray(X, dtype="float64")))

    @staticmethod
    def _explained_values(evaluated: _Evaluated) -> np.ndarray:
        parts = evaluated.parts
        return np.column_stack(
            [evaluated.derived, parts["purchase_churn"], parts["purchase_value"]]
        )

    def score_matrix(
        self, X: np.ndarray, *, approximate: bool = True
    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], np.ndarray]:
        """Predictions, contributions and the values they explain, in one evaluation.

        What batch and online scoring need for predictions with reasons: the same numbers as
        :meth:`predict_matrix`, :meth:`contributions_matrix` and :meth:`explain`, with the
        purchase model and the derived features computed once instead of three times.

        Returns
        -------
        (clv, p_churn, contributions, values)
        """
        X = np.asarray(self._checked_matrix(X), dtype="float64")
        stack = self.require_stack()
        evaluated = self._evaluate(X)
        clv, p_churn = self._combine(stack, evaluated.parts, X)
        contributions = self._contributions(stack, evaluated, approximate)
        return clv, p_churn, contributions, self._explained_values(evaluated)

    def contributions(
        self, features: pd.DataFrame, *, approximate: bool = True
    ) -> dict[str, pd.DataFrame]:
        """Per-feature contributions for each target, in the stack's scale.

        Returns
        -------
        dict
            ``{"clv": frame, "churn": frame}``; columns :attr:`explanation_names_` plus
            ``bias``. Churn contributions are in log-odds of the final probability, CLV ones in
            log revenue: each boosted contribution (XGBoost's) times the stack's weight on its
            model, plus, for CLV, the stack's service terms (weight x count) in their
            features' columns, and the purchase model's term as one more column.
        """
        values = self.contributions_matrix(self._matrix(features), approximate=approximate)
        columns = [*self.explanation_names_, "bias"]
        return {
            target: pd.DataFrame(matrix, index=features.index, columns=columns)
            for target, matrix in values.items()
        }

    def contributions_matrix(
        self, X: np.ndarray, *, approximate: bool = True
    ) -> dict[str, np.ndarray]:
        """:meth:`contributions` on a bare matrix.

        Returns ``{"clv": ..., "churn": ...}``, each rows x (explanation names + bias), float64.
        """
        X = self._checked_matrix(X)
        stack = self.require_stack()
        return self._contributions(
            stack, self._evaluate(np.asarray(X, dtype="float64")), approximate
        )

    def _contributions(
        self, stack: Stack, evaluated: _Evaluated, approximate: bool
    ) -> dict[str, np.ndarray]:
        parts = evaluated.parts
        rows = len(evaluated.derived)
        matrix = xgb.DMatrix(
            evaluated.trees_in, feature_names=self.derived_names_, nthread=self.n_jobs
        )
        purchase_terms = {
            # P(no order) logit and log value, relative to their training means.
            "churn": stack.churn[1] * (logit(parts["purchase_churn"]) - stack.reference[0]),
            "clv": stack.value[1] * (log_value(parts["purchase_value"]) - stack.reference[1]),
        }
        weights = {"churn": stack.churn[2], "clv": stack.value[2]}
        # The boosted value is the window's revenue scaled to the horizon (parts_matrix).
        scale = {"churn": 0.0, "clv": float(np.log(self.spec.horizon_days / self.window_days_))}
        out = {}
        for target, model in (("clv", self.clv_model_), ("churn", self.churn_model_)):
            boosted = (
                model.get_booster()
                .predict(
                    matrix,
                    pred_contribs=True,
                    approx_contribs=approximate,
                    iteration_range=(0, self._best_or_all(model)),
                )
                .astype("float64")
            )
            features_part = weights[target] * boosted[:, :-1]
            if target == "clv" and stack.service:
                # A stack term is its feature's own: weight x count, zero without failures.
                # The derived matrix starts with the features, in the model's order.
                index, terms = self._service_terms(stack, evaluated.derived)
                features_part[:, index] += terms
            own = np.zeros((rows, 2))
            own[:, 0 if target == "churn" else 1] = purchase_terms[target]
            bias = weights[target] * (boosted[:, -1] + scale[target])
            out[target] = np.column_stack([features_part, own, bias])
        return out

    @staticmethod
    def _best_or_all(model: xgb.XGBModel) -> int:
        best = getattr(model, "best_iteration", None)
        # Without early stopping: the trees grown (fewer than asked when a deadline stopped it).
        return int(best) + 1 if best is not None else int(model.get_booster().num_boosted_rounds())

    def _matrix(self, features: pd.DataFrame) -> np.ndarray:
        self._require_fitted()
        return self._feature_matrix(features)

    def _checked_matrix(self, X: np.ndarray) -> np.ndarray:
        self._require_fitted()
        if X.ndim != 2 or X.shape[1] != len(self.feature_names_in_):
            raise ValueError(
                f"expected a rows x {len(self.feature_names_in_)} feature matrix in the model's "
                f"feature order; got shape {X.shape}"
            )
        return X

    def _require_fitted(self) -> None:
        if not hasattr(self, "clv_model_"):
            raise NotFittedError(
                "This CustomerValueModel is not fitted yet; call fit() or load a trained model"
            )

    def require_stack(self) -> Stack:
        """The fitted stack.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            When :meth:`fit_stack` has not run.
        """
        if self.stack_ is None:
            raise NotFittedError(
                "This CustomerValueModel has no stack yet; call fit_stack() on horizon labels"
            )
        return self.stack_

    def _check_columns(self, features: pd.DataFrame) -> None:
        names = [str(c) for c in features.columns]
        if names == self.feature_names_in_:
            return
        missing = [c for c in self.feature_names_in_ if c not in names]
        unexpected = [c for c in names if c not in self.feature_names_in_]
        if missing or unexpected:
            raise ValueError(
                "The feature names should match those that were passed during fit.\n"
                f"Missing features ({len(missing)}): {missing}\n"
                f"Unexpected features ({len(unexpected)}): {unexpected}\n"
                "Build features with the model's own spec (model.spec) and the same code."
            )

    # -- persistence ---------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write both boosters (native XGBoost JSON), the purchase model, stack and contract."""
        self._require_fitted()
        stack = self.require_stack()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for name, model in (("clv", self.clv_model_), ("churn", self.churn_model_)):
            # Keep only the trees early stopping chose: the saved file predicts the same with
            # no best_iteration bookkeeping.
            booster = model.get_booster()
            best = self._best_or_all(model)
            whole = best >= booster.num_boosted_rounds()
            (booster if whole else booster[:best]).save_model(directory / f"{name}.json")
        meta = {
            "format_version": FORMAT_VERSION,
            "feature_names": self.feature_names_in_,
            "spec": self.spec.to_dict(),
            "params": (self.params or ModelParams()).to_dict(),
            "seed": self.seed,
            "best_iterations": list(self.best_iterations_),
            "purchase": self.purchase_.to_dict(),
            "window_days": self.window_days_,
            "season": self.season_,
            "stack": stack.to_dict(),
            "usual": self.usual_,
        }
        (directory / "model.json").write_text(json.dumps(meta, indent=2))
        return directory

    @classmethod
    def load(cls, directory: str | Path, n_jobs: int = 2) -> CustomerValueModel:
        """Load a model written by :meth:`save`."""
        directory = Path(directory)
        meta_path = directory / "model.json"
        if not meta_path.exists():
            raise FileNotFoundError(f"{meta_path} not found; is {directory} a saved model?")
        meta = json.loads(meta_path.read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"model format {meta.get('format_version')} in {directory} is not supported "
                f"(expected {FORMAT_VERSION}); retrain with `make train`"
            )
        params = ModelParams(**meta["params"])
        model = cls(FeatureSpec.from_dict(meta["spec"]), params, meta["seed"], n_jobs)
        model.feature_names_in_ = list(meta["feature_names"])
        model.n_features_in_ = len(model.feature_names_in_)
        model.purchase_ = PurchaseModel.from_dict(meta["purchase"])
        model.window_days_ = int(meta["window_days"])
        model.season_ = float(meta["season"])
        model.stack_ = Stack.from_dict(meta["stack"])
        # A model saved before the usual values were kept reads its reasons as it did.
        model.usual_ = {str(k): float(v) for k, v in meta.get("usual", {}).items()}
        model.clv_model_ = xgb.XGBRegressor(n_jobs=n_jobs)
        model.clv_model_.load_model(directory / "clv.json")
        model.churn_model_ = xgb.XGBClassifier(n_jobs=n_jobs)
        model.churn_model_.load_model(directory / "churn.json")
        model.use_threads(n_jobs)
        model.best_iterations_ = tuple(meta["best_iterations"])
        return model

    def use_threads(self, n_jobs: int) -> None:
        """Predict with ``n_jobs`` threads from now on (both boosters and their input matrix).

        A loaded booster otherwise uses every core OpenMP sees, slow for small predictions
        (see docs/lab-notes.md, "Threads of a loaded booster"); a batch worker process gets
        its share of the cores (:mod:`serving.batch.chunk_workers`).
        """
        self.n_jobs = n_jobs
        for estimator in (self.clv_model_, self.churn_model_):
            estimator.set_params(n_jobs=n_jobs)
            estimator.get_booster().set_param({"nthread": n_jobs})
