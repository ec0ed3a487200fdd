"""Holdout metrics for the CLV and churn models and their baselines (figures: training.plots).

Inputs
------
The metrics take one value per customer, aligned by position, as array-likes of shape (n,):

``y_true``
    CLV metrics: the actual future value; it must be >= 0 for :func:`normalized_gini`,
    :func:`top_decile_capture`, :func:`decile_table` and :func:`clv_metrics`, which divide by
    or rank shares of the total. Churn metrics: the label, 0 or 1 (booleans work).
``y_pred``
    Predicted future value; the ranking metrics use only its order.
``y_score``
    Churn score, higher meaning more likely to churn.
``p``
    Churn probability, in [0, 1].

An input that is empty, not 1-D, not numeric, not finite, of another length than ``y_true``
or outside the range above raises ValueError naming the argument. A metric that is undefined
on the data (a constant input, a zero actual total, a single churn class) is NaN instead, so a
report on a tiny or degenerate slice still completes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.stats import spearmanr
from sklearn.metrics import average_precision_score, roc_auc_score

from training.gate import GATE_METRICS
from training.profile import LIKELY_BUYER_CHURN

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


def as_vector(values: ArrayLike, name: str) -> np.ndarray:
    """One input as a finite, non-empty 1-D float array.

    Parameters
    ----------
    values : array-like of shape (n,)
        One value per customer.
    name : str
        The argument's name, for the error message.

    Returns
    -------
    numpy.ndarray
        ``values`` as floats.

    Raises
    ------
    ValueError
        If ``values`` is not numeric, not 1-D, empty, or holds NaN or infinite values.
    """
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
    true = as_vector(y_true, "y_true")
    pred = as_vector(y_pred, pred_name)
    if true.size != pred.size:
        raise ValueError(
            f"y_true and {pred_name} have different lengths ({true.size} and {pred.size}); "
            "expected one prediction per customer"
        )
    return true, pred


def as_value_pair(
    y_true: ArrayLike, y_pred: ArrayLike, pred_name: str = "y_pred"
) -> tuple[np.ndarray, np.ndarray]:
    """Actual and predicted future value as float arrays, checked as the ranking metrics need.

    Besides the checks of the module docstring, ``y_true`` must be >= 0 (it is cut into shares
    of a total); ``pred_name`` names ``y_pred`` in the error messages.
    """
    true, pred = _as_pair(y_true, y_pred, pred_name)
    negative = int(np.count_nonzero(true < 0))
    if negative:
        raise ValueError(f"y_true has {negative} negative values; expected future value >= 0")
    return true, pred


def _as_label_pair(
    y_true: ArrayLike, y_score: ArrayLike, score_name: str = "y_score"
) -> tuple[np.ndarray, np.ndarray]:
    """Validate a churn pair: labels are 0/1, scores are finite and aligned."""
    true, score = _as_pair(y_true, y_score, score_name)
    unexpected = np.setdiff1d(np.unique(true), [0.0, 1.0])
    if unexpected.size:
        raise ValueError(f"y_true must hold churn labels 0 or 1; found {unexpected[:5].tolist()}")
    return true, score


def as_probability_pair(
    y_true: ArrayLike, p: ArrayLike, p_name: str = "p"
) -> tuple[np.ndarray, np.ndarray]:
    """Churn labels (0 or 1) and probabilities (in [0, 1]) as float arrays, checked.

    ``p_name`` names ``p`` in the error messages of the module docstring's checks.
    """
    true, prob = _as_label_pair(y_true, p, p_name)
    outside = int(np.count_nonzero((prob < 0) | (prob > 1)))
    if outside:
        raise ValueError(f"{p_name} has {outside} values outside [0, 1]; expected probabilities")
    return true, prob


# --------------------------------------------------------------------------- ranking helpers


def ranked_actuals(true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Actual values ordered by descending prediction, averaged within tied predictions.

    Replacing the actuals of customers with equal predictions by their mean is the expectation
    over every order of the ties, so a constant predictor ranks like a random one (no credit
    from the row order of the input).

    Parameters
    ----------
    true, pred : numpy.ndarray of shape (n,)
        Validated actual and predicted value (see :func:`as_value_pair`).

    Returns
    -------
    numpy.ndarray of shape (n,)
        The actual value at each rank, highest prediction first.
    """
    order = np.argsort(-pred, kind="stable")
    ranked_pred = pred[order]
    ranked_true = true[order]
    starts = np.flatnonzero(np.r_[True, ranked_pred[1:] != ranked_pred[:-1]])
    counts = np.diff(np.r_[starts, ranked_true.size])
    return np.repeat(np.add.reduceat(ranked_true, starts) / counts, counts)


def gain_curve(ranked_true: np.ndarray) -> np.ndarray:
    """Cumulative share of the total captured after each customer, starting at 0.

    Parameters
    ----------
    ranked_true : numpy.ndarray of shape (n,)
        Actual values in targeting order (e.g. from :func:`ranked_actuals`), positive total.

    Returns
    -------
    numpy.ndarray of shape (n + 1,)
        From 0 to 1, at customer shares ``0, 1/n, ..., 1``.
    """
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

    Returns
    -------
    float
        1 for a perfect ranker, about 0 for a random one, -1 for the reversed order. NaN when
        all actual values are equal (including all zero) or ``n == 1``.
    """
    true, pred = as_value_pair(y_true, y_pred)
    if np.ptp(true) == 0:  # equal actual values (all zero included): no order is better
        return math.nan
    best = _gini_of_gain(gain_curve(np.sort(true)[::-1]))
    return _gini_of_gain(gain_curve(ranked_actuals(true, pred))) / best


def spearman(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Spearman rank correlation between actual and predicted value, in [-1, 1].

    NaN when either input is constant (the correlation is undefined).
    """
    true, pred = _as_pair(y_true, y_pred)
    if np.ptp(true) == 0 or np.ptp(pred) == 0:
        return math.nan
    return float(spearmanr(true, pred).statistic)


def mae(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Mean absolute error ``mean(|y_pred - y_true|)``, in currency units."""
    true, pred = _as_pair(y_true, y_pred)
    return float(np.mean(np.abs(pred - true)))


def rmse(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Root mean squared error ``sqrt(mean((y_pred - y_true) ** 2))``, in currency units."""
    true, pred = _as_pair(y_true, y_pred)
    return float(np.sqrt(np.mean((pred - true) ** 2)))


def total_value_error_pct(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Error of the predicted total value of the base, in percent of the actual total.

    ``100 * (sum(y_pred) - sum(y_true)) / sum(y_true)``: positive when the model
    over-forecasts. NaN when the actual total is 0.
    """
    true, pred = _as_pair(y_true, y_pred)
    total = true.sum()
    if total == 0:
        return math.nan
    return float(100.0 * (pred.sum() - total) / total)


def top_decile_capture(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Share of the actual total value held by the top 10% of customers by prediction.

    The top decile is the first ``ceil(n / 10)`` customers by descending ``y_pred`` (the
    first row of :func:`decile_table`); ties at its edge count as their average. In [0, 1]: a
    perfect ranker reaches the true top-decile share, a random one about 0.1. NaN when the
    actual total is 0.
    """
    true, pred = as_value_pair(y_true, y_pred)
    total = true.sum()
    if total == 0:
        return math.nan
    top = math.ceil(true.size / N_DECILES)
    return float(ranked_actuals(true, pred)[:top].sum() / total)


def decile_table(y_true: ArrayLike, y_pred: ArrayLike) -> pd.DataFrame:
    """Customers split into ten equal groups by prediction, with predicted and actual value.

    Returns
    -------
    pandas.DataFrame
        One row per non-empty decile (fewer than ten only when ``n < 10``), with columns
        ``decile`` (1 = highest predicted), ``customers``, ``mean_predicted``, ``mean_actual``,
        ``total_actual``, ``share_of_actual`` (of the actual total) and ``cumulative_share``
        (ends at 1). Group sizes differ by at most one; customers with tied predictions across
        a decile edge contribute their average actual value to both sides. The shares are NaN
        when the actual total is 0.
    """
    true, pred = as_value_pair(y_true, y_pred)
    ranked = pd.DataFrame(
        {
            "decile": _deciles(true.size),
            "predicted": np.sort(pred)[::-1],
            "actual": ranked_actuals(true, pred),
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


#: The CLV metrics under their stable report names, each a function of (actual, predicted).
CLV_METRICS: dict[str, Callable[[ArrayLike, ArrayLike], float]] = {
    "gini": normalized_gini,
    "spearman": spearman,
    "mae": mae,
    "rmse": rmse,
    "total_error_pct": total_value_error_pct,
    "top_decile_capture": top_decile_capture,
}


def clv_metrics(y_true: ArrayLike, y_pred: ArrayLike) -> dict[str, float]:
    """Every CLV metric under its stable report name (:data:`CLV_METRICS`).

    Returns
    -------
    dict of str to float
        ``gini``, ``spearman``, ``mae``, ``rmse``, ``total_error_pct``,
        ``top_decile_capture`` (see the functions of the same meaning for the NaN cases).
    """
    true, pred = as_value_pair(y_true, y_pred)
    return {name: metric(true, pred) for name, metric in CLV_METRICS.items()}


# --------------------------------------------------------------------------- churn metrics


def roc_auc(y_true: ArrayLike, y_score: ArrayLike) -> float:
    """Area under the ROC curve of churn scores: 0.5 for a random scorer, 1 for a perfect one.

    NaN when ``y_true`` holds a single class (the AUC is undefined).
    """
    true, score = _as_label_pair(y_true, y_score)
    if np.unique(true).size < 2:
        return math.nan
    return float(roc_auc_score(true, score))


def pr_auc(y_true: ArrayLike, y_score: ArrayLike) -> float:
    """Area under the precision-recall curve (average precision) for the churn class.

    About the churn rate for a random scorer, 1 for a perfect one. NaN when ``y_true`` holds a
    single class.
    """
    true, score = _as_label_pair(y_true, y_score)
    if np.unique(true).size < 2:
        return math.nan
    return float(average_precision_score(true, score))


def brier(y_true: ArrayLike, p: ArrayLike) -> float:
    """Brier score ``mean((p - y_true) ** 2)`` of churn probabilities; 0 is perfect."""
    true, prob = as_probability_pair(y_true, p)
    return float(np.mean((prob - true) ** 2))


def calibration_bins(true: np.ndarray, prob: np.ndarray, n_bins: int) -> pd.DataFrame:
    """Customers, mean probability and churn rate per non-empty equal-width bin of ``prob``.

    Parameters
    ----------
    true, prob : numpy.ndarray of shape (n,)
        Validated labels and probabilities (see :func:`as_probability_pair`).
    n_bins : int
        Number of equal-width bins over [0, 1]; ``prob == 1`` falls in the last bin.

    Returns
    -------
    pandas.DataFrame
        Indexed by bin number, with columns ``customers``, ``mean_p`` and ``rate``.

    Raises
    ------
    ValueError
        If ``n_bins`` is not a positive integer.
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, int | np.integer) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer; got {n_bins!r}")
    bins = np.minimum((prob * n_bins).astype(int), n_bins - 1)  # p == 1 joins the last bin
    return (
        pd.DataFrame({"bin": bins, "p": prob, "y": true})
        .groupby("bin", sort=True)
        .agg(customers=("y", "size"), mean_p=("p", "mean"), rate=("y", "mean"))
    )


def expected_calibration_error(y_true: ArrayLike, p: ArrayLike, n_bins: int = 10) -> float:
    """Expected calibration error over equal-width probability bins; 0 is perfectly calibrated.

    ``sum_b (n_b / n) * |mean(p in b) - mean(y in b)|`` over the non-empty bins of
    :func:`calibration_bins`.

    Parameters
    ----------
    y_true, p : array-like of shape (n,)
        As in the module docstring.
    n_bins : int, default 10
        Number of equal-width bins over [0, 1]; ``p == 1`` falls in the last bin. ValueError
        if it is not a positive integer.
    """
    true, prob = as_probability_pair(y_true, p)
    bins = calibration_bins(true, prob, n_bins)
    weights = bins["customers"] / true.size
    return float((weights * (bins["mean_p"] - bins["rate"]).abs()).sum())


#: The churn metrics under their stable report names, each a function of (label, probability).
CHURN_METRICS: dict[str, Callable[[ArrayLike, ArrayLike], float]] = {
    "roc_auc": roc_auc,
    "pr_auc": pr_auc,
    "brier": brier,
    "ece": expected_calibration_error,
}


def churn_metrics(y_true: ArrayLike, p: ArrayLike) -> dict[str, float]:
    """Every churn metric under its stable report name (:data:`CHURN_METRICS`).

    Returns
    -------
    dict of str to float
        ``roc_auc``, ``pr_auc`` (NaN for a single-class ``y_true``), ``brier``, ``ece``
        (10 equal-width bins).
    """
    true, prob = as_probability_pair(y_true, p)
    return {name: metric(true, prob) for name, metric in CHURN_METRICS.items()}


# --------------------------------------------------------------------------- holdout tables

#: Per target: the holdout's label column, the prediction's column, and the target's metrics.
TARGETS: dict[str, tuple[str, str, dict[str, Callable[[ArrayLike, ArrayLike], float]]]] = {
    "clv": ("future_value", "clv", CLV_METRICS),
    "churn": ("churned", "p_churn", CHURN_METRICS),
}
#: Every holdout metric as logged (``<target>_<metric>``), in the order
#: :func:`holdout_metrics` returns them; which way each is better is
#: :data:`training.gate.DIRECTIONS`.
HOLDOUT_METRICS: tuple[str, ...] = tuple(
    f"{target}_{name}" for target, (_, _, metrics) in TARGETS.items() for name in metrics
)


def holdout_metric(name: str) -> tuple[str, str, Callable[[ArrayLike, ArrayLike], float]]:
    """A holdout metric by its logged name: (label column, prediction column, function).

    Raises
    ------
    KeyError
        Naming the metric and the known ones, when it is not one of :data:`HOLDOUT_METRICS`.
    """
    target, _, metric = name.partition("_")
    if name not in HOLDOUT_METRICS:
        raise KeyError(f"unknown holdout metric {name!r}; expected one of {HOLDOUT_METRICS}")
    label, column, metrics = TARGETS[target]
    return label, column, metrics[metric]


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


def profile_metrics(
    holdout: pd.DataFrame,
    profile: pd.DataFrame,
    level: float,
    purchase_orders: ArrayLike | None = None,
) -> dict[str, float]:
    """How the profile's figures compare with what the customers really did.

    Parameters
    ----------
    holdout : pandas.DataFrame
        ``future_value``, ``future_orders`` and ``days_to_next_order`` per customer
        (:func:`features.build_labels`).
    profile : pandas.DataFrame
        ``expected_orders``, ``clv_low``, ``clv_high`` and ``next_order_days``, aligned with
        ``holdout`` (:meth:`training.model.CustomerValueModel.profile_matrix`), and
        ``p_churn`` where known (:meth:`training.model.CustomerValueModel.profile`).
    level : float
        The interval's nominal level.
    purchase_orders : array-like, optional
        The purchase model's own expected orders, for comparison.

    Returns
    -------
    dict of str to float
        ``orders_total_error_pct`` (expected over actual total, minus one, in percent),
        ``orders_mae``, ``interval_coverage`` and ``interval_level``; with ``p_churn``, the
        coverage among the customers likelier to order than not, ``interval_coverage_likely``
        (NaN where there are none), since the many likely churners' ``[0, clv]`` can hide
        ranges too narrow for the customers a marketer acts on; and for the customers
        who did order and have a predicted date, ``next_order_customers``,
        ``next_order_mae_days`` and ``next_order_median_error_days`` (predicted minus actual).
        With ``purchase_orders``, ``purchase_orders_total_error_pct`` and
        ``purchase_orders_mae``.
    """
    orders = holdout["future_orders"].to_numpy(dtype="float64")
    expected = profile["expected_orders"].to_numpy(dtype="float64")
    value = holdout["future_value"].to_numpy(dtype="float64")
    # A cent of slack: the bounds are computed in float and the actuals summed from cents.
    inside = (value >= profile["clv_low"].to_numpy() - 0.01) & (
        value <= profile["clv_high"].to_numpy() + 0.01
    )
    wait = holdout["days_to_next_order"].to_numpy(dtype="float64")
    predicted_wait = profile["next_order_days"].to_numpy(dtype="float64")
    dated = np.isfinite(wait) & np.isfinite(predicted_wait)
    error = predicted_wait[dated] - wait[dated]
    metrics = {
        "orders_total_error_pct": total_value_error_pct(orders, expected),
        "orders_mae": mae(orders, expected),
        "interval_coverage": float(inside.mean()),
        "interval_level": float(level),
        "interval_coverage_likely": _likely_buyers_share(inside, profile),
        "next_order_customers": float(dated.sum()),
        "next_order_mae_days": float(np.abs(error).mean()) if dated.any() else math.nan,
        "next_order_median_error_days": float(np.median(error)) if dated.any() else math.nan,
    }
    if purchase_orders is not None:
        reference = np.asarray(purchase_orders, dtype="float64")
        metrics["purchase_orders_total_error_pct"] = total_value_error_pct(orders, reference)
        metrics["purchase_orders_mae"] = mae(orders, reference)
    return metrics


def likely_coverage_text(profile: dict[str, float]) -> str:
    """``interval_coverage_likely`` of :func:`profile_metrics` as a percentage, or "n/a"."""
    value = profile.get("interval_coverage_likely", math.nan)
    return "n/a" if not math.isfinite(value) else f"{value:.1%}"


def _likely_buyers_share(inside: np.ndarray, profile: pd.DataFrame) -> float:
    """Share of the likely buyers inside their ranges (NaN: none); :data:`LIKELY_BUYER_CHURN`."""
    if "p_churn" not in profile:
        return math.nan
    likely = profile["p_churn"].to_numpy(dtype="float64") < LIKELY_BUYER_CHURN
    return float(inside[likely].mean()) if likely.any() else math.nan


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
        Other name -> metric (the gate's, :data:`training.gate.GATE_METRICS`: ``clv_spearman``,
        ``clv_gini``, ``clv_rmse``, ``churn_roc_auc``) -> standard error of the difference;
        under ``reference`` itself, the standard error of its own metric.
    """
    rng = np.random.default_rng(seed)
    n = len(holdout)
    bootstrapped = {metric: holdout_metric(metric) for metric in GATE_METRICS}
    labels = {c: holdout[c].to_numpy(dtype="float64") for c in ("future_value", "churned")}
    values = {
        name: {c: pred[c].to_numpy(dtype="float64") for c in ("clv", "p_churn")}
        for name, pred in predictions.items()
    }
    others = [name for name in predictions if name != reference]
    diffs: dict[str, dict[str, list[float]]] = {
        o: {m: [] for m in bootstrapped} for o in [reference, *others]
    }
    for _ in range(resamples):
        rows = rng.integers(0, n, n)
        for metric, (label, column, fn) in bootstrapped.items():
            y = labels[label][rows]
            if label == "churned" and len(np.unique(y)) < 2:
                continue
            mine = fn(y, values[reference][column][rows])
            diffs[reference][metric].append(mine)
            for other in others:
                diffs[other][metric].append(mine - fn(y, values[other][column][rows]))
    return {
        other: {
            metric: float(np.nanstd(d, ddof=1)) if len(d) > 1 else float("nan")
            for metric, d in by_metric.items()
        }
        for other, by_metric in diffs.items()
    }
