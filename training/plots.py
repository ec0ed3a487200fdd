"""Holdout figures for the CLV and churn models and their baselines, side by side.

Inputs
------
``y_true`` is one actual value per customer (array-like of shape (n,)): the future value
(>= 0) for the CLV figures, the churn label (0 or 1) for the calibration figure. The models
come as a mapping from model name to its predictions for the same customers, in the same
order (``preds``: predicted value; ``probs``: churn probability in [0, 1]); each is drawn in
the mapping's order and checked as by :mod:`training.evaluate`, the error naming the model
(``preds['formula']``). Every function returns a new :class:`matplotlib.figure.Figure`;
nothing is saved or shown (the caller logs it, see :func:`training.tracking.log_figure`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from numpy.typing import ArrayLike

from training.evaluate import (
    as_probability_pair,
    as_value_pair,
    as_vector,
    calibration_bins,
    decile_table,
    expected_calibration_error,
    gain_curve,
    normalized_gini,
    ranked_actuals,
)


def _check_models(models: Mapping[str, ArrayLike], name: str) -> None:
    """Refuse an empty mapping of model name -> predictions."""
    if not models:
        raise ValueError(f"{name} is empty; pass at least one model's predictions by name")


def _frame_shares(
    ax: Axes,
    xlabel: str,
    ylabel: str,
    title: str,
    *,
    legend_loc: Literal["upper left", "lower right"],
) -> None:
    """Label an axes whose both coordinates are shares, both limited to [0, 1]."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.0)
    ax.set_title(title)
    ax.legend(loc=legend_loc)


def plot_deciles(y_true: ArrayLike, preds: Mapping[str, ArrayLike]) -> Figure:
    """Mean predicted and mean actual value by decile, one panel per model.

    Each model is cut into deciles by its own order (:func:`training.evaluate.decile_table`);
    each axes has two lines, predicted then actual, on its own y scale: a baseline whose top
    decile is far off would otherwise flatten every other panel.

    Raises
    ------
    ValueError
        If ``preds`` is empty or any prediction fails the checks of ``decile_table``.
    """
    _check_models(preds, "preds")
    tables = {
        name: decile_table(*as_value_pair(y_true, pred, f"preds[{name!r}]"))
        for name, pred in preds.items()
    }
    fig = Figure(figsize=(4.0 * len(tables), 4.0), layout="constrained")
    axes = fig.subplots(1, len(tables), sharey=False, squeeze=False)[0]
    for ax, (name, table) in zip(axes, tables.items(), strict=True):
        ax.plot(table["decile"], table["mean_predicted"], marker="o", label="mean predicted")
        ax.plot(table["decile"], table["mean_actual"], marker="s", label="mean actual")
        ax.set_title(name)
        ax.set_xlabel("decile (1 = highest predicted)")
        ax.set_xticks(table["decile"])
    for ax in axes:
        ax.set_ylabel("value per customer")
    axes[0].legend()
    fig.suptitle("Predicted vs actual value by decile")
    return fig


def plot_cumulative_gain(
    y_true: ArrayLike, preds: Mapping[str, ArrayLike], max_points: int = 1000
) -> Figure:
    """Share of actual value captured when targeting customers in order of prediction.

    One axes: a line per model (labelled with its normalised Gini), then the perfect and the
    random line.

    Parameters
    ----------
    y_true, preds
        As in the module docstring; ``y_true`` must have a positive total.
    max_points : int, default 1000
        Curves are drawn at most at this many evenly spaced customer shares (plus 0), so a
        base of millions stays light; the curves are piecewise linear so little is lost.

    Raises
    ------
    ValueError
        If ``preds`` is empty, the actual total is 0, or any prediction fails the checks of
        :func:`training.evaluate.normalized_gini`.
    """
    _check_models(preds, "preds")
    true = as_vector(y_true, "y_true")
    if true.sum() <= 0:
        raise ValueError("y_true sums to 0; a gain curve needs some actual value to capture")
    pairs = {name: as_value_pair(true, pred, f"preds[{name!r}]") for name, pred in preds.items()}
    shares = np.linspace(0.0, 1.0, true.size + 1)
    grid = np.linspace(0.0, 1.0, min(true.size, max_points) + 1)
    fig = Figure(figsize=(6.0, 5.0), layout="constrained")
    ax = fig.subplots()
    for name, (values, pred) in pairs.items():
        gain = np.interp(grid, shares, gain_curve(ranked_actuals(values, pred)))
        ax.plot(grid, gain, label=f"{name} (gini {normalized_gini(values, pred):.3f})")
    perfect = np.interp(grid, shares, gain_curve(np.sort(true)[::-1]))
    ax.plot(grid, perfect, color="black", linestyle="--", label="perfect")
    ax.plot([0.0, 1.0], [0.0, 1.0], color="grey", linestyle=":", label="random")
    _frame_shares(
        ax,
        "share of customers targeted (highest predicted first)",
        "share of actual value captured",
        "Cumulative gain",
        legend_loc="lower right",
    )
    return fig


def plot_calibration(y_true: ArrayLike, probs: Mapping[str, ArrayLike], n_bins: int = 10) -> Figure:
    """Reliability diagram: observed churn rate against mean predicted probability per bin.

    One axes: the diagonal (perfect calibration), then a line per model labelled with its
    expected calibration error.

    Parameters
    ----------
    y_true, probs
        As in the module docstring.
    n_bins : int, default 10
        Number of equal-width probability bins; empty bins are not drawn.

    Raises
    ------
    ValueError
        If ``probs`` is empty or any probability fails the checks of
        :func:`training.evaluate.expected_calibration_error`.
    """
    _check_models(probs, "probs")
    pairs = {name: as_probability_pair(y_true, p, f"probs[{name!r}]") for name, p in probs.items()}
    fig = Figure(figsize=(6.0, 5.0), layout="constrained")
    ax = fig.subplots()
    ax.plot([0.0, 1.0], [0.0, 1.0], color="grey", linestyle=":", label="perfectly calibrated")
    for name, (true, prob) in pairs.items():
        bins = calibration_bins(true, prob, n_bins)
        ece = expected_calibration_error(true, prob, n_bins)
        ax.plot(bins["mean_p"], bins["rate"], marker="o", label=f"{name} (ECE {ece:.3f})")
    _frame_shares(
        ax,
        "mean predicted churn probability",
        "observed churn rate",
        "Calibration",
        legend_loc="upper left",
    )
    return fig


def plot_feature_importance(importance: pd.Series, top: int = 20) -> Figure:
    """Horizontal bars of the ``top`` most important features, the largest at the top.

    Parameters
    ----------
    importance : pandas.Series
        Importance by feature name (e.g. mean absolute SHAP value or XGBoost gain); its name,
        if any, labels the x axis.
    top : int, default 20
        How many features to show.

    Returns
    -------
    matplotlib.figure.Figure
        One axes with ``min(top, len(importance))`` bars.

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
