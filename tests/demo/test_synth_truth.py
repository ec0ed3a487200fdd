"""Ground truth of the planted service effects: the store replayed with effects switched off."""

import numpy as np
import pandas as pd
import pytest

import demo.truth as synth
from demo.generator import SynthParams, generate
from demo.truth import (
    TRUTH_FLAGS,
    TRUTH_MODES,
    TRUTH_SCENARIOS,
    service_effect_summary,
    service_effect_truth,
)
from features.labels import build_labels
from features.spec import FeatureSpec

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
        ({"mode": "now"}, "mode"),
    ],
)
def test_bad_arguments_are_refused(kwargs, message):
    args = {"customers": 10, "seed": 1, "cutoff": CUTOFF, "horizon_days": HORIZON} | kwargs
    with pytest.raises(ValueError, match=message):
        service_effect_truth(**args)


# --- mode="from_cutoff": the life up to the cutoff as simulated, effects removed from it on.


@pytest.fixture(scope="module")
def from_cutoff() -> pd.DataFrame:
    return service_effect_truth(CUSTOMERS, SEED, CUTOFF, HORIZON, mode="from_cutoff")


def _left_before_cutoff(customers: int, seed: int, cutoff: str) -> np.ndarray:
    """Per customer: left the store before the cutoff (the simulation stopped drawing for them).

    The purchase loop stops at the first candidate at or after the customer's departure, so a
    stop before the cutoff means the customer had left by then.
    """
    p = SynthParams()
    start, end = pd.Timestamp("2022-07-01"), pd.Timestamp("2026-07-01")
    season = synth._Season(start, end, p)
    sim = synth._simulate(np.random.default_rng(seed), customers, season, p, False, record=True)
    return sim.stopped_at < (pd.Timestamp(cutoff) - start) / pd.Timedelta(days=1)


def synth_ids(customers: int) -> pd.Index:
    return pd.Index([f"C{i:0{max(7, len(str(customers)))}d}" for i in range(1, customers + 1)])


def test_from_cutoff_same_store_population_and_flags(truth, from_cutoff):
    assert list(from_cutoff.columns) == list(truth.columns)
    pd.testing.assert_index_equal(from_cutoff.index, truth.index)
    pd.testing.assert_series_equal(from_cutoff["as_simulated"], truth["as_simulated"])
    for flag in TRUTH_FLAGS.values():
        pd.testing.assert_series_equal(from_cutoff[flag], truth[flag])


def test_from_cutoff_keeps_whoever_left_before_the_cutoff_gone(truth, from_cutoff):
    left = pd.Series(_left_before_cutoff(CUSTOMERS, SEED, CUTOFF), index=synth_ids(CUSTOMERS))
    left = left.loc[from_cutoff.index]
    hurt = left & from_cutoff[list(TRUTH_FLAGS.values())].any(axis=1)
    assert hurt.sum() > 100
    for name in COUNTERFACTUALS:
        assert (from_cutoff.loc[left, name] == from_cutoff.loc[left, "as_simulated"]).all(), name
    # In history mode some of them are revived: the two modes do differ.
    revived = truth.loc[hurt, "no_failures"] != truth.loc[hurt, "as_simulated"]
    assert revived.sum() > 100


def test_from_cutoff_customers_without_failures_are_identical(from_cutoff):
    clean = ~from_cutoff[list(TRUTH_FLAGS.values())].any(axis=1)
    assert clean.sum() > 100
    for name, kinds in TRUTH_SCENARIOS.items():
        assert (from_cutoff.loc[clean, name] == from_cutoff.loc[clean, "as_simulated"]).all()
        spared = ~from_cutoff[[TRUTH_FLAGS[k] for k in kinds]].any(axis=1)
        assert (from_cutoff.loc[spared, name] == from_cutoff.loc[spared, "as_simulated"]).all()


def test_from_cutoff_loses_value_but_less_than_rewriting_history(truth, from_cutoff):
    now = service_effect_summary(from_cutoff)
    history = service_effect_summary(truth)
    assert (now["value_lost"] >= 0).all()
    assert (now["value_lost"] > 0).all()
    assert (now["value_lost"] <= history["value_lost"]).all()
    pd.testing.assert_series_equal(now["customers"], history["customers"])


def test_from_cutoff_with_no_planted_effects_loses_nothing():
    truth = service_effect_truth(3_000, 2, CUTOFF, HORIZON, NO_EFFECTS, mode="from_cutoff")
    for name in COUNTERFACTUALS:
        assert (truth[name] == truth["as_simulated"]).all(), name
    assert (service_effect_summary(truth)["value_lost"] == 0).all()


@pytest.mark.parametrize("mode", TRUTH_MODES)
def test_replay_with_every_effect_on_reproduces_the_store(monkeypatch, mode):
    # Scenarios that switch nothing off: every customer with a failure is replayed with all
    # effects on (in from_cutoff mode: with the split state), and must come out as simulated.
    monkeypatch.setattr(synth, "TRUTH_SCENARIOS", {name: () for name in TRUTH_SCENARIOS})
    truth = service_effect_truth(3_000, 3, CUTOFF, HORIZON, mode=mode)
    assert truth[list(TRUTH_FLAGS.values())].any(axis=1).sum() > 100
    for name in COUNTERFACTUALS:
        assert (truth[name] == truth["as_simulated"]).all(), name


def test_from_cutoff_with_a_lookback_switches_off_recent_failures_only(from_cutoff):
    recent = service_effect_truth(
        CUSTOMERS, SEED, CUTOFF, HORIZON, lookback_days=365, mode="from_cutoff"
    )
    pd.testing.assert_series_equal(recent["as_simulated"], from_cutoff["as_simulated"])
    clean = ~recent[list(TRUTH_FLAGS.values())].any(axis=1)
    for name in COUNTERFACTUALS:
        assert (recent.loc[clean, name] == recent.loc[clean, "as_simulated"]).all(), name
    assert (service_effect_summary(recent)["value_lost"] > 0).all()
