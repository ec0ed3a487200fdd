"""The service-impact estimate against the synthetic store's planted truth (slow: trains)."""

import pytest

from features import FeatureSpec
from features.io import validate_events, validate_orders
from features.synth import generate, service_effect_summary, service_effect_truth
from serving.impact import estimate_impact
from serving.impact_truth import compare, ranks_agree
from training.config import TrainConfig
from training.pipeline import train_models

CUSTOMERS, SEED, HORIZON = 10_000, 11, 365

pytestmark = pytest.mark.slow


def test_the_estimate_ranks_the_kinds_as_the_truth_and_is_near_it():
    raw_orders, raw_events = generate(CUSTOMERS, SEED)
    orders = validate_orders(raw_orders, strict=True).frame
    events = validate_events(raw_events, strict=True).frame
    trained = train_models(
        orders,
        events,
        spec=FeatureSpec(horizon_days=HORIZON),
        settings=TrainConfig(time_budget=0).fit_settings(),
        refit=False,
    )
    cutoff = trained.plan.holdout  # the twin never saw anything after it
    estimate = estimate_impact(
        trained.evaluation,
        orders[orders["ordered_at"] < cutoff],
        events[events["occurred_at"] < cutoff],
        cutoff,
    )
    # The estimand the what-if measures: what past failures still cost from the cutoff on
    # (customers already gone stay gone), with the planted effects switched off.
    truth = service_effect_summary(
        service_effect_truth(CUSTOMERS, SEED, cutoff, HORIZON, mode="from_cutoff")
    )
    table = compare(estimate.by_kind, truth)
    assert ranks_agree(table)
    # Measured at this size: late +6%, returns -55%, bad tickets -22%, all three -20% (before
    # the value stack weighed failure counts: -11%, -50%, +20%, -25%). On the 50,000-customer
    # demo store (README) every kind is within 10%. At 10,000 customers the stack is fit on
    # about 6,500 rows and the returns' weight is half the demo's: the order of the kinds and
    # the total are what this checks closely.
    ratio = table["estimate"] / table["truth"]
    assert ratio["all"] == pytest.approx(1.0, abs=0.3)
    assert ratio[["late", "returns", "bad_tickets"]].between(0.4, 2.5).all()
