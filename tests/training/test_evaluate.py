"""Metrics pinned between a perfect and a random ranker, hand-computed values."""

import math

import numpy as np
import pandas as pd
import pytest

from training.evaluate import (
    DECILE_COLUMNS,
    as_probability_pair,
    as_value_pair,
    as_vector,
    brier,
    calibration_bins,
    churn_metrics,
    clv_metrics,
    decile_table,
    expected_calibration_error,
    gain_curve,
    mae,
    normalized_gini,
    pr_auc,
    ranked_actuals,
    rmse,
    roc_auc,
    spearman,
    top_decile_capture,
    total_value_error_pct,
)


@pytest.fixture
def values() -> np.ndarray:
    """A skewed CLV-like target with distinct values (lognormal, seeded)."""
    return np.random.default_rng(7).lognormal(mean=3.0, sigma=1.2, size=20_000)


# --------------------------------------------------------------------------- ranking metrics


def test_perfect_ranker_scores_one(values):
    assert normalized_gini(values, values) == pytest.approx(1.0)
    assert spearman(values, values) == pytest.approx(1.0)
    top = np.sort(values)[::-1][: len(values) // 10].sum() / values.sum()
    assert top_decile_capture(values, values) == pytest.approx(top)


def test_ranking_metrics_only_use_the_order_of_predictions(values):
    assert normalized_gini(values, np.log1p(values)) == pytest.approx(1.0)
    assert top_decile_capture(values, 3 * values + 5) == top_decile_capture(values, values)


def test_reversed_ranker_scores_minus_one(values):
    assert normalized_gini(values, -values) == pytest.approx(-1.0)
    assert spearman(values, -values) == pytest.approx(-1.0)


def test_random_ranker_scores_about_zero(values):
    random = np.random.default_rng(11).permutation(values)
    assert normalized_gini(values, random) == pytest.approx(0.0, abs=0.03)
    assert spearman(values, random) == pytest.approx(0.0, abs=0.03)
    assert top_decile_capture(values, random) == pytest.approx(0.1, abs=0.02)


def test_random_ranker_sits_between_reversed_and_perfect(values):
    noisy = values * np.random.default_rng(3).lognormal(sigma=1.0, size=len(values))
    assert 0.2 < normalized_gini(values, noisy) < 1.0
    assert 0.1 < top_decile_capture(values, noisy) < top_decile_capture(values, values)


def test_gini_hand_computed():
    # Perfect gain curve 0, 1, 1, 1, 1 -> Gini 0.75; this order finds the value second:
    # gain 0, 0, 1, 1, 1 -> Gini 0.25; normalised 0.25 / 0.75.
    y_true = [0.0, 0.0, 10.0, 0.0]
    y_pred = [4.0, 2.0, 3.0, 1.0]
    assert normalized_gini(y_true, y_pred) == pytest.approx(1 / 3)


def test_constant_prediction_gets_no_credit_from_row_order():
    y_true = np.arange(100.0)[::-1]  # sorted by value: a stable sort would look perfect
    constant = np.zeros(100)
    assert normalized_gini(y_true, constant) == pytest.approx(0.0)
    assert top_decile_capture(y_true, constant) == pytest.approx(0.1)


def test_undefined_ranking_metrics_are_nan():
    assert math.isnan(normalized_gini([5.0, 5.0, 5.0], [1.0, 2.0, 3.0]))
    assert math.isnan(normalized_gini([0.0, 0.0], [1.0, 2.0]))
    assert math.isnan(normalized_gini([3.0], [1.0]))
    assert math.isnan(spearman([1.0, 2.0, 3.0], [4.0, 4.0, 4.0]))
    assert math.isnan(top_decile_capture([0.0, 0.0], [1.0, 2.0]))
    assert math.isnan(total_value_error_pct([0.0, 0.0], [1.0, 2.0]))


# --------------------------------------------------------------------------- error metrics


def test_error_metrics_hand_computed():
    y_true = [10.0, 20.0, 30.0, 40.0]
    y_pred = [13.0, 16.0, 30.0, 40.0]  # errors 3, -4, 0, 0; totals 99 vs 100
    assert mae(y_true, y_pred) == pytest.approx(1.75)
    assert rmse(y_true, y_pred) == pytest.approx(2.5)
    assert total_value_error_pct(y_true, y_pred) == pytest.approx(-1.0)
    assert total_value_error_pct(y_true, [15.0, 25.0, 35.0, 45.0]) == pytest.approx(20.0)


def test_clv_metrics_keys_and_values():
    y_true = pd.Series([10.0, 20.0, 30.0, 40.0])
    y_pred = np.array([13.0, 16.0, 30.0, 40.0])
    metrics = clv_metrics(y_true, y_pred)
    assert list(metrics) == [
        "gini",
        "spearman",
        "mae",
        "rmse",
        "total_error_pct",
        "top_decile_capture",
    ]
    assert all(isinstance(value, float) for value in metrics.values())
    assert metrics["mae"] == pytest.approx(1.75)
    assert metrics["top_decile_capture"] == pytest.approx(0.4)


# --------------------------------------------------------------------------- decile table


def test_decile_table_rows_sum_to_totals(values):
    y_pred = values * np.random.default_rng(5).lognormal(sigma=0.5, size=len(values))
    table = decile_table(values[:1234], y_pred[:1234])
    assert list(table.columns) == list(DECILE_COLUMNS)
    assert table["decile"].tolist() == list(range(1, 11))
    assert table["customers"].sum() == 1234
    assert table["customers"].max() - table["customers"].min() <= 1
    assert table["total_actual"].sum() == pytest.approx(values[:1234].sum())
    assert table["share_of_actual"].sum() == pytest.approx(1.0)
    assert table["cumulative_share"].iloc[-1] == pytest.approx(1.0)
    assert table["mean_predicted"].is_monotonic_decreasing
    assert table["share_of_actual"].iloc[0] == pytest.approx(
        top_decile_capture(values[:1234], y_pred[:1234])
    )


def test_decile_table_hand_computed():
    y_true = np.arange(1.0, 21.0)  # 20 customers, total 210
    table = decile_table(y_true, y_true)
    first = table.iloc[0]
    assert first["customers"] == 2
    assert first["mean_predicted"] == pytest.approx(19.5)
    assert first["total_actual"] == pytest.approx(39.0)
    assert first["share_of_actual"] == pytest.approx(39 / 210)
    assert table["total_actual"].tolist() == pytest.approx([39, 35, 31, 27, 23, 19, 15, 11, 7, 3])


def test_decile_table_with_fewer_customers_than_deciles():
    table = decile_table([1.0, 2.0, 3.0], [3.0, 2.0, 1.0])
    assert table["customers"].tolist() == [1, 1, 1]
    assert table["cumulative_share"].iloc[-1] == pytest.approx(1.0)


# --------------------------------------------------------------------------- churn metrics


def test_auc_perfect_reversed_and_random():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, size=20_000)
    assert roc_auc(y, y) == pytest.approx(1.0)
    assert pr_auc(y, y) == pytest.approx(1.0)
    assert roc_auc(y, 1 - y) == pytest.approx(0.0)
    random = rng.random(len(y))
    assert roc_auc(y, random) == pytest.approx(0.5, abs=0.02)
    assert pr_auc(y, random) == pytest.approx(y.mean(), abs=0.02)


def test_brier_hand_computed():
    # squared errors 0.01, 0.04, 0.25, 0 -> mean 0.075
    assert brier([0, 1, 1, 0], [0.1, 0.8, 0.5, 0.0]) == pytest.approx(0.075)
    assert brier([0, 1], [0.0, 1.0]) == 0.0


def test_ece_hand_computed():
    y = [0, 0, 1, 1, 1]
    p = [0.15, 0.15, 0.15, 0.85, 0.95]
    # bins [0.1, 0.2): 3 customers, |0.15 - 1/3|; [0.8, 0.9): |0.85 - 1|; [0.9, 1]: |0.95 - 1|
    expected = 0.6 * (1 / 3 - 0.15) + 0.2 * 0.15 + 0.2 * 0.05
    assert expected_calibration_error(y, p) == pytest.approx(expected)
    # one bin: |mean(p) - mean(y)| = |0.45 - 0.6|
    assert expected_calibration_error(y, p, n_bins=1) == pytest.approx(0.15)


def test_ece_is_zero_when_calibrated_and_p_of_one_lands_in_the_last_bin():
    assert expected_calibration_error([0, 1, 0, 1], [0.5] * 4) == pytest.approx(0.0)
    assert expected_calibration_error([1, 1], [1.0, 1.0]) == pytest.approx(0.0)


def test_single_class_labels_give_nan_aucs_not_an_error():
    metrics = churn_metrics([0, 0, 0], [0.1, 0.2, 0.3])
    assert list(metrics) == ["roc_auc", "pr_auc", "brier", "ece"]
    assert math.isnan(metrics["roc_auc"])
    assert math.isnan(metrics["pr_auc"])
    assert metrics["brier"] == pytest.approx((0.01 + 0.04 + 0.09) / 3)
    assert math.isnan(roc_auc([1, 1], [0.2, 0.9]))


def test_churn_metrics_accept_booleans_and_series():
    metrics = churn_metrics(pd.Series([True, False, True, False]), [0.9, 0.1, 0.8, 0.3])
    assert metrics["roc_auc"] == pytest.approx(1.0)
    assert metrics["pr_auc"] == pytest.approx(1.0)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("metric", "y_true", "y_pred", "match"),
    [
        (mae, [1.0, 2.0], [1.0], r"y_true and y_pred have different lengths \(2 and 1\)"),
        (normalized_gini, [], [], "y_true is empty"),
        (rmse, [1.0, 2.0], [np.nan, 1.0], "y_pred has 1 NaN or infinite values"),
        (spearman, [1.0, np.inf], [1.0, 2.0], "y_true has 1 NaN or infinite values"),
        (clv_metrics, [1.0], [[1.0]], r"y_pred must be 1-D.*\(1, 1\)"),
        (decile_table, [1.0, -2.0], [1.0, 2.0], "y_true has 1 negative values"),
        (total_value_error_pct, [1.0], ["a"], "y_pred must be numeric"),
        (roc_auc, [0, 1], [0.1], r"y_true and y_score have different lengths \(2 and 1\)"),
        (pr_auc, [0, 2], [0.1, 0.2], r"y_true must hold churn labels 0 or 1; found \[2.0\]"),
        (brier, [0, 1], [0.5, 1.5], r"p has 1 values outside \[0, 1\]"),
        (churn_metrics, [0, 1], [0.5, np.nan], "p has 1 NaN or infinite values"),
    ],
)
def test_bad_input_names_the_argument(metric, y_true, y_pred, match):
    with pytest.raises(ValueError, match=match):
        metric(y_true, y_pred)


def test_bad_bin_count_is_refused():
    with pytest.raises(ValueError, match="n_bins must be a positive integer; got 0"):
        expected_calibration_error([0, 1], [0.2, 0.8], n_bins=0)


# --------------------------------------------------------------------------- shared helpers


def test_ranked_actuals_average_ties_and_gain_curve_runs_from_zero_to_one():
    true = np.array([1.0, 5.0, 3.0, 7.0])
    pred = np.array([2.0, 9.0, 2.0, 0.0])  # 9 first, the tie at 2 shares (1 + 3) / 2, then 0
    ranked = ranked_actuals(true, pred)
    assert ranked.tolist() == [5.0, 2.0, 2.0, 7.0]
    assert gain_curve(ranked).tolist() == pytest.approx([0.0, 5 / 16, 7 / 16, 9 / 16, 1.0])


def test_calibration_bins_put_p_of_one_in_the_last_bin():
    bins = calibration_bins(np.array([0.0, 1.0, 1.0]), np.array([0.05, 0.95, 1.0]), 10)
    assert bins.index.tolist() == [0, 9]
    assert bins["customers"].tolist() == [1, 2]
    assert bins["rate"].tolist() == [0.0, 1.0]


def test_pair_checks_name_the_prediction():
    with pytest.raises(ValueError, match=r"y_true and preds\['a'\] have different lengths"):
        as_value_pair([1.0, 2.0], [1.0], "preds['a']")
    with pytest.raises(ValueError, match=r"probs\['a'\] has 1 values outside \[0, 1\]"):
        as_probability_pair([0, 1], [0.5, 2.0], "probs['a']")
    with pytest.raises(ValueError, match="x is empty"):
        as_vector([], "x")
