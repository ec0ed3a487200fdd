"""Holdout figures: one panel or line per model, the reference lines, refusals; they save."""

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from training.plots import (
    plot_calibration,
    plot_cumulative_gain,
    plot_deciles,
    plot_feature_importance,
)


@pytest.fixture
def clv_preds() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A skewed CLV-like target (lognormal, seeded), a noisy model of it and a random ranker."""
    rng = np.random.default_rng(2)
    y_true = rng.lognormal(mean=3.0, sigma=1.2, size=500)
    preds = {
        "xgboost": y_true * rng.lognormal(sigma=0.5, size=500),
        "formula": rng.permutation(y_true),
    }
    return y_true, preds


def _saves(fig: Figure, tmp_path) -> bool:
    path = tmp_path / "plot.png"
    fig.savefig(path)
    return path.stat().st_size > 0


def test_plot_deciles(clv_preds, tmp_path):
    y_true, preds = clv_preds
    fig = plot_deciles(y_true, preds)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2
    assert all(len(ax.get_lines()) == 2 for ax in fig.axes)
    assert [ax.get_title() for ax in fig.axes] == ["xgboost", "formula"]
    # Each panel on its own scale: one model's range never flattens another's.
    first, second = fig.axes
    assert first.get_shared_y_axes().get_siblings(first) == [first]
    assert second.get_ylabel() == "value per customer"
    assert _saves(fig, tmp_path)


def test_plot_cumulative_gain(clv_preds, tmp_path):
    y_true, preds = clv_preds
    fig = plot_cumulative_gain(y_true, preds)
    (ax,) = fig.axes
    labels = [line.get_label() for line in ax.get_lines()]
    assert len(labels) == 4
    assert labels[0].startswith("xgboost (gini ")
    assert labels[2:] == ["perfect", "random"]
    assert _saves(fig, tmp_path)


def test_plot_cumulative_gain_is_downsampled_for_large_bases():
    values = np.random.default_rng(7).lognormal(mean=3.0, sigma=1.2, size=20_000)
    fig = plot_cumulative_gain(values, {"model": values}, max_points=100)
    assert all(len(line.get_xdata()) <= 101 for line in fig.axes[0].get_lines())


def test_plot_calibration(tmp_path):
    rng = np.random.default_rng(4)
    p = rng.random(1000)
    y = (rng.random(1000) < p).astype(int)
    fig = plot_calibration(y, {"xgboost": p, "constant": np.full(1000, y.mean())})
    (ax,) = fig.axes
    assert len(ax.get_lines()) == 3
    assert _saves(fig, tmp_path)


def test_plot_feature_importance(tmp_path):
    importance = pd.Series(np.arange(30.0), index=[f"feature_{i}" for i in range(30)])
    fig = plot_feature_importance(importance, top=20)
    (ax,) = fig.axes
    assert len(ax.patches) == 20
    labels = [tick.get_text() for tick in ax.get_yticklabels()]
    assert labels[-1] == "feature_29"  # the largest is drawn at the top
    assert "feature_9" not in labels
    assert _saves(fig, tmp_path)
    assert len(plot_feature_importance(importance[:5]).axes[0].patches) == 5


def test_plots_refuse_empty_or_misaligned_models(clv_preds):
    y_true, _ = clv_preds
    with pytest.raises(ValueError, match="preds is empty"):
        plot_deciles(y_true, {})
    with pytest.raises(ValueError, match="probs is empty"):
        plot_calibration([0, 1], {})
    with pytest.raises(ValueError, match=r"y_true and preds\['short'\] have different lengths"):
        plot_cumulative_gain(y_true, {"short": y_true[:10]})
    with pytest.raises(ValueError, match="top must be a positive integer"):
        plot_feature_importance(pd.Series([1.0], index=["a"]), top=0)
    with pytest.raises(ValueError, match="importance is empty"):
        plot_feature_importance(pd.Series([], dtype=float))
