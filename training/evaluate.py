"""Holdout metrics and plots for the CLV and churn models and their baselines."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from numpy.typing import ArrayLike
from scipy.stats import spearmanr
from sklearn.metrics import average_precision_score, roc_auc_score

N_DECILES = 10

DECILE_COLUMNS: tuple[str, ...] = (
    "decile",
    "customers",
    "mean_predicted",
    "mean_actual",
    "total_actual",
    "share_of_actual",
    "cumulative_share",
)


# --------------------------------------------------------------------------- validation


def _as_vector(values: ArrayLike, name: str) -> np.ndarray:
    """Return ``values`` as a finite, non-empty 1-D float array or raise naming ``name``."""
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be numeric; could not convert it to floats ({err})") from err
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per customer); got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty; expected at least one customer")
    bad = int(np.count_nonzero(~np.isfinite(array)))
    if bad:
        raise ValueError(
            f"{name} has {bad} NaN or infinite values; expected finite numbers for every customer"
        )
    return array


def _as_pair(
    y_true: ArrayLike, y_pred: ArrayLike, pred_name: str = "y_pred"
) -> tuple[np.ndarray, np.ndarray]:
    """Validate a (labels, predictions) pair: both finite 1-D float arrays of the same length."""
    true = _as_vector(y_true, "y_true")
    pred = _as_vector(y_pred, pred_name)
    if true.size != pred.size:
        raise ValueError(
            f"y_true and {pred_name} have different lengths ({true.size} and {pred.size}); "
            "expected one prediction per customer"
        )
    return true, pred


def _as_values(
    y_true: ArrayLike, y_pred: ArrayLike, pred_name: str = "y_pred"
) -> tuple[np.ndarray, np.ndarray]:
    """Validate a CLV pair whose actual values must be non-negative (they are shares of a total)."""
    true, pred = _as_pair(y_true, y_pred, pred_name)
    negative = int(np.count_nonzero(true < 0))
    if negative:
        raise ValueError(f"y_true has {negative} negative values; expected future value >= 0")
    return true, pred


def _as_labels(
    y_true: ArrayLike, y_score: ArrayLike, score_name: str = "y_score"
) -> tuple[np.ndarray, np.ndarray]:
    """Validate a churn pair: labels are 0/1, scores are finite and aligned."""
    true, score = _as_pair(y_true, y_score, score_name)
    unexpected = np.setdiff1d(np.unique(true), [0.0, 1.0])
    if unexpected.size:
        raise ValueError(f"y_true must hold churn labels 0 or 1; found {unexpected[:5].tolist()}")
    return true, score


def _as_probabilities(
    y_true: ArrayLike, p: ArrayLike, p_name: str = "p"
) -> tuple[np.ndarray, np.ndarray]:
    """Validate a churn pair whose scores are probabilities in [0, 1]."""
    true, prob = _as_labels(y_true, p, p_name)
    outside = int(np.count_nonzero((prob < 0) | (prob > 1)))
    if outside:
        raise ValueError(f"{p_name} has {outside} values outside [0, 1]; expected probabilities")
    return true, prob


def _check_models(models: Mapping[str, ArrayLike], name: str) -> None:
    """Refuse an empty mapping of model name -> predictions."""
    if not models:
        raise ValueError(f"{name} is empty; pass at least one model's predictions by name")


# --------------------------------------------------------------------------- ranking helpers


def _ranked_actuals(true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Actual values ordered by descending prediction, averaged within tied predictions.

    Replacing the actuals of customers with equal predictions by their mean is the expectation
    over every order of the ties, so a constant predictor ranks like a random one (no credit
    from the row order of the input).
    """
    order = np.argsort(-pred, kind="stable")
    ranked_pred = pred[order]
    ranked_true = true[order]
    starts = np.flatnonzero(np.r_[True, ranked_pred[1:] != ranked_pred[:-1]])
    counts = np.diff(np.r_[starts, ranked_true.size])
    return np.repeat(np.add.reduceat(ranked_true, starts) / counts, counts)


def _gain(ranked_true: np.ndarray) -> np.ndarray:
    """Cumulative share of the total captured after each customer, starting at 0."""
    return np.r_[0.0, np.cumsum(ranked_true)] / ranked_true.sum()


def _gini_of_gain(gain: np.ndarray) -> float:
    """Gini of a gain curve: twice the (trapezoid) area between it and the diagonal."""
    return float(2.0 * np.trapezoid(gain, dx=1.0 / (gain.size - 1)) - 1.0)


def _deciles(n: int) -> np.ndarray:
    """Decile (1 = highest predicted) of each rank position; sizes differ by at most one."""
    return np.arange(n) * N_DECILES // n + 1


# --------------------------------------------------------------------------- CLV metrics


def normalized_gini(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Gini of the actual values ordered by prediction, divided by the best possible Gini.

    Customers are sorted by ``y_pred`` (highest first) and the cumulative share of actual value
    is integrated (trapezoid rule) against the share of customers; the same is done for the
    perfect order (by ``y_true``) and the ratio is returned, as in google/lifetime_value's
    ``metrics.py``. The trapezoid makes the score exactly antisymmetric: a reversed ranking
    scores -1 and a random one 0 in expectation. Tied predictions count as the average of
    every order of the ties, so a constant predictor scores exactly 0.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        Actual future value per customer, >= 0.
    y_pred : array-like of shape (n,)
        Predicted value (only its order matters).

    Returns
    -------
    float
        1 for a perfect ranker, about 0 for a random one, -1 for the reversed order. NaN when
        it is undefined: all actual values are equal (including all zero) or ``n == 1``.

    Raises
    ------
    ValueError
        If the inputs are empty, of different lengths, not finite, or ``y_true`` is negative.
    """
    true, pred = _as_values(y_true, y_pred)
    if np.ptp(true) == 0:  # equal actual values (all zero included): no order is better
        return math.nan
    best = _gini_of_gain(_gain(np.sort(true)[::-1]))
    return _gini_of_gain(_gain(_ranked_actuals(true, pred))) / best


def spearman(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Spearman rank correlation between actual and predicted value.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n,)
        Actual and predicted value per customer.

    Returns
    -------
    float
        In [-1, 1]; NaN when either input is constant (the correlation is undefined).

    Raises
    ------
    ValueError
        If the inputs are empty, of different lengths or not finite.
    """
    true, pred = _as_pair(y_true, y_pred)
    if np.ptp(true) == 0 or np.ptp(pred) == 0:
        return math.nan
    return float(spearmanr(true, pred).statistic)


def mae(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Mean absolute error, in currency units.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n,)
        Actual and predicted value per customer.

    Returns
    -------
    float
        ``mean(|y_pred - y_true|)``.

    Raises
    ------
    ValueError
        If the inputs are empty, of different lengths or not finite.
    """
    true, pred = _as_pair(y_true, y_pred)
    return float(np.mean(np.abs(pred - true)))


def rmse(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Root mean squared error, in currency units.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n,)
        Actual and predicted value per customer.

    Returns
    -------
    float
        ``sqrt(mean((y_pred - y_true) ** 2))``.

    Raises
    ------
    ValueError
        If the inputs are empty, of different lengths or not finite.
    """
    true, pred = _as_pair(y_true, y_pred)
    return float(np.sqrt(np.mean((pred - true) ** 2)))


def total_value_error_pct(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Error of the predicted total value of the base, in percent of the actual total.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n,)
        Actual and predicted value per customer.

    Returns
    -------
    float
        ``100 * (sum(y_pred) - sum(y_true)) / sum(y_true)``: positive when the model
        over-forecasts. NaN when the actual total is 0.

    Raises
    ------
    ValueError
        If the inputs are empty, of different lengths or not finite.
    """
    true, pred = _as_pair(y_true, y_pred)
    total = true.sum()
    if total == 0:
        return math.nan
    return float(100.0 * (pred.sum() - total) / total)


def top_decile_capture(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Share of the actual total value held by the top 10% of customers by prediction.

    The top decile is the first ``ceil(n / 10)`` customers by descending ``y_pred`` (the
    first row of :func:`decile_table`); ties at its edge count as their average.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        Actual future value per customer, >= 0.
    y_pred : array-like of shape (n,)
        Predicted value (only its order matters).

    Returns
    -------
    float
        In [0, 1]; a perfect ranker reaches the true top-decile share, a random one about 0.1.
        NaN when the actual total is 0.

    Raises
    ------
    ValueError
        If the inputs are empty, of different lengths, not finite, or ``y_true`` is negative.
    """
    true, pred = _as_values(y_true, y_pred)
    total = true.sum()
    if total == 0:
        return math.nan
    top = math.ceil(true.size / N_DECILES)
    return float(_ranked_actuals(true, pred)[:top].sum() / total)


def decile_table(y_true: ArrayLike, y_pred: ArrayLike) -> pd.DataFrame:
    """Customers split into ten equal groups by prediction, with predicted and actual value.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        Actual future value per customer, >= 0.
    y_pred : array-like of shape (n,)
        Predicted value per customer.

    Returns
    -------
    pandas.DataFrame
        One row per non-empty decile (fewer than ten only when ``n < 10``), with columns
        ``decile`` (1 = highest predicted), ``customers``, ``mean_predicted``, ``mean_actual``,
        ``total_actual``, ``share_of_actual`` (of the actual total) and ``cumulative_share``
        (ends at 1). Group sizes differ by at most one; customers with tied predictions across
        a decile edge contribute their average actual value to both sides. The shares are NaN
        when the actual total is 0.

    Raises
    ------
    ValueError
        If the inputs are empty, of different lengths, not finite, or ``y_true`` is negative.
    """
    true, pred = _as_values(y_true, y_pred)
    ranked = pd.DataFrame(
        {
            "decile": _deciles(true.size),
            "predicted": np.sort(pred)[::-1],
            "actual": _ranked_actuals(true, pred),
        }
    )
    table = ranked.groupby("decile", sort=True).agg(
        customers=("actual", "size"),
        mean_predicted=("predicted", "mean"),
        mean_actual=("actual", "mean"),
        total_actual=("actual", "sum"),
    )
    total = true.sum()
    share = table["total_actual"] / total if total > 0 else table["total_actual"] * math.nan
    table["share_of_actual"] = share
    table["cumulative_share"] = share.cumsum()
    return table.reset_index().loc[:, list(DECILE_COLUMNS)]


def clv_metrics(y_true: ArrayLike, y_pred: ArrayLike) -> dict[str, float]:
    """Every CLV metric under its stable report name.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        Actual future value per customer, >= 0.
    y_pred : array-like of shape (n,)
        Predicted value per customer.

    Returns
    -------
    dict of str to float
        ``gini``, ``spearman``, ``mae``, ``rmse``, ``total_error_pct``,
        ``top_decile_capture`` (see the functions of the same meaning for the NaN cases).

    Raises
    ------
    ValueError
        If the inputs are empty, of different lengths, not finite, or ``y_true`` is negative.
    """
    true, pred = _as_values(y_true, y_pred)
    return {
        "gini": normalized_gini(true, pred),
        "spearman": spearman(true, pred),
        "mae": mae(true, pred),
        "rmse": rmse(true, pred),
        "total_error_pct": total_value_error_pct(true, pred),
        "top_decile_capture": top_decile_capture(true, pred),
    }


# --------------------------------------------------------------------------- churn metrics


def roc_auc(y_true: ArrayLike, y_score: ArrayLike) -> float:
    """Area under the ROC curve of churn scores.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        Churn label per customer, 0 or 1.
    y_score : array-like of shape (n,)
        Score or probability, higher meaning more likely to churn.

    Returns
    -------
    float
        0.5 for a random scorer, 1 for a perfect one. NaN when ``y_true`` holds a single
        class (the AUC is undefined; this returns NaN instead of raising so a report on a
        tiny or degenerate slice still completes).

    Raises
    ------
    ValueError
        If the inputs are empty, of different lengths, not finite, or labels are not 0/1.
    """
    true, score = _as_labels(y_true, y_score)
    if np.unique(true).size < 2:
        return math.nan
    return float(roc_auc_score(true, score))


def pr_auc(y_true: ArrayLike, y_score: ArrayLike) -> float:
    """Area under the precision-recall curve (average precision) for the churn class.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        Churn label per customer, 0 or 1.
    y_score : array-like of shape (n,)
        Score or probability, higher meaning more likely to churn.

    Returns
    -------
    float
        About the churn rate for a random scorer, 1 for a perfect one. NaN when ``y_true``
        holds a single class, as for :func:`roc_auc`.

    Raises
    ------
    ValueError
        If the inputs are empty, of different lengths, not finite, or labels are not 0/1.
    """
    true, score = _as_labels(y_true, y_score)
    if np.unique(true).size < 2:
        return math.nan
    return float(average_precision_score(true, score))


def brier(y_true: ArrayLike, p: ArrayLike) -> float:
    """Brier score: mean squared error of churn probabilities.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        Churn label per customer, 0 or 1.
    p : array-like of shape (n,)
        Churn probability per customer, in [0, 1].

    Returns
    -------
    float
        ``mean((p - y_true) ** 2)``; 0 is perfect, lower is better.

    Raises
    ------
    ValueError
        If the inputs are empty, of different lengths, not finite, labels are not 0/1, or
        ``p`` is outside [0, 1].
    """
    true, prob = _as_probabilities(y_true, p)
    return float(np.mean((prob - true) ** 2))


def _calibration_bins(true: np.ndarray, prob: np.ndarray, n_bins: int) -> pd.DataFrame:
    """Customers, mean probability and churn rate per non-empty equal-width bin of ``prob``."""
    if isinstance(n_bins, bool) or not isinstance(n_bins, int | np.integer) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer; got {n_bins!r}")
    bins = np.minimum((prob * n_bins).astype(int), n_bins - 1)  # p == 1 joins the last bin
    return (
        pd.DataFrame({"bin": bins, "p": prob, "y": true})
        .groupby("bin", sort=True)
        .agg(customers=("y", "size"), mean_p=("p", "mean"), rate=("y", "mean"))
    )


def expected_calibration_error(y_true: ArrayLike, p: ArrayLike, n_bins: int = 10) -> float:
    """Expected calibration error over equal-width probability bins.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        Churn label per customer, 0 or 1.
    p : array-like of shape (n,)
        Churn probability per customer, in [0, 1].
    n_bins : int, default 10
        Number of equal-width bins over [0, 1]; ``p == 1`` falls in the last bin.

    Returns
    -------
    float
        ``sum_b (n_b / n) * |mean(p in b) - mean(y in b)|`` over the non-empty bins; 0 is
        perfectly calibrated.

    Raises
    ------
    ValueError
        If the inputs are empty, of different lengths, not finite, labels are not 0/1, ``p``
        is outside [0, 1], or ``n_bins`` is not a positive integer.
    """
    true, prob = _as_probabilities(y_true, p)
    bins = _calibration_bins(true, prob, n_bins)
    weights = bins["customers"] / true.size
    return float((weights * (bins["mean_p"] - bins["rate"]).abs()).sum())


def churn_metrics(y_true: ArrayLike, p: ArrayLike) -> dict[str, float]:
    """Every churn metric under its stable report name.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        Churn label per customer, 0 or 1.
    p : array-like of shape (n,)
        Churn probability per customer, in [0, 1].

    Returns
    -------
    dict of str to float
        ``roc_auc``, ``pr_auc`` (NaN for a single-class ``y_true``), ``brier``, ``ece``
        (10 equal-width bins).

    Raises
    ------
    ValueError
        If the inputs are empty, of different lengths, not finite, labels are not 0/1, or
        ``p`` is outside [0, 1].
    """
    true, prob = _as_probabilities(y_true, p)
    return {
        "roc_auc": roc_auc(true, prob),
        "pr_auc": pr_auc(true, prob),
        "brier": brier(true, prob),
        "ece": expected_calibration_error(true, prob),
    }


# --------------------------------------------------------------------------- plots


def plot_deciles(y_true: ArrayLike, preds: Mapping[str, ArrayLike]) -> Figure:
    """Mean predicted and mean actual value by decile, one panel per model.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        Actual future value per customer, >= 0.
    preds : mapping of str to array-like of shape (n,)
        Predictions by model name (the model and its baselines), each decided by its own order.

    Returns
    -------
    matplotlib.figure.Figure
        One axes per model with two lines (predicted, actual); nothing is saved or shown.

    Raises
    ------
    ValueError
        If ``preds`` is empty or any prediction fails the checks of :func:`decile_table`.
    """
    _check_models(preds, "preds")
    tables = {
        name: decile_table(*_as_values(y_true, pred, f"preds[{name!r}]"))
        for name, pred in preds.items()
    }
    fig = Figure(figsize=(4.0 * len(tables), 4.0), layout="constrained")
    axes = fig.subplots(1, len(tables), sharey=True, squeeze=False)[0]
    for ax, (name, table) in zip(axes, tables.items(), strict=True):
        ax.plot(table["decile"], table["mean_predicted"], marker="o", label="mean predicted")
        ax.plot(table["decile"], table["mean_actual"], marker="s", label="mean actual")
        ax.set_title(name)
        ax.set_xlabel("decile (1 = highest predicted)")
        ax.set_xticks(table["decile"])
    axes[0].set_ylabel("value per customer")
    axes[0].legend()
    fig.suptitle("Predicted vs actual value by decile")
    return fig


def plot_cumulative_gain(
    y_true: ArrayLike, preds: Mapping[str, ArrayLike], max_points: int = 1000
) -> Figure:
    """Share of actual value captured when targeting customers in order of prediction.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        Actual future value per customer, >= 0 with a positive total.
    preds : mapping of str to array-like of shape (n,)
        Predictions by model name.
    max_points : int, default 1000
        Curves are drawn at most at this many evenly spaced customer shares (plus 0), so a
        base of millions stays light; the curves are piecewise linear so little is lost.

    Returns
    -------
    matplotlib.figure.Figure
        One axes with a line per model (labelled with its normalised Gini), then the perfect
        and the random line; nothing is saved or shown.

    Raises
    ------
    ValueError
        If ``preds`` is empty, the actual total is 0, or any prediction fails the checks of
        :func:`normalized_gini`.
    """
    _check_models(preds, "preds")
    true = _as_vector(y_true, "y_true")
    if true.sum() <= 0:
        raise ValueError("y_true sums to 0; a gain curve needs some actual value to capture")
    pairs = {name: _as_values(true, pred, f"preds[{name!r}]") for name, pred in preds.items()}
    shares = np.linspace(0.0, 1.0, true.size + 1)
    grid = np.linspace(0.0, 1.0, min(true.size, max_points) + 1)
    fig = Figure(figsize=(6.0, 5.0), layout="constrained")
    ax = fig.subplots()
    for name, (values, pred) in pairs.items():
        gain = np.interp(grid, shares, _gain(_ranked_actuals(values, pred)))
        ax.plot(grid, gain, label=f"{name} (gini {normalized_gini(values, pred):.3f})")
    perfect = np.interp(grid, shares, _gain(np.sort(true)[::-1]))
    ax.plot(grid, perfect, color="black", linestyle="--", label="perfect")
    ax.plot([0.0, 1.0], [0.0, 1.0], color="grey", linestyle=":", label="random")
    ax.set_xlabel("share of customers targeted (highest predicted first)")
    ax.set_ylabel("share of actual value captured")
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.0)
    ax.set_title("Cumulative gain")
    ax.legend(loc="lower right")
    return fig


def plot_calibration(y_true: ArrayLike, probs: Mapping[str, ArrayLike], n_bins: int = 10) -> Figure:
    """Reliability diagram: observed churn rate against mean predicted probability per bin.

    Parameters
    ----------
    y_true : array-like of shape (n,)
        Churn label per customer, 0 or 1.
    probs : mapping of str to array-like of shape (n,)
        Churn probabilities in [0, 1] by model name.
    n_bins : int, default 10
        Number of equal-width probability bins; empty bins are not drawn.

    Returns
    -------
    matplotlib.figure.Figure
        One axes with the diagonal (perfect calibration) then a line per model labelled with
        its expected calibration error; nothing is saved or shown.

    Raises
    ------
    ValueError
        If ``probs`` is empty or any probability fails the checks of
        :func:`expected_calibration_error`.
    """
    _check_models(probs, "probs")
    pairs = {name: _as_probabilities(y_true, p, f"probs[{name!r}]") for name, p in probs.items()}
    fig = Figure(figsize=(6.0, 5.0), layout="constrained")
    ax = fig.subplots()
    ax.plot([0.0, 1.0], [0.0, 1.0], color="grey", linestyle=":", label="perfectly calibrated")
    for name, (true, prob) in pairs.items():
        bins = _calibration_bins(true, prob, n_bins)
        ece = expected_calibration_error(true, prob, n_bins)
        ax.plot(bins["mean_p"], bins["rate"], marker="o", label=f"{name} (ECE {ece:.3f})")
    ax.set_xlabel("mean predicted churn probability")
    ax.set_ylabel("observed churn rate")
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.0)
    ax.set_title("Calibration")
    ax.legend(loc="upper left")
    return fig


def plot_feature_importance(importance: pd.Series, top: int = 20) -> Figure:
    """Horizontal bars of the ``top`` most important features, the largest at the top.

    Parameters
    ----------
    importance : pandas.Series
        Importance by feature name (e.g. mean absolute SHAP value or XGBoost gain).
    top : int, default 20
        How many features to show.

    Returns
    -------
    matplotlib.figure.Figure
        One axes with ``min(top, len(importance))`` bars; nothing is saved or shown.

    Raises
    ------
    ValueError
        If ``importance`` is empty or has missing values, or ``top`` is not a positive integer.
    """
    if isinstance(top, bool) or not isinstance(top, int | np.integer) or top < 1:
        raise ValueError(f"top must be a positive integer; got {top!r}")
    if importance.empty:
        raise ValueError("importance is empty; expected one value per feature")
    missing = importance.index[importance.isna()].tolist()
    if missing:
        raise ValueError(f"importance has missing values for features {missing[:5]}")
    shown = importance.astype(float).sort_values(ascending=False).head(top)[::-1]
    fig = Figure(figsize=(7.0, 0.3 * len(shown) + 1.5), layout="constrained")
    ax = fig.subplots()
    ax.barh([str(name) for name in shown.index], shown.to_numpy())
    ax.set_xlabel(str(importance.name) if importance.name is not None else "importance")
    ax.set_title(f"Top {len(shown)} features")
    return fig


# --------------------------------------------------------------------------- holdout tables


def holdout_metrics(holdout: pd.DataFrame, pred: pd.DataFrame) -> dict[str, float]:
    """CLV and churn metrics of ``pred`` against the labels of ``holdout``.

    Parameters
    ----------
    holdout : pandas.DataFrame
        ``future_value`` and ``churned`` per customer.
    pred : pandas.DataFrame
        ``clv`` and ``p_churn``, aligned with ``holdout``.

    Returns
    -------
    dict of str to float
        ``clv_<metric>`` (:func:`clv_metrics`) and ``churn_<metric>`` (:func:`churn_metrics`).
    """
    clv = clv_metrics(holdout["future_value"].to_numpy(), pred["clv"].to_numpy())
    churn = churn_metrics(holdout["churned"].to_numpy(), pred["p_churn"].to_numpy())
    return {
        **{f"clv_{k}": v for k, v in clv.items()},
        **{f"churn_{k}": v for k, v in churn.items()},
    }


#: Metrics whose paired bootstrap standard error is computed (the gate's).
_BOOTSTRAP_METRICS: dict[str, tuple[str, Callable[[np.ndarray, np.ndarray], float]]] = {
    "clv_spearman": ("future_value", spearman),
    "clv_gini": ("future_value", normalized_gini),
    "clv_rmse": ("future_value", rmse),
    "churn_roc_auc": ("churned", roc_auc),
}


def paired_standard_errors(
    holdout: pd.DataFrame,
    predictions: Mapping[str, pd.DataFrame],
    reference: str,
    *,
    resamples: int = 40,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Standard error of ``metric(reference) - metric(other)`` for every other prediction.

    A paired bootstrap over customers: each resample draws customers with replacement and
    scores every model on the same draw, so what the models share (a hard customer, a lucky
    month) cancels out of the difference.

    Parameters
    ----------
    holdout : pandas.DataFrame
        ``future_value`` and ``churned`` per customer.
    predictions : mapping
        Name -> ``clv``/``p_churn`` frame aligned with ``holdout``; ``reference`` among them.
    reference : str
        The model the others are compared with.
    resamples : int
        Bootstrap draws.
    seed : int
        Seeds the draws.

    Returns
    -------
    dict
        Other name -> metric (``clv_spearman``, ``clv_gini``, ``clv_rmse``,
        ``churn_roc_auc``) -> standard error of the difference; under ``reference`` itself,
        the standard error of its own metric.
    """
    rng = np.random.default_rng(seed)
    n = len(holdout)
    labels = {c: holdout[c].to_numpy(dtype="float64") for c in ("future_value", "churned")}
    column = {"future_value": "clv", "churned": "p_churn"}
    values = {
        name: {c: pred[c].to_numpy(dtype="float64") for c in ("clv", "p_churn")}
        for name, pred in predictions.items()
    }
    others = [name for name in predictions if name != reference]
    diffs: dict[str, dict[str, list[float]]] = {
        o: {m: [] for m in _BOOTSTRAP_METRICS} for o in [reference, *others]
    }
    for _ in range(resamples):
        rows = rng.integers(0, n, n)
        for metric, (label, fn) in _BOOTSTRAP_METRICS.items():
            y = labels[label][rows]
            if label == "churned" and len(np.unique(y)) < 2:
                continue
            mine = fn(y, values[reference][column[label]][rows])
            diffs[reference][metric].append(mine)
            for other in others:
                diffs[other][metric].append(mine - fn(y, values[other][column[label]][rows]))
    return {
        other: {
            metric: float(np.nanstd(d, ddof=1)) if len(d) > 1 else float("nan")
            for metric, d in by_metric.items()
        }
        for other, by_metric in diffs.items()
    }
