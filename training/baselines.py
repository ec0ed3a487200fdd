"""Baselines the CLV and churn models must beat: the simple formula, BG/NBD and Pareto/NBD."""

from __future__ import annotations

import importlib.util
import logging
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import expit, gammaln, hyp2f1
from sklearn.exceptions import NotFittedError

from training.purchase import PurchaseHistory, PurchaseModel, gamma_gamma_spend

logger = logging.getLogger(__name__)

#: Columns every baseline returns, in order.
PREDICTION_COLUMNS: tuple[str, ...] = ("clv", "p_churn")

#: Feature columns each baseline reads (all produced by ``features.build_features``).
SIMPLE_COLUMNS: tuple[str, ...] = ("orders_total", "avg_order_value", "days_since_first_order")
BGNBD_COLUMNS: tuple[str, ...] = (
    "frequency",
    "recency",
    "T",
    "days_since_first_order",
    "repeat_order_value_mean",
)

#: Gamma-Gamma needs a population of repeat buyers to estimate the spread of spend.
MIN_SPEND_CUSTOMERS = 10
#: A Gamma-Gamma fit whose ``q`` (the shape of the customers' spend scale) is above this has
#: found no spread in the customers' mean spend (its coefficient of variation is
#: ``1 / sqrt(q)``, here under 0.1%): the fit has run off towards a point mass (see
#: :func:`_anchored_spend`). Fits on shops with real amounts stay far below it (q of 3 to 13
#: on the development logs).
POINT_MASS_Q = 1e6

#: Upper end of the flat priors on the Pareto/NBD shapes r and s (see ParetoNbdGammaGammaBaseline).
PARETO_NBD_MAX_SHAPE = 10.0

#: Default fit subsample of ParetoNbdGammaGammaBaseline: its likelihood is a hypergeometric series,
#: slow to differentiate (see docs/lab-notes.md, "Pareto/NBD fit subsample").
PARETO_NBD_MAX_FIT_CUSTOMERS = 10_000

#: Loggers of the probabilistic-programming stack, held at WARNING while it works.
_PYMC_LOGGERS: tuple[str, ...] = ("pymc", "pytensor", "pymc_marketing", "arviz")

#: Known noise on stderr from importing and compiling the stack; nothing a user can act on.
_NOISY_WARNINGS: tuple[tuple[type[Warning], str], ...] = (
    (FutureWarning, "ArviZ is undergoing a major refactor"),
    (UserWarning, "PyTensor could not link to a BLAS installation"),
    (UserWarning, "The group fit_data is not defined in the InferenceData scheme"),
)


# --------------------------------------------------------------------------- shared checks


def _require_columns(features: pd.DataFrame, columns: Sequence[str], owner: str) -> None:
    """Raise a ValueError naming every column of ``columns`` that ``features`` lacks."""
    if not isinstance(features, pd.DataFrame):
        raise TypeError(
            f"{owner} expects a pandas DataFrame of features; got {type(features).__name__}"
        )
    missing = [c for c in columns if c not in features.columns]
    if missing:
        raise ValueError(
            f"{owner}: features are missing required column(s) {missing}; "
            "build them with features.build_features"
        )


def _check_horizon(horizon_days: float) -> float:
    """Return ``horizon_days`` as a float, refusing a non-positive or non-finite horizon."""
    horizon = float(horizon_days)
    if not np.isfinite(horizon) or horizon <= 0:
        raise ValueError(f"horizon_days must be a positive number of days; got {horizon_days!r}")
    return horizon


def _check_fitted(estimator: object, attribute: str) -> None:
    """Raise NotFittedError unless ``estimator`` has the learned ``attribute``."""
    if not hasattr(estimator, attribute):
        name = type(estimator).__name__
        raise NotFittedError(
            f"This {name} instance is not fitted yet; call fit(features) before predict"
        )


def _column(features: pd.DataFrame, name: str) -> np.ndarray:
    """Column ``name`` as a float array (pandas NA becomes NaN)."""
    return features[name].to_numpy(dtype="float64", na_value=np.nan)


def _predictions(index: pd.Index, clv: np.ndarray, p_churn: np.ndarray) -> pd.DataFrame:
    """The baseline output: ``clv`` clipped to >= 0 and ``p_churn`` to [0, 1]."""
    values = {"clv": np.clip(clv, 0.0, None), "p_churn": np.clip(p_churn, 0.0, 1.0)}
    return pd.DataFrame(values, index=index, columns=list(PREDICTION_COLUMNS))


# --------------------------------------------------------------------------- simple formula


class SimpleFormulaBaseline:
    """Average order value x purchase rate x horizon: the CLV formula users learn first.

    For each customer::

        rate    = orders_total / max(days_since_first_order, min_tenure_days)   # orders per day
        clv     = avg_order_value * rate * horizon_days
        p_churn = exp(-rate * horizon_days)   # P(no order in the horizon), Poisson process

    The tenure floor keeps a customer who first ordered two days ago from being credited with
    one order every two days forever; with the default of 30 days a new customer's single order
    counts as at most one order a month. A customer without revenue (only cancelled or returned
    orders, ``avg_order_value`` NaN) has ``clv = 0``; one without placed orders has rate 0 and
    ``p_churn = 1``.

    Nothing is learned: :meth:`fit` only validates the columns, so that both baselines and the
    model share one estimator shape (``fit(features).predict(features, horizon_days)``).

    Parameters
    ----------
    min_tenure_days : float
        Floor on the days since the first order used as the rate's denominator.
    """

    def __init__(self, min_tenure_days: float = 30.0) -> None:
        self.min_tenure_days = min_tenure_days

    def fit(self, features: pd.DataFrame) -> SimpleFormulaBaseline:
        """Validate ``features``; the formula has no parameters to learn.

        Parameters
        ----------
        features : pandas.DataFrame
            One row per customer with the columns in :data:`SIMPLE_COLUMNS`.

        Returns
        -------
        SimpleFormulaBaseline
            self.
        """
        _require_columns(features, SIMPLE_COLUMNS, type(self).__name__)
        floor = float(self.min_tenure_days)
        if not np.isfinite(floor) or floor <= 0:
            raise ValueError(
                f"min_tenure_days must be a positive number of days; got {self.min_tenure_days!r}"
            )
        self.min_tenure_days_ = floor
        self.n_customers_ = len(features)
        return self

    def predict(self, features: pd.DataFrame, horizon_days: float) -> pd.DataFrame:
        """CLV and churn probability over ``[cutoff, cutoff + horizon_days)``.

        Parameters
        ----------
        features : pandas.DataFrame
            One row per customer with the columns in :data:`SIMPLE_COLUMNS`.
        horizon_days : float
            Length of the prediction window in days.

        Returns
        -------
        pandas.DataFrame
            Indexed like ``features``, columns ``clv`` (>= 0) and ``p_churn`` (in [0, 1]).
        """
        _check_fitted(self, "min_tenure_days_")
        _require_columns(features, SIMPLE_COLUMNS, type(self).__name__)
        horizon = _check_horizon(horizon_days)
        orders = np.nan_to_num(_column(features, "orders_total"), nan=0.0).clip(0.0, None)
        tenure = np.fmax(_column(features, "days_since_first_order"), self.min_tenure_days_)
        order_value = np.nan_to_num(_column(features, "avg_order_value"), nan=0.0)
        rate = orders / tenure
        return _predictions(features.index, order_value * rate * horizon, np.exp(-rate * horizon))


# -------------------------------------------------------------------------- pymc-marketing plumbing


def _pymc_logger_names() -> list[str]:
    """:data:`_PYMC_LOGGERS` plus pytensor's C-linker logger, which is named by its file path."""
    names = list(_PYMC_LOGGERS)
    spec = importlib.util.find_spec("pytensor")  # locates the package without importing it
    if spec is not None and spec.submodule_search_locations:
        package = Path(next(iter(spec.submodule_search_locations)))
        names.append(str(package / "link" / "c" / "lazylinker_c.py"))
    return names


@contextmanager
def _quiet_pymc() -> Iterator[None]:
    """Hold the pymc / pytensor loggers at WARNING and drop their known import noise.

    The stack is imported here (not at module import): it takes seconds to import, and the
    training log should only show what matters.
    """
    with warnings.catch_warnings():
        for category, message in _NOISY_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=category)
        loggers = [logging.getLogger(name) for name in _pymc_logger_names()]
        levels = [lg.level for lg in loggers]
        try:
            for lg in loggers:
                lg.setLevel(max(lg.level, logging.WARNING))
            import pymc  # noqa: F401  (first import: arviz logs at INFO, pymc sets its level)

            for lg in loggers:
                lg.setLevel(max(lg.level, logging.WARNING))
            yield
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)


def _bgnbd_summary(features: pd.DataFrame) -> pd.DataFrame:
    """The pymc-marketing input frame: ``customer_id, frequency, recency, T, monetary_value``.

    ``customer_id`` is the row position (the feature index need not be unique or numeric).
    Frequencies are rounded to whole repeat-purchase days and recency is clipped to
    ``[0, T]``, as the BG/NBD and Pareto/NBD likelihoods require. Customers with only cancelled
    orders (``frequency`` NaN) get ``frequency = recency = 0`` and
    ``T = days_since_first_order``.
    """
    frequency = _column(features, "frequency")
    no_purchase = np.isnan(frequency)
    age = _column(features, "T")
    age = np.where(no_purchase | np.isnan(age), _column(features, "days_since_first_order"), age)
    bad = int(np.count_nonzero(~np.isfinite(age)))
    if bad:
        raise ValueError(
            f"columns 'T' and 'days_since_first_order' have {bad} rows where both are missing; "
            "expected the days since the first order for every customer"
        )
    age = np.clip(age, 0.0, None)
    frequency = np.round(np.nan_to_num(frequency, nan=0.0)).clip(0.0, None)
    recency = np.where(no_purchase, 0.0, np.nan_to_num(_column(features, "recency"), nan=0.0))
    recency = np.where(frequency > 0, np.clip(recency, 0.0, age), 0.0)
    return pd.DataFrame(
        {
            "customer_id": np.arange(len(features)),
            "frequency": frequency,
            "recency": recency,
            "T": age,
            "monetary_value": _column(features, "repeat_order_value_mean"),
        }
    )


def _point(values: Any, customer_ids: np.ndarray) -> np.ndarray:
    """Posterior mean over (chain, draw) of an xarray result, in the order of ``customer_ids``."""
    dims = [d for d in ("chain", "draw") if d in values.dims]
    mean = values.mean(dims) if dims else values
    return mean.reindex(customer_id=customer_ids).to_numpy().astype("float64")


def _scalar_params(model: Any, names: Sequence[str]) -> dict[str, float]:
    """Posterior mean of each named scalar parameter of a fitted pymc-marketing model."""
    return {name: float(model.fit_result[name].mean()) for name in names}


def _fit_map(
    model: Any, data: pd.DataFrame, what: str, names: Sequence[str], seed: int, **options: Any
) -> dict[str, float]:
    """MAP-fit a pymc-marketing purchase-count model; its finite, positive parameters ``names``.

    ``options`` go to ``pymc.find_MAP`` (a starting point, say). Raises RuntimeError naming
    ``what`` when the optimiser fails or a parameter is not finite and positive.
    """
    started = time.perf_counter()
    try:
        model.fit(data=data, method="map", progressbar=False, seed=seed, **options)
    except Exception as err:  # re-raised: pymc reports optimiser failures with many types
        raise RuntimeError(f"{what} fit failed on {len(data)} customers: {err}") from err
    return _checked_params(_scalar_params(model, names), what, len(data), started)


def _checked_params(
    params: dict[str, float], what: str, customers: int, started: float
) -> dict[str, float]:
    """``params`` of a fit of ``what`` that began at ``started``, logged with the fit time.

    Raises RuntimeError naming ``what`` when a parameter is not finite and positive.
    """
    bad = {k: v for k, v in params.items() if not (np.isfinite(v) and v > 0)}
    if bad:
        raise RuntimeError(
            f"{what} fit failed: parameters {bad} are not finite and positive "
            f"(fit on {customers} customers); the data may be degenerate"
        )
    logger.info(
        "%s fit on %d customers in %.1fs: %s",
        what,
        customers,
        time.perf_counter() - started,
        ", ".join(f"{k}={v:.4g}" for k, v in params.items()),
    )
    return params


def _spend_mask(summary: pd.DataFrame) -> np.ndarray:
    """Customers Gamma-Gamma conditions on: a repeat purchase and a positive mean spend."""
    monetary = summary["monetary_value"].to_numpy()
    return (summary["frequency"].to_numpy() > 0) & np.isfinite(monetary) & (monetary > 0)


def _gamma_gamma_nll(p: float, q: float, v: float, x: np.ndarray, m: np.ndarray) -> float:
    """Gamma-Gamma's negative log-likelihood of the mean spends ``m`` of ``x`` orders, per customer.

    Fader, Hardie & Lee (2005), "RFM and CLV: using iso-value curves", equation (3), as
    pymc-marketing's ``GammaGammaModel`` maximises it (the same optimum on the same data).
    """
    px = p * x
    return -float(
        np.mean(
            gammaln(px + q)
            - gammaln(px)
            - gammaln(q)
            + q * np.log(v)
            + (px - 1.0) * np.log(m)
            + px * np.log(x)
            - (px + q) * np.log(x * m + v)
        )
    )


def _finite_mean_fit(params: dict[str, float], repeat: pd.DataFrame) -> dict[str, float]:
    """Gamma-Gamma refit with its population mean spend held at the customers' own mean.

    Where the customers' mean spends have a heavier tail than Gamma-Gamma's prior allows (a
    few customers spending a hundred times the median, as at a wholesaler), the maximum of
    the likelihood has ``q <= 1``: a population whose mean spend is infinite, so a customer
    without repeat spend has no expected spend at all, and training stopped there (a
    synthetic wholesaler with log-normal spends of sigma 1.4: ``q = 0.90``;
    docs/experiments.md, entry 40). The refit maximises the same likelihood with the
    population mean ``p v / (q - 1)`` held at the repeat customers' mean of their mean
    spends, which estimates it without assuming the prior's shape: ``p`` and ``q > 1`` are
    fit, and ``v`` follows.

    Raises RuntimeError when the refit does not give finite parameters.
    """
    x = repeat["frequency"].to_numpy(dtype=float)
    m = repeat["monetary_value"].to_numpy(dtype=float)
    mean = float(np.mean(m))

    def nll(theta: np.ndarray) -> float:
        p, q_minus_one = np.exp(theta)
        return _gamma_gamma_nll(p, 1.0 + q_minus_one, mean * q_minus_one / p, x, m)

    start = np.log([params["p"], 1.0])
    result = minimize(nll, start, method="Nelder-Mead", options={"xatol": 1e-8, "fatol": 1e-10})
    p, q_minus_one = (float(t) for t in np.exp(result.x))
    refit = {"p": p, "q": 1.0 + q_minus_one, "v": mean * q_minus_one / p}
    if not (result.success and all(np.isfinite(t) and t > 0 for t in refit.values())):
        raise RuntimeError(
            f"Gamma-Gamma fit failed: its maximum {params} on {len(repeat)} customers has "
            f"q <= 1 (no finite mean spend), and the refit at their mean spend {mean:.4g} "
            f"gave {refit} ({result.message})"
        )
    logger.info(
        "Gamma-Gamma fit: q=%.3g <= 1 (the customers' mean spends have too heavy a tail for a "
        "finite mean); refit with the population's mean spend held at theirs, %.4g: %s",
        params["q"],
        mean,
        ", ".join(f"{k}={v:.4g}" for k, v in refit.items()),
    )
    return refit


def _anchored_spend(params: dict[str, float], repeat: pd.DataFrame) -> dict[str, float]:
    """Gamma-Gamma's parameters, with the mean spend set where the fit cannot find it.

    Where the customers' mean spends show no spread, the likelihood's maximum lies at an
    infinite ``q`` (and an infinite ``p`` too when every order has the same amount, as in a
    log of orders without revenue, every amount 1). The optimiser then stops somewhere on the
    way, and the population's mean spend ``p v / (q - 1)`` is whatever ratio it stopped at:
    amounts of 1 gave 0.09, 0.84 and 0.99 at neighbouring cutoffs of one counts-only cohort
    (docs/experiments.md, entry 39). In that limit the maximum-likelihood mean spend is the
    repeat orders' own mean, ``sum(x m) / sum(x)``, so ``v`` is set to give it, with ``p``
    and ``q`` kept. That is done when every repeat customer's mean spend is the same (then
    every customer's expected spend is exactly that amount, whatever ``p`` and ``q``) or when
    ``q`` is above :data:`POINT_MASS_Q`; any other fit is returned as it is.
    """
    p, q = params["p"], params["q"]
    x = repeat["frequency"].to_numpy(dtype=float)
    m = repeat["monetary_value"].to_numpy(dtype=float)
    mean = float(np.sum(x * m) / np.sum(x))
    constant = float(np.ptp(m)) <= 1e-9 * mean
    if q <= POINT_MASS_Q and not constant:
        return params
    logger.info(
        "Gamma-Gamma fit: %s (q=%.3g); its mean spend %.6g is set to the repeat orders' mean %.6g",
        "every repeat customer's mean spend is the same" if constant else "no spread in mean spend",
        q,
        p * params["v"] / (q - 1.0),
        mean,
    )
    return {**params, "v": mean * (q - 1.0) / p}


def _check_fittable(summary: pd.DataFrame, counts_name: str) -> None:
    """Refuse data neither model can learn from, before spending time on a fit."""
    if not (summary["frequency"] > 0).any():
        raise RuntimeError(
            f"{counts_name} fit failed: no customer has a repeat purchase, so the purchase and "
            "dropout rates cannot be estimated; use a later cutoff or more history"
        )
    spenders = int(np.count_nonzero(_spend_mask(summary)))
    if spenders < MIN_SPEND_CUSTOMERS:
        raise RuntimeError(
            f"Gamma-Gamma fit failed: {spenders} customers have a repeat purchase with a "
            f"positive repeat_order_value_mean; it needs at least {MIN_SPEND_CUSTOMERS}"
        )


# ------------------------------------------------------------------ Pareto/NBD likelihood (numpy)


def pareto_nbd_loglik(
    frequency: np.ndarray,
    recency: np.ndarray,
    age: np.ndarray,
    params: Sequence[float],
) -> np.ndarray:
    """Per-customer Pareto/NBD log-likelihood: pymc-marketing's ``ParetoNBD.logp``, in numpy.

    The same formula as the library's distribution (Fader & Hardie's note 005, with the
    larger of ``alpha, beta`` factored out of the hypergeometric terms), on numpy arrays with
    ``scipy.special.hyp2f1``: one evaluation on 10,000 customers takes milliseconds, with no
    graph to compile (tests/training/test_pareto_nbd_fit.py checks it against the library).

    Parameters
    ----------
    frequency, recency, age : numpy.ndarray
        ``frequency`` (repeat purchase days), ``recency`` and ``T`` in days.
    params : sequence of float
        ``r, alpha, s, beta``.
    """
    r, alpha, s, beta = params
    rsx = r + s + frequency
    rx = r + frequency
    larger, smaller = max(alpha, beta), min(alpha, beta)
    second_1, second_2 = (s + 1.0, s) if alpha >= beta else (rx, rx + 1.0)
    refactored = rsx * np.log(larger + recency)
    term_1 = np.log(hyp2f1(rsx, second_1, rsx + 1.0, (larger - smaller) / (larger + recency)))
    term_2 = (
        np.log(hyp2f1(rsx, second_2, rsx + 1.0, (larger - smaller) / (larger + age)))
        - rsx * np.log(larger + age)
        + refactored
    )
    common = gammaln(rx) - gammaln(r) + r * np.log(alpha) + s * np.log(beta) - refactored
    logp = common + np.logaddexp(
        np.log(s) - np.log(rsx) + term_1, np.log(rx) - np.log(rsx) + term_2
    )
    return np.where((recency < 0) | (frequency < 0) | (recency > age), -np.inf, logp)


def _pareto_nbd_params(point: np.ndarray) -> tuple[float, float, float, float]:
    """``r, alpha, s, beta`` from the optimiser's unconstrained point.

    The point is what pymc's ``find_MAP`` optimises over for these priors: ``log alpha``,
    ``log beta`` (``HalfFlat``) and the interval transform ``log(x / (cap - x))`` of the
    shapes ``r, s`` (``Uniform(0, cap)``).
    """
    log_alpha, log_beta, r_interval, s_interval = point
    cap = PARETO_NBD_MAX_SHAPE
    r = cap * float(expit(r_interval))
    s = cap * float(expit(s_interval))
    return r, float(np.exp(log_alpha)), s, float(np.exp(log_beta))


def _fit_pareto_nbd_map(summary: pd.DataFrame, start: dict[str, float]) -> dict[str, float]:
    """The Pareto/NBD MAP fit ``pymc.find_MAP`` makes, with a numpy likelihood.

    Under the flat priors the MAP is the maximum-likelihood fit: L-BFGS-B over the same
    unconstrained point from the same start, with central-difference gradients of
    :func:`pareto_nbd_loglik` (the library differentiates the hypergeometric series
    symbolically, which took most of a minute on 10,000 customers; see bench/RESULTS.md,
    "Pareto/NBD fit").
    """
    frequency = summary["frequency"].to_numpy(dtype="float64")
    recency = summary["recency"].to_numpy(dtype="float64")
    age = summary["T"].to_numpy(dtype="float64")

    def negative(point: np.ndarray) -> float:
        # Far from the optimum a term can overflow; such a point is just not a maximum.
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            logp = pareto_nbd_loglik(frequency, recency, age, _pareto_nbd_params(point))
        value = -float(logp.sum())
        return value if np.isfinite(value) else np.inf

    cap = PARETO_NBD_MAX_SHAPE
    first = np.array(
        [
            np.log(start["alpha"]),
            np.log(start["beta"]),
            np.log(start["r"] / (cap - start["r"])),
            np.log(start["s"] / (cap - start["s"])),
        ]
    )
    found = minimize(negative, first, method="L-BFGS-B", jac="3-point")
    return dict(zip(("r", "alpha", "s", "beta"), _pareto_nbd_params(found.x), strict=True))


# --------------------------------------------------------------------------- counts x Gamma-Gamma


class _CountsGammaGammaBaseline:
    """A purchase-count model (BG/NBD, Pareto/NBD) x Gamma-Gamma spend: what both share.

    A subclass names its count model (``_counts_name``), fits it (``_fit_counts``, setting its
    own fitted attributes), returns its parameters (``_counts_params``) and predicts from it
    (``_predict_counts``). The checks, the fit subsample, the Gamma-Gamma spend and the output
    frames live here once.
    """

    #: The purchase-count model as named in log lines and errors.
    _counts_name = "purchase-count model"

    def __init__(self, random_seed: int = 0, max_fit_customers: int | None = 200_000) -> None:
        self.random_seed = random_seed
        self.max_fit_customers = max_fit_customers

    # -- fitting -------------------------------------------------------------------------------
    def fit(self, features: pd.DataFrame) -> Self:
        """Fit the purchase-count model and Gamma-Gamma on the history before the cutoff.

        Parameters
        ----------
        features : pandas.DataFrame
            One row per customer with the columns in :data:`BGNBD_COLUMNS`.

        Returns
        -------
        self
            The fitted estimator.

        Raises
        ------
        ValueError
            On missing columns, no rows or a bad ``max_fit_customers``.
        RuntimeError
            When a model cannot be fit (no repeat buyers, too few spend observations, an
            optimiser failure or parameters outside the model's range), naming the model.
        """
        _require_columns(features, BGNBD_COLUMNS, type(self).__name__)
        if len(features) == 0:
            raise ValueError("features has no rows; expected one row per customer")
        cap = self.max_fit_customers
        if cap is not None and (int(cap) != cap or cap < 1):
            raise ValueError(f"max_fit_customers must be a positive integer or None; got {cap!r}")
        summary = _bgnbd_summary(features)
        if cap is not None and len(summary) > cap:
            rng = np.random.default_rng(self.random_seed)
            rows = np.sort(rng.choice(len(summary), size=int(cap), replace=False))
            summary = summary.iloc[rows].reset_index(drop=True)
            summary["customer_id"] = np.arange(len(summary))
        _check_fittable(summary, self._counts_name)
        started = time.perf_counter()
        with _quiet_pymc():
            self._fit_counts(summary)
            self.gamma_gamma_model_, self.gamma_gamma_params_ = self._fit_gamma_gamma(summary)
        p, q, v = (self.gamma_gamma_params_[k] for k in ("p", "q", "v"))
        self.population_spend_ = p * v / (q - 1.0)
        self.n_fit_customers_ = len(summary)
        self.fit_seconds_ = time.perf_counter() - started
        return self

    def _fit_counts(self, summary: pd.DataFrame) -> None:
        """Fit the purchase-count model on ``summary`` and set its fitted attributes."""
        raise NotImplementedError

    def _counts_params(self) -> dict[str, float]:
        """The fitted purchase-count parameters."""
        raise NotImplementedError

    def _fit_gamma_gamma(self, summary: pd.DataFrame) -> tuple[Any, dict[str, float]]:
        """MAP (= maximum likelihood under its flat default priors) Gamma-Gamma fit."""
        from pymc_marketing.clv import GammaGammaModel

        repeat = summary.loc[_spend_mask(summary), ["customer_id", "frequency", "monetary_value"]]
        model = GammaGammaModel()
        started = time.perf_counter()
        try:
            model.fit(data=repeat, method="map", progressbar=False, seed=self.random_seed)
        except Exception as err:  # re-raised: pymc reports optimiser failures with many types
            raise RuntimeError(f"Gamma-Gamma fit failed on {len(repeat)} customers: {err}") from err
        params = _scalar_params(model, ("p", "q", "v"))
        if not all(np.isfinite(v) and v > 0 for v in params.values()):
            raise RuntimeError(
                f"Gamma-Gamma fit failed: parameters {params} on {len(repeat)} customers; "
                "expected finite p, q, v > 0"
            )
        if params["q"] <= 1.0:
            params = _finite_mean_fit(params, repeat)
        params = _anchored_spend(params, repeat)
        logger.info(
            "Gamma-Gamma fit on %d repeat customers in %.1fs: %s",
            len(repeat),
            time.perf_counter() - started,
            ", ".join(f"{k}={v:.4g}" for k, v in params.items()),
        )
        return model, params

    # -- predicting ----------------------------------------------------------------------------
    def predict(self, features: pd.DataFrame, horizon_days: float) -> pd.DataFrame:
        """CLV and churn probability over ``[cutoff, cutoff + horizon_days)``.

        Parameters
        ----------
        features : pandas.DataFrame
            One row per customer with the columns in :data:`BGNBD_COLUMNS` (any customers,
            not only those seen by :meth:`fit`).
        horizon_days : float
            Length of the prediction window in days.

        Returns
        -------
        pandas.DataFrame
            Indexed like ``features``, columns ``clv`` (>= 0) and ``p_churn`` (in [0, 1]).
        """
        parts = self.predict_components(features, horizon_days)
        return _predictions(
            features.index,
            (parts["purchases"] * parts["spend"]).to_numpy(),
            parts["p_churn"].to_numpy(),
        )

    def predict_components(self, features: pd.DataFrame, horizon_days: float) -> pd.DataFrame:
        """The two factors of the CLV, the churn probability and P(alive), per customer.

        Parameters
        ----------
        features : pandas.DataFrame
            One row per customer with the columns in :data:`BGNBD_COLUMNS`.
        horizon_days : float
            Length of the prediction window in days.

        Returns
        -------
        pandas.DataFrame
            Indexed like ``features``: ``purchases`` (expected purchases in the horizon),
            ``spend`` (Gamma-Gamma expected spend per purchase), ``p_churn`` (probability of
            no purchase in the horizon) and ``p_alive`` (probability the customer is still
            active at the cutoff). ``clv = purchases * spend``.

        Raises
        ------
        RuntimeError
            When the fitted models give non-finite values (a degenerate fit for this data).
        """
        _check_fitted(self, "population_spend_")
        _require_columns(features, BGNBD_COLUMNS, type(self).__name__)
        horizon = _check_horizon(horizon_days)
        summary = _bgnbd_summary(features)
        if summary.empty:
            purchases = p_none = p_alive = spend = np.zeros(0)
        else:
            data = summary[["customer_id", "frequency", "recency", "T"]]
            with _quiet_pymc():
                purchases, p_none, p_alive = self._predict_counts(data, horizon)
            spend = self._expected_spend(summary)
        values = {"purchases": purchases, "spend": spend, "p_churn": p_none, "p_alive": p_alive}
        for name, column in values.items():
            bad = int(np.count_nonzero(~np.isfinite(column)))
            if bad:
                raise RuntimeError(
                    f"{self._counts_name} + Gamma-Gamma gave {bad} non-finite '{name}' values "
                    f"with parameters {self._counts_params() | self.gamma_gamma_params_}; the fit "
                    "is degenerate for this data"
                )
        return pd.DataFrame(values, index=features.index)

    def _predict_counts(
        self, data: pd.DataFrame, horizon: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Expected purchases, P(no purchase) in the horizon and P(alive), in row order."""
        raise NotImplementedError

    def _expected_spend(self, summary: pd.DataFrame) -> np.ndarray:
        """Gamma-Gamma expected spend per purchase; the population mean without repeat spend.

        The closed form on :attr:`gamma_gamma_params_`, so that an anchored or refit fit
        (:func:`_anchored_spend`, :func:`_finite_mean_fit`) is the one that predicts. It is
        pinned to the library's own expectation on the library's fit
        (``gamma_gamma_model_``) in tests/training/test_purchase.py.
        """
        p, q, v = (self.gamma_gamma_params_[k] for k in ("p", "q", "v"))
        return gamma_gamma_spend(
            p,
            q,
            v,
            summary["frequency"].to_numpy(dtype=float),
            summary["monetary_value"].to_numpy(dtype=float),
            _spend_mask(summary),
        )


# --------------------------------------------------------------------------- BG/NBD + Gamma-Gamma


class BgNbdGammaGammaBaseline(_CountsGammaGammaBaseline):
    """BG/NBD purchase counts x Gamma-Gamma spend, from pymc-marketing, fit by MAP.

    * **Purchases.** ``pymc_marketing.clv.BetaGeoModel`` on ``frequency`` (repeat purchase
      days), ``recency`` and ``T`` in days, with flat priors on ``r, alpha, a, b`` so the MAP
      fit is the maximum-likelihood fit of Fader, Hardie & Lee (2005) (and of ``lifetimes``);
      the library's default prior on the scale suits weeks, not days (see docs/lab-notes.md,
      "BG/NBD priors").
    * **Spend.** ``GammaGammaModel`` (flat priors, MAP = maximum likelihood) on the customers
      with ``frequency > 0`` and a positive ``repeat_order_value_mean``; the expected spend
      per purchase is its conditional expectation for them and the population mean
      ``p v / (q - 1)`` for everyone else (one-time buyers, repeat orders without revenue).
      Spend per order stands in for spend per purchase day. Two kinds of data have no
      finite maximum, and are handled rather than fit blindly: spends without spread (a
      log without revenue, every amount 1; :func:`_anchored_spend`) and spends too
      heavy-tailed for a finite mean (``q <= 1``; :func:`_finite_mean_fit`).
    * **CLV** over the horizon = ``expected_purchases(future_t=horizon_days)`` x expected
      spend; undiscounted, like the ``future_value`` label.
    * **p_churn** = P(no purchase in the horizon). For repeat buyers this is the library's
      ``expected_probability_no_purchase`` (Hardie's note 039, eq. 34). One-time buyers
      (``frequency = 0``), for whom that function overstates churn, get the closed form
      ``P = ((alpha + T) / (alpha + T + t)) ** r`` (such a customer is alive; see
      docs/lab-notes.md, "BG/NBD p_churn of one-time buyers").
    * **p_alive** = P(active at the cutoff), the library's ``expected_probability_alive``
      (Fader, Hardie & Lee's note 021). It is exactly 1 for one-time buyers: BG/NBD customers
      only drop out right after a repeat purchase.

    Customers with only cancelled orders (``frequency`` NaN) enter as one-time buyers with
    ``T = days_since_first_order``. Point estimates are the posterior means over chain and
    draw (a single draw with MAP).

    Parameters
    ----------
    random_seed : int
        Seeds the fit subsample and the optimiser's starting point.
    max_fit_customers : int or None
        Fit on a seeded random subsample of at most this many customers (predictions still
        cover everyone). Four population parameters are pinned down long before 200,000
        customers; the cap bounds fit time and memory on large bases. None fits on all.
    """

    _counts_name = "BG/NBD"

    def _fit_counts(self, summary: pd.DataFrame) -> None:
        """MAP (= maximum likelihood under flat priors) BG/NBD fit."""
        from pymc_extras.prior import Prior
        from pymc_marketing.clv import BetaGeoModel

        names = ("r", "alpha", "a", "b")
        model = BetaGeoModel(model_config={name: Prior("HalfFlat") for name in names})
        data = summary[["customer_id", "frequency", "recency", "T"]]
        params = _fit_map(model, data, self._counts_name, names, self.random_seed)
        self.bgnbd_model_, self.bgnbd_params_ = model, params

    def _counts_params(self) -> dict[str, float]:
        return self.bgnbd_params_

    def _predict_counts(
        self, data: pd.DataFrame, horizon: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Expected purchases, P(no purchase) in the horizon and P(alive), in row order."""
        ids = data["customer_id"].to_numpy()
        repeat = data["frequency"].to_numpy() > 0
        # One-time buyers: alive for sure, lambda | data ~ Gamma(r, alpha + T) (see class doc).
        r, alpha = self.bgnbd_params_["r"], self.bgnbd_params_["alpha"]
        age = data["T"].to_numpy()
        p_none = ((alpha + age) / (alpha + age + horizon)) ** r
        purchases = _point(self.bgnbd_model_.expected_purchases(data, future_t=horizon), ids)
        p_alive = _point(self.bgnbd_model_.expected_probability_alive(data), ids)
        if repeat.any():
            repeaters = data.loc[repeat]
            p_none[repeat] = _point(
                # pymc-marketing annotates t as int; the closed form takes any length of time.
                self.bgnbd_model_.expected_probability_no_purchase(horizon, repeaters),  # type: ignore[arg-type]
                repeaters["customer_id"].to_numpy(),
            )
        return self._finite_counts(data, horizon, (purchases, p_none, p_alive))

    def _finite_counts(
        self, data: pd.DataFrame, horizon: float, counts: tuple[np.ndarray, ...]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The library's figures, with the closed forms where it gave no finite value.

        A fit whose dropout chance has no spread (``a, b`` near 1e19: a 20,000-customer demo
        store did this) makes pymc-marketing's hypergeometric series NaN for new customers.
        :class:`training.purchase.PurchaseModel` computes the same closed forms (equal to the
        library's on ordinary fits, tests/training/test_purchase.py) and uses the series'
        limit there.
        """
        purchases, p_none, p_alive = (np.asarray(c, dtype="float64").copy() for c in counts)
        bad = ~(np.isfinite(purchases) & np.isfinite(p_none) & np.isfinite(p_alive))
        if not bad.any():
            return purchases, p_none, p_alive
        model = PurchaseModel(**self.bgnbd_params_, **self.gamma_gamma_params_)
        rows = data.loc[bad]
        history = PurchaseHistory(
            rows["frequency"].to_numpy(dtype="float64"),
            rows["recency"].to_numpy(dtype="float64"),
            rows["T"].to_numpy(dtype="float64"),
            np.full(len(rows), np.nan),
        )
        purchases[bad] = model.expected_orders(history, horizon)
        p_none[bad] = model.p_no_order(history, horizon)
        p_alive[bad] = model.p_alive(history)
        logger.warning(
            "BG/NBD: pymc-marketing gave no finite figure for %d of %d customers (parameters "
            "%s); the closed forms of training.purchase are used for them",
            int(bad.sum()),
            len(bad),
            ", ".join(f"{k}={v:.4g}" for k, v in self.bgnbd_params_.items()),
        )
        return purchases, p_none, p_alive


# ------------------------------------------------------------------------- Pareto/NBD + Gamma-Gamma


class ParetoNbdGammaGammaBaseline(_CountsGammaGammaBaseline):
    """Pareto/NBD purchase counts x Gamma-Gamma spend, from pymc-marketing, fit by MAP.

    * **Purchases.** ``pymc_marketing.clv.ParetoNBDModel`` on ``frequency`` (repeat purchase
      days), ``recency`` and ``T`` in days (Schmittlein, Morrison & Colombo 1987): while
      alive a customer buys at rate ``lambda ~ Gamma(r, alpha)`` and dies at rate
      ``mu ~ Gamma(s, beta)``, at any time. Flat priors, so the MAP fit is the
      maximum-likelihood fit: ``HalfFlat`` on the scales ``alpha, beta`` and flat on
      ``(0, PARETO_NBD_MAX_SHAPE]`` (``Uniform``) on the shapes ``r, s``. The library's
      Weibull defaults suit weeks, not days (as for BG/NBD).

      The shapes are capped because the likelihood of real data can keep rising as the
      dropout rates become the same for everyone (``s, beta -> inf`` with ``s / beta``
      fixed), while each step of an unbounded fit gets slower; a fit at the cap is logged.
      The optimiser starts from ``r = s = 1`` and ``alpha = beta`` = the mean ``T`` (see
      docs/lab-notes.md, "Pareto/NBD shape cap").

      The fit is the one ``pymc.find_MAP`` makes (L-BFGS-B over the same unconstrained point,
      from the same start) on the library's likelihood evaluated in numpy
      (:func:`pareto_nbd_loglik`), with central-difference gradients: the library's symbolic
      gradient of the hypergeometric series took most of a minute on 10,000 customers, this
      takes seconds, at the same optimum (bench/RESULTS.md, "Pareto/NBD fit"). The fitted
      point is then the library model's, and every prediction is the library's.
    * **Spend**, **CLV**: as :class:`BgNbdGammaGammaBaseline` (Gamma-Gamma, the same code).
    * **p_churn** = P(no purchase in the horizon) for everyone, one-time buyers included:
      the library's ``expected_purchase_probability(n_purchases=0, future_t=horizon_days)``
      (Fader & Hardie's note 028, eq. 16; pymc-marketing 0.19 has no
      ``expected_probability_no_purchase`` for this model). Unlike BG/NBD, a Pareto/NBD
      customer can die before a first repeat purchase, so "dead at the cutoff, or alive and
      silent through the horizon" holds at ``frequency = 0`` too and the library's formula is
      right there (checked numerically: docs/lab-notes.md, "Pareto/NBD p_churn and p_alive
      checks").
    * **p_alive** = P(active at the cutoff), the library's ``expected_probability_alive``
      (Fader & Hardie's note 015, eq. 18); below 1 for one-time buyers, falling with ``T``.

    Customers with only cancelled orders (``frequency`` NaN) enter as one-time buyers with
    ``T = days_since_first_order``. Point estimates are the posterior means over chain and
    draw (a single draw with MAP).

    Parameters
    ----------
    random_seed : int
        Seeds the fit subsample (the optimiser's start is fixed).
    max_fit_customers : int or None
        Fit on a seeded random subsample of at most this many customers (predictions still
        cover everyone). The default, :data:`PARETO_NBD_MAX_FIT_CUSTOMERS` (10,000), is lower
        than BG/NBD's because the Pareto/NBD likelihood is a hypergeometric series, slower to
        evaluate; the subsample moves the predictions by little (see
        docs/lab-notes.md, "Pareto/NBD fit subsample"). None fits on all.
    """

    _counts_name = "Pareto/NBD"

    def __init__(
        self, random_seed: int = 0, max_fit_customers: int | None = PARETO_NBD_MAX_FIT_CUSTOMERS
    ) -> None:
        super().__init__(random_seed=random_seed, max_fit_customers=max_fit_customers)

    def _fit_counts(self, summary: pd.DataFrame) -> None:
        """MAP (= maximum likelihood under flat priors, shapes capped) Pareto/NBD fit."""
        import arviz as az
        from pymc_extras.prior import Prior
        from pymc_marketing.clv import ParetoNBDModel

        def shape() -> Prior:
            return Prior("Uniform", lower=0.0, upper=PARETO_NBD_MAX_SHAPE)

        priors = {"r": shape(), "alpha": Prior("HalfFlat"), "s": shape(), "beta": Prior("HalfFlat")}
        model = ParetoNBDModel(model_config=priors)
        scale = max(float(summary["T"].mean()), 1.0)  # days: the time scale of the data
        start = {"r": 1.0, "alpha": scale, "s": 1.0, "beta": scale}
        data = summary[["customer_id", "frequency", "recency", "T"]]
        started = time.perf_counter()
        params = _checked_params(
            _fit_pareto_nbd_map(summary, start), self._counts_name, len(data), started
        )
        # The library's model, holding the fitted point as find_MAP's single draw would: its
        # predictions (expected purchases, P(alive), ...) are the library's own.
        model.build_model(data)
        model.fit_result = az.from_dict(
            posterior={name: np.array([[value]]) for name, value in params.items()}
        )
        capped = [k for k in ("r", "s") if params[k] > 0.99 * PARETO_NBD_MAX_SHAPE]
        if capped:
            logger.info(
                "Pareto/NBD: %s at the cap %g; the likelihood still rises towards rates that "
                "are the same for every customer (see ParetoNbdGammaGammaBaseline)",
                " and ".join(capped),
                PARETO_NBD_MAX_SHAPE,
            )
        self.pareto_nbd_model_, self.pareto_nbd_params_ = model, params

    def _counts_params(self) -> dict[str, float]:
        return self.pareto_nbd_params_

    def _predict_counts(
        self, data: pd.DataFrame, horizon: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Expected purchases, P(no purchase) in the horizon and P(alive), in row order."""
        ids = data["customer_id"].to_numpy()
        model = self.pareto_nbd_model_
        purchases = _point(model.expected_purchases(data, future_t=horizon), ids)
        p_none = _point(
            model.expected_purchase_probability(data, n_purchases=0, future_t=horizon), ids
        )
        p_alive = _point(model.expected_probability_alive(data), ids)
        return purchases, p_none, p_alive
