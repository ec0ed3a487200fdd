"""The service-impact estimate against the synthetic store's planted truth (the check trains).

The file the check is written to is read back as it was written (counts stay counts).
"""

from pathlib import Path

import pandas as pd
import pytest

from demo.generator import generate
from demo.truth import service_effect_summary, service_effect_truth
from features import FeatureSpec
from features.io import validate_events, validate_orders
from serving.insight.impact import estimate_impact
from serving.insight.impact_truth import TruthCheck, compare, ranks_agree
from training.config import TrainConfig
from training.pipeline import train_models

CUSTOMERS, SEED, HORIZON = 10_000, 11, 365


def test_a_written_check_reads_back_with_whole_counts(tmp_path: Path) -> None:
    kinds = ["late", "returns", "bad_tickets", "all"]
    estimate = pd.DataFrame(
        {"clv_gain": [110.0, 45.0, 12.0, 170.0], "affected": [10, 5, 0, 14]}, index=kinds
    )
    truth = pd.DataFrame(
        {"value_lost": [100.0, 50.0, 0.0, 160.0], "customers": [10, 6, 0, 15]}, index=kinds
    )
    check = TruthCheck("2025-01-01", 180, "models:/customer-value/1", {"seed": 11},
                       compare(estimate, truth))  # fmt: skip
    back = TruthCheck.read(check.write(tmp_path / "impact_truth.json"))
    assert back.table["affected"].dtype == "int64"
    assert back.table["affected_truth"].dtype == "int64"
    assert back.table.loc["returns", "affected_truth"] == 6
    # No truth to compare with: null in the file, NaN again once read.
    assert pd.isna(back.table.loc["bad_tickets", "error_pct"])
    pd.testing.assert_frame_equal(back.table, check.table)


@pytest.mark.slow
def test_the_estimate_ranks_the_kinds_as_the_truth_and_is_near_it():
    raw_orders, raw_events = generate(CUSTOMERS, SEED)
    orders = validate_orders(raw_orders, strict=True).frame
    events = validate_events(raw_events, strict=True).frame
    trained = train_models(
        orders,
        events,
        spec=FeatureSpec(horizon_days=HORIZON),
        settings=TrainConfig(max_trials=0).fit_settings(),
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
