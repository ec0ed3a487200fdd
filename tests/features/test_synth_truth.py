"""Ground truth of the planted service effects: the store replayed with effects switched off."""

import numpy as np
import pandas as pd
import pytest

from features.labels import build_labels
from features.spec import FeatureSpec
from features.synth import (
    TRUTH_FLAGS,
    TRUTH_SCENARIOS,
    SynthParams,
    generate,
    service_effect_summary,
    service_effect_truth,
)

CUSTOMERS, SEED, CUTOFF, HORIZON = 8_000, 5, "2025-07-01", 365
COUNTERFACTUALS = list(TRUTH_SCENARIOS)
NO_EFFECTS = SynthParams(
    late_dropout=0.0,
    late_spend=1.0,
    return_dropout=0.0,
    return_spend=1.0,
    bad_ticket_dropout=0.0,
    bad_ticket_spend=1.0,
)


@pytest.fixture(scope="module")
def truth() -> pd.DataFrame:
    return service_effect_truth(CUSTOMERS, SEED, CUTOFF, HORIZON)


def test_columns_and_population(truth):
    assert list(truth.columns) == ["as_simulated", *COUNTERFACTUALS, *TRUTH_FLAGS.values()]
    assert truth.index.name == "customer_id"
    assert truth.index.is_monotonic_increasing and truth.index.is_unique
    for flag in TRUTH_FLAGS.values():
        assert truth[flag].dtype == bool
        assert 0 < truth[flag].sum() < len(truth)


def test_as_simulated_is_the_window_revenue_of_generates_orders(truth):
    orders, _ = generate(CUSTOMERS, SEED)
    labels = build_labels(orders, cutoff=CUTOFF, spec=FeatureSpec(horizon_days=HORIZON))
    # Same population as the labels (customers with an order before the cutoff) ...
    pd.testing.assert_index_equal(truth.index, labels.index, exact=False)
    # ... and the same revenue; only the summation order differs (the truth sums cents).
    np.testing.assert_allclose(truth["as_simulated"], labels["future_value"], rtol=0, atol=1e-6)
    assert truth["as_simulated"].sum() > 0


def test_customers_without_failures_before_the_cutoff_are_identical_everywhere(truth):
    clean = ~truth[list(TRUTH_FLAGS.values())].any(axis=1)
    assert clean.sum() > 100
    for name in COUNTERFACTUALS:
        assert (truth.loc[clean, name] == truth.loc[clean, "as_simulated"]).all(), name
    # Per kind: a customer without that kind of failure is untouched by switching it off.
    for name, kinds in TRUTH_SCENARIOS.items():
        if len(kinds) == 1:
            spared = ~truth[TRUTH_FLAGS[kinds[0]]]
            assert (truth.loc[spared, name] == truth.loc[spared, "as_simulated"]).all(), name


def test_failures_only_cost_value_and_all_together_cost_most(truth):
    summary = service_effect_summary(truth)
    assert list(summary.index) == ["late", "returns", "bad_tickets", "all"]
    assert (summary["value_lost"] > 0).all()
    for kind in ["late", "returns", "bad_tickets"]:
        assert summary.loc["all", "value_lost"] >= summary.loc[kind, "value_lost"], kind
        assert summary.loc[kind, "customers"] == truth[TRUTH_FLAGS[kind]].sum()
        assert summary.loc["all", "customers"] >= summary.loc[kind, "customers"]
    lost = truth["no_failures"] - truth["as_simulated"]
    np.testing.assert_allclose(summary.loc["all", "value_lost"], lost.sum(), atol=1e-6)
    # Per customer the loss is almost never negative (see the docstring for the exception).
    assert (lost < 0).mean() < 0.02


def test_no_planted_effects_means_nothing_lost():
    truth = service_effect_truth(3_000, 2, CUTOFF, HORIZON, NO_EFFECTS)
    for name in COUNTERFACTUALS:
        assert (truth[name] == truth["as_simulated"]).all(), name
    summary = service_effect_summary(truth)
    assert (summary["value_lost"] == 0).all()
    assert (summary["customers"] > 0).all()  # the failures happen, they just cost nothing


def test_same_seed_same_truth_and_generate_is_unchanged(truth):
    again = service_effect_truth(CUSTOMERS, SEED, CUTOFF, HORIZON)
    pd.testing.assert_frame_equal(again, truth)
    # Recording the simulation for the replay draws nothing extra: generate still matches.
    orders, events = generate(500, seed=9)
    orders2, events2 = generate(500, seed=9)
    pd.testing.assert_frame_equal(orders, orders2)
    pd.testing.assert_frame_equal(events, events2)


def test_a_shorter_window_and_another_cutoff_work():
    truth = service_effect_truth(2_000, 4, "2024-01-15 12:00", 90)
    orders, _ = generate(2_000, 4)
    labels = build_labels(orders, cutoff="2024-01-15 12:00", spec=FeatureSpec(horizon_days=90))
    np.testing.assert_allclose(truth["as_simulated"], labels["future_value"], atol=1e-6)
    assert service_effect_summary(truth).loc["all", "value_lost"] > 0


def test_lookback_switches_off_only_recent_failures(truth):
    recent = service_effect_truth(CUSTOMERS, SEED, CUTOFF, HORIZON, lookback_days=365)
    pd.testing.assert_index_equal(recent.index, truth.index)
    pd.testing.assert_series_equal(recent["as_simulated"], truth["as_simulated"])
    for flag in TRUTH_FLAGS.values():
        assert not (recent[flag] & ~truth[flag]).any(), flag  # recent failures are a subset
        assert recent[flag].sum() < truth[flag].sum(), flag
    clean = ~recent[list(TRUTH_FLAGS.values())].any(axis=1)
    for name in COUNTERFACTUALS:
        assert (recent.loc[clean, name] == recent.loc[clean, "as_simulated"]).all(), name
    lost = service_effect_summary(recent)["value_lost"]
    assert (lost > 0).all()
    assert (lost <= service_effect_summary(truth)["value_lost"]).all()
    # A lookback reaching back past the start of trading is the same as none.
    everything = service_effect_truth(CUSTOMERS, SEED, CUTOFF, HORIZON, lookback_days=5_000)
    pd.testing.assert_frame_equal(everything, truth)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"cutoff": "2022-07-01"}, "after start"),
        ({"cutoff": "2025-07-02"}, "must not be after end"),
        ({"horizon_days": 0}, "horizon_days"),
        ({"customers": 0}, "customers"),
        ({"lookback_days": 0}, "lookback_days"),
    ],
)
def test_bad_arguments_are_refused(kwargs, message):
    args = {"customers": 10, "seed": 1, "cutoff": CUTOFF, "horizon_days": HORIZON} | kwargs
    with pytest.raises(ValueError, match=message):
        service_effect_truth(**args)
