"""The holdout metrics' names, directions and the gate's set have one home each (issue 24).

- the names and functions: :data:`training.evaluate.HOLDOUT_METRICS` (what ``holdout_metrics``
  returns);
- which way each is better and which ones the gate judges: :data:`training.gate.DIRECTIONS`,
  :data:`training.gate.GATE_METRICS`.

Every other list of metrics (the gate's report table, the backtest's table and spread, the HTML
report's rows and labels) names only metrics evaluate produces, the bootstrap gives every gate
metric a standard error, and the directions are what the functions do.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training import backtest, gate
from training.evaluate import (
    HOLDOUT_METRICS,
    holdout_metric,
    holdout_metrics,
    paired_standard_errors,
)
from training.gate import (
    DIRECTIONS,
    GATE_METRICS,
    HIGHER,
    LOWER,
    LOWER_IS_BETTER,
    NEAR_ZERO,
    REPORT_METRICS,
    TOTAL_METRIC,
    better,
    gain,
)


def _holdout(n: int = 200, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    value = rng.gamma(0.8, 60.0, n) * (rng.random(n) < 0.6)
    return pd.DataFrame({"future_value": value, "churned": (value == 0).astype("int64")})


def _perfect(holdout: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {"clv": holdout["future_value"], "p_churn": holdout["churned"].astype("float64")}
    )


def _noisy(holdout: pd.DataFrame, seed: int = 4) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    p = np.clip(0.3 * holdout["churned"] + 0.7 * rng.random(len(holdout)), 0.0, 1.0)
    clv = holdout["future_value"] * rng.uniform(0.2, 3.0, len(holdout)) + rng.gamma(
        1, 20, len(holdout)
    )
    return pd.DataFrame({"clv": clv, "p_churn": p})


def test_evaluate_produces_exactly_the_named_metrics_in_order():
    holdout = _holdout()
    assert tuple(holdout_metrics(holdout, _noisy(holdout))) == HOLDOUT_METRICS


def test_every_metric_has_one_direction_and_every_direction_names_a_metric():
    assert set(DIRECTIONS) == set(HOLDOUT_METRICS)
    assert set(DIRECTIONS.values()) <= {HIGHER, LOWER, NEAR_ZERO}
    assert LOWER_IS_BETTER == {m for m, way in DIRECTIONS.items() if way == LOWER}
    assert LOWER_IS_BETTER <= set(HOLDOUT_METRICS)


@pytest.mark.parametrize(
    ("where", "names"),
    [
        ("training.gate.GATE_METRICS", GATE_METRICS),
        ("training.gate.REPORT_METRICS", REPORT_METRICS),
        ("training.gate.TOTAL_METRIC", (TOTAL_METRIC,)),
        ("training.backtest.TABLE_METRICS", backtest.TABLE_METRICS),
        ("training.backtest.SPREAD_METRICS", backtest.SPREAD_METRICS),
    ],
)
def test_every_list_of_metrics_names_only_metrics_evaluate_produces(where, names):
    unknown = [name for name in names if name not in HOLDOUT_METRICS]
    assert not unknown, f"{where} names {unknown}, which evaluate does not produce"
    assert len(set(names)) == len(names), where


def test_the_backtest_table_and_the_report_table_show_every_metric():
    assert set(backtest.TABLE_METRICS) == set(HOLDOUT_METRICS)
    assert set(REPORT_METRICS) == set(HOLDOUT_METRICS)


def test_the_html_report_names_only_metrics_evaluate_produces_and_says_their_direction():
    from serving.insight import report

    assert set(report.METRICS) <= set(HOLDOUT_METRICS)
    assert set(report.METRIC_LABELS) == set(report.METRICS)
    words = {HIGHER: "higher", LOWER: "lower", NEAR_ZERO: "near 0"}
    for metric, label in report.METRIC_LABELS.items():
        said = {way for way, word in words.items() if word in label}
        assert said == {DIRECTIONS[metric]}, f"{metric}: {label!r} vs {DIRECTIONS[metric]}"


def test_every_gate_metric_gets_a_bootstrap_standard_error():
    holdout = _holdout()
    predictions = {"model": _noisy(holdout), "bgnbd": _noisy(holdout, seed=5)}
    noise = paired_standard_errors(holdout, predictions, "model", resamples=5, seed=1)
    assert set(noise) == {"model", "bgnbd"}
    for name, by_metric in noise.items():
        assert tuple(by_metric) == GATE_METRICS, name
        assert all(np.isfinite(se) and se > 0 for se in by_metric.values()), (name, by_metric)


def test_the_bootstrap_computes_each_gate_metric_with_evaluates_function():
    holdout = _holdout()
    model = _noisy(holdout)
    whole = holdout_metrics(holdout, model)
    for metric in GATE_METRICS:
        label, column, function = holdout_metric(metric)
        assert function(holdout[label].to_numpy(), model[column].to_numpy()) == whole[metric]
    with pytest.raises(KeyError, match="unknown holdout metric 'clv_abs_total_error_pct'"):
        holdout_metric("clv_abs_total_error_pct")


def test_each_direction_is_what_the_metric_does():
    """A perfect prediction is better than a noisy one on every metric, by gate.better."""
    holdout = _holdout()
    perfect = holdout_metrics(holdout, _perfect(holdout))
    noisy = holdout_metrics(holdout, _noisy(holdout))
    for metric in HOLDOUT_METRICS:
        assert better(metric, perfect[metric], noisy[metric]), (metric, perfect, noisy)
        assert not better(metric, noisy[metric], perfect[metric]), metric
        assert gain(metric, perfect[metric], noisy[metric]) > 0, metric
    assert perfect[TOTAL_METRIC] == 0.0
    # Near zero: a total missed by -5% beats one missed by +10%, and the other way round not.
    assert better(TOTAL_METRIC, -5.0, 10.0) and not better(TOTAL_METRIC, 10.0, -5.0)
    assert gate.gain(TOTAL_METRIC, -5.0, 10.0) == 5.0
